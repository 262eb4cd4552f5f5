"""SiteCluster on the real local Slurm cluster, run as the demo users.

Each test runs a small Python program as a demo user (tests run as root; jobs
must belong to the user), reads what it prints, and cancels the jobs it named
whatever happens.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

PYTHON = sys.executable
PREAMBLE = """
import faulthandler, json, sys, time
faulthandler.enable()  # SIGABRT prints every thread's stack: what a program that hangs was doing
from aifactory.extensions.dask import SiteCluster, AccessRefused, OptionsError
def say(kind, value):
    print(kind, json.dumps(value), flush=True)
"""


def _have_slurm_and_users() -> str | None:
    if shutil.which("sinfo") is None:
        return "needs Slurm's commands (aifactory cluster up)"
    if subprocess.run(["sinfo", "-h"], capture_output=True).returncode != 0:
        return "needs a running slurmctld (aifactory cluster up)"
    try:
        pwd.getpwnam("researcher1")
    except KeyError:
        return "needs the demo users (aifactory cluster up)"
    return None


_missing = _have_slurm_and_users()
if _missing:
    pytestmark.append(pytest.mark.skip(reason=_missing))


def widget_cluster(workers: int, timeout: int = 120) -> str:
    """Program lines: the launcher widget starts a `cpu` cluster of `workers` 1G workers, as a user
    would, and a client waits for them (`ui`, `cluster` and `client` for the lines after)."""
    return f"""
from distributed import Client
from aifactory.extensions.dask.widget import Launcher
ui = Launcher()
ui.profile.value = "cpu"
ui.workers.value = {workers}
ui.memory.value = "1G"
ui.walltime.value = "15"
ui.start()
cluster = ui.cluster
say("NAME", cluster.slurm_job_name)
client = Client(cluster)
client.wait_for_workers({workers}, timeout={timeout})
"""


class UserProgram:
    """A Python program run as `user` in their home; prints `KIND json` lines.

    `launcher` comes before the interpreter, e.g. `srun ...` to run it on a compute node."""

    def __init__(self, user: str, body: str, env: tuple[str, ...] = (), preamble: str = PREAMBLE,
                 launcher: tuple[str, ...] = ()):
        self.user = user
        code = preamble + textwrap.dedent(body)
        self.proc = subprocess.Popen(
            ["sudo", "-u", user, "-H", "env", *env, *launcher, PYTHON, "-c", code],
            cwd=pwd.getpwnam(user).pw_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # sudo does not relay SIGKILL: kill the whole group
        )
        self.said: dict[str, object] = {}

    def kill(self) -> None:
        """SIGKILL the program and everything in its process group (sudo and the user's python)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def wait_for(self, kind: str, timeout: float = 90):
        """Read lines until one of `kind` arrives."""
        deadline = time.monotonic() + timeout
        while kind not in self.said:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {kind} from the program within {timeout}s")
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"program ended before {kind}: {self.proc.stderr.read()[-3000:]}")
            head, _, rest = line.partition(" ")
            if head.isupper():
                self.said[head] = json.loads(rest)
        return self.said[kind]

    def finish(self, timeout: float = 60) -> dict:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGABRT)  # faulthandler (PREAMBLE) prints where it hangs
            out, err = self.proc.communicate(timeout=30)
            pytest.fail(f"the program did not end within {timeout}s; said {out[-500:]!r}; its threads:\n{err[-6000:]}")
        for line in out.splitlines():
            head, _, rest = line.partition(" ")
            if head.isupper():
                self.said[head] = json.loads(rest)
        assert self.proc.returncode == 0, err[-3000:]
        return self.said


def jobs_named(user: str, name: str) -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "-u", user, "--name", name, "-o", "%i %T"], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in out.splitlines() if line.strip()]


def wait_until_no_jobs(user: str, name: str, timeout: float = 40) -> list[str]:
    deadline = time.monotonic() + timeout
    left = jobs_named(user, name)
    while left and time.monotonic() < deadline:
        time.sleep(1)
        left = jobs_named(user, name)
    return left


def wait_until_gone(path: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.5)
    return not os.path.exists(path)


@pytest.fixture
def programs():
    """Programs started by a test; afterwards killed and their jobs cancelled."""
    started: list[UserProgram] = []
    yield lambda user, body: started.append(UserProgram(user, body)) or started[-1]
    for program in started:
        program.kill()
        name = program.said.get("NAME")
        if name:
            subprocess.run(["scancel", "--user", program.user, "--name", name], check=False)


