"""The batch script and the sbatch argv of one notebook server: a pure function.

`build_job(...)` takes validated options, the site environment and the user's
account facts and returns a `Job` (argv + script text), compared with `==` in
the tests. Every value that lands in the script either comes from the site
(validated by its schema), from `ValidatedOptions` (drawn from the site and
the user's Slurm facts), or is quoted with `shlex.quote`; the few strings that
are neither (user name, environment variable names) are checked here.

The hub never needs the user's home: the job runs as the user, starts in `/`, and
its first lines go to `~` (bash: $HOME, or the user's entry in the node's user
directory), create `~/.aifactory` and send everything after them to
`~/.aifactory/jupyter-<job id>.log`. So a hub on a login node and a hub in
Kubernetes (sbatch over SSH) submit the same script.

The job asks Slurm for SIGUSR1 `warn_minutes` before its end (`--signal=B:`),
which the launcher records for the user; at the end Slurm's SIGTERM is
forwarded to the server, which shuts down cleanly.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aifactory.site.units import format_memory, format_walltime

if TYPE_CHECKING:  # the site schema (pydantic) is loaded by build_job: each user's server imports
    # `signal_seconds` from here (the workbench) and must not pay for it at start
    from aifactory.site.launch import Environment

    from .options import ValidatedOptions

_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SERVER_NAME = re.compile(r"^[A-Za-z0-9._-]{1,40}$")

# The job's first lines, run as the user on the node: to the home, the log there from here on.
HOME_LINES = [
    "cd ~",
    "mkdir -p .aifactory",
    "chmod 700 .aifactory",  # job logs and session files: the user's alone, even in a 0755 home
    'exec >>".aifactory/jupyter-$SLURM_JOB_ID.log" 2>&1',
]

JOB_NAME_PREFIX = "jupyter-"
SERVER = "jupyterhub-singleuser"


@dataclass(frozen=True)
class Job:
    """What is run to submit one server: argv (stdin gets the script)."""

    argv: list[str]
    script: str


def job_name(user: str, server_name: str = "") -> str:
    """'jupyter-alice', 'jupyter-alice-gpu' for a named server; a name too long or odd for a job
    name stands as 8 hex digits of its sha256, stable and never the default server's name (a
    submission without an answer is cleaned up by `scancel --name`, which must not hit another server)."""
    if not server_name:
        return f"{JOB_NAME_PREFIX}{user}"
    if _SERVER_NAME.match(server_name):
        return f"{JOB_NAME_PREFIX}{user}-{server_name}"
    return f"{JOB_NAME_PREFIX}{user}-{hashlib.sha256(server_name.encode()).hexdigest()[:8]}"


def signal_seconds(walltime_minutes: int, warn_minutes: int) -> int:
    """When to warn before the end: `warn_minutes`, but at most half the walltime."""
    return max(10, min(warn_minutes * 60, walltime_minutes * 30))


def sbatch_options(options: ValidatedOptions, warn_minutes: int) -> list[str]:
    """The resources as sbatch options, in a fixed order."""
    lines = [
        f"--partition={options.partition}",
        f"--account={options.account}",
        "--nodes=1",
        "--ntasks=1",
        f"--cpus-per-task={options.cpus}",
        f"--mem={format_memory(options.memory_mib)}",
        f"--time={format_walltime(options.walltime_minutes)}",
        f"--signal=B:USR1@{signal_seconds(options.walltime_minutes, warn_minutes)}",
        # A server whose node failed ends (NODE_FAIL, told to the user), never restarts elsewhere behind the hub's back.
        "--no-requeue",
    ]
    if options.gpus:
        lines.append(f"--gres=gpu:{options.gpu_type}:{options.gpus}" if options.gpu_type else f"--gres=gpu:{options.gpus}")
    if options.reservation:
        lines.append(f"--reservation={options.reservation}")
    return lines


def workbench_env(apps: list[str], gpus: int, gpu_idle_minutes: int, warn_seconds: int,
                  courses: tuple[str, ...] | list[str] = ()) -> dict[str, str]:
    """What the server's workbench (extensions/workbench) reads from its environment: the profile's apps,
    when Slurm warns before the end (`signal_seconds`, so JupyterLab warns then too), for a server
    holding GPUs, how long its GPUs and kernels may idle before it is stopped and, for a profile of
    courses, their ids (a member's JupyterLab opens on the assignment list: `workbench.course_lab`)."""
    env = {"AIFACTORY_APPS": ",".join(apps), "AIFACTORY_WARN_SECONDS": str(warn_seconds)}
    if gpus:
        env["AIFACTORY_GPU_IDLE_MINUTES"] = str(gpu_idle_minutes)
    if courses:
        env["AIFACTORY_COURSES"] = ",".join(courses)
    return env


def submit_argv(user: str, sbatch: str = "sbatch") -> list[str]:
    """sbatch as the user, keeping the hub-provided environment (the script's --export lists it)."""
    return ["sudo", "-E", "-u", user, sbatch, "--parsable"]


def build_job(
    options: ValidatedOptions,
    environment: Environment,
    *,
    user: str,
    env_names: list[str],
    launcher: list[str],
    server_args: list[str],
    gpu_vendor: str | None = None,
    server_name: str = "",
    warn_minutes: int = 5,
    sbatch: str = "sbatch",
) -> Job:
    """The sbatch argv and batch script of one server.

    `launcher` is the argv prefix of the launcher (`python -m aifactory.spawners.singleuser`)
    that reports the port and runs the server; `server_args` are the hub's arguments to
    the server. Raises ValueError for a user name or variable name that could
    break the script (they never come from the user's options).
    """
    from aifactory.site.launch import launch

    if not _USER.match(user):
        raise ValueError(f"not a safe user name: {user!r}")
    bad = [name for name in env_names if not _VAR.match(name)]
    if bad:
        raise ValueError(f"not environment variable names: {bad!r}")
    header = [
        f"--job-name={job_name(user, server_name)}",
        "--output=/dev/null",  # the script's own log, from its first lines on (HOME_LINES)
        "--chdir=/",
        f"--export={','.join(sorted(env_names))}",
        *sbatch_options(options, warn_minutes),
    ]
    server = launch(environment, SERVER, gpus=options.gpus, gpu_vendor=gpu_vendor)
    command = [*launcher, "--", *server.argv, *server_args]
    lines = [
        "#!/bin/bash",
        *(f"#SBATCH {option}" for option in header),
        "set -eo pipefail",
        *HOME_LINES,
        f"export AIFACTORY_WALLTIME_MINUTES={options.walltime_minutes}",
        *server.setup,
        f"exec {shlex.join(command)}",
        "",
    ]
    return Job(argv=submit_argv(user, sbatch), script="\n".join(lines))
