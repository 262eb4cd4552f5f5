"""Shared pieces of the benchmarks: throw-away hubs, temporary bench users, a bench partition, latency sampling.

Everything that changes the machine is a context manager that undoes its change
on exit, also after an error or Ctrl-C (`cleanup_on_signals` turns SIGTERM and
SIGHUP into KeyboardInterrupt so the same exits run). Not a test module.
"""

from __future__ import annotations

import ctypes
import grp
import itertools
import math
import os
import pwd
import secrets
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psutil
import requests
import yaml

from aifactory.hub.localcluster import accounts
from aifactory.site import INSTALLED_SITE, load_site
from aifactory.site.load import read_yaml
from aifactory.site.schema import User

PREFIX = Path(os.environ.get("AIFACTORY_PREFIX", "/opt/aifactory"))
VENV = PREFIX / "venv"
PROXY = PREFIX / "node/node_modules/.bin/configurable-http-proxy"
BENCH_ACCOUNT = "project_465000002"  # the demo's course project
Argv = list[str]

COMMON = """
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "{hub_ip}"
c.JupyterHub.hub_port = {port} + 1
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api}"
c.ConfigurableHTTPProxy.command = ["{proxy}"]
c.ConfigurableHTTPProxy.pid_file = "{state}/proxy.pid"
c.JupyterHub.db_url = "sqlite:///{state}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{state}/cookie_secret"
c.JupyterHub.pid_file = "{state}/hub.pid"
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = "{login_secret}"  # nobody's: another user on the machine cannot log in
c.Authenticator.allow_all = True
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
c.SlurmSpawner.req_partition = "{partition}"
c.SlurmSpawner.req_nprocs = "1"
c.SlurmSpawner.req_memory = "{memory}"
c.SlurmSpawner.req_runtime = "1:00:00"
c.SlurmSpawner.batchspawner_singleuser_cmd = "{venv}/bin/batchspawner-singleuser"
c.SlurmSpawner.cmd = ["{venv}/bin/jupyterhub-singleuser"]
"""

OURS = """
from aifactory.hub.loop_costs import logging_config, use_wal
from aifactory.spawners.port_api import handlers
use_wal()  # as the platform's hub (hub/jupyterhub_config.py)
c.JupyterHub.logging_config = logging_config()
c.JupyterHub.spawner_class = "aifactory.spawners.slurm.SiteSlurmSpawner"
c.JupyterHub.extra_handlers = handlers
c.SiteSlurmSpawner.venv = "{venv}"
c.SiteSlurmSpawner.slurm_poll_interval = 10.0
c.SiteSlurmSpawner.site_file = "{site_file}"
"""

LABELS = {"stock": "stock batchspawner.SlurmSpawner", "ours": "aifactory SiteSlurmSpawner"}


def run(argv: Argv, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)


