"""Scale: one hub with 1,000 running servers and 5,000 users, stock JupyterHub + batchspawner against this project's hub.

    flock /tmp/aifactory-bench.lock /opt/aifactory/venv/bin/python tests/benchmarks/bench_scale.py \\
        [--servers 1000] [--users 5000] [--sides stock,ours]

Not a test (not collected by pytest). Needs root and the local Slurm cluster; any
run over 50 servers under the bench lock. `--servers 50,200,1000` is a ramp: each
size for each side in turn; a side that breaks at one size (a failed start, or
not all servers up within --start-timeout) is not run at the larger ones.

Each side is a throw-away hub with the real proxy (ports 8330 and 8335) that
submits real Slurm jobs through its real batch script: this project's
SiteSlurmSpawner with the platform's spawner settings (`hub_config`) and its
launcher, stock batchspawner.SlurmSpawner with its own script. Only the server
is a stand-in (`standin_server.py`, a few MiB): it listens on the port the
launcher gives it, answers the hub's check and posts its activity like
jupyterhub-singleuser, so a thousand fit on the five namespace nodes. On the stock side the
stand-in also reports its port to batchspawner's API itself, as
batchspawner-singleuser would (that one imports jupyterhub into the server's
process, 78 MiB a server), and the job runs it without `srun` (batchspawner's
`req_srun = ""`: no job step, a process less per server); both are in stock's favour.

The server owners (the first --servers of the --users hub users, bscale001...)
are Unix users with an association to the demo's course project, made for the
run and removed after with their jobs, also on failure or Ctrl-C. Their jobs ask
1 CPU and --memory in a partition `bench-scale` over every node (made at run
time, 3 cores a node, as many servers a core as the size needs: memory is never
shared, so --memory decides how many fit).

Per side and size it reports: time until every server is ready (spawns asked
by 100 clients at once; JupyterHub's concurrent_spawn_limit of 100 answers
429, asked again 5 s later), failed starts, the hub's CPU and
memory, API p50/p95/p99 for a steady background of user requests (GET
/hub/api/user with users' own tokens, GET /hub/api/users/<name> by the
service token) during the start and then --steady seconds with every server up,
the proxy's routes, Slurm commands the hub runs per 10 s (counted in the hub
process, by command), one pass of the platform's idle culler (jupyterhub-idle-culler
with the platform's arguments, `hub/services.py`) over all servers, the memory
of one server's job on the nodes, and the time to stop all through the API.
`--profile DIR` records each hub with py-spy during the start.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import pwd
import secrets
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import jupyterhub
import psutil
import requests
import yaml

from aifactory.hub.config import HubPaths, hub_config
from aifactory.hub.services import IDLE_CULLER_SCOPES, idle_culler_command
from aifactory.site import load_site
from benchlib import (LABELS, BenchHub, LatencySampler, Profile, bench_names, bench_partition, bench_users,
                      cancel_jobs_of, class_site, cleanup_on_signals, jobs_of, partition_nodes, ratios, spread, table,
                      top_frames)

PARTITION = "bench-scale"
OVER = "standard,small-g,interactive"  # every node of the local cluster
CORES_PER_NODE = 3
PORTS = {"stock": 8330, "ours": 8335}
PREFIX = "bscale"
TOKEN_USERS = 20
SPAWN_CLIENTS = 100
# A spawn refused for JupyterHub's concurrent_spawn_limit (429) is asked again this much later. The hub's
# Retry-After (30 to 60 s) would measure the clients' patience, not the hub.
RETRY_SECONDS = 5.0
POLL_SECONDS = 10.0  # the platform's slurm_poll_interval: Slurm commands are reported per this interval
HERE = Path(__file__).resolve().parent
STANDIN = HERE / "standin_server.py"
STANDIN_ENV = HERE / "standin"  # bin/jupyterhub-singleuser -> ../../standin_server.py
SLURM_COMMANDS = ("sbatch", "squeue", "sacct", "scancel", "sinfo", "sacctmgr", "sshare", "scontrol", "sprio")

# Both hubs: the stand-in's version header, a culler token with the platform's culler scopes, the proxy's
# routes readable by the bench service, and every Slurm command the hub process runs counted in its state folder.
EXTRA = """
import time as _time
c.Spawner.environment = {{"STANDIN_JUPYTERHUB_VERSION": "{version}"}}
c.JupyterHub.services.append({{"name": "bscale-culler", "api_token": "{culler_token}"}})
c.JupyterHub.load_roles.append({{"name": "bscale-culler", "scopes": {culler_scopes!r}, "services": ["bscale-culler"]}})
c.JupyterHub.load_roles.append({{"name": "bscale-proxy", "scopes": ["proxy", "read:metrics"], "services": ["bench"]}})
_slurm_calls = open("slurm-calls.log", "a", buffering=1)


