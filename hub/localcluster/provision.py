"""`aifactory cluster up|down|status|node`: the site as a real multi-node Slurm cluster.

This machine is the login node: munge, MariaDB + slurmdbd (accounting enforced)
and slurmctld from the distribution's packages, started without systemd, and
later the hub and the proxy. Each partition's nodes are compute nodes in Linux
namespaces, each with its own address and slurmd (`nodes.py`). Unix accounts and
Slurm associations come from the site. Every step checks before it acts, so
`up` twice is safe and `down` removes exactly what `up` made.
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import stat
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from aifactory.site.install import install_prefix, shared_environment
from aifactory.site.schema import Site
from aifactory.slurm.runner import Refused, SlurmError, SlurmRunner
from aifactory.slurm.sinfo import SINFO_ARGV, NodeState, parse_sinfo_nodes
from aifactory.slurm.squeue import parse_squeue, squeue_argv
from aifactory.slurm.states import LIVE_STATES

from . import accounts, nodes, slurmconf
from .slurmconf import ComputeNode, Layout, compute_nodes
from .system import (
    ProvisionError,
    pid_from,
    run,
    secret_file,
    spawn_daemon,
    stop_pid,
    wait_for,
    write_if_changed,
)

VENV = shared_environment()
MODULES = install_prefix() / "modules"
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_PID = Path("/run/munge/munged.pid")
MARIADB_MARK = "mariadb.started-by-aifactory"

Say = Callable[[str], None]


def _say(message: str) -> None:
    print(f"[cluster] {message}", flush=True)


def hostname() -> str:
    return socket.gethostname().split(".")[0]


def _ensure_resolvable(name: str, say: Say) -> None:
    """The hub reaches servers by their node's name: make sure this node's resolves."""
    try:
        socket.gethostbyname(name)
    except OSError:
        say(f"adding {name} to /etc/hosts")
        with open("/etc/hosts", "a") as hosts:
            hosts.write(f"127.0.0.1 {name}\n")


@dataclass(frozen=True)
class Daemon:
    name: str
    pidfile: Path


def daemons(layout: Layout) -> list[Daemon]:
    """The login node's daemons in start order (stopped in reverse); each compute node has its slurmd."""
    return [
        Daemon("munged", MUNGE_PID),
        Daemon("mariadb", Path("/run/mysqld/mysqld.pid")),
        Daemon("slurmdbd", Path(layout.pidfile("slurmdbd"))),
        Daemon("slurmctld", Path(layout.pidfile("slurmctld"))),
    ]


def secrets_dir(layout: Layout) -> Path:
    return Path(layout.state) / "secrets"


def passwords_file(layout: Layout = Layout()) -> Path:
    """Root-only file with the demo users' passwords, one `user password` per line."""
    return secrets_dir(layout) / "demo-passwords"


# --- munge -----------------------------------------------------------------


def _ensure_munge(say: Say) -> None:
    munge = pwd.getpwnam("munge")
    if not MUNGE_KEY.exists():
        say("creating the munge key")
        MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
        MUNGE_KEY.write_bytes(os.urandom(1024))
    os.chown(MUNGE_KEY, munge.pw_uid, munge.pw_gid)
    os.chmod(MUNGE_KEY, 0o400)
    for directory in ("/run/munge", "/var/log/munge", "/var/lib/munge"):
        Path(directory).mkdir(parents=True, exist_ok=True)
        os.chown(directory, munge.pw_uid, munge.pw_gid)
    if pid_from(MUNGE_PID) is None:
        say("starting munged")
        run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"])
    if not wait_for(lambda: run(["munge", "-n"], check=False).returncode == 0, 15):
        raise ProvisionError("munged does not answer: see /var/log/munge/munged.log")


# --- MariaDB ---------------------------------------------------------------


def _sql(statement: str) -> str:
    """Statements go through stdin: they may hold the database password, and argv is public."""
    return run(["mariadb", "--batch", "--skip-column-names", "-u", "root"], input=statement).stdout