def cleanup_on_signals() -> None:
    """SIGTERM and SIGHUP raise KeyboardInterrupt, so every context manager's cleanup runs."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)


# --- throw-away hubs ---------------------------------------------------------


class BenchHub:
    """A JupyterHub on `port` (+1 hub, +2 proxy API) with its own state directory, a service token and a shared
    password nobody knows (benchmarks use the API; bench_login sets PAM): no other user of the machine logs in.

    kind "stock" runs batchspawner.SlurmSpawner in `partition` with `memory`; kind
    "ours" runs SiteSlurmSpawner with `site_file` (empty: the installed site);
    `extra` (config lines) comes last, e.g. another authenticator.
    The public side (the proxy, which this client uses) is on loopback; the hub's
    API listens on the site's `hub_api_ip`, as the platform's hub does, because the
    servers run on compute nodes that cannot reach the login node's loopback.
    """

    def __init__(self, kind: str, port: int, partition: str = "standard", memory: str = "1G", site_file: str = "",
                 extra: str = ""):
        self.kind, self.port = kind, port
        self.token = secrets.token_hex(16)
        self.state = tempfile.mkdtemp(prefix=f"bench-hub-{kind}-")
        os.chmod(self.state, 0o755)
        self.hub_ip = load_site(site_file or None).hub_api_ip()
        config = COMMON.format(port=port, hub_ip=self.hub_ip, proxy_api=port + 2, proxy=PROXY, state=self.state,
                               token=self.token, login_secret=secrets.token_urlsafe(24))
        config += (STOCK if kind == "stock" else OURS).format(venv=VENV, partition=partition, memory=memory,
                                                              site_file=site_file)
        # The folder stays open (the stock spawner's jobs start in the hub's working directory); the config, with
        # the service token and the login secret, is root's alone.
        Path(self.state, "config.py").touch(mode=0o600)
        Path(self.state, "config.py").write_text(config + extra)
        self.url = f"http://127.0.0.1:{port}"
        self.api_url = f"http://{self.hub_ip}:{port + 1}/hub/api"  # where servers reach the hub
        self.headers = {"Authorization": f"token {self.token}"}
        self.proc: subprocess.Popen | None = None

    @property
    def label(self) -> str:
        return LABELS[self.kind]

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
                self.__exit__(RuntimeError)
                raise RuntimeError(f"bench hub {self.kind} did not start; see {self.state}/hub.log")
            time.sleep(0.3)

    def __exit__(self, exc_type=None, *rest) -> None:
        """Stop every server through the API, then the hub (which stops what is left); keep the log on failure."""
        try:
            self.stop_all()
        except requests.RequestException:
            pass
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if exc_type is None:
            shutil.rmtree(self.state, ignore_errors=True)
        else:
            print(f"(bench hub {self.kind}: log kept in {self.state}/hub.log)")

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 300)
        return requests.request(method, f"{self.url}/hub/api{path}", headers=self.headers, **kwargs)

    def users(self) -> list[dict]:
        """Every user of the hub with their servers (follows the API's pages)."""
        found: list[dict] = []
        while True:
            page = self.api("GET", "/users", params={"offset": len(found), "limit": 200}, timeout=30).json()
            found += page
            if len(page) < 200:
                return found

    def add_users(self, names: list[str]) -> float:
        """Create `names` in the hub in one request; its seconds."""
        start = time.monotonic()
        self.api("POST", "/users", json={"usernames": names}).raise_for_status()
        return time.monotonic() - start

    def rss_mib(self) -> float:
        """Resident memory of the hub process (not its proxy), MiB."""
        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def spawn(self, user: str, name: str, options: dict) -> requests.Response:
        path = f"/users/{user}/servers/{name}" if name else f"/users/{user}/server"
        return self.api("POST", path, json=options)

    def server(self, user: str, name: str) -> dict | None:
        return self.api("GET", f"/users/{user}").json()["servers"].get(name)

    def spawn_and_wait(self, user: str, name: str, options: dict, timeout: float = 300) -> float | None:
        """Seconds from the POST to ready, or None if the server failed."""
        start = time.monotonic()
        if self.spawn(user, name, options).status_code not in (201, 202):
            return None
        while time.monotonic() - start < timeout:
            server = self.server(user, name)
            if server and server["ready"]:
                return time.monotonic() - start
            if not server or (not server["pending"] and not server["ready"]):
                return None
            time.sleep(0.1)
        return None

    def stop(self, user: str, name: str) -> None:
        path = f"/users/{user}/servers/{name}" if name else f"/users/{user}/server"
        self.api("DELETE", path, json={"remove": True} if name else None)

    def stop_all(self) -> None:
        """Stop every server of every user, several at a time."""
        servers = [(u["name"], name) for u in self.users() for name in u.get("servers", {})]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda s: self.stop(*s), servers))


# --- temporary Unix users with Slurm associations ---------------------------


def bench_names(count: int, prefix: str = "bench") -> list[str]:
    return [f"{prefix}{i:03d}" for i in range(1, count + 1)]


def association_adds(site, names: list[str], account: str, existing: accounts.Associations) -> list[Argv]:
    """The site's own sacctmgr calls for `names` as members of `account`, only those about them.

    `accounts.association_commands` also prunes members the given site does not
    list; those calls (and the account's allocation) are left out, so nobody else
    is touched.
    """
    project = site.projects[[p.name for p in site.projects].index(account)].model_copy(update={"members": names})
    calls = accounts.association_commands(site.model_copy(update={"projects": [project]}), existing)
    ours = set(names) | {f"name={n}" for n in names}
    return [argv for argv in calls if "delete" not in argv and ours & set(argv)]


