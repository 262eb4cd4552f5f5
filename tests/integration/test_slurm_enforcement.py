"""Slurm enforces what the spawn form promises (cgroup v1, `slurmconf.cgroup_conf`), tried as
real users: a job gets the memory it asked for and no more, opens only the GPUs it was
given, and sees only its owner's jobs (PrivateData)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from ..conftest import BIN
from .test_spawner_slurm import Hub, cleanup, jobs_of

pytestmark = [pytest.mark.slurm]

PYTHON = str(BIN / "python")
STUDENT_PROJECT, RESEARCH_PROJECT = "project_465000002", "project_465000001"


def as_user(user: str, *argv: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", user, "--", *argv], input=stdin, capture_output=True, text=True,
                          timeout=timeout, cwd="/")


def submit(user: str, account: str, script: str, *options: str) -> str:
    proc = as_user(user, "sbatch", "--parsable", f"--account={account}", "--chdir=/tmp", "--output=/dev/null",
                   *options, stdin=script)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(";")[0]


def final_state(job_id: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State"], capture_output=True,
                             text=True).stdout.split()
        if out and out[0] not in ("PENDING", "RUNNING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED"):
            return out[0]
        time.sleep(1)
    pytest.fail(f"job {job_id} did not end within {timeout}s")


def wait_for_accounting(job_id: str, timeout: float = 30) -> bool:
    """slurmctld records a job in slurmdbd a moment after sbatch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if job_id in subprocess.run(["sacct", "-n", "-X", "-j", job_id, "-o", "JobID"], capture_output=True,
                                    text=True).stdout.split():
            return True
        time.sleep(0.5)
    return False


HOG = textwrap.dedent("""\
    #!/bin/bash
    exec {python} -c 'x = bytearray(700 * 2**20); print("allocated", len(x))'
    """).format(python=PYTHON)


def test_a_job_past_its_memory_is_killed_out_of_memory(cluster):
    job_id = submit("student1", STUDENT_PROJECT, HOG, "--partition=interactive", "--mem=200M", "--time=2")
    assert final_state(job_id) == "OUT_OF_MEMORY"


def test_within_a_running_server_a_step_past_the_servers_memory_is_killed_and_the_server_lives(hub, operator_token):
    api, user, name = Hub(hub, operator_token), "student1", "oom"
    try:
        assert api.spawn(user, name, {"profile": "course", "memory": "1G"}).status_code in (201, 202)
        api.wait_ready(user, name)
        (job_id, _), = jobs_of(user, name)
        hog = as_user(user, "srun", f"--jobid={job_id}", "--overlap", "--mem=0", PYTHON, "-c",
                      "x = bytearray(1500 * 2**20); print('allocated')", timeout=120)
        assert hog.returncode != 0 and "allocated" not in hog.stdout
        assert "oom" in hog.stderr.lower() or "killed" in hog.stderr.lower(), hog.stderr
        assert api.server(user, name)["ready"]  # the user's server and open notebooks go on
    finally:
        cleanup(api, user, name)


def _server_pid(user: str, job_id: str) -> int:
    """The pid of jupyterhub-singleuser in the user's job (read as root)."""
    pids = subprocess.run(["pgrep", "-u", user, "-f", "jupyterhub-singleuser"], capture_output=True,
                          text=True).stdout.split()
    for pid in pids:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"SLURM_JOB_ID={job_id}".encode() in environ:
            return int(pid)
    pytest.fail(f"no server process of {user} in job {job_id}")