def test_scale_to_two_workers_and_compute(programs):
    program = programs(
        "researcher1",
        """
        import dask.array as da
        from distributed import Client
        cluster = SiteCluster("cpu", cores=1, memory="1G", walltime="15")
        say("NAME", cluster.slurm_job_name)
        cluster.scale(2)
        client = Client(cluster)
        client.wait_for_workers(2, timeout=90)
        x = da.arange(1_000_000, chunks=100_000)
        say("SUM", int((x * 2).sum().compute()))
        say("STATUS", cluster.worker_status().__dict__ | {"explanations": []})
        say("WORKERS", len(client.scheduler_info()["workers"]))
        client.close(); cluster.close()
        """,
    )
    said = program.finish(timeout=110)
    assert said["SUM"] == 2 * sum(range(1_000_000))
    assert said["WORKERS"] == 2
    assert said["STATUS"]["running"] == 2 and said["STATUS"]["connected"] == 2
    assert wait_until_no_jobs("researcher1", said["NAME"]) == []


def test_adaptive_scales_up_under_load_and_down_when_idle(programs):
    program = programs(
        "researcher1",
        """
        import time
        from distributed import Client
        cluster = SiteCluster("cpu", cores=1, memory="1G", walltime="15")
        say("NAME", cluster.slurm_job_name)
        cluster.adapt(minimum=0, maximum=2, wait_count=2, interval="500ms", target_duration="1s")
        client = Client(cluster)
        futures = client.map(lambda i: time.sleep(3) or i, range(8))
        peak = 0
        while not all(f.done() for f in futures):
            peak = max(peak, len(client.scheduler_info()["workers"]))
            time.sleep(0.2)
        say("TOTAL", sum(client.gather(futures)))
        say("PEAK", peak)
        del futures  # results held on a worker would keep it
        deadline = time.time() + 60
        while cluster.worker_spec and time.time() < deadline:
            time.sleep(0.5)
        say("AFTER", len(cluster.worker_spec))
        client.close(); cluster.close()
        """,
    )
    said = program.finish(timeout=115)
    assert said["TOTAL"] == sum(range(8))
    assert said["PEAK"] == 2
    assert said["AFTER"] == 0
    assert wait_until_no_jobs("researcher1", said["NAME"]) == []


def test_killed_kernel_leaves_no_job(programs):
    program = programs(
        "researcher1",
        """
        cluster = SiteCluster("cpu", workers=2, cores=1, memory="1G", walltime="15")
        say("NAME", cluster.slurm_job_name)
        say("CREDENTIALS", str(cluster.credentials))
        cluster.wait_for_workers(1, timeout=90)
        say("READY", True)
        time.sleep(600)
        """,
    )
    name = program.wait_for("NAME")
    program.wait_for("READY")
    assert jobs_named("researcher1", name), "the cluster should have jobs before the kill"
    # SIGKILL: no atexit, no finally; only the watchdog (in its own session) can cancel now.
    program.kill()
    assert wait_until_no_jobs("researcher1", name, timeout=30) == []
    assert wait_until_gone(program.said["CREDENTIALS"]), "the watchdog should remove the cluster's TLS credentials"


def test_a_profile_the_user_may_not_use_is_refused(programs):
    program = programs(
        "student1",
        """
        try:
            SiteCluster("gpu", workers=1)
        except AccessRefused as refused:
            say("REFUSED", str(refused))
        try:
            SiteCluster("cpu", workers=1, project="project_465000001")
        except AccessRefused as refused:
            say("PROJECT", str(refused))
        try:
            SiteCluster("cpu", workers=1, cores=64)
        except OptionsError as refused:
            say("OPTIONS", str(refused))
        """,
    )
    said = program.finish()
    assert said["REFUSED"].startswith("student1 may not use profile 'gpu'")
    assert said["PROJECT"].startswith("student1 may not charge project 'project_465000001'")
    assert said["OPTIONS"] == "Cores per worker: 64 is out of range; allowed 1 to 8."


def test_a_failing_worker_job_is_explained_from_accounting(programs):
    program = programs(
        "researcher1",
        """
        from aifactory.site import load_site
        from aifactory.site.schema import PythonEnvironment
        site = load_site()
        broken = PythonEnvironment(kind="python", name="aifactory", path="/nonexistent/venv")
        site = site.model_copy(update={"environments": [broken, *site.environments[1:]]})
        cluster = SiteCluster("cpu", site=site, workers=1, cores=1, memory="1G", walltime="5")
        say("NAME", cluster.slurm_job_name)
        deadline = time.time() + 60
        reasons = []
        while time.time() < deadline:
            reasons = cluster.why_missing()
            if any("failed" in r for r in reasons):
                break
            time.sleep(1)
        say("WHY", reasons)
        cluster.close()
        """,
    )
    said = program.finish(timeout=90)
    assert any("failed with exit code 127; see the job's log" in reason for reason in said["WHY"]), said["WHY"]