def batched(calls: list[Argv], names: list[str], size: int = 200) -> list[Argv]:
    """The same sacctmgr call for many users as one call per `size` users ("bob" or "name=bob" becomes a list):
    one call each takes minutes for a thousand users. Calls about none of `names` stay as they are."""
    merged: dict[tuple, list[str]] = {}
    for argv in calls:
        at = next((i for i, word in enumerate(argv) if word.removeprefix("name=") in names), None)
        if at is None:
            merged[(tuple(argv), False, ())] = []
            continue
        key = (tuple(argv[:at]), argv[at].startswith("name="), tuple(argv[at + 1:]))
        merged.setdefault(key, []).append(argv[at].removeprefix("name="))
    out: list[Argv] = []
    for (head, named, tail), users in merged.items():
        if not users:
            out.append(list(head))
        for i in range(0, len(users), size):
            word = ",".join(users[i:i + size])
            out.append([*head, f"name={word}" if named else word, *tail])
    return out


def add_unix_users(names: list[str]) -> None:
    """Accounts `names` (a group of their own, a home, a locked password) in one `newusers` call: useradd forks
    nscd and sss_cache and takes about half a second a user here, too slow for a thousand."""
    known = {p.pw_name for p in pwd.getpwall()}
    missing = [n for n in names if n not in known]
    if missing:  # newusers sets a password through PAM: a random one, locked right after
        subprocess.run(["newusers"], input="".join(f"{n}:{secrets.token_urlsafe(24)}::::/home/{n}:/bin/bash\n"
                                                   for n in missing), text=True, check=True, capture_output=True,
                       timeout=900)
        subprocess.run(["chpasswd", "-e"], input="".join(f"{n}:!\n" for n in missing), text=True, check=True,
                       capture_output=True, timeout=300)


ACCOUNT_FILES = ("/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow", "/etc/subuid", "/etc/subgid")


def remove_unix_users(names: list[str]) -> None:
    """userdel --remove for many users at once (userdel takes about a second a user here): their lines leave the
    account files under the lock every shadow tool takes (lckpwdf), with their own groups and group memberships;
    then their homes."""
    gone = set(names)
    homes = [p.pw_dir for p in pwd.getpwall() if p.pw_name in gone]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.lckpwdf() != 0:
        raise OSError(ctypes.get_errno(), "lckpwdf: the account files stay locked by another tool")
    try:
        for path in ACCOUNT_FILES:
            if not os.path.exists(path):
                continue
            kept = []
            for line in Path(path).read_text().splitlines():
                fields = line.split(":")
                if fields[0] in gone:
                    continue
                if path in ("/etc/group", "/etc/gshadow") and len(fields) > 3:
                    fields[-1] = ",".join(m for m in fields[-1].split(",") if m and m not in gone)
                kept.append(":".join(fields))
            stat = os.stat(path)
            temporary = f"{path}.bench"
            Path(temporary).write_text("".join(f"{line}\n" for line in kept))
            os.chown(temporary, stat.st_uid, stat.st_gid)
            os.chmod(temporary, stat.st_mode & 0o7777)
            os.replace(temporary, path)
    finally:
        libc.ulckpwdf()
    for home in homes:
        if os.path.basename(home) in gone:  # never a shared folder given as a home
            shutil.rmtree(home, ignore_errors=True)


def removal_commands(names: list[str]) -> list[Argv]:
    """Remove the bench users' associations (their accounts go with `remove_unix_users`)."""
    return [["sacctmgr", "-i", "delete", "user", "where", f"name={','.join(names[i:i + 200])}"]
            for i in range(0, len(names), 200)]


def jobs_of(names: list[str]) -> list[str]:
    """Job ids in the queue of `names` (one squeue per 200 users)."""
    return [job for i in range(0, len(names), 200) for job in
            run(["squeue", "-h", "-u", ",".join(names[i:i + 200]), "-o", "%i"], check=False).stdout.split()]


