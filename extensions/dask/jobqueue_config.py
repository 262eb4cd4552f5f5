"""dask-jobqueue settings derived from the site file: one profile + options -> a config dict.

`jobqueue_config` speaks dask-jobqueue's own configuration keys (the
`jobqueue.slurm` section of jobqueue.yaml), so the same dict can go into a
dask config file (`site_jobqueue_config`) or, through `cluster_kwargs`, straight
into `SLURMCluster(...)`. Workers start in the profile's environment with the
site's one way of writing launch lines (`aifactory.site.launch`). Pure: no I/O.
"""

from __future__ import annotations

import shlex
from typing import Any

from aifactory.site.launch import launch
from aifactory.site.options import dask_spec
from aifactory.site.schema import Profile, Site
from aifactory.site.units import format_memory, format_walltime

from .options import DaskOptions, choose_options

# Seconds a worker waits for a vanished scheduler before it exits (and its job ends).
DEATH_TIMEOUT = 60


def worker_lifetime(walltime_minutes: int) -> tuple[int, int]:
    """(lifetime, stagger) in seconds: workers retire gracefully before Slurm's walltime kills them.

    The margin is a tenth of the walltime, between 1 and 10 minutes, but at most
    a third of it; lifetime ± stagger always ends before the walltime.
    """
    walltime = walltime_minutes * 60
    margin = min(max(60, walltime // 10), 600, walltime // 3)
    return walltime - margin, margin // 2


def jobqueue_config(
    site: Site,
    profile: Profile,
    user: str,
    options: DaskOptions,
    *,
    project: str | None,
    home: str | None,
    job_name: str | None = None,
    interface: str | None = None,
    local_directory: str | None = None,
    dashboard_address: str = ":0",
    scheduler_host: str | None = None,
) -> dict[str, Any]:
    """The `jobqueue.slurm` settings for `user`'s workers under `profile` with `options`.

    `project` None leaves the account to Slurm's default; `home` None leaves job
    logs in the directory the cluster starts in. `interface` and
    `local_directory` override the site's network interface and the node-local
    scratch directory for spill files; `dashboard_address` is where the
    scheduler's dashboard (plain HTTP) listens; `scheduler_host` the address
    the scheduler listens on and gives workers where no interface is set.
    """
    partition = site.partition(profile.partition)
    worker = launch(site.environment(profile.environment), "python3", gpus=options.gpus,
                    gpu_vendor=partition.gpu_vendor)
    lifetime, stagger = worker_lifetime(options.walltime)
    # Without the site's interface each side picks its own address: nodes name their interfaces
    # differently (the local cluster's login node is on a bridge, its nodes on eth0).
    interface = interface or partition.network_interface
    scheduler_options: dict[str, Any] = {"dashboard_address": dashboard_address}
    if scheduler_host and not interface:
        scheduler_options["host"] = scheduler_host
    # A worker whose node failed must end (NODE_FAIL), not be requeued under the same job: SiteCluster
    # replaces it itself, counts the failure and says why the worker went.
    extra_directives: list[str] = ["--no-requeue"]
    worker_args = ["--lifetime", f"{lifetime}s", "--lifetime-stagger", f"{stagger}s"]
    if options.gpus:
        gpu_type = partition.gpu_type or "gpu"
        extra_directives.append(f"--gres=gpu:{gpu_type}:{options.gpus}")
        worker_args += ["--resources", f"GPU={options.gpus}"]
    return {
        "name": job_name or f"dask-{profile.name}",
        "cores": options.cores,
        "memory": f"{options.memory}MiB",
        "processes": 1,
        "python": shlex.join(worker.argv),
        "interface": interface,
        "death-timeout": DEATH_TIMEOUT,
        "local-directory": local_directory or f"{partition.local_scratch.rstrip('/')}/dask-{user}",
        "worker-extra-args": worker_args,
        "shebang": "#!/usr/bin/env bash",
        "queue": partition.name,
        "account": project,
        "walltime": format_walltime(options.walltime),
        "job-script-prologue": list(worker.setup),
        "job-cpu": options.cores,
        "job-mem": format_memory(options.memory),
        "job-extra-directives": extra_directives,
        "job-directives-skip": [],
        "log-directory": f"{home}/.cache/aifactory/dask-logs" if home else None,
        "scheduler-options": scheduler_options,
    }


# dask-jobqueue config keys -> SLURMCluster keyword arguments, where they differ.
_KWARG_NAMES = {"name": "job_name"}


def cluster_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """A `jobqueue_config` dict as keyword arguments for `SLURMCluster`."""
    return {_KWARG_NAMES.get(key, key.replace("-", "_")): value for key, value in config.items()}


def site_jobqueue_config(site: Site) -> dict[str, Any]:
    """A site-wide dask config document: one `jobqueue.<profile>` section per profile, at its defaults.

    `SLURMCluster(config_name="cpu")` then starts workers the way the site file
    says. The worker directory names `$USER`, expanded by the job script; the
    account is left to Slurm's default for the user. `jobqueue.slurm` is the
    site's first profile.
    """
    sections: dict[str, Any] = {}
    for profile in site.profiles:
        options = choose_options(dask_spec(site, profile))
        sections[profile.name] = jobqueue_config(site, profile, "$USER", options, project=None, home=None)
    sections["slurm"] = sections[site.profiles[0].name]
    return {"jobqueue": sections}