def _count(words):
    names = [w.rsplit("/", 1)[-1] for w in words]
    _slurm_calls.write(f"{{_time.time():.3f}} {{next((n for n in names if n in {commands!r}), 'other:' + names[0])}}\\n")
"""
EXTRA_OURS = """
from aifactory.slurm import runner as _runner
_run = _runner.SlurmRunner.run


async def _counted_run(self, argv, **kwargs):
    _count(argv)
    return await _run(self, argv, **kwargs)


_runner.SlurmRunner.run = _counted_run
{spawner}
"""
EXTRA_STOCK = """
from batchspawner import batchspawner as _bs
_run_command = _bs.BatchSpawnerBase.run_command


async def _counted_command(self, cmd, *args, **kwargs):
    _count(cmd.split())
    return await _run_command(self, cmd, *args, **kwargs)


_bs.BatchSpawnerBase.run_command = _counted_command
c.SlurmSpawner.batchspawner_singleuser_cmd = "{standin}"
c.SlurmSpawner.cmd = ["--batchspawner"]
c.SlurmSpawner.req_srun = ""
"""


def scale_site(path: Path, partition, memory: str) -> str:
    """The bench class site (benchlib.class_site) whose `class` profile runs the stand-in's environment."""
    class_site(path, partition, memory)
    data = yaml.safe_load(path.read_text())
    data["environments"].append({"name": "standin", "kind": "python", "path": str(STANDIN_ENV),
                                 "description": "bench_scale's stand-in server"})
    for profile in data["profiles"]:
        if profile["name"] == "class":
            profile["environment"] = "standin"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    load_site(str(path))  # validates
    return str(path)


def extra_config(kind: str, site_file: str, culler_token: str) -> str:
    text = EXTRA.format(version=jupyterhub.__version__, culler_token=culler_token,
                        culler_scopes=list(IDLE_CULLER_SCOPES), commands=SLURM_COMMANDS)
    if kind == "stock":
        return text + EXTRA_STOCK.format(standin=STANDIN)
    # The platform's own spawner settings (hub/config.py), the venv aside (BenchHub sets it).
    settings = hub_config(load_site(site_file), HubPaths(), "unused")["SiteSlurmSpawner"]
    spawner = "\n".join(f"c.SiteSlurmSpawner.{k} = {v!r}" for k, v in settings.items() if k != "venv")
    return text + EXTRA_OURS.format(spawner=spawner)


# --- measuring one hub ----------------------------------------------------------


@dataclass
class Usage:
    """CPU seconds and peak memory of a process over a phase."""

    pid: int
    cpu0: float = 0.0
    cpu: float = 0.0
    seconds: float = 0.0
    rss_peak: float = 0.0
    _t0: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _cpu(self) -> float:
        times = psutil.Process(self.pid).cpu_times()
        return times.user + times.system

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            self.rss_peak = max(self.rss_peak, psutil.Process(self.pid).memory_info().rss / 2**20)

    def __enter__(self) -> "Usage":
        self.cpu0, self._t0 = self._cpu(), time.monotonic()
        self.rss_peak = psutil.Process(self.pid).memory_info().rss / 2**20
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        try:
            self.cpu = self._cpu() - self.cpu0
        except psutil.Error:
            pass
        self.seconds = time.monotonic() - self._t0

    @property
    def percent(self) -> float:
        return 100 * self.cpu / self.seconds if self.seconds else 0.0