def _ensure_mariadb(layout: Layout, say: Say) -> str:
    mysql = pwd.getpwnam("mysql")
    Path("/run/mysqld").mkdir(parents=True, exist_ok=True)
    os.chown("/run/mysqld", mysql.pw_uid, mysql.pw_gid)
    if not Path("/var/lib/mysql/mysql").exists():
        say("initialising the MariaDB data directory")
        run(["mariadb-install-db", "--user=mysql", "--datadir=/var/lib/mysql"], timeout=180)
    alive = lambda: run(["mariadb-admin", "ping"], check=False).returncode == 0  # noqa: E731
    if not alive():
        say("starting MariaDB")
        spawn_daemon(["mysqld_safe", "--skip-syslog"], Path(layout.logfile("mariadb")))
        Path(layout.run, MARIADB_MARK).touch()
        if not wait_for(alive, 90):
            raise ProvisionError(f"MariaDB did not start: see {layout.logfile('mariadb')}")
    password = secret_file(secrets_dir(layout) / "slurmdbd-db-password")
    user = f"'{layout.db_user}'@'localhost'"
    _sql(
        f"CREATE DATABASE IF NOT EXISTS {layout.database};"
        f"CREATE USER IF NOT EXISTS {user} IDENTIFIED BY '{password}';"
        f"ALTER USER {user} IDENTIFIED BY '{password}';"
        f"GRANT ALL ON {layout.database}.* TO {user};"
    )
    return password


# --- Slurm -----------------------------------------------------------------


SLURM = SlurmRunner(timeout=60)


def _slurm(argv: list[str]) -> str:
    """A Slurm command of the bring-up, through the one runner; its failure stops `up`, naming it."""
    try:
        return SLURM.run_sync(argv)
    except SlurmError as error:
        raise ProvisionError(f"`{' '.join(argv)}` failed: {error}") from None


def _slurm_ready(args: list[str]) -> Callable[[], bool]:
    def answers() -> bool:
        try:
            SLURM.run_sync(args, timeout=15)
        except SlurmError:
            return False
        return True
    return answers


def _start(daemon: str, argv: list[str], layout: Layout, ready: Callable[[], bool], say: Say,
           timeout: float = 60) -> None:
    if pid_from(layout.pidfile(daemon)) is None:
        say(f"starting {daemon}")
        run(argv)
    if not wait_for(ready, timeout):
        raise ProvisionError(f"{daemon} does not answer: see {layout.logfile(daemon)}")


def _restart(daemon: str, layout: Layout, say: Say) -> None:
    pid = pid_from(layout.pidfile(daemon))
    if pid is not None:
        say(f"restarting {daemon} for the new configuration")
        stop_pid(pid)


def _write_slurm_config(site: Site, login_name: str, db_password: str, layout: Layout) -> set[str]:
    """Write Slurm's configuration; returns the daemons that must restart to read what changed."""
    etc = Path(layout.slurm_etc)
    changed = write_if_changed(etc / "slurm.conf", slurmconf.slurm_conf(site, login_name, layout))
    changed |= write_if_changed(etc / "gres.conf", slurmconf.gres_conf(site, layout))
    changed |= write_if_changed(etc / "cgroup.conf", slurmconf.cgroup_conf())
    wanted = [d for devices in slurmconf.gpu_devices(site, layout).values() for d in devices]
    for stale in set(Path(layout.state, "gpus").rglob("*")) - {Path(path) for path, _, _ in wanted}:
        if stale.is_char_device():  # a GPU of a node the site no longer has
            stale.unlink()
    for path, major, minor in wanted:
        device = Path(path)
        if not device.is_char_device() or device.stat().st_rdev != os.makedev(major, minor):
            device.parent.mkdir(parents=True, exist_ok=True)
            device.unlink(missing_ok=True)
            os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
            os.chmod(device, 0o666)
    dbd_changed = write_if_changed(etc / "slurmdbd.conf", slurmconf.slurmdbd_conf(db_password, layout), mode=0o600)
    Path(layout.slurm_state, "ctld").mkdir(parents=True, exist_ok=True)
    return ({"slurmctld", "slurmd"} if changed else set()) | ({"slurmdbd"} if dbd_changed else set())