def cancel_jobs_of(names: list[str], timeout: float = 90) -> None:
    """scancel every job of `names` and wait until the queue has none left."""
    jobs = jobs_of(names)
    for i in range(0, len(jobs), 500):
        run(["scancel", *jobs[i:i + 500]], check=False)
    deadline = time.monotonic() + timeout
    while jobs_of(names):
        if time.monotonic() > deadline:
            print(f"(jobs of bench users still in the queue after {timeout:.0f} s)")
            return
        time.sleep(1)


@contextmanager
def bench_users(names: list[str], account: str = BENCH_ACCOUNT, groups: tuple[str, ...] = ()) -> Iterator[list[str]]:
    """Unix accounts `names` (members of the existing Unix `groups`) with a Slurm association to `account`,
    removed (with their jobs) on exit.

    Names are reserved for benchmarks: accounts left by a killed run are reused and removed.
    """
    site = load_site()
    bench = site.model_copy(update={"users": [User(name=n, groups=list(groups)) for n in names], "groups": []})
    try:
        add_unix_users(names)
        existing_groups = {g.gr_name for g in grp.getgrall()}
        for argv in accounts.user_commands(bench, {p.pw_name for p in pwd.getpwall()}, existing_groups):
            run(argv)
        for name in names:  # users of a shared machine must not read each other's files
            os.chmod(pwd.getpwnam(name).pw_dir, 0o700)
        shown = run(["sacctmgr", "-nP", "show", "assoc", f"cluster={site.cluster.name}", "format=account,user"]).stdout
        for argv in batched(association_adds(site, names, account, accounts.parse_associations(shown)), names):
            proc = run(argv, check=False)
            if proc.returncode != 0 and "Nothing" not in proc.stdout + proc.stderr:
                raise RuntimeError(f"{' '.join(argv)}: {(proc.stderr or proc.stdout).strip()}")
        yield names
    finally:
        existing = [n for n in names if n in {p.pw_name for p in pwd.getpwall()}]
        if existing:
            cancel_jobs_of(existing)
            for argv in removal_commands(existing):
                run(argv, check=False)
            remove_unix_users(existing)


def set_passwords(names: list[str]) -> dict[str, str]:
    """A random password for each of `names` (bench users), set through chpasswd's stdin, never argv; {name: password}."""
    passwords = {name: secrets.token_urlsafe(12) for name in names}
    subprocess.run(["chpasswd"], input="".join(f"{n}:{p}\n" for n, p in passwords.items()), text=True, check=True,
                   capture_output=True, timeout=300)
    return passwords


# --- a bench-only partition and site ------------------------------------------


@dataclass(frozen=True)
class BenchPartition:
    """A partition made for a run: its name, the nodes it spans and the cores it may use on each."""

    name: str
    nodes: list[str]
    cpus_per_node: int


def partition_nodes(partition: str) -> list[str]:
    """The nodes of an existing Slurm partition, by name (sinfo's one line per node)."""
    nodes = sorted(set(run(["sinfo", "-h", "-N", "-p", partition, "-o", "%N"]).stdout.split()))
    if not nodes:
        raise RuntimeError(f"Slurm partition {partition!r} has no nodes")
    return nodes


@contextmanager
def bench_partition(name: str, max_cpus: int, oversubscribe: int, max_time: str = "1:00:00",
                    over: str = "standard") -> Iterator[BenchPartition]:
    """A Slurm partition over every node of partition `over`, made at run time (`scontrol create`), deleted on exit.

    slurm.conf and the installed site stay as they are. `oversubscribe` jobs may share
    a core (OverSubscribe=FORCE:n) and the partition holds at most `max_cpus` cores,
    split evenly over its nodes (MaxCPUsPerNode, rounded up), so a class of 1-CPU servers fits
    without taking the cores other jobs need. Like the site's partitions it spreads
    jobs to the least loaded node (LLN). Memory is never shared: every server still
    holds what it asked for.
    """
    nodes = partition_nodes(over)
    per_node = math.ceil(max_cpus / len(nodes))
    run(["scontrol", "delete", f"PartitionName={name}"], check=False)  # left by a killed run
    run(["scontrol", "create", f"PartitionName={name}", f"Nodes={','.join(nodes)}", f"MaxTime={max_time}",
         f"MaxCPUsPerNode={per_node}", f"OverSubscribe=FORCE:{oversubscribe}", "LLN=YES", "State=UP"])
    try:
        yield BenchPartition(name, nodes, per_node)
    finally:
        jobs = run(["squeue", "-h", "-p", name, "-o", "%i"], check=False).stdout.split()
        if jobs:
            run(["scancel", *jobs], check=False)
        deadline = time.monotonic() + 60
        while run(["squeue", "-h", "-p", name, "-o", "%i"], check=False).stdout.strip() and time.monotonic() < deadline:
            time.sleep(1)
        run(["scontrol", "delete", f"PartitionName={name}"], check=False)


