"""Jupyter server extension: when the user's server stops, cancel the Dask jobs started from it.

The watchdog of each `SiteCluster` (`reaper`) cancels its jobs when its kernel
dies; this extension covers the server stopping while a cluster's owner lives
on or its watchdog was lost: on shutdown it cancels, by Slurm job name, every
cluster registered (`job_registry`) under this server's Slurm job.

Enabled by `jupyter-config/aifactory-dask-cleanup.json`, installed into
PREFIX/etc/jupyter/jupyter_server_config.d/.
"""

from __future__ import annotations

import asyncio
import socket

from jupyter_server.extension.application import ExtensionApp
from traitlets import Unicode

from . import job_registry
from aifactory.site.processes import pid_alive

from .reaper import cancel


def cancel_registered(directory, server_job: str | None, host: str | None = None, attempts: int = 3) -> list[str]:
    """Cancel the clusters registered under `server_job`, forget them, return their job names.

    Records that other processes on this `host` left behind when they died are cancelled and forgotten too.
    """
    directory = job_registry.registry_dir(directory)
    host = host or socket.gethostname()
    records = job_registry.registered(directory)
    cancelled = []
    for entry in job_registry.to_cancel(records, server_job) + job_registry.orphaned(records, server_job, host, pid_alive):
        cancel(entry["user"], entry["job_name"], attempts=attempts)
        job_registry.unregister(directory, entry["job_name"])
        cancelled.append(entry["job_name"])
    return cancelled


class DaskCleanup(ExtensionApp):
    """Cancels the Slurm jobs of the user's Dask clusters when the server stops."""

    name = "aifactory_dask_cleanup"

    registry_dir = Unicode(
        job_registry.DEFAULT_DIRECTORY,
        config=True,
        help="Directory where SiteCluster records the Slurm job names of its clusters (~ is the user's home).",
    )

    async def stop_extension(self):
        server_job = job_registry.current_server_job()
        try:
            names = await asyncio.wait_for(
                asyncio.to_thread(cancel_registered, self.registry_dir, server_job), timeout=60
            )
        except Exception:  # shutdown must go on whatever Slurm says
            self.log.exception("cancelling the Dask jobs of this server failed")
            return
        if names:
            self.log.info("cancelled the Dask jobs %s as the server stops", ", ".join(names))


def _jupyter_server_extension_points():
    return [{"module": "aifactory.extensions.dask.server_cleanup", "app": DaskCleanup}]