def _register_cluster(site: Site, say: Say) -> None:
    cluster = site.cluster.name
    listed = _slurm(["sacctmgr", "-nP", "show", "cluster", "format=cluster"]).split()
    if cluster not in listed:
        say(f"registering cluster {cluster} in slurmdbd")
        _slurm(["sacctmgr", "-i", "add", "cluster", cluster])


def _ensure_accounting(site: Site, say: Say) -> None:
    cluster = site.cluster.name
    shown = _slurm(["sacctmgr", "-nP", "show", "assoc", f"cluster={cluster}", "format=account,user"])
    for argv in accounts.association_commands(site, accounts.parse_associations(shown)):
        try:
            SLURM.run_sync(argv)
        except Refused as error:
            # sacctmgr exits 1 when there is nothing to change; only real errors matter.
            if "Nothing" not in error.stdout + error.stderr:
                raise ProvisionError(f"`{' '.join(argv)}` failed: {error}") from None
        except SlurmError as error:
            raise ProvisionError(f"`{' '.join(argv)}` failed: {error}") from None


def _node_states(names: list[str]) -> list[NodeState]:
    """The nodes in each of their partitions, as sinfo sees them (none while slurmctld does not know them)."""
    try:
        return parse_sinfo_nodes(SLURM.run_sync([*SINFO_ARGV, f"--nodes={','.join(names)}"], timeout=15))
    except SlurmError:
        return []


def _ensure_nodes_up(names: list[str], say: Say, timeout: float = 60) -> None:
    """Wait until every node takes jobs, resuming any that Slurm still holds down or drained."""
    def usable() -> bool:
        states = _node_states(names)
        stuck = sorted({s.node for s in states if s.state.startswith(("down", "drain", "drng", "fail"))})
        if stuck:
            try:
                SLURM.run_sync(["scontrol", "update", f"NodeName={','.join(stuck)}", "State=RESUME"], timeout=15)
            except SlurmError:
                pass  # asked again on the next round
        return {s.node for s in states if s.usable} >= set(names)

    if not wait_for(usable, timeout, interval=1):
        states = ", ".join(sorted({f"{s.node} {s.state}" for s in _node_states(names)})) or "not listed"
        raise ProvisionError(f"nodes are not all usable ({states}): see {Layout().logs}/slurmd-<node>.log")


# --- users -----------------------------------------------------------------


def _ensure_users(site: Site, layout: Layout, say: Say) -> None:
    existing_users = {p.pw_name for p in pwd.getpwall()}
    existing_groups = {g.gr_name for g in grp.getgrall()}
    for argv in accounts.user_commands(site, existing_users, existing_groups):
        if argv[0] != "usermod":
            say(" ".join(argv))
        run(argv)
    for user in site.users:  # users of a shared machine must not read each other's files
        os.chmod(pwd.getpwnam(user.name).pw_dir, 0o700)
    path = passwords_file(layout)
    known = dict(line.split(" ", 1) for line in path.read_text().splitlines() if " " in line) if path.exists() else {}
    fresh = {u.name: _password() for u in site.users if u.name not in known}
    if fresh:
        run(["chpasswd"], input="".join(f"{name}:{pw}\n" for name, pw in fresh.items()))
        known.update(fresh)
        write_if_changed(path, "".join(f"{n} {p}\n" for n, p in sorted(known.items())), mode=0o600)


def _password() -> str:
    return secrets.token_urlsafe(9)