@dataclass
class Start:
    """How the start of every server went."""

    seconds: float = 0.0
    ready: int = 0
    pending: int = 0
    failed: int = 0
    refusals: Counter = field(default_factory=Counter)  # HTTP answers other than 201/202/429
    retried: int = 0  # 429s asked again
    broke: str = ""  # why the side did not hold the load, in words


def active_servers(hub: BenchHub) -> dict[str, dict]:
    """{user: their default server} for every user with a server ready or pending (pages of 200)."""
    found: dict[str, dict] = {}
    offset = 0
    while True:
        page = hub.api("GET", "/users", params={"state": "active", "offset": offset, "limit": 200}, timeout=120).json()
        found.update({u["name"]: u["servers"][""] for u in page if "" in u.get("servers", {})})
        offset += len(page)
        if len(page) < 200:
            return found


def start_all(hub: BenchHub, owners: list[str], options: dict, timeout: float) -> Start:
    """Ask for every owner's server from SPAWN_CLIENTS clients at once (a 429 is asked again RETRY_SECONDS later);
    watch until every server is ready, one failed, or `timeout`."""
    result, accepted, lock = Start(), set(), threading.Lock()
    begin = time.monotonic()
    done = threading.Event()

    def ask(name: str) -> None:
        while not done.is_set():
            try:
                answer = hub.spawn(name, "", options)
            except requests.RequestException as error:
                with lock:
                    result.refusals[type(error).__name__] += 1
                return
            if answer.status_code == 429:
                with lock:
                    result.retried += 1
                time.sleep(RETRY_SECONDS)
                continue
            with lock:
                if answer.status_code in (201, 202):
                    accepted.add(name)
                else:
                    result.refusals[f"{answer.status_code} {answer.text[:80]}"] += 1
            return

    pool = ThreadPoolExecutor(SPAWN_CLIENTS)
    futures = [pool.submit(ask, name) for name in owners]
    try:
        while True:
            time.sleep(3)
            try:
                servers = active_servers(hub)
            except requests.RequestException as error:
                print(f"  (listing servers failed: {error})")
                continue
            with lock:
                asked = set(accepted)
            result.ready = sum(bool(s.get("ready")) for s in servers.values())
            result.pending = sum(bool(s.get("pending")) for s in servers.values())
            result.failed = len(asked - set(servers)) + sum(result.refusals.values())
            elapsed = time.monotonic() - begin
            print(f"  {elapsed:5.0f} s: {result.ready} ready, {result.pending} pending, {result.failed} failed, "
                  f"{len(owners) - len(asked)} asked, no answer yet ({result.retried} 429s)", flush=True)
            if result.ready == len(owners):
                break
            if all(f.done() for f in futures) and not result.pending:
                result.broke = f"{result.failed} of {len(owners)} starts failed"
                break
            if elapsed > timeout:
                result.broke = (f"not all up after {timeout:.0f} s: {result.ready} ready, {result.pending} pending, "
                                f"{result.failed} failed")
                break
    finally:
        done.set()
        pool.shutdown(wait=True, cancel_futures=True)
    result.seconds = time.monotonic() - begin
    if result.failed and not result.broke:
        result.broke = f"{result.failed} of {len(owners)} starts failed"
    return result


def slurm_calls(hub: BenchHub, since: float, until: float) -> Counter:
    """Slurm commands the hub process ran between two epoch times, by command (from the counting hook)."""
    counts: Counter = Counter()
    path = Path(hub.state, "slurm-calls.log")
    for line in path.read_text().splitlines() if path.exists() else []:
        stamp, _, name = line.partition(" ")
        if since <= float(stamp) < until:
            counts[name] += 1
    return counts


def route_count(hub: BenchHub) -> int:
    """Routes in the proxy's table (the hub's /proxy API, which reads the proxy's)."""
    answer = requests.get(f"{hub.url}/hub/api/proxy", params={"limit": 1}, timeout=120,
                          headers={**hub.headers, "Accept": "application/jupyterhub-pagination+json"})
    answer.raise_for_status()
    body = answer.json()
    return body["_pagination"]["total"] if "_pagination" in body else len(body)


