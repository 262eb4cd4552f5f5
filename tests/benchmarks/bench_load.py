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
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchlib import (BenchHub, LatencySampler, bench_names, bench_partition, bench_users, cancel_jobs_of,
                      class_site, cleanup_on_signals, percentile, table)

PARTITION = "bench-load"
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


def ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.0f}" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200, help="users created in each hub")
    parser.add_argument("--spawn", type=int, default=50, help="users of those who request a server at once")
    parser.add_argument("--memory", default="256M", help="memory of each server")
    parser.add_argument("--window", type=float, default=150, help="longest burst measured, seconds")
    parser.add_argument("--idle", type=float, default=10, help="seconds measured idle before the burst")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (it adds users and a partition, and the hubs submit jobs as the users)")
    cleanup_on_signals()
    names = bench_names(args.users)
    spawning = names[:args.spawn]
    latency_rows, hub_rows, burst_p50, rss = [], [], {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp, \
            bench_partition(PARTITION, max_cpus=CORES, oversubscribe=SHARE) as partition, bench_users(spawning):
        os.chmod(tmp, 0o755)
        site_file = class_site(Path(tmp, "site.yaml"), partition, args.memory)
        for kind, port in (("stock", 8300), ("ours", 8310)):
            with BenchHub(kind, port, partition=partition.name, memory=args.memory, site_file=site_file) as hub:
                created = hub.add_users(names)
                asked = targets(hub, names)
                with LatencySampler(asked, hub) as idle:
                    time.sleep(args.idle)
                with LatencySampler(asked, hub) as busy:
                    burst_start = time.monotonic()
                    counts = burst(hub, spawning, {} if kind == "stock" else {"profile": "class"}, args.window)
                    burst_seconds = time.monotonic() - burst_start
                hub.stop_all()
            cancel_jobs_of(spawning)
            for phase, sampler in (("idle", idle), (f"burst {burst_seconds:.0f} s", busy)):
                latency_rows.append([f"{hub.label}, {phase}",
                                     *(f"{ms(v, 50)} / {ms(v, 95)}" for v in sampler.seconds.values()),
                                     str(sum(map(len, sampler.seconds.values()))), str(sampler.errors)])
            burst_p50[kind] = [percentile(v, 50) for v in busy.seconds.values()]
            rss[kind] = (idle.rss[0], max(busy.rss))
            hub_rows.append([hub.label, f"{created:.1f}", f"{idle.rss[0]:.0f}", f"{max(busy.rss):.0f}",
                             str(counts["ready"]), str(counts["queued"]), str(counts["failed"])])
    ratios = [f"{o / s:.2f}x" for o, s in zip(burst_p50["ours"], burst_p50["stock"])]
    latency_rows.append(["ours / stock, burst p50", *ratios, "", ""])
    table(f"Hub API latency (ms, p50 / p95): {args.users} users, {args.spawn} requesting a server at once",
          ["", *idle.seconds, "requests", "errors"], latency_rows)
    hub_rows.append(["ours / stock", "", *(f"{o / s:.2f}x" for o, s in zip(rss["ours"], rss["stock"])), "", "", ""])
    table(f"Hub memory and the burst's servers at its end (1 CPU, {args.memory}; what does not fit waits in Slurm)",
          ["", f"create {args.users} users (s)", "RSS idle (MiB)", "RSS peak in burst (MiB)", "ready", "queued",
           "failed"], hub_rows)


if __name__ == "__main__":
    main()
