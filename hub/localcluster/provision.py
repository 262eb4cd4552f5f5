"""`aifactory cluster up|down|status`: the site as a real one-node Slurm cluster.

munge, MariaDB + slurmdbd (accounting enforced), slurmctld and slurmd from the
distribution's packages, started without systemd; Unix accounts and Slurm
associations from the site. Every step checks before it acts, so `up` twice
is safe and `down` stops exactly the daemons `up` started.
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

from . import accounts, slurmconf
from .slurmconf import Layout
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
    """The daemons in start order (stopped in reverse)."""
    return [
        Daemon("munged", MUNGE_PID),
        Daemon("mariadb", Path("/run/mysqld/mysqld.pid")),
        Daemon("slurmdbd", Path(layout.pidfile("slurmdbd"))),
        Daemon("slurmctld", Path(layout.pidfile("slurmctld"))),
        Daemon("slurmd", Path(layout.pidfile("slurmd"))),
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


def _write_slurm_config(site: Site, node: slurmconf.LocalNode, db_password: str, layout: Layout) -> set[str]:
    """Write Slurm's configuration; returns the daemons that must restart to read what changed."""
    etc = Path(layout.slurm_etc)
    changed = write_if_changed(etc / "slurm.conf", slurmconf.slurm_conf(site, node, layout))
    changed |= write_if_changed(etc / "gres.conf", slurmconf.gres_conf(site, node, layout))
    changed |= write_if_changed(etc / "cgroup.conf", slurmconf.cgroup_conf())
    for path, major, minor in slurmconf.gpu_devices(site, layout):
        device = Path(path)
        if not device.is_char_device() or device.stat().st_rdev != os.makedev(major, minor):
            device.parent.mkdir(parents=True, exist_ok=True)
            device.unlink(missing_ok=True)
            os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
            os.chmod(device, 0o666)
    dbd_changed = write_if_changed(etc / "slurmdbd.conf", slurmconf.slurmdbd_conf(db_password, layout), mode=0o600)
    for sub in ("ctld", "d"):
        Path(layout.slurm_state, sub).mkdir(parents=True, exist_ok=True)
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


def _node_states(node: str) -> list[NodeState]:
    """The node in each of its partitions, as sinfo sees it (none while slurmctld does not know it)."""
    try:
        return parse_sinfo_nodes(SLURM.run_sync([*SINFO_ARGV, f"--nodes={node}"], timeout=15))
    except SlurmError:
        return []


def _ensure_node_up(node: str, say: Say) -> None:
    def usable() -> bool:
        states = _node_states(node)
        if any(s.state.startswith(("down", "drain", "drng", "fail")) for s in states):
            try:
                SLURM.run_sync(["scontrol", "update", f"NodeName={node}", "State=RESUME"], timeout=15)
            except SlurmError:
                pass  # asked again on the next round
            return False
        return any(s.usable for s in states)

    if not wait_for(usable, 60, interval=1):
        states = ", ".join(sorted({s.state for s in _node_states(node)})) or "not listed"
        raise ProvisionError(f"node {node} is not usable ({states}): see slurmd.log")


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


def up(site: Site, layout: Layout = Layout(), say: Say = _say) -> None:
    """Bring the local cluster up, or bring a running one in line with the site."""
    if os.geteuid() != 0:
        raise ProvisionError("`aifactory cluster up` needs root: it starts daemons and creates accounts")
    for directory, mode in ((layout.state, 0o755), (secrets_dir(layout), 0o700), (layout.logs, 0o755),
                            (layout.run, 0o755)):
        Path(directory).mkdir(parents=True, exist_ok=True)
        os.chmod(directory, mode)
    for log in Path(layout.logs).iterdir():  # root's daemons' logs: root's only (spawn_daemon makes them so)
        if log.is_file() and not log.is_symlink():
            log.chmod(0o600)
    node = slurmconf.local_node(site, hostname())
    _ensure_resolvable(node.hostname, say)
    _ensure_users(site, layout, say)
    _ensure_environment(say)
    _ensure_munge(say)
    db_password = _ensure_mariadb(layout, say)
    restart = _write_slurm_config(site, node, db_password, layout)
    if "slurmdbd" in restart:
        _restart("slurmdbd", layout, say)
    _start("slurmdbd", ["/usr/sbin/slurmdbd"], layout,
           _slurm_ready(["sacctmgr", "-n", "show", "cluster"]), say)
    _register_cluster(site, say)
    for daemon in ("slurmctld", "slurmd"):
        if daemon in restart:
            _restart(daemon, layout, say)
    _start("slurmctld", ["/usr/sbin/slurmctld"], layout, _slurm_ready(["scontrol", "ping"]), say)
    _start("slurmd", ["/usr/sbin/slurmd"], layout, lambda: bool(_node_states(node.hostname)), say)
    _ensure_node_up(node.hostname, say)
    _ensure_accounting(site, say)  # after slurmctld: it registers the gres/gpu TRES
    say(f"cluster {site.cluster.name} is up: {len(site.partitions)} partitions on node {node.hostname}")


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
    """Cancel the jobs, then stop every daemon `up` started, newest first."""
    _cancel_all_jobs(layout, say)
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
    """Which daemons of the local cluster run."""
    result = {}
    for daemon in daemons(layout):
        if daemon.name == "mariadb":
            result[daemon.name] = run(["mariadb-admin", "ping"], check=False).returncode == 0
        else:
            result[daemon.name] = pid_from(daemon.pidfile) is not None
    return result


def main_status(layout: Layout = Layout()) -> int:
    states = status(layout)
    for name, running in states.items():
        print(f"{name:10s} {'running' if running else 'stopped'}")
    if states.get("slurmctld"):
        try:
            print(SLURM.run_sync(["sinfo", "-o", "%P %a %l %D %t %c %m %G"]), end="")
        except SlurmError as error:
            print(f"sinfo: {error}")
    return 0 if all(states.values()) else 3