def culler_pass(hub: BenchHub, token: str) -> tuple[float, int]:
    """Seconds of one pass of the platform's idle culler (jupyterhub-idle-culler, the platform's arguments) over
    the hub's servers, and the servers it stopped (none: they are all fresh)."""
    from jupyterhub_idle_culler import cull_idle
    from tornado.httpclient import AsyncHTTPClient

    options = dict(word.removeprefix("--").split("=", 1) for word in idle_culler_command(load_site(), "python")
                   if word.startswith("--"))
    try:
        AsyncHTTPClient.configure("tornado.curl_httpclient.CurlAsyncHTTPClient")  # as the culler's own start does
    except ImportError:
        pass
    before = len([s for s in active_servers(hub).values() if s.get("ready")])
    flag = {"True": True, "False": False}
    start = time.monotonic()
    asyncio.run(cull_idle(url=hub.api_url, api_token=token, inactive_limit=int(options["timeout"]),
                          logger=__import__("logging").getLogger("bench_scale.culler"),
                          cull_users=flag[options["cull-users"]], remove_named_servers=flag[options["remove-named-servers"]],
                          max_age=int(options["max-age"]), concurrency=int(options["concurrency"]),
                          cull_admin_users=flag[options["cull-admin-users"]], api_page_size=int(options["api-page-size"]),
                          cull_named_servers=flag[options["cull-named-servers"]]))
    seconds = time.monotonic() - start
    after = len([s for s in active_servers(hub).values() if s.get("ready")])
    return seconds, before - after


