"""`aifactory course add` on the running hub: a course the hub already serves needs no restart."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN, DEMO

pytestmark = [pytest.mark.slurm, pytest.mark.hub]
PIDFILE = Path("/var/lib/aifactory/hub/jupyterhub.pid")


def test_adding_a_course_the_hub_serves_keeps_the_hub_running(hub):
    # `make hub` installed the demo site: installing it again changes nothing.
    pid = PIDFILE.read_text()
    out = subprocess.run([str(BIN / "aifactory"), "course", "add", "intro-dl", "--site", str(DEMO)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert f"formgrader at {hub}/services/formgrader-intro-dl/formgrader" in out.stdout  # the hub's public URL
    assert "restarting" not in out.stdout
    assert PIDFILE.read_text() == pid


NEW = "ml-ops"


def _restore_demo() -> None:
    """Back to the demo site: the hub restarted without the added course, its Unix side removed."""
    subprocess.run([str(BIN / "aifactory"), "site", "install", str(DEMO)], check=True, capture_output=True)
    subprocess.run([str(BIN / "aifactory"), "hub", "down"], check=True, capture_output=True)
    subprocess.run([str(BIN / "aifactory"), "hub", "up"], check=True, capture_output=True)
    subprocess.run(["userdel", f"grader-{NEW}"], capture_output=True)
    for group in (f"course-{NEW}", f"course-{NEW}-trainers"):
        subprocess.run(["groupdel", group], capture_output=True)
    subprocess.run(["rm", "-rf", f"/srv/aifactory/courses/{NEW}", f"/srv/aifactory/exchange/{NEW}",
                    f"/var/lib/aifactory/formgrader/{NEW}", f"/etc/sudoers.d/aifactory-grading-{NEW}"])


def test_a_new_course_in_the_site_file_gets_its_formgrader_with_one_command(hub, operator_token, tmp_path):
    import time

    import requests

    # What an operator does: one more entry under courses: in the site file.
    course = (f"  - id: {NEW}\n    title: MLOps on the supercomputer\n    trainers: [trainer1]\n"
              "    students: [student3]\n    profile: course\n    project: project_465000002\n")
    site = tmp_path / "site.yaml"
    site.write_text(DEMO.read_text().replace("\ngroups:\n", f"{course}\ngroups:\n", 1))
    site.chmod(0o644)
    headers = {"Authorization": f"token {operator_token}"}
    try:
        started = time.monotonic()
        out = subprocess.run([str(BIN / "aifactory"), "course", "add", NEW, "--site", str(site)],
                             capture_output=True, text=True, timeout=600)
        seconds = time.monotonic() - started
        assert out.returncode == 0, out.stdout + out.stderr
        assert "restarting the hub" in out.stdout
        print(f"course add with a hub restart: {seconds:.1f}s")
        services = requests.get(f"{hub}/hub/api/services", headers=headers, timeout=30).json()
        assert f"formgrader-{NEW}" in services
        group = requests.get(f"{hub}/hub/api/groups/course-{NEW}-trainers", headers=headers, timeout=30).json()
        assert group["users"] == ["trainer1"] and f"course-{NEW}-trainers" in group["roles"]
        # The formgrader answers through the proxy, as the course's grader account.
        page = requests.get(f"{hub}/services/formgrader-{NEW}/api", timeout=30)
        assert page.status_code == 200
        assert subprocess.run(["pgrep", "-u", f"grader-{NEW}", "-f", "aifactory.hub.formgrader"],
                              capture_output=True).returncode == 0
    finally:
        _restore_demo()
    assert f"formgrader-{NEW}" not in requests.get(f"{hub}/hub/api/services", headers=headers, timeout=30).json()


def test_a_new_student_of_a_course_joins_it_without_a_hub_restart(hub, operator_token, tmp_path):
    import grp

    import requests

    headers = {"Authorization": f"token {operator_token}"}
    group = f"{hub}/hub/api/groups/course-intro-dl-students"
    site = tmp_path / "site.yaml"
    text = DEMO.read_text()
    enrolled = "    students: [student1, student2]\n    profile: course\n    project: project_465000002\n" \
               "    trainers_access_servers: true\n"
    assert enrolled in text
    site.write_text(text.replace(enrolled, enrolled.replace("student2]", "student2, researcher1]"), 1))
    site.chmod(0o644)
    pid = PIDFILE.read_text()
    try:
        out = subprocess.run([str(BIN / "aifactory"), "course", "add", "intro-dl", "--site", str(site)],
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "researcher1" in requests.get(group, headers=headers, timeout=30).json()["users"]
        assert "researcher1" in grp.getgrnam("course-intro-dl").gr_mem
    finally:
        back = subprocess.run([str(BIN / "aifactory"), "course", "add", "intro-dl", "--site", str(DEMO)],
                              capture_output=True, text=True, timeout=600)
    assert back.returncode == 0, back.stdout + back.stderr
    assert "researcher1" not in requests.get(group, headers=headers, timeout=30).json()["users"]
    assert "researcher1" not in grp.getgrnam("course-intro-dl").gr_mem
    assert PIDFILE.read_text() == pid