def test_a_server_killed_for_memory_tells_its_user_it_ran_out_of_memory(hub, operator_token):
    """What a notebook that grows past the server's memory does: the kernel here is a process of the
    user's in the server's cgroup, and the server (its oom_score_adj raised, as a user may) is what
    the kernel's OOM killer takes; the job ends OUT_OF_MEMORY and the hub says so."""
    api, user, name = Hub(hub, operator_token), "student1", "oomserver"
    hog = None
    try:
        assert api.spawn(user, name, {"profile": "course", "memory": "1G"}).status_code in (201, 202)
        api.wait_ready(user, name)
        (job_id, _), = jobs_of(user, name)
        server = _server_pid(user, job_id)
        as_user(user, "sh", "-c", f"echo 1000 > /proc/{server}/oom_score_adj")
        # setpriv execs (no forked child): the pid is the user's process itself, waiting for a line.
        hog = subprocess.Popen(["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--", PYTHON, "-c",
                                "import sys; sys.stdin.readline(); x = bytearray(1500 * 2**20)"],
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
        memory = next(line.split(":", 2)[2] for line in Path(f"/proc/{server}/cgroup").read_text().splitlines()
                      if line.split(":", 2)[1] == "memory")
        step = Path("/sys/fs/cgroup/memory") / memory.lstrip("/")   # the server's step cgroup
        (step / "cgroup.procs").write_text(f"{hog.pid}\n")   # into the server's memory, as its kernels are
        hog.stdin.write("go\n")
        hog.stdin.flush()
        stopped = api.wait_stopped(user, name, timeout=90)
        assert "[OUT_OF_MEMORY]" in stopped["state"]["stop_reason"], stopped["state"]
        assert "ran out of memory" in stopped["state"]["stop_reason"]
    finally:
        if hog is not None and hog.poll() is None:
            hog.kill()
        cleanup(api, user, name)


GPU_PROBE = textwrap.dedent("""\
    #!/bin/bash
    exec {python} - <<'EOF'
    import errno, glob, os
    for path in sorted(glob.glob("/var/lib/aifactory/gpus/" + os.environ["SLURMD_NODENAME"] + "/*")):
        try:
            os.close(os.open(path, os.O_RDONLY))
            print(path, "opened")
        except OSError as e:
            print(path, errno.errorcode[e.errno])
    EOF
    """).format(python=PYTHON)


def test_a_gpu_job_opens_only_the_gpu_it_was_given(cluster):
    # In the researcher's home: the shared file system every node sees (a node's /tmp is its own).
    home = pwd.getpwnam("researcher1")
    folder = Path(tempfile.mkdtemp(prefix=".aifactory-gpu-probe-", dir=home.pw_dir))
    try:
        os.chown(folder, home.pw_uid, home.pw_gid)
        out = folder / "probe.out"
        job_id = submit("researcher1", RESEARCH_PROJECT, GPU_PROBE, "--partition=small-g", "--gres=gpu:mi250x:1",
                        "--mem=256M", "--time=2", f"--output={out}")
        assert final_state(job_id) == "COMPLETED"
        results = dict(line.rsplit(" ", 1) for line in out.read_text().splitlines())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert len(results) == 4, results
    # The stand-in of the job's own GPU has no driver (ENXIO); the cgroup refuses the others (EPERM).
    assert sorted(results.values()) == ["ENXIO", "EPERM", "EPERM", "EPERM"], results


def test_a_user_sees_only_their_own_jobs(cluster):
    job_id = submit("student1", STUDENT_PROJECT, "#!/bin/bash\ntrue\n", "--partition=interactive", "--hold",
                    "--mem=100M", "--time=1")
    try:
        assert job_id in as_user("student1", "squeue", "-h", "-o", "%i").stdout.split()
        assert job_id not in as_user("student2", "squeue", "-h", "-o", "%i").stdout.split()
        assert job_id not in as_user("student2", "sacct", "-n", "-X", "-a", "-o", "JobID").stdout.split()
        # Asked for by its id, accounting (slurmdbd) tells its owner and no one else.
        by_id = ["sacct", "-n", "-X", "-j", job_id, "-o", "JobID,User,Account"]
        assert wait_for_accounting(job_id), "the job never reached accounting"
        assert job_id in as_user("student1", *by_id).stdout.split()
        assert as_user("student2", *by_id).stdout.split() == []
        # The hub (root) still sees every job: queue positions on the progress page come from it.
        assert job_id in subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()
    finally:
        subprocess.run(["scancel", job_id])