def job_memory(owners: list[str]) -> tuple[float, float]:
    """(MiB per running server's job, its processes' unique memory: the server side, the slurmstepds), over
    the owners' running jobs: what one more server costs the nodes."""
    jobs = set(jobs_of(owners))
    uids = {pwd.getpwnam(n).pw_uid for n in owners}
    user_side = stepd = 0.0
    for proc in psutil.process_iter(["uids", "cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            if proc.info["uids"] and proc.info["uids"].real in uids:
                user_side += proc.memory_full_info().uss
            elif cmdline.startswith("slurmstepd: [") and cmdline[13:].split(".")[0].rstrip("]") in jobs:
                stepd += proc.memory_full_info().uss
        except (psutil.Error, TypeError):
            continue
    count = max(1, len(jobs))
    return user_side / count / 2**20, stepd / count / 2**20


def stop_all(hub: BenchHub, owners: list[str]) -> float:
    """Stop every owner's server through the API, SPAWN_CLIENTS at a time; seconds until none is left."""
    start = time.monotonic()
    with ThreadPoolExecutor(SPAWN_CLIENTS) as pool:
        list(pool.map(lambda name: hub.stop(name, ""), owners))
    deadline = time.monotonic() + 600
    while active_servers(hub) and time.monotonic() < deadline:
        time.sleep(2)
    return time.monotonic() - start


@dataclass
class Result:
    """Everything measured for one side at one size."""

    kind: str
    size: int
    users_seconds: float = 0.0
    start: Start = field(default_factory=Start)
    start_usage: Usage | None = None
    steady_usage: Usage | None = None
    proxy_cpu: float = 0.0
    burst: dict[str, list[float]] = field(default_factory=dict)
    steady: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0
    routes: int = 0
    calls_start: Counter = field(default_factory=Counter)
    calls_steady: Counter = field(default_factory=Counter)
    steady_seconds: float = 0.0
    culler_seconds: float = float("nan")
    culled: int = 0
    job_mib: tuple[float, float] = (float("nan"), float("nan"))
    stop_seconds: float = float("nan")


def targets(hub: BenchHub, names: list[str]) -> dict[str, list[tuple[str, dict]]]:
    """The background: a user's own model by their token, and users' models by the service token (names in turn)."""
    own = []
    for name in names[:TOKEN_USERS]:
        token = hub.api("POST", f"/users/{name}/tokens", json={"expires_in": 7200}).json()["token"]
        own.append((f"{hub.url}/hub/api/user", {"Authorization": f"token {token}"}))
    step = max(1, len(names) // 500)
    return {"GET /user": own, "GET /users/<name>": [(f"{hub.url}/hub/api/users/{n}", hub.headers)
                                                    for n in names[::step]]}


def open_hub(kind: str, names: list[str], site_file: str, memory: str) -> tuple[BenchHub, str, float, dict]:
    """A started hub of `kind` with every user in it: (hub, culler token, seconds to create the users, the
    background's targets). The caller exits the hub."""
    culler_token = secrets.token_hex(16)
    hub = BenchHub(kind, PORTS[kind], partition=PARTITION, memory=memory, site_file=site_file,
                   extra=extra_config(kind, site_file, culler_token))
    hub.__enter__()
    try:
        print(f"{hub.label}: hub up ({hub.state}); creating {len(names)} users", flush=True)
        seconds = hub.add_users(names)
        return hub, culler_token, seconds, targets(hub, names)
    except BaseException as error:
        hub.__exit__(type(error))
        raise


def measure(hub: BenchHub, culler_token: str, asked: dict, size: int, owners: list[str], args) -> Result:
    """Start `size` servers in `hub`, measure the start and the steady state, stop them."""
    kind = hub.kind
    result = Result(kind, size)
    proxy_pid = int(Path(hub.state, "proxy.pid").read_text())
    proxy_cpu0 = sum(psutil.Process(proxy_pid).cpu_times()[:2])
    record = args.profile / f"{kind}-{size}.txt" if args.profile else None
    t0 = time.time()
    with Profile(hub.proc.pid, record), Usage(hub.proc.pid) as usage, LatencySampler(asked, hub) as burst:
        result.start = start_all(hub, owners, {} if kind == "stock" else {"profile": "class"}, args.start_timeout)
    result.start_usage, result.burst, result.errors = usage, burst.seconds, burst.errors
    t1 = time.time()
    result.calls_start = slurm_calls(hub, t0, t1)
    if record is not None and record.exists():
        table(f"py-spy, {hub.label}, start of {size} servers (% of samples; idle waits left out)",
              ["frame", "on stack %", "on top %"],
              [[f[:110], f"{incl:.1f}", f"{top:.1f}"] for f, incl, top in top_frames(record)])
    if result.start.ready:
        t2 = time.time()
        with Usage(hub.proc.pid) as usage, LatencySampler(asked, hub) as steady:
            time.sleep(args.steady)
        t3 = time.time()
        result.steady_usage, result.steady, result.errors = usage, steady.seconds, result.errors + steady.errors
        result.steady_seconds = t3 - t2
        result.calls_steady = slurm_calls(hub, t2, t3)
        result.routes = route_count(hub)
        result.job_mib = job_memory(owners)
        result.culler_seconds, result.culled = culler_pass(hub, culler_token)
    result.proxy_cpu = sum(psutil.Process(proxy_pid).cpu_times()[:2]) - proxy_cpu0
    result.stop_seconds = stop_all(hub, owners)
    if args.logs:
        for name in ("hub.log", "slurm-calls.log"):
            if Path(hub.state, name).exists():
                shutil.copy(Path(hub.state, name), args.logs / f"{kind}-{size}-{name}")
    broke = f"; {result.start.broke}" if result.start.broke else ""
    print(f"{hub.label}, {size} servers: start {result.start.seconds:.0f} s ({result.start.ready} ready, "
          f"{result.start.failed} failed{broke}), stop {result.stop_seconds:.0f} s", flush=True)
    cancel_jobs_of(owners, timeout=600)
    return result


# --- the report -------------------------------------------------------------------


def slurm_only(calls: Counter) -> Counter:
    """The Slurm commands of `calls` (the spawner's `id` runs through the same runner but is not one)."""
    return Counter({name: n for name, n in calls.items() if not name.startswith("other:")})


def per_interval(calls: Counter, seconds: float) -> str:
    if not seconds:
        return "-"
    total = sum(slurm_only(calls).values()) * POLL_SECONDS / seconds
    detail = ", ".join(f"{name} {n * POLL_SECONDS / seconds:.1f}" for name, n in calls.most_common())
    return f"{total:.1f} ({detail})" if detail else "0"


def ratio(ours: float, stock: float, digits: int = 2) -> str:
    if not stock or math.isnan(stock) or math.isnan(ours):
        return "-"
    return f"{ours / stock:.{digits}f}x"


def report(results: dict[tuple[str, int], Result], sizes: list[int], sides: list[str], users: int,
           memory: str) -> None:
    for size in sizes:
        here = {kind: results[kind, size] for kind in sides if (kind, size) in results}
        if not here:
            continue
        rows = []

        def row(name: str, value, number=None) -> None:
            cells = [value(r) for r in here.values()]
            if number is not None and len(here) == 2:
                o, s = number(here["ours"]), number(here["stock"])
                cells.append(ratio(o, s))
            elif len(here) == 2:
                cells.append("")
            rows.append([name, *cells])

        row(f"create the {users} users in the hub, one POST (s)", lambda r: f"{r.users_seconds:.1f}",
            lambda r: r.users_seconds)
        row("start all: seconds until every server is ready", lambda r: f"{r.start.seconds:.0f}" if not r.start.broke
            else f"{r.start.seconds:.0f} (broke)", lambda r: r.start.seconds if not r.start.broke else float("nan"))
        row("  ready / failed / still pending", lambda r: f"{r.start.ready} / {r.start.failed} / {r.start.pending}")
        row("  429s (concurrent_spawn_limit) asked again", lambda r: str(r.start.retried))
        row("  how it broke", lambda r: r.start.broke or "-")
        row("  spawn requests refused", lambda r: "; ".join(f"{n}x {why}" for why, n in r.start.refusals.items()) or "-")
        row("hub CPU during the start (s)", lambda r: f"{r.start_usage.cpu:.0f}" if r.start_usage else "-",
            lambda r: r.start_usage.cpu if r.start_usage else float("nan"))
        row("hub CPU in the steady state (% of a core)",
            lambda r: f"{r.steady_usage.percent:.0f}" if r.steady_usage else "-",
            lambda r: r.steady_usage.percent if r.steady_usage else float("nan"))
        row("hub RSS peak (MiB)", lambda r: f"{max(u.rss_peak for u in (r.start_usage, r.steady_usage) if u):.0f}",
            lambda r: max(u.rss_peak for u in (r.start_usage, r.steady_usage) if u))
        row("proxy CPU, whole run (s)", lambda r: f"{r.proxy_cpu:.0f}", lambda r: r.proxy_cpu)
        row("API p50 / p95 / p99 during the start (ms)", lambda r: spread([s for v in r.burst.values() for s in v]))
        row("API p50 / p95 / p99, steady, all servers up (ms)",
            lambda r: spread([s for v in r.steady.values() for s in v]) if r.steady else "-")
        for endpoint in next(iter(here.values())).burst:
            row(f"  steady {endpoint}", lambda r, e=endpoint: spread(r.steady.get(e, [])) if r.steady else "-")
        row("  requests served in the steady state / errors", lambda r: f"{sum(len(v) for v in r.steady.values())} / "
            f"{r.errors}")
        row("proxy routes", lambda r: str(r.routes) if r.routes else "-")
        row(f"Slurm commands per {POLL_SECONDS:.0f} s, steady", lambda r: per_interval(r.calls_steady, r.steady_seconds),
            lambda r: sum(slurm_only(r.calls_steady).values()) / r.steady_seconds if r.steady_seconds else float("nan"))
        row("Slurm commands during the start", lambda r: f"{sum(slurm_only(r.calls_start).values())} ("
            + ", ".join(f"{n} {c}" for n, c in r.calls_start.most_common()) + ")",
            lambda r: sum(slurm_only(r.calls_start).values()) or float("nan"))
        row("culler pass over all servers (s)", lambda r: f"{r.culler_seconds:.2f} ({r.culled} stopped)"
            if not math.isnan(r.culler_seconds) else "-", lambda r: r.culler_seconds)
        row("a server's job on its node: its processes / slurmstepd (MiB, unique)",
            lambda r: " / ".join(f"{x:.1f}" for x in r.job_mib))
        row("stop all through the API (s)", lambda r: f"{r.stop_seconds:.0f}", lambda r: r.stop_seconds)
        header = ["", *(LABELS[kind] for kind in here), *(["ours / stock"] if len(here) == 2 else [])]
        table(f"Scale: {size} servers, {users} hub users (1 CPU, {memory} each, stand-in server; "
              "one hub, real proxy, real Slurm)", header, rows)
        if len(here) == 2 and here["ours"].steady and here["stock"].steady:
            o = [s for v in here["ours"].steady.values() for s in v]
            s = [s for v in here["stock"].steady.values() for s in v]
            print(f"  steady API ratio ours / stock (p50 / p95 / p99): {ratios(o, s)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="1000", help="servers (or a ramp: 50,200,1000)")
    parser.add_argument("--users", type=int, default=5000, help="hub users (the first --servers own the servers)")
    parser.add_argument("--memory", default="16M", help="memory each server's job asks for (its cgroup's limit)")
    parser.add_argument("--steady", type=float, default=60, help="seconds measured with every server up")
    parser.add_argument("--start-timeout", type=float, default=900, help="longest wait for every server, seconds")
    parser.add_argument("--sides", default="stock,ours", help="which hubs, in order")
    parser.add_argument("--profile", type=Path, help="folder for py-spy's record of each hub during the start")
    parser.add_argument("--logs", type=Path, help="folder for each hub's log and its Slurm command log")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (it adds users and a partition, and the hubs submit jobs as the users)")
    sizes = sorted(int(s) for s in args.servers.split(",") if s)
    sides = [side for side in args.sides.split(",") if side]
    if not set(sides) <= {"stock", "ours"} or not sizes:
        sys.exit("--sides: stock, ours or both; --servers: one size or more")
    if max(sizes) > args.users:
        sys.exit("--users must be at least the largest --servers")
    for folder in (args.profile, args.logs):
        if folder:
            folder.mkdir(parents=True, exist_ok=True)
    cleanup_on_signals()
    names = bench_names(args.users, PREFIX)
    owners = names[:max(sizes)]
    cores = CORES_PER_NODE * len(partition_nodes(OVER))
    results: dict[tuple[str, int], Result] = {}
    broken: dict[str, str] = {}
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        os.chmod(tmp, 0o755)
        share = max(4, math.ceil(max(sizes) * 1.3 / cores))
        with bench_partition(PARTITION, max_cpus=cores, oversubscribe=share, over=OVER) as partition:
            made = time.monotonic()
            with bench_users(owners):
                print(f"{len(owners)} Unix users with their associations: {time.monotonic() - made:.0f} s", flush=True)
                site_file = scale_site(Path(tmp, "site.yaml"), partition, args.memory)
                with ExitStack() as hubs:  # both hubs live through the ramp: 5,000 users take minutes to create
                    opened = {}
                    for kind in sides:
                        hub, token, seconds, asked = open_hub(kind, names, site_file, args.memory)
                        hubs.push(hub)  # its __exit__: the log is kept after an error
                        opened[kind] = hub, token, seconds, asked
                    for size in sizes:
                        for kind in sides:
                            if kind in broken:
                                print(f"{kind}: not run at {size} (broke at {broken[kind]})")
                                continue
                            hub, token, seconds, asked = opened[kind]
                            try:
                                result = measure(hub, token, asked, size, names[:size], args)
                            except Exception as error:  # keep what the other sizes and side measured
                                traceback.print_exc()
                                result = Result(kind, size, start=Start(broke=f"the benchmark failed: {error!r}"))
                                cancel_jobs_of(names[:size], timeout=600)
                            result.users_seconds = seconds
                            results[kind, size] = result
                            if result.start.broke:
                                broken[kind] = f"{size} servers: {result.start.broke}"
                        report(results, [size], sides, args.users, args.memory)
                removing = time.monotonic()
            print(f"users removed: {time.monotonic() - removing:.0f} s", flush=True)
    print("\nAll sizes:")
    report(results, sizes, sides, args.users, args.memory)
    for kind, why in broken.items():
        print(f"{kind} broke at {why}")
    print(f"whole run: {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
