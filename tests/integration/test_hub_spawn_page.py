"""The spawn page is built from the cluster: free CPUs as Slurm sees them, and the project's use."""

from __future__ import annotations

import re
import subprocess
import time

import pytest
import requests

from aifactory.slurm.sinfo import SINFO_ARGV, parse_sinfo

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

USER = "student1"


def logged_in(hub: str, user: str, password: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{hub}/hub/login", timeout=10)
    response = session.post(f"{hub}/hub/login", timeout=30, allow_redirects=False,
                            data={"username": user, "password": password, "_xsrf": session.cookies.get("_xsrf", "")})
    assert response.status_code == 302, response.status_code
    return session


def idle_cpus_shown(page: str, partition: str) -> int:
    match = re.search(rf"<code>{partition}</code>: (\d+) of \d+ CPUs idle", page)
    assert match, f"no live state for {partition} on the spawn page"
    return int(match.group(1))


def test_the_spawn_page_shows_free_cpus_as_slurm_sees_them_and_the_projects_use(hub, passwords, demo_site):
    session = logged_in(hub, USER, passwords[USER])
    blocker = subprocess.run(
        ["runuser", "-u", USER, "--", "sbatch", "--parsable", "-p", "interactive", "-A", "project_465000002",
         "-c", "3", "--mem=128M", "-t", "5", "-J", "spawn-page-blocker", "--chdir=/tmp", "--output=/dev/null",
         "--wrap", "sleep 300"],
        capture_output=True, text=True, check=True).stdout.strip()
    try:
        deadline = time.monotonic() + 180
        while (state := subprocess.run(["squeue", "-h", "-j", blocker, "-o", "%T"], capture_output=True,
                                       text=True).stdout.strip()) != "RUNNING":
            assert state and time.monotonic() < deadline, f"blocker job did not start ({state or 'gone'})"
            time.sleep(1)
        for attempt in range(5):  # other jobs may start or end between the two looks
            time.sleep(6)  # past the page's few seconds of cache
            page = session.get(f"{hub}/hub/spawn", timeout=60).text
            slurm = parse_sinfo(subprocess.run(SINFO_ARGV, capture_output=True, text=True).stdout)["interactive"]
            if idle_cpus_shown(page, "interactive") == slurm.idle_cpus:
                break
        else:
            pytest.fail(f"page shows {idle_cpus_shown(page, 'interactive')} idle CPUs, Slurm {slurm.idle_cpus}")
        assert slurm.idle_cpus <= slurm.cpus - 3  # the blocker's CPUs are not offered as free
        project = next(p for p in demo_site.projects if p.name == "project_465000002")
        assert re.search(rf"project_465000002: [\d.,]+ of {project.cpu_hours:,} core-hours used \([\d.,]+ left\)",
                         page)
    finally:
        subprocess.run(["scancel", blocker])
