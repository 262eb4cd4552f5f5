"""A user gives their running server more walltime through the hub; Slurm's job gets the new limit.

One small cpu server of student1 (1 CPU, 1G, 1 hour) serves every test of this module; each test reads
the job's limit from `scontrol show job` itself, and the last one stops the server. The hub's API is
`POST /hub/api/aifactory/users/<user>/servers/<name>/walltime` with {"minutes": N} (spawners/walltime_api.py).
"""

from __future__ import annotations

import re
import subprocess
from datetime import datetime, timedelta

import pytest
import requests

from .browser import logged_in
from .test_spawner_slurm import Hub, cleanup, jobs_of

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

USER, NAME, OTHER = "student1", "wt-extend", "student2"
OPTIONS = {"profile": "cpu", "cpus": "1", "memory": "1G", "walltime": "1:00:00"}
PROFILE_MAX = 12 * 60  # demo.yaml: the cpu profile's walltime max, 12:00:00 (limits.max_session too)


def job_times(job_id: str) -> tuple[int, datetime]:
    """(TimeLimit in minutes, EndTime) as `scontrol show job` says."""
    text = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True).stdout
    limit = re.search(r"\bTimeLimit=(?:(\d+)-)?(\d+):(\d+):(\d+)\b", text)
    assert limit, text
    days, hours, minutes, _ = (int(g or 0) for g in limit.groups())
    end = re.search(r"\bEndTime=(\S+)", text).group(1)
    return days * 1440 + hours * 60 + minutes, datetime.fromisoformat(end)


def clock(minutes: int) -> str:
    days, rest = divmod(minutes, 1440)
    text = f"{rest // 60:02d}:{rest % 60:02d}:00"
    return f"{days}-{text}" if days else text


def token_of(api: Hub, user: str) -> str:
    """A token of `user`'s own (their permissions, no more), as the home page's requests carry them."""
    made = requests.post(f"{api.url}/hub/api/users/{user}/tokens", headers=api.headers,
                         json={"expires_in": 900, "note": "walltime test"}, timeout=10)
    assert made.status_code == 201, made.text
    return made.json()["token"]


def walltime_url(api: Hub, user: str = USER, name: str = NAME) -> str:
    return f"{api.url}/hub/api/aifactory/users/{user}/servers/{name}/walltime"


def xsrf(session: requests.Session, hub: str) -> str:
    """The xsrf token a hub page gives its scripts (window.jhdata.xsrf_token), as the home page's Extend sends it."""
    page = session.get(f"{hub}/hub/home", timeout=60)
    return re.search(r'xsrf_token: "([^"]+)"', page.text).group(1)


@pytest.fixture(scope="module")
def server(hub, operator_token):
    """student1's running cpu server: (api as the operator, job id, student1's own headers)."""
    api = Hub(hub, operator_token)
    cleanup(api, USER, NAME)
    try:
        assert api.spawn(USER, NAME, OPTIONS).status_code in (201, 202)
        api.wait_ready(USER, NAME)
        ((job_id, state),) = jobs_of(USER, NAME)
        assert state == "RUNNING"
        yield api, job_id, {"Authorization": f"token {token_of(api, USER)}"}
    finally:
        cleanup(api, USER, NAME)


def ends_shown(session: requests.Session, hub: str) -> list[float]:
    """The walltime ends (epoch s) the user's home page shows on its session cards (hub/templates/home.html)."""
    page = session.get(f"{hub}/hub/home", timeout=60)
    assert page.status_code == 200
    return [float(value) for value in re.findall(r'data-ends-at="([\d.]+)"', page.text)]


def test_the_user_extends_their_server_and_slurm_has_the_new_limit_and_end(server, hub, passwords):
    api, job_id, own = server
    limit, end = job_times(job_id)
    browser = logged_in(hub, USER, passwords[USER])
    assert any(abs(shown - end.astimezone().timestamp()) < 1.5 for shown in ends_shown(browser, hub))
    answer = requests.post(walltime_url(api), json={"minutes": 30}, headers=own, timeout=60)
    assert answer.status_code == 200, answer.text
    new_limit, new_end = job_times(job_id)
    assert new_limit == limit + 30
    assert new_end - end == timedelta(minutes=30)
    body = answer.json()
    assert body["time_limit_minutes"] == new_limit and body["added_minutes"] == 30
    # The end the hub reports is Slurm's (the controller's local time, given in UTC with its offset).
    assert datetime.fromisoformat(body["ends_at"]) == new_end.astimezone()
    # The home page's card counts down to the new end.
    shown = ends_shown(browser, hub)
    assert any(abs(value - new_end.astimezone().timestamp()) < 1.5 for value in shown), (shown, new_end)


