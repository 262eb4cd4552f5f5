"""The local AI factory is a real Slurm cluster: real users, accounting enforced."""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from pathlib import Path

import pytest

from aifactory.hub.localcluster.slurmconf import Layout, compute_nodes
from tests.conftest import BIN

pytestmark = pytest.mark.slurm


def as_user(user: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sudo", "-u", user, "-H", *argv], capture_output=True, text=True, timeout=timeout,
                          cwd="/")


def wait_done(job_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True).stdout.strip():
            return
        time.sleep(0.5)
    subprocess.run(["scancel", job_id])
    pytest.fail(f"job {job_id} did not finish within {timeout}s")


def test_a_student_job_runs_as_the_student_under_their_project(cluster, tmp_path):
    home = Path(pwd.getpwnam("student1").pw_dir)
    out = home / "foundation-test.out"
    out.unlink(missing_ok=True)
    result = as_user("student1", "sbatch", "--parsable", "--account=project_465000002", f"--output={out}",
                     "--wrap", "id -un; echo account=$SLURM_JOB_ACCOUNT partition=$SLURM_JOB_PARTITION")
    assert result.returncode == 0, result.stderr
    wait_done(result.stdout.strip())
    assert out.read_text().split() == ["student1", "account=project_465000002", "partition=standard"]
    assert out.stat().st_uid == pwd.getpwnam("student1").pw_uid
    out.unlink()


def test_a_project_the_student_is_not_in_is_refused(cluster):
    result = as_user("student1", "sbatch", "--account=project_465000001", "--wrap", "true")
    assert result.returncode != 0
    assert "Invalid account or account/partition combination" in result.stderr


def test_gpus_beyond_the_nodes_gres_are_refused_by_slurm(cluster):
    refused = as_user("researcher1", "sbatch", "--account=project_465000001", "--partition=small-g",
                      "--gres=gpu:mi250x:8", "--wrap", "true")
    assert refused.returncode != 0
    assert "Requested node configuration is not available" in refused.stderr


def test_gpu_jobs_see_their_gres(cluster):
    out = Path(pwd.getpwnam("researcher1").pw_dir) / "gpu-test.out"
    result = as_user("researcher1", "sbatch", "--parsable", "--account=project_465000001", "--partition=small-g",
                     "--gres=gpu:mi250x:2", f"--output={out}", "--wrap", "echo $ROCR_VISIBLE_DEVICES")
    assert result.returncode == 0, result.stderr
    wait_done(result.stdout.strip())
    assert out.read_text().strip() == "0,1"
    out.unlink()


def test_homes_are_private(cluster):
    for user in ("student1", "student2"):
        assert os.stat(pwd.getpwnam(user).pw_dir).st_mode & 0o077 == 0
    peek = as_user("student2", "ls", pwd.getpwnam("student1").pw_dir)
    assert peek.returncode != 0 and "Permission denied" in peek.stderr


def test_the_shared_environment_runs_as_any_user(cluster):
    result = as_user("student3", str(BIN / "python"), "-c", "import jupyterhub, dask, nbgrader; print('ok')")
    assert result.stdout.strip() == "ok", result.stderr


def test_cluster_up_again_is_a_no_op(cluster):
    result = subprocess.run([str(BIN / "aifactory"), "cluster", "up"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "starting" not in result.stdout and "useradd" not in result.stdout
    assert "is up" in result.stdout


LOGIN_DAEMONS = ("munged", "mariadb", "slurmdbd", "slurmctld")


def node_rows(status: str) -> dict[str, list[str]]:
    """`aifactory cluster status`'s node table: {node: [partition, address, state, slurmd]}."""
    table = status.split("NODE ", 1)[1].splitlines()[1:]
    return {row.split()[0]: row.split()[1:] for row in table if row.strip()}


def test_status_reports_every_daemon_and_node(cluster):
    result = subprocess.run([str(BIN / "aifactory"), "cluster", "status"], capture_output=True, text=True)
    for daemon in LOGIN_DAEMONS:
        assert f"{daemon:10s} running" in result.stdout
    rows = node_rows(result.stdout)
    assert list(rows) == [n.name for n in compute_nodes(cluster)]
    for node in compute_nodes(cluster):
        partition, address, state, slurmd = rows[node.name]
        assert (partition, address, slurmd) == (node.partition, node.address, "running")
        assert state in ("idle", "mix", "alloc"), rows


def test_each_node_has_its_own_hostname_address_and_tmp(cluster):
    """A job sees its node's name and address, not the login node's, and a /tmp that no other node shares."""
    nodes = compute_nodes(cluster)
    marker = f"aifactory-node-test-{os.getpid()}"
    seen = {}
    for node in nodes:
        account = "project_465000001" if node.gpus else "project_465000002"
        user = "researcher1" if node.gpus else "student1"
        script = f"hostname; hostname -I; ls /tmp; touch /tmp/{marker}-{node.name}"
        job = as_user(user, "srun", f"--account={account}", f"--partition={node.partition}", f"--nodelist={node.name}",
                      "--mem=100M", "-t", "1", "bash", "-c", script, timeout=120)
        assert job.returncode == 0, job.stderr
        seen[node.name] = job.stdout.split()
    for node in nodes:
        hostname, address, *tmp = seen[node.name]
        assert (hostname, address) == (node.name, node.address)
        assert not [name for name in tmp if name.startswith(marker)], f"{node.name} sees another node's /tmp: {tmp}"
    assert not list(Path("/tmp").glob(f"{marker}-*")), "a node's /tmp is the login node's"
    for node in nodes:
        (Path("/var/lib/aifactory/nodes") / node.name / "tmp" / f"{marker}-{node.name}").unlink()


def test_a_user_without_any_association_is_refused(cluster):
    result = as_user("nobody", "sbatch", "--output=/dev/null", "--wrap", "true")
    assert result.returncode != 0
    assert "Invalid account" in result.stderr


@pytest.mark.slow
@pytest.mark.restarts_cluster
def test_down_stops_every_daemon_and_up_brings_them_back(cluster):
    aifactory = str(BIN / "aifactory")
    down = subprocess.run([aifactory, "cluster", "down"], capture_output=True, text=True, timeout=300)
    assert down.returncode == 0, down.stderr
    stopped = subprocess.run([aifactory, "cluster", "status"], capture_output=True, text=True)
    assert stopped.returncode == 3
    for daemon in LOGIN_DAEMONS:
        assert f"{daemon:10s} stopped" in stopped.stdout
    assert {row[3] for row in node_rows(stopped.stdout).values()} == {"stopped"}
    # Every namespace, link and name `up` made is gone.
    layout = Layout()
    assert not [ns for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
                if ns.startswith(layout.netns_prefix)]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert layout.bridge not in links and "aifv" not in links
    assert "aifactory compute nodes" not in Path("/etc/hosts").read_text()
    up = subprocess.run([aifactory, "cluster", "up"], capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stderr
    running = subprocess.run([aifactory, "cluster", "status"], capture_output=True, text=True)
    assert running.returncode == 0, running.stdout
    assert {row[3] for row in node_rows(running.stdout).values()} == {"running"}
    # Accounting survived the restart: associations are still enforced.
    refused = as_user("student1", "sbatch", "--account=project_465000001", "--wrap", "true")
    assert "Invalid account" in refused.stderr
