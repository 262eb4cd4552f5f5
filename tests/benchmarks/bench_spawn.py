"""Spawn benchmarks: this spawner against stock batchspawner.SlurmSpawner, side by side in one run.

    /opt/aifactory/venv/bin/python tests/benchmarks/bench_spawn.py [--repeat 3] [--class-size N]

Not a test (not collected by pytest). Needs root, the local Slurm cluster and
the demo users. It starts two throw-away JupyterHubs on ports 8300 (stock) and
8310 (this spawner) with a dummy authenticator and a service token, so the
platform's hub on 8000 is not touched, and prints three tables:

1. spawn latency on an idle cluster, click (POST) to ready, against the floor:
   a bare `jupyterhub-singleuser` started by hand until it answers HTTP;
2. scheduler calls in one poll interval for 50 servers' jobs (held in the
   queue, so they use no CPU of the shared node);
3. class start: N servers requested at once (named servers spread over the
   demo users; N is capped by the node's free CPUs, one CPU per server).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import requests

PREFIX = Path(os.environ.get("AIFACTORY_PREFIX", "/opt/aifactory"))
VENV = PREFIX / "venv"
PROXY = PREFIX / "node/node_modules/.bin/configurable-http-proxy"
USERS = ["student1", "student2", "student3", "trainer1", "researcher1", "admin1"]

COMMON = """
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {port} + 1
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api}"
c.ConfigurableHTTPProxy.command = ["{proxy}"]
c.ConfigurableHTTPProxy.pid_file = "{state}/proxy.pid"
c.JupyterHub.db_url = "sqlite:///{state}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{state}/cookie_secret"
c.JupyterHub.pid_file = "{state}/hub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = {users!r}
c.JupyterHub.services = [{{"name": "bench", "api_token": "{token}"}}]
c.JupyterHub.load_roles = [{{"name": "bench", "scopes": ["admin:users", "admin:servers", "access:servers",
                             "tokens"], "services": ["bench"]}}]
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 0
c.JupyterHub.cleanup_servers = True
c.Spawner.start_timeout = 300
c.Spawner.http_timeout = 120
c.Spawner.default_url = "/lab"
"""

STOCK = """
c.JupyterHub.spawner_class = "batchspawner.SlurmSpawner"
c.SlurmSpawner.exec_prefix = "sudo -E -u {{username}}"
c.SlurmSpawner.req_partition = "standard"
c.SlurmSpawner.req_nprocs = "1"
c.SlurmSpawner.req_memory = "1G"
c.SlurmSpawner.req_runtime = "1:00:00"
c.SlurmSpawner.batchspawner_singleuser_cmd = "{venv}/bin/batchspawner-singleuser"
c.SlurmSpawner.cmd = ["{venv}/bin/jupyterhub-singleuser"]
"""

OURS = """
from aifactory.spawners.port_api import handlers
c.JupyterHub.spawner_class = "aifactory.spawners.slurm.SiteSlurmSpawner"
c.JupyterHub.extra_handlers = handlers
c.SiteSlurmSpawner.venv = "{venv}"
c.SiteSlurmSpawner.slurm_poll_interval = 10.0
"""


class BenchHub:
    def __init__(self, kind: str, port: int):
        self.kind, self.port = kind, port
        self.token = secrets.token_hex(16)
        self.state = tempfile.mkdtemp(prefix=f"bench-hub-{kind}-")
        os.chmod(self.state, 0o755)
        config = COMMON.format(port=port, proxy_api=port + 2, proxy=PROXY, state=self.state, users=set(USERS),
                               token=self.token)
        config += (STOCK if kind == "stock" else OURS).format(venv=VENV)
        Path(self.state, "config.py").write_text(config)
        self.url = f"http://127.0.0.1:{port}"
        self.headers = {"Authorization": f"token {self.token}"}
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "BenchHub":
        log = open(Path(self.state, "hub.log"), "w")
        self.proc = subprocess.Popen([str(VENV / "bin/jupyterhub"), "-f", "config.py"], cwd=self.state, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{self.url}/hub/api", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"bench hub {self.kind} did not start; see {self.state}/hub.log")
            time.sleep(0.3)

    def __exit__(self, *exc) -> None:
        for user in USERS:
            model = self.api("GET", f"/users/{user}").json()
            for name in model.get("servers", {}):
                self.api("DELETE", f"/users/{user}/servers/{name}" if name else f"/users/{user}/server",
                         json={"remove": True} if name else None)
        if self.proc:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, f"{self.url}/hub/api{path}", headers=self.headers, timeout=300, **kwargs)

    def spawn_and_wait(self, user: str, name: str, options: dict, timeout: float = 300) -> float | None:
        """Seconds from the POST to ready, or None if the server failed."""
        start = time.monotonic()
        response = self.api("POST", f"/users/{user}/servers/{name}", json=options)
        if response.status_code not in (201, 202):
            return None
        while time.monotonic() - start < timeout:
            server = self.api("GET", f"/users/{user}").json()["servers"].get(name)
            if server and server["ready"]:
                return time.monotonic() - start
            if not server or (not server["pending"] and not server["ready"]):
                return None
            time.sleep(0.05)
        return None

    def stop(self, user: str, name: str) -> None:
        self.api("DELETE", f"/users/{user}/servers/{name}", json={"remove": True})


def options_for(kind: str) -> dict:
    return {} if kind == "stock" else {"profile": "cpu", "memory": "1G", "cpus": "1"}


def floor_start(hub: BenchHub, user: str = "student1", port: int = 8399) -> float:
    """A bare jupyterhub-singleuser, started as the user, until it answers HTTP."""
    token = hub.api("POST", f"/users/{user}/tokens", json={"expires_in": 600}).json()["token"]
    prefix = f"/user/{user}/floor/"
    env = {
        "PATH": f"{VENV}/bin:/usr/bin:/bin", "HOME": f"/home/{user}", "USER": user,
        "JUPYTERHUB_API_TOKEN": token, "JUPYTERHUB_API_URL": f"{hub.url.replace(str(hub.port), str(hub.port + 1))}/hub/api",
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


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    print(f"\n{title}")
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  " + "  ".join(str(x).ljust(w) for x, w in zip(row, widths)))


def bench_latency(repeat: int) -> None:
    results: dict[str, list[float]] = {"floor": [], "stock": [], "ours": []}
    for kind, port in (("stock", 8300), ("ours", 8310)):
        with BenchHub(kind, port) as hub:
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

    from aifactory.spawners import slurmcli
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

            async def runner(argv, timeout):
                nonlocal calls
                calls += 1
                return await slurmcli.run(argv, timeout)

            poller = SlurmPoller(interval=3600, runner=runner)
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


def free_slots(partition: str = "standard") -> int:
    """Servers of 1 CPU and 1G that fit now: node and partition limits, minus other jobs."""
    def fields(argv):
        words = subprocess.run(argv, capture_output=True, text=True).stdout.split()
        return dict(item.split("=", 1) for item in words if "=" in item)

    node = fields(["scontrol", "show", "node", "-o"])
    part = fields(["scontrol", "show", "partition", partition, "-o"])
    used = subprocess.run(["squeue", "-h", "-p", partition, "-t", "RUNNING", "-o", "%C %m"], capture_output=True,
                          text=True).stdout.split("\n")
    used_cpus = sum(int(line.split()[0]) for line in used if line.strip())
    used_mib = sum(parse_mib(line.split()[1]) for line in used if line.strip())
    cpus = min(int(node.get("CPUTot", 0)) - int(node.get("CPUAlloc", 0)),
               int(part.get("MaxCPUsPerNode", "99999").replace("UNLIMITED", "99999")) - used_cpus)
    memory = min(int(node.get("RealMemory", 0)) - int(node.get("AllocMem", 0)),
                 int(part.get("MaxMemPerNode", "99999999").replace("UNLIMITED", "99999999")) - used_mib)
    return max(0, min(cpus, memory // 1024))


def parse_mib(text: str) -> int:
    """squeue's %m ('1G', '1500M', '1.50G') in MiB."""
    match = re.match(r"([\d.]+)([KMGT]?)", text)
    factor = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}
    return int(float(match.group(1)) * factor[match.group(2)]) if match else 1024


