"""The batch script and sbatch argv, compared by equality; environments of each kind (lines: test_site_options)."""

from __future__ import annotations

import subprocess

import pytest

from aifactory.site.schema import ContainerEnvironment, LmodEnvironment, PythonEnvironment
from aifactory.spawners.options import ValidatedOptions
from aifactory.spawners.script import build_job, job_name, signal_seconds, workbench_env

CPU = ValidatedOptions(profile="small", partition="cpu", account="proj_a", cpus=2, memory_mib=1536, gpus=0,
                       gpu_type=None, walltime_minutes=90, environment="base")
GPU = ValidatedOptions(profile="gpu", partition="gpu", account="proj_a", cpus=4, memory_mib=4096, gpus=2,
                       gpu_type="mi250x", walltime_minutes=1500, environment="torch", reservation="course1")
PY = PythonEnvironment(kind="python", name="base", path="/opt/aifactory/venv")
LMOD = LmodEnvironment(kind="lmod", name="mod", modulepath=["/opt/mods"], modules=["aifactory/1.0", "git"],
                      init="/lmod/bash")
SIF = ContainerEnvironment(kind="container", name="torch", image="/appl/torch.sif", binds=["/scratch", "/p:/project:ro"])
LAUNCHER = ["/opt/aifactory/venv/bin/python", "-m", "aifactory.spawners.singleuser"]


def test_cpu_server_in_a_python_environment():
    job = build_job(CPU, PY, user="alice", env_names=["PATH", "JUPYTERHUB_API_TOKEN"],
                    launcher=LAUNCHER, server_args=["--debug"])
    assert job.argv == ["sudo", "-E", "-u", "alice", "sbatch", "--parsable"]
    assert job.script == """#!/bin/bash
#SBATCH --job-name=jupyter-alice
#SBATCH --output=/dev/null
#SBATCH --chdir=/
#SBATCH --export=JUPYTERHUB_API_TOKEN,PATH
#SBATCH --partition=cpu
#SBATCH --account=proj_a
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=2
#SBATCH --mem=1536M
#SBATCH --time=01:30:00
#SBATCH --signal=B:USR1@300
#SBATCH --no-requeue
set -eo pipefail
cd ~
mkdir -p .aifactory
chmod 700 .aifactory
exec >>".aifactory/jupyter-$SLURM_JOB_ID.log" 2>&1
export AIFACTORY_WALLTIME_MINUTES=90
export PATH=/opt/aifactory/venv/bin:"$PATH"
export VIRTUAL_ENV=/opt/aifactory/venv
exec /opt/aifactory/venv/bin/python -m aifactory.spawners.singleuser -- /opt/aifactory/venv/bin/jupyterhub-singleuser --debug
"""


def test_gpu_server_in_a_container_with_a_reservation():
    job = build_job(GPU, SIF, user="bob", env_names=[], launcher=LAUNCHER, server_args=[],
                    gpu_vendor="amd", server_name="big", warn_minutes=10)
    lines = job.script.splitlines()
    assert lines[1] == "#SBATCH --job-name=jupyter-bob-big"
    assert "#SBATCH --gres=gpu:mi250x:2" in lines
    assert "#SBATCH --reservation=course1" in lines
    assert "#SBATCH --time=1-01:00:00" in lines
    assert "#SBATCH --signal=B:USR1@600" in lines
    assert lines[-1] == ("exec /opt/aifactory/venv/bin/python -m aifactory.spawners.singleuser -- apptainer exec --rocm "
                         "--bind /scratch --bind /p:/project:ro /appl/torch.sif jupyterhub-singleuser")


def test_an_lmod_server_loads_its_modules_with_the_environments_lmod_init():
    job = build_job(CPU, LMOD, user="alice", env_names=[], launcher=LAUNCHER, server_args=["--x"])
    assert job.script.splitlines()[-6:] == [
        "export AIFACTORY_WALLTIME_MINUTES=90",
        "source /lmod/bash",
        "module use /opt/mods",
        "module load aifactory/1.0",
        "module load git",
        "exec /opt/aifactory/venv/bin/python -m aifactory.spawners.singleuser -- jupyterhub-singleuser --x",
    ]


def test_named_servers_with_odd_names_keep_a_safe_job_name_of_their_own():
    assert job_name("alice") == "jupyter-alice"
    assert job_name("alice", "gpu-1") == "jupyter-alice-gpu-1"  # a plain name as it is
    odd, long = job_name("alice", "a b;c"), job_name("alice", "x" * 41)
    assert odd == "jupyter-alice-ddb90c96" and long == "jupyter-alice-3164596d"  # stable across hub restarts
    assert len({job_name("alice"), odd, long, job_name("alice", "a b;d")}) == 4  # never the default server's


def test_the_warning_comes_at_most_halfway():
    assert signal_seconds(120, 5) == 300
    assert signal_seconds(1, 5) == 30


@pytest.mark.parametrize("user, env", [("Alice;", []), ("alice", ["A=B"])])
def test_unsafe_account_strings_are_refused(user, env):
    with pytest.raises(ValueError):
        build_job(CPU, PY, user=user, env_names=env, launcher=LAUNCHER, server_args=[])


def test_the_job_makes_its_log_in_the_users_home_itself(tmp_path):
    """No home from the hub: the script, run as the user, finds ~ and logs to ~/.aifactory/jupyter-<job>.log."""
    job = build_job(CPU, PY, user="alice", env_names=[], launcher=["/bin/echo", "launched"], server_args=[])
    home = tmp_path / "alice"
    home.mkdir()
    subprocess.run(["bash", "-c", job.script], cwd="/", check=True,
                   env={"HOME": str(home), "SLURM_JOB_ID": "42", "PATH": "/usr/bin:/bin"})
    assert (home / ".aifactory" / "jupyter-42.log").read_text() == \
        "launched -- /opt/aifactory/venv/bin/jupyterhub-singleuser\n"


def test_the_workbench_learns_the_profiles_apps_the_warning_and_only_a_gpu_server_its_idle_timeout():
    assert workbench_env(["vscode", "mlflow"], gpus=0, gpu_idle_minutes=60, warn_seconds=300) == {
        "AIFACTORY_APPS": "vscode,mlflow", "AIFACTORY_WARN_SECONDS": "300"}
    assert workbench_env([], gpus=2, gpu_idle_minutes=45, warn_seconds=120) == {
        "AIFACTORY_APPS": "", "AIFACTORY_WARN_SECONDS": "120", "AIFACTORY_GPU_IDLE_MINUTES": "45"}