def class_site(path: Path, partition: BenchPartition, memory: str) -> str:
    """The installed site plus `partition` and a 1-CPU `class` profile open to everyone; written to `path`.

    The partition declares the nodes it lends from another one, so a local cluster's
    totals (local.cpus, local.memory, which every partition's nodes must fit) grow
    by as much: nothing here is a new machine.
    """
    data = read_yaml(Path(INSTALLED_SITE).read_text())
    node_mib = min(int(node_fields(n)["RealMemory"]) for n in partition.nodes)
    local = load_site(INSTALLED_SITE).local
    if local is not None:
        data["local"]["cpus"] = local.cpus + len(partition.nodes) * partition.cpus_per_node
        data["local"]["memory"] = f"{local.memory + len(partition.nodes) * node_mib}M"
    data["partitions"].append({"name": partition.name, "description": "Benchmark class partition (made at run time)",
                               "nodes": len(partition.nodes), "cpus_per_node": partition.cpus_per_node,
                               "memory_per_node": f"{node_mib}M", "max_walltime": "1:00:00"})
    data["profiles"].append({"name": "class", "title": "Class notebook", "description": "One CPU, small memory",
                             "partition": partition.name, "environment": "aifactory",
                             "cpus": {"min": 1, "max": 1, "default": 1},
                             "memory": {"min": memory, "max": memory, "default": memory},
                             "walltime": {"max": "1:00:00", "default": "1:00:00"}})
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    os.chmod(path, 0o644)
    load_site(str(path))  # validates
    return str(path)


def node_fields(node: str) -> dict[str, str]:
    """One node's `scontrol show node -o` line as {field: value}."""
    words = run(["scontrol", "show", "node", "-o", node]).stdout.split()
    return dict(w.split("=", 1) for w in words if "=" in w)


UNUSABLE = ("DOWN", "DRAIN", "FAIL", "NOT_RESPONDING", "POWER")  # states in which a node takes no new job


def node_free(nodes: list[str]) -> dict[str, tuple[int, int]]:
    """{node: (free CPUs, free MiB)} as Slurm allocates them, for each of `nodes`; (0, 0) for one that takes no job."""
    free = {}
    for node in nodes:
        fields = node_fields(node)
        if any(word in fields.get("State", "") for word in UNUSABLE):
            free[node] = (0, 0)
        else:
            free[node] = (int(fields["CPUTot"]) - int(fields["CPUAlloc"]),
                          int(fields["RealMemory"]) - int(fields.get("AllocMem", 0)))
    return free


def wait_for_room(partition: BenchPartition, cpus: int, mib: int, timeout: float) -> bool:
    """Wait until each node of `partition` has its even share of `cpus` and `mib` free (other people's tests share
    them; LLN spreads the servers evenly)."""
    share_cpus, share_mib = math.ceil(cpus / len(partition.nodes)), math.ceil(mib / len(partition.nodes))
    deadline = time.monotonic() + timeout
    while True:
        free = node_free(partition.nodes)
        if all(c >= share_cpus and m >= share_mib for c, m in free.values()):
            return True
        if time.monotonic() > deadline:
            busy = ", ".join(f"{n}: {c} CPUs and {m} MiB" for n, (c, m) in free.items())
            print(f"(nodes still busy, free: {busy}; each needs {share_cpus} CPUs and {share_mib} MiB; "
                  "measuring anyway)")
            return False
        time.sleep(2)


# --- measuring ----------------------------------------------------------------


