"""Hub load: 200 users, 50 of them spawning through the REST API; API latency and hub memory, stock hub against ours.

    /opt/aifactory/venv/bin/python tests/benchmarks/bench_load.py [--users 200] [--spawn 50] [--window 150]

Not a test (not collected by pytest). Needs root and the local Slurm cluster.
Each side is a throw-away hub (ports 8300 and 8310): a plain JupyterHub with
stock batchspawner.SlurmSpawner, then one with this project's SiteSlurmSpawner.
Both get the same 200 hub users (bench001...); the first 50 are real Unix users
with an association to the demo's course project, made for the run and removed
after (with their jobs, also on failure or Ctrl-C). Their servers are 1-CPU
jobs in a partition `bench-load` over the nodes of the `standard` partition,
made at run time (`scontrol create`, up to 4 servers per core on at most 8
cores, split evenly over the nodes), so what does not fit waits in Slurm's
queue, as on a busy centre.

While the 50 servers are requested at once, one client per endpoint asks the
hub, back to back, for GET /hub/api/users/<name> (the service token, names in
turn) and GET /hub/api/user (ten users' own tokens); the hub's RSS is sampled
twice a second. The burst is the window from the first request until every
server is ready or failed, at most --window seconds: servers still queued then
are counted as queued. The same is measured idle (--idle seconds) before.
Each phase reports p50/p95/p99 per endpoint and over all requests, and the
throughput (requests served per second of the window: the clients ask back to
back, so a slower hub serves fewer). `--profile DIR` also records each hub with
py-spy during the burst (DIR/<side>.txt, collapsed stacks, and the top frames
printed); `--sides ours` measures one side only, for development. Both hubs
run side by side: both idle phases come first, and each phase waits for the
machine to settle (the previous burst's servers gone) before it is measured.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import psutil
from benchlib import (BenchHub, LatencySampler, Profile, bench_names, bench_partition, bench_users, cancel_jobs_of,
                      class_site, cleanup_on_signals, ratios, spread, table, top_frames)

PARTITION = "bench-load"
PORTS = {"stock": 8300, "ours": 8310}
PREFIX = "bench"
CORES, SHARE = 8, 4
TOKEN_USERS = 10


def targets(hub: BenchHub, names: list[str]) -> dict[str, list[tuple[str, dict]]]:
    """What the sampler asks: a user's model by the service token, and /user by users' own tokens."""
    own = []
    for name in names[:TOKEN_USERS]:
        token = hub.api("POST", f"/users/{name}/tokens", json={"expires_in": 3600}).json()["token"]
        own.append((f"{hub.url}/hub/api/user", {"Authorization": f"token {token}"}))
    return {"GET /users/<name>": [(f"{hub.url}/hub/api/users/{n}", hub.headers) for n in names], "GET /user": own}


def burst(hub: BenchHub, spawning: list[str], options: dict, window: float) -> dict[str, int]:
    """Request every server at once; watch until none is pending or the window ends; count ready, queued, failed."""
    start = time.monotonic()
    with ThreadPoolExecutor(len(spawning)) as pool:
        list(pool.map(lambda name: hub.spawn(name, "", options), spawning))
    while True:
        servers = [u.get("servers", {}).get("") for u in hub.users() if u["name"] in spawning]
        ready = sum(bool(s and s["ready"]) for s in servers)
        queued = sum(bool(s and s["pending"]) for s in servers)
        if not queued or time.monotonic() - start > window:
            return {"ready": ready, "queued": queued, "failed": len(spawning) - ready - queued}
        time.sleep(1)


@dataclass
class Phase:
    """One measured phase of one side: latencies per endpoint, the window's length, errors."""

    seconds: dict[str, list[float]]
    window: float
    errors: int

    @property
    def all(self) -> list[float]:
        return [s for values in self.seconds.values() for s in values]

    @property
    def throughput(self) -> float:
        return len(self.all) / self.window if self.window else 0.0