def test_in_the_browser_the_page_s_xsrf_token_is_needed(server, hub, passwords):
    api, job_id, _ = server
    limit, _ = job_times(job_id)
    browser = logged_in(hub, USER, passwords[USER])
    # A request another site could make the browser send: the cookie, no _xsrf.
    forged = browser.post(walltime_url(api), json={"minutes": 1}, timeout=60)
    assert forged.status_code == 403 and "_xsrf" in forged.json()["message"], forged.text
    assert job_times(job_id)[0] == limit
    # The home page's own request carries the _xsrf cookie's value back.
    own = browser.post(walltime_url(api), json={"minutes": 1}, timeout=60, headers={"X-XSRFToken": xsrf(browser, hub)})
    assert own.status_code == 200, own.text
    assert job_times(job_id)[0] == limit + 1


def test_past_the_profile_maximum_is_refused_with_what_still_fits(server):
    api, job_id, own = server
    limit, _ = job_times(job_id)
    fits = PROFILE_MAX - limit
    refused = requests.post(walltime_url(api), json={"minutes": fits + 1}, headers=own, timeout=60)
    assert refused.status_code == 409, refused.text
    assert refused.json() == {
        "reason": "profile_maximum",
        "message": f"The cpu profile allows at most 12:00:00; this server already has {clock(limit)}, "
                   f"so at most {clock(fits)} more."}
    assert job_times(job_id)[0] == limit
    # Exactly up to the maximum is fine; then nothing more.
    assert requests.post(walltime_url(api), json={"minutes": fits}, headers=own, timeout=60).status_code == 200
    assert job_times(job_id)[0] == PROFILE_MAX
    full = requests.post(walltime_url(api), json={"minutes": 1}, headers=own, timeout=60)
    assert (full.status_code, full.json()["reason"]) == (409, "profile_maximum")
    assert full.json()["message"].endswith("so it cannot be extended.")


def test_another_user_changes_nothing_and_learns_nothing(server, hub, passwords):
    api, job_id, _ = server
    limit, _ = job_times(job_id)
    theirs = {"Authorization": f"token {token_of(api, OTHER)}"}
    for url in (walltime_url(api), walltime_url(api, USER, "no-such-server"),
                f"{api.url}/hub/api/aifactory/users/{USER}/server/walltime"):
        answer = requests.post(url, json={"minutes": 30}, headers=theirs, timeout=60)
        assert answer.status_code == 404, (url, answer.status_code, answer.text)
        assert job_id not in answer.text
    # With their own browser session and its _xsrf: the same 404.
    browser = logged_in(hub, OTHER, passwords[OTHER])
    answer = browser.post(walltime_url(api), json={"minutes": 30}, timeout=60,
                          headers={"X-XSRFToken": xsrf(browser, hub)})
    assert answer.status_code == 404, answer.text
    # Without a token at all: refused before anything is looked up.
    assert requests.post(walltime_url(api), json={"minutes": 30}, timeout=60).status_code == 403
    assert job_times(job_id)[0] == limit


@pytest.mark.parametrize("body", [{"minutes": "60; scancel"}, {"minutes": 10**9}, {"minutes": -5},
                                  {"minutes": 30, "job_id": "1"}, "minutes=30"])
def test_a_malformed_body_is_refused_and_changes_nothing(server, body):
    api, job_id, own = server
    limit, _ = job_times(job_id)
    kwargs = {"data": body} if isinstance(body, str) else {"json": body}
    answer = requests.post(walltime_url(api), headers=own, timeout=60, **kwargs)
    assert answer.status_code == 400, answer.text
    assert answer.json()["reason"] == "bad_request" and "minutes" in answer.json()["message"]
    assert job_times(job_id)[0] == limit
    assert [state for _, state in jobs_of(USER, NAME)] == ["RUNNING"]


def test_a_stopped_server_is_not_running(server):
    api, job_id, own = server
    api.stop(USER, NAME)
    api.wait_stopped(USER, NAME, timeout=60)
    answer = requests.post(walltime_url(api), json={"minutes": 30}, headers=own, timeout=60)
    assert answer.status_code == 409, answer.text
    assert answer.json() == {"reason": "not_running",
                             "message": "Only a running server can be extended; this server is not running."}