def job_times(partition: str, since: float) -> dict[str, tuple[float, float]]:
    """{user: (submit, start)} in epoch seconds for the jobs of `partition` submitted after `since`, from accounting.

    Other people's jobs share the nodes: a long wait between submit and start means
    a server waited for them, not for a spawner. A user's last job wins.
    """
    def epoch(text: str) -> float:
        return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))

    begin = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(since - 1))
    out = run(["sacct", "-X", "-n", "-P", "-a", "-r", partition, "-S", begin, "-o", "User,Submit,Start"],
              check=False).stdout
    times = {}
    for line in out.splitlines():
        user, submit, start = (line.split("|") + ["", ""])[:3]
        if submit[:1].isdigit() and start[:1].isdigit():
            times[user] = (epoch(submit), epoch(start))
    return times


class LatencySampler:
    """One thread per label that GETs the label's (url, headers) in turn until stopped; also samples the hub's RSS."""

    def __init__(self, targets: dict[str, list[tuple[str, dict]]], hub: BenchHub, rss_interval: float = 0.5):
        self.targets, self.hub, self.rss_interval = targets, hub, rss_interval
        self.seconds: dict[str, list[float]] = {label: [] for label in targets}
        self.errors = 0
        self.rss: list[float] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _request_loop(self, label: str) -> None:
        session = requests.Session()
        for url, headers in itertools.cycle(self.targets[label]):
            if self._stop.is_set():
                return
            start = time.monotonic()
            try:
                ok = session.get(url, headers=headers, timeout=60).status_code == 200
            except requests.RequestException:
                ok = False
            if ok:
                self.seconds[label].append(time.monotonic() - start)
            else:
                self.errors += 1

    def _rss_loop(self) -> None:
        while not self._stop.wait(self.rss_interval):
            self.rss.append(self.hub.rss_mib())

    def __enter__(self) -> "LatencySampler":
        self.rss.append(self.hub.rss_mib())
        self._threads = [threading.Thread(target=self._request_loop, args=(label,), daemon=True)
                         for label in self.targets]
        self._threads.append(threading.Thread(target=self._rss_loop, daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(65)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if q < 100 else max(values)


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    print(f"\n{title}")
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  " + "  ".join(str(x).ljust(w) for x, w in zip(row, widths)))


# --- latency and profiles, as the hub benchmarks print them ---------------------
def ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.0f}" if values else "-"


QUANTILES = (50, 95, 99)
LOOP_FRAME = "run_forever (asyncio/base_events.py)"


def spread(values: list[float]) -> str:
    """'p50 / p95 / p99' in ms."""
    return " / ".join(ms(values, q) for q in QUANTILES)


def ratios(ours: list[float], stock: list[float]) -> str:
    """ours / stock for each of p50, p95, p99."""
    if not ours or not stock:
        return "-"
    return " / ".join(f"{percentile(ours, q) / percentile(stock, q):.2f}" for q in QUANTILES) + "x"


class Profile:
    """py-spy recording a hub process (collapsed stacks in `path`) while in the `with` block."""

    def __init__(self, pid: int, path: Path | None, rate: int = 100):
        self.pid, self.path, self.rate = pid, path, rate
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Profile":
        if self.path is not None:
            self.proc = subprocess.Popen([str(VENV / "bin/py-spy"), "record", "--pid", str(self.pid), "--rate",
                                          str(self.rate), "--format", "raw", "--nolineno", "--output", str(self.path)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def top_frames(path: Path, count: int = 15, by_top: bool = False) -> list[tuple[str, float, float]]:
    """(frame, % of samples with it on the stack, % with it on top) of the hub's event loop thread, from py-spy's
    collapsed stacks; the loop's own frames (on every stack) left out. Other threads (a DNS library's idle
    helper, the child watchers) are not the loop."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit() or LOOP_FRAME not in stack:
            continue
        frames = stack.split(";")
        total += int(n)
        own[frames[-1]] += int(n)
        for frame in set(frames):
            inclusive[frame] += int(n)
    share = own if by_top else inclusive
    ranked = sorted((f for f in inclusive if inclusive[f] < 0.99 * total), key=lambda f: (-share[f], f))
    return [(f, 100 * inclusive[f] / total, 100 * own[f] / total) for f in ranked[:count]]