def settle(busy: float = 50.0, longest: float = 60.0) -> None:
    """Wait (at most `longest` s) until the machine's CPUs are less than `busy` % used over 2 s: the previous
    phase's servers stop and their nodes clean up before the next phase is measured."""
    deadline = time.monotonic() + longest
    while psutil.cpu_percent(interval=2) >= busy and time.monotonic() < deadline:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200, help="users created in each hub")
    parser.add_argument("--spawn", type=int, default=50, help="users of those who request a server at once")
    parser.add_argument("--memory", default="256M", help="memory of each server")
    parser.add_argument("--window", type=float, default=150, help="longest burst measured, seconds")
    parser.add_argument("--idle", type=float, default=10, help="seconds measured idle before the burst")
    parser.add_argument("--sides", default="stock,ours", help="which hubs, in order (development: 'ours')")
    parser.add_argument("--profile", type=Path, help="folder for py-spy's record of each hub during the burst")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (it adds users and a partition, and the hubs submit jobs as the users)")
    sides = [side for side in args.sides.split(",") if side]
    if not set(sides) <= {"stock", "ours"}:
        sys.exit("--sides: stock, ours or both")
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    cleanup_on_signals()
    names = bench_names(args.users, PREFIX)
    spawning = names[:args.spawn]
    phases: dict[tuple[str, str], Phase] = {}
    hub_rows, created, rss, labels = [], {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp, \
            bench_partition(PARTITION, max_cpus=CORES, oversubscribe=SHARE) as partition, bench_users(spawning), \
            ExitStack() as stack:
        os.chmod(tmp, 0o755)
        site_file = class_site(Path(tmp, "site.yaml"), partition, args.memory)
        hubs = {kind: stack.enter_context(BenchHub(kind, PORTS[kind], partition=partition.name, memory=args.memory,
                                                   site_file=site_file)) for kind in sides}
        asked, idle_rss = {}, {}
        for kind, hub in hubs.items():  # both idle phases first, back to back, before any burst
            labels[kind] = hub.label
            created[kind] = hub.add_users(names)
            asked[kind] = targets(hub, names)
            settle()
            with LatencySampler(asked[kind], hub) as idle:
                time.sleep(args.idle)
            phases[kind, "idle"] = Phase(idle.seconds, args.idle, idle.errors)
            idle_rss[kind] = idle.rss[0]
        for kind, hub in hubs.items():
            settle()
            record = args.profile / f"{kind}.txt" if args.profile else None
            with Profile(hub.proc.pid, record), LatencySampler(asked[kind], hub) as busy:
                burst_start = time.monotonic()
                counts = burst(hub, spawning, {} if kind == "stock" else {"profile": "class"}, args.window)
                burst_seconds = time.monotonic() - burst_start
            phases[kind, "burst"] = Phase(busy.seconds, burst_seconds, busy.errors)
            hub.stop_all()
            cancel_jobs_of(spawning)
            rss[kind] = (idle_rss[kind], max(busy.rss))
            hub_rows.append([hub.label, f"{created[kind]:.2f}", f"{burst_seconds:.0f}", f"{idle_rss[kind]:.0f}",
                             f"{max(busy.rss):.0f}", str(counts["ready"]), str(counts["queued"]),
                             str(counts["failed"])])
            if record is not None and record.exists():
                for by_top in (False, True):
                    table(f"py-spy, {hub.label}: its event loop during the burst (% of samples; idle waits left "
                          f"out), by {'own' if by_top else 'inclusive'} time",
                          ["frame", "on stack %", "on top %"],
                          [[f[:110], f"{incl:.1f}", f"{top:.1f}"] for f, incl, top in top_frames(record, 15, by_top)])
    endpoints = list(next(iter(phases.values())).seconds)
    latency_rows = []
    for kind in sides:
        for phase in ("idle", "burst"):
            p = phases[kind, phase]
            latency_rows.append([f"{labels[kind]}, {phase} ({p.window:.0f} s)",
                                 *(spread(p.seconds[e]) for e in endpoints), spread(p.all), str(len(p.all)),
                                 f"{p.throughput:.1f}", str(p.errors)])
    if len(sides) == 2:
        for phase in ("idle", "burst"):
            o, s = phases["ours", phase], phases["stock", phase]
            latency_rows.append([f"ours / stock, {phase}", *(ratios(o.seconds[e], s.seconds[e]) for e in endpoints),
                                 ratios(o.all, s.all), "", f"{o.throughput / s.throughput:.2f}x", ""])
    table(f"Hub API latency (ms, p50 / p95 / p99): {args.users} users, {args.spawn} requesting a server at once; "
          "throughput: requests served per second",
          ["", *endpoints, "all", "requests", "req/s", "errors"], latency_rows)
    if len(sides) == 2:
        hub_rows.append(["ours / stock", f"{created['ours'] / created['stock']:.2f}x", "",
                         *(f"{o / s:.2f}x" for o, s in zip(rss["ours"], rss["stock"])), "", "", ""])
    table(f"Hub: user creation, memory, and the burst's servers at its end (1 CPU, {args.memory}; "
          "what does not fit waits in Slurm)",
          ["", f"create {args.users} users (s)", "burst (s)", "RSS idle (MiB)", "RSS peak in burst (MiB)", "ready",
           "queued", "failed"], hub_rows)


if __name__ == "__main__":
    main()
