"""Benchmark (not a test): seconds from creating a cluster to N connected workers.

SiteCluster (this project's factory) against a plain dask_jobqueue.SLURMCluster
asking for the same resources (1 core, 1 GiB, the same partition, account and
walltime), interleaved in the same run so both see the same cluster load.

    python tests/benchmarks/bench_dask_startup.py [--user researcher1] [--repeat 3] [--workers 2 4]

Run as root it re-runs itself as the demo user (jobs belong to users).
"""

from __future__ import annotations

import argparse
import os
import pwd
import statistics
import subprocess
import sys
import time


def ready_seconds(make_cluster, n: int) -> float:
    start = time.perf_counter()
    cluster = make_cluster()
    try:
        cluster.scale(n)
        cluster.wait_for_workers(n, timeout=180)
        return time.perf_counter() - start
    finally:
        cluster.close()


def factory(walltime_minutes: int):
    from aifactory.extensions.dask import SiteCluster

    return lambda: SiteCluster("cpu", cores=1, memory="1G", walltime=str(walltime_minutes))


def plain(site_cluster_config: dict):
    from dask_jobqueue import SLURMCluster

    same = {key: site_cluster_config[key] for key in ("queue", "account", "walltime", "interface", "python")}
    # The scheduler on the address the compute nodes reach, as SiteCluster's (none on a one-node site).
    host = site_cluster_config.get("scheduler-options", {}).get("host")
    scheduler = {"scheduler_options": {"host": host}} if host else {}
    return lambda: SLURMCluster(cores=1, memory="1GiB", processes=1, **same, **scheduler)


def measure(repeat: int, sizes: list[int]) -> list[tuple[int, float, float]]:
    from aifactory.extensions.dask import SiteCluster

    probe = SiteCluster("cpu", cores=1, memory="1G", walltime="15")
    config = probe.config
    probe.close()
    rows = []
    for n in sizes:
        ours, theirs = [], []
        for _ in range(repeat):  # interleaved: both see the same load
            ours.append(ready_seconds(factory(15), n))
            theirs.append(ready_seconds(plain(config), n))
        rows.append((n, statistics.median(ours), statistics.median(theirs)))
    return rows


def table(rows: list[tuple[int, float, float]], repeat: int) -> str:
    lines = [
        f"Start to N ready workers, median of {repeat} (seconds; lower is better)",
        f"{'N':>3} | {'SiteCluster':>11} | {'SLURMCluster':>12} | {'ratio':>5}",
        f"{'-' * 3}-+-{'-' * 11}-+-{'-' * 12}-+-{'-' * 5}",
    ]
    for n, ours, theirs in rows:
        lines.append(f"{n:>3} | {ours:>11.2f} | {theirs:>12.2f} | {ours / theirs:>5.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--user", default="researcher1", help="demo user the jobs run as when started by root")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    args = parser.parse_args()
    if os.geteuid() == 0:
        argv = ["sudo", "-u", args.user, "-H", sys.executable, os.path.abspath(__file__)]
        argv += ["--repeat", str(args.repeat), "--workers", *map(str, args.workers)]
        sys.exit(subprocess.run(argv, cwd=pwd.getpwnam(args.user).pw_dir).returncode)
    print(table(measure(args.repeat, args.workers), args.repeat))


if __name__ == "__main__":
    main()