def _ensure_environment(say: Say) -> None:
    """The shared environment must be readable by every user: jobs run as them."""
    for directory in (VENV.parent, VENV):
        if directory.exists():
            os.chmod(directory, 0o755)
    write_if_changed(MODULES / "aifactory" / "1.0.lua", accounts.lmod_modulefile(str(VENV)))
    for directory in (MODULES, MODULES / "aifactory"):
        os.chmod(directory, 0o755)


# --- the commands ----------------------------------------------------------


def _machine_memory_mib() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20


def up(site: Site, layout: Layout = Layout(), say: Say = _say) -> None:
    """Bring the local cluster up, or bring a running one in line with the site."""
    if os.geteuid() != 0:
        raise ProvisionError("`aifactory cluster up` needs root: it starts daemons, makes namespaces and accounts")
    if site.local is None:
        raise ProvisionError("the site has no 'local' section: it does not describe a local cluster")
    machine_mib = _machine_memory_mib()
    if site.local.memory > machine_mib:
        raise ProvisionError(f"local.memory ({site.local.memory} MiB) is more than this machine has "
                             f"({machine_mib} MiB): lower it in the site file")
    for directory, mode in ((layout.state, 0o755), (secrets_dir(layout), 0o700), (layout.logs, 0o755),
                            (layout.run, 0o755)):
        Path(directory).mkdir(parents=True, exist_ok=True)
        os.chmod(directory, mode)
    for log in Path(layout.logs).iterdir():  # root's daemons' logs: root's only (spawn_daemon makes them so)
        if log.is_file() and not log.is_symlink():
            log.chmod(0o600)
    login = hostname()
    _ensure_resolvable(login, say)
    _ensure_users(site, layout, say)
    _ensure_environment(say)
    _ensure_munge(say)
    # The nodes' network first: Slurm's daemons and commands meet at the login node's address on it.
    nodes.ensure_bridge(site, layout, say)
    db_password = _ensure_mariadb(layout, say)
    restart = _write_slurm_config(site, login, db_password, layout)
    if "slurmdbd" in restart:
        _restart("slurmdbd", layout, say)
    _start("slurmdbd", ["/usr/sbin/slurmdbd"], layout,
           _slurm_ready(["sacctmgr", "-n", "show", "cluster"]), say)
    _register_cluster(site, say)
    cluster_nodes = compute_nodes(site)
    _remove_stale_nodes(cluster_nodes, layout, say)
    for node in cluster_nodes:
        nodes.ensure_node_network(site, node, layout, say)
    nodes.write_hosts(slurmconf.hosts_lines(site))
    if "slurmctld" in restart:
        _restart("slurmctld", layout, say)
        for node in cluster_nodes:
            nodes.stop_slurmd(node, layout)
    _start("slurmctld", ["/usr/sbin/slurmctld"], layout, _slurm_ready(["scontrol", "ping"]), say)
    for node in cluster_nodes:
        nodes.start_slurmd(node, layout, say)
    _ensure_nodes_up([n.name for n in cluster_nodes], say)
    _ensure_accounting(site, say)  # after slurmctld: it registers the gres/gpu TRES
    say(f"cluster {site.cluster.name} is up: login node {login} ({site.local.login_address}), "
        + ", ".join(f"{p.name}: {', '.join(n.name for n in cluster_nodes if n.partition == p.name)}"
                    for p in site.partitions))


def _remove_stale_nodes(wanted: list[ComputeNode], layout: Layout, say: Say) -> None:
    """Nodes of an earlier layout (and a slurmd on the login node itself, as the one-node cluster ran
    it) go before the new layout's start."""
    pid = pid_from(layout.pidfile("slurmd"))
    if pid is not None:
        say("stopping the login node's own slurmd (compute nodes now run in namespaces)")
        stop_pid(pid)
    names = {n.netns(layout) for n in wanted}
    for netns in nodes.namespaces(layout):
        if netns not in names:
            say(f"removing node {netns.removeprefix(layout.netns_prefix)}: the site no longer has it")
            nodes.remove_namespace(netns)


