"""Where a user's Dask clusters leave their Slurm job names for the server to find.

A `SiteCluster` writes one small JSON file per cluster under
`~/.aifactory/dask-jobs/` before it submits any job, and removes it when it
closes. The server extension (`server_cleanup`) reads them when the user's
server stops and cancels the jobs of the clusters started from that server.
Building and choosing records is pure; reading and writing files is the edge.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from aifactory.site.files import atomic_write

DEFAULT_DIRECTORY = "~/.aifactory/dask-jobs"


def registry_dir(directory: str | os.PathLike | None = None) -> Path:
    return Path(os.path.expanduser(str(directory or DEFAULT_DIRECTORY)))


def record(job_name: str, user: str, server_job: str | None, owner_pid: int, host: str) -> dict:
    """What the server needs to cancel a cluster's jobs: Slurm job name, user, the server job it ran under,
    and the process (pid on host) that owns the cluster."""
    return {"job_name": job_name, "user": user, "server_job": server_job, "owner_pid": owner_pid, "host": host}


def current_server_job(environ=os.environ) -> str | None:
    """The Slurm job of the server this process runs under (kernels inherit it), None outside Slurm."""
    return environ.get("SLURM_JOB_ID") or None


def to_cancel(records: list[dict], server_job: str | None) -> list[dict]:
    """The records of clusters started under `server_job`; other servers' clusters are left alone."""
    return [r for r in records if r.get("server_job") == server_job and r.get("job_name")]


def orphaned(records: list[dict], server_job: str | None, host: str, alive) -> list[dict]:
    """Records of other servers or none whose owner on `host` is gone (`alive(pid)` False): left by a killed kernel.

    Their watchdog has normally cancelled the jobs already; cancelling by name again is harmless.
    """
    return [
        r
        for r in records
        if r.get("server_job") != server_job and r.get("host") == host and r.get("job_name")
        and isinstance(r.get("owner_pid"), int) and not alive(r["owner_pid"])
    ]


def register(directory: Path, entry: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = directory / f"{entry['job_name']}.json"
    return atomic_write(target, json.dumps(entry), 0o600)


def unregister(directory: Path, job_name: str) -> None:
    try:
        (directory / f"{job_name}.json").unlink()
    except FileNotFoundError:
        pass


def registered(directory: Path) -> list[dict]:
    """Every readable record; a half-written or foreign file is skipped."""
    records = []
    for path in sorted(directory.glob("*.json")):
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(entry, dict):
            records.append(entry)
    return records