def test_labextension_new_cluster_is_a_site_cluster(programs):
    program = programs(
        "researcher1",
        """
        import asyncio, dask.config
        from aifactory.extensions.dask.dask_config import labextension_config
        from dask_labextension.manager import make_cluster

        async def main():
            with dask.config.set(labextension_config()):
                cluster, adaptive = await make_cluster({"workers": 1})
            say("NAME", cluster.slurm_job_name)
            say("KIND", [type(cluster).__name__, cluster.site_profile.name, cluster.project])
            say("ADDRESS", cluster.scheduler_address)
            deadline = time.time() + 90
            while len(cluster.scheduler_info["workers"]) < 1 and time.time() < deadline:
                await asyncio.sleep(0.5)
            say("WORKERS", len(cluster.scheduler_info["workers"]))
            await cluster.close()

        asyncio.run(main())
        """,
    )
    said = program.finish(timeout=110)
    assert said["KIND"] == ["SiteCluster", "cpu", "project_465000001"]
    assert said["ADDRESS"].startswith("tls://"), said["ADDRESS"]  # private like every SiteCluster
    assert said["WORKERS"] == 1
    assert wait_until_no_jobs("researcher1", said["NAME"]) == []


def test_stopping_the_users_server_leaves_no_job(programs):
    """When Slurm cancels the user's server job it sends SIGTERM to every process of it, the watchdog included."""
    program = programs(
        "researcher1",
        """
        cluster = SiteCluster("cpu", workers=1, cores=1, memory="1G", walltime="15")
        say("NAME", cluster.slurm_job_name)
        say("CREDENTIALS", str(cluster.credentials))
        say("REAPER", cluster._reaper.pid)
        time.sleep(600)
        """,
    )
    name = program.wait_for("NAME")
    reaper = program.wait_for("REAPER")
    deadline = time.monotonic() + 30
    while not jobs_named("researcher1", name) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert jobs_named("researcher1", name), "the cluster should have a job before the stop"
    subprocess.run(["kill", "-TERM", str(reaper)], check=True)
    program.kill()
    assert wait_until_no_jobs("researcher1", name, timeout=30) == []
    assert wait_until_gone(program.said["CREDENTIALS"])


def test_a_worker_retiring_before_the_walltime_is_replaced(programs):
    """--lifetime retires the worker before Slurm's walltime; a new job takes its place."""
    program = programs(
        "researcher1",
        """
        import dask, dask.array as da
        from distributed import Client
        dask.config.set({"distributed.deploy.lost-worker-timeout": "1s"})
        cluster = SiteCluster("cpu", workers=1, cores=1, memory="1G", walltime="1")
        say("NAME", cluster.slurm_job_name)
        client = Client(cluster)
        client.wait_for_workers(1, timeout=60)
        first = set(cluster.job_ids().values())
        say("LIFETIME", cluster.config["worker-extra-args"][:4])
        deadline = time.time() + 100
        while time.time() < deadline:
            now = set(cluster.job_ids().values())
            if now and not now & first and len(client.scheduler_info()["workers"]) == 1:
                break
            time.sleep(1)
        say("REPLACED", bool(now and not now & first))
        say("SUM", int(da.ones(1000, chunks=100).sum().compute()))
        client.close(); cluster.close()
        """,
    )
    said = program.finish(timeout=115)
    assert said["LIFETIME"] == ["--lifetime", "40s", "--lifetime-stagger", "10s"]
    assert said["REPLACED"] is True
    assert said["SUM"] == 1000
    assert wait_until_no_jobs("researcher1", said["NAME"]) == []


def test_interface_and_scratch_directory_can_be_chosen_per_cluster(programs):
    program = programs(
        "researcher1",
        """
        cluster = SiteCluster("cpu", workers=0, cores=1, memory="1G", walltime="15",
                              interface="lo", local_directory="/tmp/dask-chosen-researcher1")
        say("NAME", cluster.slurm_job_name)
        say("SCRIPT", cluster.job_script())
        cluster.close()
        """,
    )
    script = program.finish()["SCRIPT"]
    assert "--local-directory /tmp/dask-chosen-researcher1" in script
    assert "--interface lo" in script
