"""Class start: N users spawning at once, stock batchspawner.SlurmSpawner against this spawner, in one run.

    /opt/aifactory/venv/bin/python tests/benchmarks/bench_class.py [--size 30] [--memory 256M] [--rounds 1]

Not a test (not collected by pytest). Needs root and the local Slurm cluster. For
the run only, it makes N Unix users (bench001...) with an association to the
demo's course project, a Slurm partition `bench-class` over the nodes of the
`standard` partition (`scontrol create`, cores shared by up to 4 servers and split
evenly over the nodes, so a class fits on these small nodes without taking the
cores other jobs need) and a site file with a 1-CPU `class` profile in it; all are
removed at the end, also on failure or Ctrl-C. slurm.conf and the installed site
are not changed. Each side runs in its own throw-away hub (ports 8300 and 8310):
every user's default server is requested at the same moment through the REST
API and each server is a real jupyterhub-singleuser in a real Slurm job.
Printed, in seconds from the request: when all are ready, the median user's
ready, failures, and from accounting where the time went: the jobs' submit
(median), their longest wait in Slurm's queue (other people's jobs share the
nodes: a run that waited for them is measured again) and job start to ready.
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
from dataclasses import dataclass
from pathlib import Path

from benchlib import (LABELS, BenchHub, bench_names, bench_partition, bench_users, cancel_jobs_of, class_site,
                      cleanup_on_signals, job_times, table, wait_for_room)

from aifactory.site.units import parse_memory_mib

PARTITION = "bench-class"
SHARE = 4  # servers per core in the bench partition


@dataclass
class Run:
    """One class start on one side; times in seconds from the moment every server was requested."""

    ready: dict[str, float]  # user -> ready
    failures: int
    submitted: list[float]  # Slurm's submit time of each job
    waits: list[float]  # each job's time in Slurm's queue
    start_to_ready: list[float]  # each job's start to its server ready

    @property
    def all_ready(self) -> float | None:
        return max(self.ready.values()) if self.ready and not self.failures else None

    @property
    def median_user(self) -> float | None:
        return statistics.median(self.ready.values()) if self.ready else None


def class_start(hub: BenchHub, names: list[str], options: dict, timeout: float) -> tuple[dict[str, float], int]:
    """Request every user's server at once; ({user: seconds until ready}, failures).

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
    return ready, len(names) - len(ready)


def measure(kind: str, port: int, names: list[str], partition: str, memory: str, site_file: str,
            timeout: float) -> Run:
    """One side in its own hub, with its jobs' submit and start times from accounting."""
    with BenchHub(kind, port, partition=partition, memory=memory, site_file=site_file) as hub:
        hub.add_users(names)
        since = time.time()
        ready, failures = class_start(hub, names, {} if kind == "stock" else {"profile": "class"}, timeout)
        hub.stop_all()
    cancel_jobs_of(names)
    jobs = job_times(partition, since)
    return Run(ready, failures, [submit - since for submit, _ in jobs.values()],
               [start - submit for submit, start in jobs.values()],
               [since + ready[user] - jobs[user][1] for user in ready if user in jobs])


def seconds(value: float | None, timeout: float = 0) -> str:
    return f"{value:.1f}" if value is not None else (f"> {timeout:.0f}" if timeout else "-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=30, help="users in the class")
    parser.add_argument("--memory", default="256M", help="memory of each server (Slurm holds it; cores are shared)")
    parser.add_argument("--rounds", type=int, default=1, help="class starts per side, alternating which goes first")
    parser.add_argument("--timeout", type=float, default=300, help="seconds a class may take to start")
    parser.add_argument("--wait", type=float, default=600, help="seconds to wait for the nodes to be free enough")
    parser.add_argument("--attempts", type=int, default=3,
                        help="measure a side again (up to this often) when its jobs waited for other people's jobs")
    parser.add_argument("--max-queue-wait", type=float, default=15,
                        help="seconds in Slurm's queue beyond which a run counts as disturbed by other jobs")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (it adds users and a partition, and the hubs submit jobs as the users)")
    cleanup_on_signals()
    names = bench_names(args.size)
    cores = math.ceil(args.size / SHARE)
    room_mib = args.size * parse_memory_mib(args.memory)
    rows = []
    runs: dict[str, list[Run]] = {"stock": [], "ours": []}
    with tempfile.TemporaryDirectory(prefix="bench-class-") as tmp, \
            bench_partition(PARTITION, max_cpus=cores, oversubscribe=SHARE) as partition, bench_users(names):
        os.chmod(tmp, 0o755)
        site_file = class_site(Path(tmp, "site.yaml"), partition, args.memory)
        for round_ in range(args.rounds):
            sides = [("stock", 8300), ("ours", 8310)]
            for kind, port in (sides if round_ % 2 == 0 else sides[::-1]):
                for attempt in range(1, args.attempts + 1):
                    busy = not wait_for_room(partition, cores, room_mib, args.wait)
                    run = measure(kind, port, names, partition.name, args.memory, site_file, args.timeout)
                    if max(run.waits, default=0) <= args.max_queue_wait or attempt == args.attempts:
                        break
                    print(f"({LABELS[kind]}: a job waited {max(run.waits):.0f} s for other jobs; measuring again)")
                runs[kind].append(run)
                rows.append([LABELS[kind] + (f", round {round_ + 1}" if args.rounds > 1 else ""),
                             seconds(run.all_ready, args.timeout), seconds(run.median_user),
                             str(run.failures) + (" (node busy)" if busy else ""),
                             seconds(statistics.median(run.submitted) if run.submitted else None),
                             seconds(max(run.waits, default=None)),
                             seconds(statistics.median(run.start_to_ready) if run.start_to_ready else None),
                             str(attempt)])
    ratios = []
    for metric in (lambda r: r.all_ready, lambda r: r.median_user):
        ours, stock = ([metric(r) for r in runs[k]] for k in ("ours", "stock"))
        ok = None not in ours + stock
        ratios.append(f"{statistics.median(ours) / statistics.median(stock):.2f}x" if ok else "-")
    rows.append(["ours / stock" + (" (medians of the rounds)" if args.rounds > 1 else ""), *ratios, "", "", "", "", ""])
    table(f"Class start: {args.size} users request a server at once (1 CPU, {args.memory}; real Slurm jobs; seconds)",
          ["", "all ready", "median user", "failures", "submitted (median)", "queue wait (max)",
           "job start to ready (median)", "attempt"], rows)


if __name__ == "__main__":
    main()
