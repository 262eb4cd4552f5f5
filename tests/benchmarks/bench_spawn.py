"""Spawn benchmarks: this spawner against stock batchspawner.SlurmSpawner, side by side in one run.

    /opt/aifactory/venv/bin/python tests/benchmarks/bench_spawn.py [--repeat 3]

Not a test (not collected by pytest). Needs root, the local Slurm cluster and
the demo users. It starts two throw-away JupyterHubs on ports 8300 (stock) and
8310 (this spawner) with a dummy authenticator and a service token, so the
platform's hub on 8000 is not touched, and prints two tables:

1. spawn latency on an idle cluster, click (POST) to ready, against the floor:
   a bare `jupyterhub-singleuser` started by hand until it answers HTTP;
2. scheduler calls in one poll interval for 50 servers' jobs (held in the
   queue, so they use no CPU of the shared node).

The class start (30 users at once) is `bench_class.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from types import SimpleNamespace

import requests
from benchlib import VENV, BenchHub, cleanup_on_signals, table

USERS = ["student1", "student2", "student3", "trainer1", "researcher1", "admin1"]


def options_for(kind: str) -> dict:
    return {} if kind == "stock" else {"profile": "cpu", "memory": "1G", "cpus": "1"}


def floor_start(hub: BenchHub, user: str = "student1", port: int = 8399) -> float:
    """A bare jupyterhub-singleuser, started as the user on this (login) node, until it answers HTTP.

    It talks to the hub's API where the servers in jobs do (the site's hub_api_ip).
    """
    token = hub.api("POST", f"/users/{user}/tokens", json={"expires_in": 600}).json()["token"]
    prefix = f"/user/{user}/floor/"
    env = {
        "PATH": f"{VENV}/bin:/usr/bin:/bin", "HOME": f"/home/{user}", "USER": user,
        "JUPYTERHUB_API_TOKEN": token, "JUPYTERHUB_API_URL": hub.api_url,
        "JUPYTERHUB_BASE_URL": "/", "JUPYTERHUB_SERVICE_PREFIX": prefix, "JUPYTERHUB_USER": user,
        "JUPYTERHUB_CLIENT_ID": f"jupyterhub-user-{user}-floor", "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}{prefix}",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": f"{prefix}oauth_callback", "JUPYTERHUB_DEFAULT_URL": "/lab",
    }
    start = time.monotonic()
    proc = subprocess.Popen(["sudo", "-u", user, "env", *(f"{k}={v}" for k, v in env.items()),
                             f"{VENV}/bin/jupyterhub-singleuser"], cwd="/tmp", stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while time.monotonic() - start < 60:
            try:
                if requests.get(f"http://127.0.0.1:{port}{prefix}api", timeout=1).status_code < 500:
                    return time.monotonic() - start
            except requests.RequestException:
                pass
            time.sleep(0.02)
        raise RuntimeError("the bare server did not answer in 60 s")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


def bench_latency(repeat: int) -> None:
    results: dict[str, list[float]] = {"floor": [], "stock": [], "ours": []}
    for kind, port in (("stock", 8300), ("ours", 8310)):
        with BenchHub(kind, port) as hub:
            hub.add_users(USERS)
            if kind == "stock":
                for _ in range(repeat):
                    results["floor"].append(floor_start(hub))
            for i in range(repeat):
                seconds = hub.spawn_and_wait("student1", f"lat{i}", options_for(kind))
                hub.stop("student1", f"lat{i}")
                if seconds is not None:
                    results[kind].append(seconds)
                time.sleep(3)
    floor = statistics.median(results["floor"])
    rows = [[label, f"{statistics.median(v):.2f}", f"{min(v):.2f}", f"{max(v):.2f}", f"{statistics.median(v) / floor:.2f}x"]
            for label, v in (("bare jupyterhub-singleuser (floor)", results["floor"]),
                             ("stock batchspawner.SlurmSpawner", results["stock"]),
                             ("aifactory SiteSlurmSpawner", results["ours"])) if v]
    table(f"Spawn latency, idle cluster, click to ready (s), {repeat} runs each", ["", "median", "min", "max", "vs floor"],
          rows)


def bench_poll_calls(n: int = 50) -> None:
    from batchspawner import SlurmSpawner

    from aifactory.slurm.runner import SlurmRunner
    from aifactory.spawners.poller import SlurmPoller

    out = subprocess.run(["sudo", "-u", "student1", "sbatch", "--parsable", "--hold", f"--array=0-{n - 1}",
                          "-J", "bench-poll", "-p", "standard", "-A", "project_465000002", "--mem=10M",
                          "--chdir=/tmp", "--output=/dev/null", "--wrap", "sleep 1"],
                         capture_output=True, text=True, check=True).stdout.strip()
    job_ids = [f"{out}_{i}" for i in range(n)]
    try:
        class CountingStock(SlurmSpawner):
            calls = 0

            async def run_command(self, cmd, input=None, env=None):
                type(self).calls += 1
                return await super().run_command(cmd, input, env)

        async def stock() -> tuple[int, int]:
            spawners = []
            for job_id in job_ids:
                s = CountingStock(user=SimpleNamespace(name="student1", url="/user/student1/", escaped_name="student1"))
                s.exec_prefix = ""
                s.req_keepvars = "PATH"  # no hub object here; the query does not use the environment
                s.job_id = job_id
                spawners.append(s)
            statuses = await asyncio.gather(*(s.poll() for s in spawners))  # JupyterHub polls each server
            return CountingStock.calls, sum(x is None for x in statuses)

        async def ours() -> tuple[int, int]:
            calls = 0

            class Counting(SlurmRunner):
                async def run(self, argv, **kwargs):
                    nonlocal calls
                    calls += 1
                    return await super().run(argv, **kwargs)

            poller = SlurmPoller(interval=3600, runner=Counting())
            for job_id in job_ids:
                poller.watch(job_id, submitted=False)
            views = await asyncio.gather(*(poller.fresh_view(j) for j in job_ids))  # the one interval's query
            # every server's own poll in that interval reads the snapshot
            alive = sum(poller.view(j).kind in ("pending", "running") for j in job_ids)
            assert len(views) == n
            return calls, alive

        stock_calls, stock_alive = asyncio.run(stock())
        our_calls, our_alive = asyncio.run(ours())
    finally:
        subprocess.run(["scancel", out])
    table(f"Scheduler calls in one poll interval, {n} servers' jobs", ["", "squeue calls", "jobs seen alive", "calls per server"],
          [["stock batchspawner.SlurmSpawner", str(stock_calls), str(stock_alive), f"{stock_calls / n:.2f}"],
           ["aifactory SiteSlurmSpawner", str(our_calls), str(our_alive), f"{our_calls / n:.2f}"]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=["latency", "poll"], action="append")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (the bench hubs submit jobs as the demo users with sudo)")
    cleanup_on_signals()
    only = set(args.only or ["latency", "poll"])
    if "latency" in only:
        bench_latency(args.repeat)
    if "poll" in only:
        bench_poll_calls()

if __name__ == "__main__":
    main()