def node_action(site: Site, action: str, name: str, layout: Layout = Layout(), say: Say = _say) -> None:
    """`aifactory cluster node down|up NAME`: a node fails (power cut), or comes back and takes jobs."""
    node = nodes.find(site, name)
    if action == "down":
        nodes.power_off(node, layout, say)
        say(f"node {name} is off; Slurm marks it down within {slurmconf.SLURMD_TIMEOUT} s and its jobs end NODE_FAIL")
        return
    nodes.power_on(site, node, layout, say)
    _ensure_nodes_up([name], say, timeout=90)
    say(f"node {name} is up and takes jobs")


def _cancel_all_jobs(layout: Layout, say: Say) -> None:
    """Jobs would outlive slurmd as orphans: cancel them while slurmctld still runs."""
    if pid_from(layout.pidfile("slurmctld")) is None:
        return
    jobs = _live_jobs()
    if jobs:
        say(f"cancelling {len(jobs)} job(s)")
        try:
            SLURM.run_sync(["scancel", *jobs])
        except SlurmError as error:
            say(f"scancel: {error}")
        wait_for(lambda: not _live_jobs(), 30)


def _live_jobs() -> list[str]:
    """Jobs (and array tasks) pending or running; none when squeue does not answer."""
    try:
        jobs = parse_squeue(SLURM.run_sync(squeue_argv(), timeout=15))
    except SlurmError:
        return []
    return [job_id for job_id, job in jobs.items() if job.state in LIVE_STATES]


def down(layout: Layout = Layout(), say: Say = _say) -> None:
    """Cancel the jobs, remove the compute nodes, then stop every daemon `up` started, newest first."""
    _cancel_all_jobs(layout, say)
    nodes.remove_all(layout, say)
    for daemon in reversed(daemons(layout)):
        if daemon.name == "mariadb":
            mark = Path(layout.run, MARIADB_MARK)
            if mark.exists() and run(["mariadb-admin", "ping"], check=False).returncode == 0:
                say("stopping MariaDB")
                run(["mariadb-admin", "shutdown"], check=False, timeout=60)
            mark.unlink(missing_ok=True)
            continue
        pid = pid_from(daemon.pidfile)
        if pid is not None:
            say(f"stopping {daemon.name}")
            stop_pid(pid)


def status(layout: Layout = Layout()) -> dict[str, bool]:
    """Which daemons of the login node run."""
    result = {}
    for daemon in daemons(layout):
        if daemon.name == "mariadb":
            result[daemon.name] = run(["mariadb-admin", "ping"], check=False).returncode == 0
        else:
            result[daemon.name] = pid_from(daemon.pidfile) is not None
    return result


def node_rows(site: Site, states: list[NodeState], layout: Layout = Layout()) -> list[tuple[str, ...]]:
    """One row per compute node: name, partition, address, Slurm's state, whether its slurmd runs. Pure but
    for the pid files."""
    by_node = {s.node: s for s in states}
    return [
        (n.name, n.partition, n.address, by_node[n.name].state if n.name in by_node else "unknown",
         "running" if pid_from(nodes.slurmd_pidfile(n, layout)) else "stopped")
        for n in compute_nodes(site)
    ]


def main_status(site: Site, layout: Layout = Layout()) -> int:
    states = status(layout)
    for name, running in states.items():
        print(f"{name:10s} {'running' if running else 'stopped'}")
    rows = node_rows(site, _node_states([n.name for n in compute_nodes(site)]) if states.get("slurmctld") else [],
                     layout)
    print(f"\n{'NODE':16s} {'PARTITION':14s} {'ADDRESS':15s} {'STATE':10s} SLURMD")
    for row in rows:
        print(f"{row[0]:16s} {row[1]:14s} {row[2]:15s} {row[3]:10s} {row[4]}")
    # A node that is down is a state of a running cluster (listed above), not a cluster that is down.
    return 0 if all(states.values()) and any(r[4] == "running" for r in rows) else 3