def bench_class(size: int) -> None:
    rows = []
    for kind, port in (("stock", 8300), ("ours", 8310)):
        with BenchHub(kind, port) as hub:
            servers = [(USERS[i % len(USERS)], f"class{i}") for i in range(size)]
            start = time.monotonic()
            with ThreadPoolExecutor(size) as pool:
                results = list(pool.map(lambda s: hub.spawn_and_wait(s[0], s[1], options_for(kind)), servers))
            total = time.monotonic() - start
            ok = [r for r in results if r is not None]
            with ThreadPoolExecutor(size) as pool:
                list(pool.map(lambda s: hub.stop(*s), servers))
            rows.append([f"{'stock batchspawner.SlurmSpawner' if kind == 'stock' else 'aifactory SiteSlurmSpawner'}",
                         f"{total:.1f}", f"{statistics.median(ok):.1f}" if ok else "-", str(size - len(ok))])
            subprocess.run(["scancel", "-n", "spawner-jupyterhub"])
            time.sleep(5)
    table(f"Class start: {size} servers requested at once", ["", "all ready (s)", "median ready (s)", "failures"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--class-size", type=int, default=30)
    parser.add_argument("--only", choices=["latency", "poll", "class"], action="append")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (the bench hubs submit jobs as the demo users with sudo)")
    only = set(args.only or ["latency", "poll", "class"])
    if "latency" in only:
        bench_latency(args.repeat)
    if "poll" in only:
        bench_poll_calls()
    if "class" in only:
        slots = free_slots()
        size = min(args.class_size, max(1, slots - 1))
        if size < args.class_size:
            print(f"\n(class size {args.class_size} capped at {size}: partition standard of the one node has room "
                  f"for {slots} servers of 1 CPU and 1G now; one is left to other jobs)")
        bench_class(size)


if __name__ == "__main__":
    main()
