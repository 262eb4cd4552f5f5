"""The hub answers, PAM login works for real accounts, a server is a real Slurm job."""

from __future__ import annotations

import subprocess
import time

import pytest
import requests

pytestmark = [pytest.mark.slurm, pytest.mark.hub]


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


def test_system_accounts_cannot_log_in(hub):
    assert login(hub, "root", "root").status_code == 403


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
