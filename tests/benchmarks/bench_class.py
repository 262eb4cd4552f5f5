"""Class start: N users spawning at once, stock batchspawner.SlurmSpawner against this spawner, in one run.

    /opt/aifactory/venv/bin/python tests/benchmarks/bench_class.py [--size 30] [--memory 256M]

Not a test (not collected by pytest). Needs root and the local Slurm cluster. For
the run only, it makes N Unix users (bench001...) with an association to the
demo's course project, a Slurm partition `bench-class` (`scontrol create`, cores
shared by up to 4 servers, so a class fits on this small node without taking the
cores other jobs need) and a site file with a 1-CPU `class` profile in it; all are
removed at the end, also on failure or Ctrl-C. slurm.conf and the installed site
are not changed. Each side runs in its own throw-away hub (ports 8300 and 8310):
every user's default server is requested at the same moment through the REST
API and each server is a real jupyterhub-singleuser in a real Slurm job.
Printed: time until all are ready, the median user's wait, failures, and the
longest wait in Slurm's queue (from accounting: other people's jobs share the node).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchlib import (LABELS, BenchHub, bench_names, bench_partition, bench_users, cancel_jobs_of, class_site,
                      cleanup_on_signals, queue_waits, table, wait_for_room)

from aifactory.hub.site.units import parse_memory_mib

PARTITION = "bench-class"
SHARE = 4  # servers per core in the bench partition


def class_start(hub: BenchHub, names: list[str], options: dict, timeout: float) -> tuple[float | None, list[float], int]:
    """Request every user's server at once; (seconds until all ready, each ready user's seconds, failures).

    One poll of GET /users per half second watches all servers, so watching does
    not load the hub more than a class of browsers on the progress page would.
    """
    start = time.monotonic()
    with ThreadPoolExecutor(len(names)) as pool:
        accepted = dict(zip(names, pool.map(lambda n: hub.spawn(n, "", options).status_code in (201, 202), names)))
    ready: dict[str, float] = {}
    failed = {n for n, ok in accepted.items() if not ok}
    while len(ready) + len(failed) < len(names) and time.monotonic() - start < timeout:
        now = time.monotonic() - start
        for user in hub.users():
            name = user["name"]
            if name not in accepted or name in ready or name in failed:
                continue
            server = user.get("servers", {}).get("")
            if server and server["ready"]:
                ready[name] = now
            elif not server or not server["pending"]:
                failed.add(name)
        time.sleep(0.5)
    failures = len(names) - len(ready)
    return (max(ready.values()) if not failures else None), sorted(ready.values()), failures


def measure(kind: str, port: int, names: list[str], partition: str, memory: str, site_file: str,
            timeout: float) -> tuple[float | None, list[float], int, list[float]]:
    """One side in its own hub: class_start's results and the Slurm queue waits of its jobs."""
    with BenchHub(kind, port, partition=partition, memory=memory, site_file=site_file) as hub:
        hub.add_users(names)
        since = time.time()
        all_ready, each, failures = class_start(hub, names, {} if kind == "stock" else {"profile": "class"}, timeout)
        hub.stop_all()
    cancel_jobs_of(names)
    return all_ready, each, failures, queue_waits(partition, since)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=30, help="users in the class")
    parser.add_argument("--memory", default="256M", help="memory of each server (Slurm holds it; cores are shared)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds a class may take to start")
    parser.add_argument("--wait", type=float, default=600, help="seconds to wait for the node to be free enough")
    parser.add_argument("--attempts", type=int, default=3,
                        help="measure a side again (up to this often) when its jobs waited for other people's jobs")
    parser.add_argument("--max-queue-wait", type=float, default=15,
                        help="seconds in Slurm's queue beyond which a side counts as disturbed by other jobs")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (it adds users and a partition, and the hubs submit jobs as the users)")
    cleanup_on_signals()
    names = bench_names(args.size)
    cores = math.ceil(args.size / SHARE)
    room_mib = args.size * parse_memory_mib(args.memory)
    rows, results = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-class-") as tmp, \
            bench_partition(PARTITION, max_cpus=cores, oversubscribe=SHARE) as partition, bench_users(names):
        os.chmod(tmp, 0o755)
        site_file = class_site(Path(tmp, "site.yaml"), partition, args.memory, cpus_per_node=cores)
        for kind, port in (("stock", 8300), ("ours", 8310)):
            for attempt in range(1, args.attempts + 1):
                busy = not wait_for_room(cores, room_mib, args.wait)
                all_ready, each, failures, waits = measure(kind, port, names, partition, args.memory, site_file,
                                                           args.timeout)
                if max(waits, default=0) <= args.max_queue_wait or attempt == args.attempts:
                    break
                print(f"({LABELS[kind]}: a job waited {max(waits):.0f} s for other jobs on the node; measuring again)")
            results[kind] = (all_ready, statistics.median(each) if each else None)
            rows.append([LABELS[kind], f"{all_ready:.1f}" if all_ready else f"> {args.timeout:.0f}",
                         f"{statistics.median(each):.1f}" if each else "-",
                         str(failures) + (" (node busy)" if busy else ""),
                         f"{max(waits):.0f}" if waits else "-", str(attempt)])
    ratios = [f"{o / s:.2f}x" if s and o else "-" for o, s in zip(results["ours"], results["stock"])]
    rows.append(["ours / stock", *ratios, "", "", ""])
    table(f"Class start: {args.size} users request a server at once (1 CPU, {args.memory}; real Slurm jobs)",
          ["", "all ready (s)", "median user (s)", "failures", "longest Slurm queue wait (s)", "attempt"], rows)


if __name__ == "__main__":
    main()
