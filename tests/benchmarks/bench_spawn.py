"""Spawn benchmarks: this spawner against stock batchspawner.SlurmSpawner, side by side in one run.

    /opt/aifactory/venv/bin/python tests/benchmarks/bench_spawn.py [--repeat 3]

Not a test (not collected by pytest). Needs root, the local Slurm cluster and
the demo users. It starts two throw-away JupyterHubs on ports 8300 (stock) and
8310 (this spawner) with a shared password nobody knows and a service token, so the
platform's hub on 8000 is not touched, and prints two tables:

1. spawn latency on an idle cluster, click (POST) to ready, against the floor:
   a bare `jupyterhub-singleuser` started by hand until it answers HTTP;
2. scheduler calls in one poll interval for 50 servers' jobs (held in the
   queue, so they use no CPU of the shared node);
3. CPU seconds of one server's start (user + system of its whole process tree,
   from start until it answers HTTP; what a class start of 30 shares a few cores
   for): a bare `jupyterhub-singleuser`, stock's `batchspawner-singleuser` and
   this project's launcher, each run as a demo user on this node against a
   stand-in hub API (a thread here: the version check, activity, the port report).

The class start (30 users at once) is `bench_class.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import psutil
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


class StandInHub(BaseHTTPRequestHandler):
    """What a starting server asks of its hub: GET the API (version check), POST activity and its port."""

    ports: list[int] = []

    def do_GET(self):
        self._answer(b'{"version": "6"}')

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.endswith(("/aifactory/port", "/batchspawner")):
            StandInHub.ports.append(int(json.loads(body)["port"]))
        self._answer(b"{}")

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("X-JupyterHub-Version", "6.1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def tree_cpu(root: psutil.Process) -> float:
    """User + system CPU seconds of `root` and everything below it, also of children already waited for."""
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


START_CPU_SIDES = {  # label -> (argv after the environment, user)
    "bare jupyterhub-singleuser (floor)": ([f"{VENV}/bin/jupyterhub-singleuser"], "researcher1"),
    "stock batchspawner-singleuser": ([f"{VENV}/bin/batchspawner-singleuser", f"{VENV}/bin/jupyterhub-singleuser"],
                                      "researcher1"),
    "aifactory launcher, user in no course": ([f"{VENV}/bin/python", "-m", "aifactory.spawners.singleuser", "--",
                                               f"{VENV}/bin/jupyterhub-singleuser"], "researcher1"),
    "aifactory launcher, user in a course": ([f"{VENV}/bin/python", "-m", "aifactory.spawners.singleuser", "--",
                                              f"{VENV}/bin/jupyterhub-singleuser"], "student1"),
}


def start_cpu(argv: list[str], user: str, hub_port: int, port: int = 8308) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one server start as `user` until it answers HTTP."""
    prefix = f"/user/{user}/"
    env = {"PATH": f"{VENV}/bin:/usr/bin:/bin", "HOME": f"/home/{user}", "USER": user, "LANG": "C.UTF-8",
           "JUPYTERHUB_API_TOKEN": "0" * 32, "JUPYTERHUB_API_URL": f"http://127.0.0.1:{hub_port}/hub/api",
           "JUPYTERHUB_BASE_URL": "/", "JUPYTERHUB_SERVICE_PREFIX": prefix, "JUPYTERHUB_USER": user,
           "JUPYTERHUB_CLIENT_ID": f"jupyterhub-user-{user}", "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}{prefix}",
           "JUPYTERHUB_OAUTH_CALLBACK_URL": f"{prefix}oauth_callback", "JUPYTERHUB_DEFAULT_URL": "/lab",
           "JUPYTERHUB_ACTIVITY_URL": f"http://127.0.0.1:{hub_port}/hub/api/users/{user}/activity",
           "SLURM_JOB_ID": "bench-cpu", "AIFACTORY_WALLTIME_MINUTES": "60"}
    StandInHub.ports.clear()
    start = time.monotonic()
    proc = subprocess.Popen(["sudo", "-u", user, "env", *(f"{k}={v}" for k, v in env.items()), *argv], cwd="/tmp",
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    root = psutil.Process(proc.pid)
    try:
        while time.monotonic() - start < 120:
            # A bare server listens where JUPYTERHUB_SERVICE_URL says; the other two report the port they chose.
            answering = StandInHub.ports[-1] if StandInHub.ports else (port if len(argv) == 1 else None)
            if answering:
                try:
                    if requests.get(f"http://127.0.0.1:{answering}{prefix}api", timeout=1).status_code < 500:
                        return tree_cpu(root), time.monotonic() - start
                except requests.RequestException:
                    pass
            time.sleep(0.02)
        raise RuntimeError(f"{argv[0]} did not answer in 120 s")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        for left in ("session", "stop"):  # the launcher's files of this stand-in job
            Path(f"/home/{user}/.aifactory/{left}-bench-cpu.json").unlink(missing_ok=True)


def bench_start_cpu(repeat: int, hub_port: int = 8309) -> None:
    hub = ThreadingHTTPServer(("127.0.0.1", hub_port), StandInHub)
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    cpu: dict[str, list[float]] = {label: [] for label in START_CPU_SIDES}
    wall: dict[str, list[float]] = {label: [] for label in START_CPU_SIDES}
    try:
        for _ in range(repeat):  # the sides in turn, so that load from others is shared out
            for label, (argv, user) in START_CPU_SIDES.items():
                seconds, took = start_cpu(argv, user, hub_port)
                cpu[label].append(seconds)
                wall[label].append(took)
    finally:
        hub.shutdown()
    floor, stock = (statistics.median(cpu[label]) for label in list(START_CPU_SIDES)[:2])
    table(f"CPU seconds of one server's start (user + system, its process tree, until it answers), {repeat} runs each",
          ["", "CPU median", "min", "max", "wall median", "vs floor", "vs stock"],
          [[label, f"{statistics.median(v):.2f}", f"{min(v):.2f}", f"{max(v):.2f}", f"{statistics.median(wall[label]):.2f}",
            f"{statistics.median(v) / floor:.2f}x", f"{statistics.median(v) / stock:.2f}x"] for label, v in cpu.items()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=["latency", "poll", "cpu"], action="append")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (the bench hubs submit jobs as the demo users with sudo)")
    cleanup_on_signals()
    only = set(args.only or ["latency", "poll", "cpu"])
    if "latency" in only:
        bench_latency(args.repeat)
    if "poll" in only:
        bench_poll_calls()
    if "cpu" in only:
        bench_start_cpu(args.repeat)

if __name__ == "__main__":
    main()
