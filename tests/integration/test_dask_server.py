"""Dask from the user's server, through the hub: the dashboard link works, stopping the server ends the jobs.

Each test starts student1's server through the hub's REST API (a Slurm job on a
compute node), runs a small Python program as student1 inside that job on that
node, as a kernel of the server would run, and stops the server in `finally`.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.integration.test_dask_cluster import UserProgram
from aifactory.hub.localcluster.slurmconf import Layout

pytestmark = [pytest.mark.slurm, pytest.mark.hub, pytest.mark.slow]

USER = "student1"
PREAMBLE = """
import json, time
from aifactory.extensions.dask import SiteCluster
def say(kind, value):
    print(kind, json.dumps(value), flush=True)
"""


def squeue(user: str, fmt: str = "%i %j") -> list[list[str]]:
    out = subprocess.run(["squeue", "-h", "-u", user, "-o", fmt], capture_output=True, text=True, check=True).stdout
    return [line.split() for line in out.splitlines() if line.strip()]


def server_jobs(user: str) -> list[str]:
    return [job for job, name in squeue(user) if name.startswith("jupyter-")]


def dask_jobs(user: str, name: str) -> list[str]:
    return [job for job, job_name in squeue(user) if job_name == name]


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout}s")
        time.sleep(1)
    return value


@pytest.fixture
def server(hub, operator_token):
    """student1's default server, started through the hub; yields its Slurm job id; stopped afterwards."""
    with started_server(hub, operator_token, "cpu") as started:
        yield started


@contextlib.contextmanager
def started_server(hub: str, operator_token: str, profile: str, user: str = USER):
    """`user`'s default server under `profile`, started through the hub's REST API; stopped at the end."""
    api = f"{hub}/hub/api/users/{user}"
    headers = {"Authorization": f"token {operator_token}"}
    assert not server_jobs(user), f"{user} already has a server job"
    started = requests.post(f"{api}/server", headers=headers, json={"profile": profile}, timeout=120)
    assert started.status_code in (201, 202), started.text
    stop = lambda: requests.delete(f"{api}/server", headers=headers, timeout=60)  # noqa: E731
    try:
        wait_until(
            lambda: (requests.get(api, headers=headers, timeout=10).json()["servers"].get("") or {}).get("ready"),
            150, f"server of {user} not ready",
        )
        jobs = server_jobs(user)
        assert len(jobs) == 1, jobs
        yield {"job": jobs[0], "stop": stop, "headers": headers}
    finally:
        stop()
        wait_until(lambda: not server_jobs(user), 60, f"the server job of {user} still there")


class ProgramInServer(UserProgram):
    """A Python program run as `user` as a kernel of their server: inside the server's Slurm job on the
    server's node (`srun --overlap`), or, with `inside=False`, on this (login) node with only the
    server's job id, so that it outlives the server."""

    def __init__(self, server_job: str, body: str, user: str = USER, inside: bool = True):
        env = (f"JUPYTERHUB_SERVICE_PREFIX=/user/{user}/",)
        srun = ("srun", f"--jobid={server_job}", "--overlap", "--mem=0", "--ntasks=1", "--quiet")
        super().__init__(user, body, env=env if inside else (f"SLURM_JOB_ID={server_job}", *env),
                         preamble=PREAMBLE, launcher=srun if inside else ())

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)  # srun passes it on to the program on the node
            self.proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        super().kill()
        name = self.said.get("NAME")
        if name:
            subprocess.run(["scancel", "--user", self.user, "--name", str(name)], check=False)


def node_of(job: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job, "-o", "%N"], capture_output=True, text=True,
                          check=True).stdout.strip()


def listening_on_node(node: str, port: int) -> list[str]:
    """Addresses listening on `port` in the compute node's own network namespace."""
    netns = f"/run/netns/{Layout().netns_prefix}{node}"
    out = subprocess.run(["nsenter", f"--net={netns}", "ss", "-Hltn", f"sport = :{port}"],
                         capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in out.splitlines() if line.strip()]


@pytest.fixture
def program():
    started: list[ProgramInServer] = []
    yield lambda *args, **kwargs: started.append(ProgramInServer(*args, **kwargs)) or started[-1]
    for each in started:
        each.kill()


def test_jupyter_server_proxy_is_enabled():
    listed = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "jupyter"), "server", "extension", "list"],
        capture_output=True, text=True,
    )
    text = re.sub(r"\x1b\[[0-9;]*m", "", listed.stdout + listed.stderr)
    assert "jupyter_server_proxy enabled" in text, text
    assert "aifactory.extensions.dask.server_cleanup enabled" in text, text


def test_dashboard_link_works_through_the_hub(server_url, server, program):
    cluster = program(
        server["job"],
        """
        cluster = SiteCluster("cpu", workers=0, cores=1, memory="1G", walltime="15")
        say("NAME", cluster.slurm_job_name)
        say("LINK", cluster.dashboard_link)
        time.sleep(600)
        """,
    )
    link = cluster.wait_for("LINK")
    assert link.startswith(f"/user/{USER}/proxy/") and link.endswith("/status"), link
    dashboard = server_url(USER) + link.removeprefix(f"/user/{USER}/")  # the link is relative to the server
    response = requests.get(dashboard, headers=server["headers"], timeout=30)
    assert response.status_code == 200, response.text[:500]
    assert "<title>Dask Diagnostic UI</title>" in response.text and "bokeh" in response.text, response.text[:500]
    # ... although the dashboard listens on loopback only: the owner's server proxies to it there.
    port = int(link.split("/proxy/")[1].split("/")[0])
    assert listening_on_node(node_of(server["job"]), port) == [f"127.0.0.1:{port}"]


def test_stopping_the_server_through_the_hub_cancels_its_dask_jobs(server, program):
    """The owner of the cluster lives on (so its watchdog does not fire): the server extension cancels the jobs."""
    cluster = program(
        server["job"],
        """
        cluster = SiteCluster("cpu", workers=1, cores=1, memory="1G", walltime="15")
        say("NAME", cluster.slurm_job_name)
        time.sleep(600)
        """,
        inside=False,
    )
    name = cluster.wait_for("NAME")
    registry = os.path.join(pwd.getpwnam(USER).pw_dir, ".aifactory", "dask-jobs", f"{name}.json")
    assert json.load(open(registry))["server_job"] == server["job"]
    wait_until(lambda: dask_jobs(USER, name), 60, "the cluster submitted no job")
    assert server["stop"]().status_code in (202, 204)
    wait_until(lambda: not server_jobs(USER), 60, "the server job still there")
    wait_until(lambda: not dask_jobs(USER, name), 30, "the Dask job outlived the server")
    assert cluster.alive(), "the cluster's owner should still run: the server, not the watchdog, cancelled the job"
    assert not os.path.exists(registry)
