"""The hub answers, PAM login works for real accounts, a server is a real Slurm job."""

from __future__ import annotations

import secrets
import subprocess
import time
from contextlib import contextmanager

import pamela
import pytest
import requests

from aifactory.hub.service import LOG as HUB_LOG

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

# The accounts the local cluster creates for the demo site that are never people's.
PLATFORM_ACCOUNTS = ["aifactory-grader", "grader-intro-dl"]


def login(hub: str, user: str, password: str) -> requests.Response:
    session = requests.Session()
    session.get(f"{hub}/hub/login", timeout=10)
    return session.post(
        f"{hub}/hub/login",
        data={"username": user, "password": password, "_xsrf": session.cookies.get("_xsrf", "")},
        allow_redirects=False,
        timeout=30,
    )


def test_hub_api_answers(hub):
    response = requests.get(f"{hub}/hub/api", timeout=10)
    assert response.status_code == 200
    assert response.json()["version"].startswith("6.")


def test_pam_login_with_the_right_password(hub, passwords):
    response = login(hub, "student1", passwords["student1"])
    assert response.status_code == 302
    assert "jupyterhub-session-id" in response.cookies or "jupyterhub-hub-login" in response.cookies


def test_pam_login_with_a_wrong_password_is_refused(hub, passwords):
    response = login(hub, "student1", passwords["student1"] + "x")
    assert response.status_code == 403
    assert "Invalid username or password" in response.text


@contextmanager
def known_password(user: str):
    """A random password for `user` while the test runs; the account's old hash comes back after.

    Only for the platform's own accounts: root and the system's are tested with PAM stubbed
    (tests/unit/test_login_blocking.py). Passwords and hashes go through chpasswd's stdin, never argv."""
    assert user in PLATFORM_ACCOUNTS, f"{user!r} is not the platform's account: its password never changes here"
    old_hash = subprocess.run(["getent", "shadow", user], capture_output=True, text=True, check=True).stdout.split(":")[1]
    password = secrets.token_urlsafe(24)
    subprocess.run(["chpasswd"], input=f"{user}:{password}\n", text=True, check=True)
    try:
        yield password
    finally:
        subprocess.run(["chpasswd", "-e"], input=f"{user}:{old_hash}\n", text=True, check=True)


def hub_log_after(offset: int, wanted: str, timeout: float = 10) -> str:
    """The hub's log written since `offset`, once it holds `wanted` (or the timeout passed)."""
    deadline = time.monotonic() + timeout
    while True:
        with HUB_LOG.open() as log:
            log.seek(offset)
            text = log.read()
        if wanted in text or time.monotonic() > deadline:
            return text
        time.sleep(0.2)


@pytest.mark.parametrize("account", PLATFORM_ACCOUNTS)
def test_the_platforms_service_accounts_cannot_log_in_with_their_right_password(hub, account):
    """PAM accepts the password; the hub refuses the account for its name (blocked_users)."""
    with known_password(account) as password:
        pamela.authenticate(account, password, service="login")  # raises if the password were wrong
        offset = HUB_LOG.stat().st_size
        response = login(hub, account, password)
    assert response.status_code == 403
    blocked = f"User {account!r} blocked"
    assert blocked in hub_log_after(offset, blocked)


def test_operator_token_has_admin_scopes(hub, operator_token):
    headers = {"Authorization": f"token {operator_token}"}
    users = requests.get(f"{hub}/hub/api/users", headers=headers, timeout=10)
    assert users.status_code == 200
    assert {"student1", "trainer1", "researcher1"} <= {u["name"] for u in users.json()}
    groups = requests.get(f"{hub}/hub/api/groups/students", headers=headers, timeout=10).json()
    assert sorted(groups["users"]) == ["student1", "student2", "student3"]


@pytest.mark.slow
def test_a_spawned_server_is_a_slurm_job_of_the_user(hub, operator_token, server_url):
    api = f"{hub}/hub/api/users/student2"
    headers = {"Authorization": f"token {operator_token}"}
    assert requests.post(f"{api}/server", headers=headers, timeout=120).status_code in (201, 202)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            server = requests.get(api, headers=headers, timeout=10).json()["servers"].get("")
            if server and server["ready"]:
                break
            time.sleep(1)
        else:
            pytest.fail("server of student2 not ready within 120s")
        jobs = subprocess.run(["squeue", "-h", "-u", "student2", "-o", "%j %T %a"], capture_output=True,
                              text=True).stdout.split()
        assert jobs == ["jupyter-student2", "RUNNING", "project_465000002"]
        api_through_proxy = requests.get(f"{server_url('student2')}api/status", headers=headers, timeout=10)
        assert api_through_proxy.status_code == 200
    finally:
        requests.delete(f"{api}/server", headers=headers, timeout=60)
    deadline = time.monotonic() + 60
    while subprocess.run(["squeue", "-h", "-u", "student2"], capture_output=True, text=True).stdout.strip():
        assert time.monotonic() < deadline, "the job of student2 outlived its server"
        time.sleep(1)
