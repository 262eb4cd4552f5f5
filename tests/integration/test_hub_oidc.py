"""Federated login end to end: a second hub, configured from an OIDC site file, logs
people in through a real OpenID Connect provider on loopback (oidc-provider-mock:
the real authorization-code protocol, tokens and userinfo over HTTP).

The provider's subject ids differ from the user names on purpose: the account is the
`preferred_username` claim, the groups come from the `groups` claim, the course
groups from the site file.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
import yaml

from aifactory.hub.config import HubPaths
from aifactory.site.load import read_yaml

from ..conftest import BIN, DEMO

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.hub,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # authlib, inside the provider
]

PORT, HUB_PORT, PROXY_API_PORT = 8100, 8181, 8102
CONFIG = Path(__file__).resolve().parents[2] / "hub" / "jupyterhub_config.py"
PEOPLE = {
    # subject at the IdP: claims it sends
    "a1b2-student": {"preferred_username": "student1", "groups": ["students"], "email": "s1@example.eu"},
    "c3d4-admin": {"preferred_username": "admin1", "groups": ["admins"]},
    "e5f6-stranger": {"preferred_username": "stranger", "groups": ["visitors"]},
    # An IdP (or whoever controls an account there) naming an account that is not a person's.
    "x0-root": {"preferred_username": "root", "groups": ["students"]},
    "x1-grader": {"preferred_username": "aifactory-grader", "groups": ["students"]},
    "x2-formgrader": {"preferred_username": "grader-intro-dl", "groups": ["students"]},
    "x3-daemon": {"preferred_username": "daemon", "groups": ["students"]},
}


@pytest.fixture(scope="module")
def provider():
    oidc_provider_mock = pytest.importorskip("oidc_provider_mock", reason="pip install oidc-provider-mock (test extra)")
    with oidc_provider_mock.run_server_in_thread() as server:
        url = f"http://127.0.0.1:{server.server_port}"
        for sub, claims in PEOPLE.items():
            assert requests.put(f"{url}/users/{sub}", json=claims, timeout=10).status_code == 204
        yield url


@pytest.fixture(scope="module")
def oidc_hub(cluster, provider, tmp_path_factory):
    """A second JupyterHub on other ports, with its own state, from an OIDC site file."""
    state = tmp_path_factory.mktemp("oidc-hub")
    state.chmod(0o700)
    (state / "operator-token").write_text("oidc-test-operator-token\n")
    (state / "client-secret").write_text("not-checked-by-the-provider\n")
    site = read_yaml(DEMO.read_text())  # keeps 4:00:00 a walltime, not YAML 1.1 sexagesimal
    site["hub"] = {"ip": "127.0.0.1", "port": PORT, "hub_port": HUB_PORT}
    site["auth"] = {
        "kind": "oidc",
        "issuer": provider,
        "authorize_url": f"{provider}/oauth2/authorize",
        "token_url": f"{provider}/oauth2/token",
        "userdata_url": f"{provider}/userinfo",
        "client_id": "aifactory-hub",
        "client_secret_file": str(state / "client-secret"),
        "admin_groups": ["admins"],
    }
    (state / "site.yaml").write_text(yaml.safe_dump(site))
    # The site's config, plus what lets a second hub run beside the first one.
    (state / "jupyterhub_config.py").write_text(
        f"load_subconfig({str(CONFIG)!r})\n"
        f"c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{PROXY_API_PORT}'\n"
    )
    paths = HubPaths()
    env = {**os.environ, "AIFACTORY_SITE": str(state / "site.yaml"), "AIFACTORY_HUB_STATE": str(state),
           "PATH": f"{BIN}:{Path(paths.proxy).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    log = open(state / "jupyterhub.log", "w")
    process = subprocess.Popen([str(BIN / "jupyterhub"), "-f", str(state / "jupyterhub_config.py")],
                               cwd=state, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{PORT}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/hub/api", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the OIDC hub did not start:\n{(state / 'jupyterhub.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        proxy_pid = state / "proxy.pid"
        if proxy_pid.exists():  # the hub stops its proxy; make sure of it
            try:
                os.kill(int(proxy_pid.read_text()), 15)
            except (ProcessLookupError, ValueError):
                pass
        log.close()


def federated_login(hub: str, subject: str) -> requests.Response:
    """What a browser does: hub -> provider's authorize form -> choose the subject -> back to the hub."""
    session = requests.Session()
    to_provider = session.get(f"{hub}/hub/oauth_login", allow_redirects=False, timeout=10)
    assert to_provider.status_code == 302
    authorize = to_provider.headers["Location"]
    assert urlparse(authorize).path == "/oauth2/authorize"
    assert session.get(authorize, timeout=10).status_code == 200  # the provider's login form
    back_to_hub = session.post(authorize, data={"sub": subject}, allow_redirects=False, timeout=10)
    assert back_to_hub.status_code == 302 and back_to_hub.headers["Location"].startswith(f"{hub}/hub/oauth_callback")
    return session.get(back_to_hub.headers["Location"], allow_redirects=False, timeout=30)


def user(hub: str, name: str) -> requests.Response:
    headers = {"Authorization": "token oidc-test-operator-token"}
    return requests.get(f"{hub}/hub/api/users/{name}", headers=headers, timeout=10)


def test_the_username_claim_is_the_account_and_groups_come_from_claims(oidc_hub):
    callback = federated_login(oidc_hub, "a1b2-student")
    assert callback.status_code == 302, callback.text[:500]
    student = user(oidc_hub, "student1").json()
    # The IdP's groups claim, plus the site's course groups of student1.
    assert sorted(student["groups"]) == ["course-intro-dl-students", "course-pytorch-students", "students"]
    assert student["admin"] is False
    assert user(oidc_hub, "a1b2-student").status_code == 404  # the subject id is not an account


def test_an_admin_group_claim_makes_an_admin(oidc_hub):
    assert federated_login(oidc_hub, "c3d4-admin").status_code == 302
    assert user(oidc_hub, "admin1").json()["admin"] is True


def test_people_of_no_site_group_are_refused(oidc_hub):
    assert federated_login(oidc_hub, "e5f6-stranger").status_code == 403
    assert user(oidc_hub, "stranger").status_code == 404


@pytest.mark.parametrize("subject, name", [("x0-root", "root"), ("x1-grader", "aifactory-grader"),
                                           ("x2-formgrader", "grader-intro-dl")])
def test_a_claim_naming_root_or_a_service_account_never_logs_in(oidc_hub, subject, name):
    assert federated_login(oidc_hub, subject).status_code == 403
    assert user(oidc_hub, name).status_code == 404


def test_a_system_account_that_logged_in_gets_no_server_and_no_job(oidc_hub):
    """uid 1 passes the name check at login; the spawner checks the uid before anything reaches sudo."""
    assert federated_login(oidc_hub, "x3-daemon").status_code == 302
    headers = {"Authorization": "token oidc-test-operator-token"}
    started = requests.post(f"{oidc_hub}/hub/api/users/daemon/server", headers=headers, json={}, timeout=60)
    assert started.status_code == 403, started.text
    assert "system account" in started.json()["message"] and "uid 1" in started.json()["message"]
    jobs = subprocess.run(["squeue", "-h", "-u", "daemon", "-o", "%i"], capture_output=True, text=True, check=True)
    assert jobs.stdout.strip() == ""
    model = user(oidc_hub, "daemon").json()
    assert model["servers"] == {} or not model["servers"].get("", {}).get("ready")
