"""Logins: a class of 100 logging in through the PAM login form within 10 s; stock JupyterHub against ours.

    /opt/aifactory/venv/bin/python tests/benchmarks/bench_login.py [--users 100] [--spread 10]

Not a test (not collected by pytest). Needs root and the local Slurm cluster.
The class are real Unix users (blogin001...) in the site's `students` group, with
an association to the demo's course project and a random password each (set
through chpasswd's stdin), made for the run and removed after, also on failure or
Ctrl-C. Each side is a throw-away hub on loopback: stock JupyterHub (port 8340)
with its PAMAuthenticator given the site's PAM settings (service, allowed and
admin groups, blocked users) and batchspawner's SlurmSpawner with a one-line
options form (a plain hub whose spawner had none would start a server on the
first page); then this project's hub (port 8344): everything `hub_config`
derives from a site file (the installed site plus the class) except what makes
it a throw-away hub (ports, state, services and roles, host routing).

Both hubs run for the whole run; each phase measures one, then the other (the
other idle), which side goes first alternating, so that other people's load on the
machine falls on both. In a phase every user arrives at a time spread evenly over
--spread seconds and, with their own cookies: GET /hub/login (the xsrf token),
POST the form, then follows the redirects to the first page they see (both hubs:
the spawn form). Reported per side and phase: time from arrival to the first page
(p50/p95/max), the POST's time, the logins per second achieved (logins over the
time from the first arrival to the last login), the hub's CPU per login (all its
threads, PAM's included, and its reaped children: sacctmgr and the like),
failures. Phases: the class's first login (the spawn page's facts are not cached
yet); again; again with one wrong password per second for another account
alongside (PAM's fail delay: 2-3 s each), which must not slow the class.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import psutil
import requests
import yaml

from benchlib import (INSTALLED_SITE, BenchHub, bench_names, bench_users, cleanup_on_signals, percentile,
                      set_passwords, table)
from aifactory.site import load_site
from aifactory.site.identity import blocked_names
from aifactory.site.load import read_yaml

LABELS = {"stock": "stock JupyterHub PAMAuthenticator", "ours": "aifactory hub"}
GROUP = "students"
PHASES = ["first login", "again", "again, 1 wrong password/s alongside"]
ATTACKED = PHASES[2]
PORTS = {"stock": 8340, "ours": 8344}
XSRF = re.compile(r'name="_xsrf"\s+value="([^"]+)"')

# Stock: JupyterHub's PAMAuthenticator with the site's settings, batchspawner with a static form.
STOCK_AUTH = """
c.JupyterHub.authenticator_class = "pam"
c.Authenticator.allow_all = False
c.PAMAuthenticator.service = {service!r}
c.PAMAuthenticator.admin_groups = {admin_groups!r}
c.PAMAuthenticator.allowed_groups = {allowed_groups!r}
c.PAMAuthenticator.blocked_users = {blocked_users!r}
c.SlurmSpawner.options_form = '<label>Partition <select name="partition"><option>standard</option></select></label>'
"""

# Ours: the product's configuration of the site, less what belongs to the throw-away hub (set above it).
OURS_CONFIG = """
from aifactory.hub.config import HubPaths, hub_config
from aifactory.site import load_site
c.Authenticator.allow_all = False  # benchlib's; the site's groups decide
_bench = {{("JupyterHub", k) for k in ("ip", "port", "hub_ip", "hub_port", "db_url", "cookie_secret_file",
                                       "services", "load_roles", "cleanup_servers", "subdomain_host",
                                       "subdomain_hook")}} | {{("ConfigurableHTTPProxy", "pid_file")}}
for _section, _values in hub_config(load_site({site_file!r}), HubPaths(), "unused").items():
    for _trait, _value in _values.items():
        if (_section, _trait) not in _bench:
            setattr(c[_section], _trait, _value)
c.SiteSlurmSpawner.site_file = {site_file!r}
"""


def class_site_file(path: Path, names: list[str]) -> str:
    """The installed site with the class as users of `students` and members of the course project; its path."""
    data = read_yaml(Path(INSTALLED_SITE).read_text())
    data["users"] += [{"name": n, "groups": [GROUP]} for n in names]
    for project in data["projects"]:
        if project["name"] == "project_465000002":
            project["members"] += names
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    os.chmod(path, 0o644)
    load_site(str(path))  # validates
    return str(path)


def stock_auth(site_file: str) -> str:
    site = load_site(site_file)
    return STOCK_AUTH.format(service=site.auth.service, admin_groups=set(site.auth.admin_groups),
                             allowed_groups={g.name for g in site.groups}, blocked_users=blocked_names(site))


@dataclass
class Login:
    """One user's visit: seconds from arrival to the POST's answer and to the first page; what went wrong."""

    user: str
    arrived: float = 0.0
    logged_in: float | None = None  # monotonic time the POST answered with a redirect
    post_seconds: float | None = None
    first_page: float | None = None  # seconds from arrival
    page: str = ""
    error: str = ""


def visit(url: str, user: str, password: str, at: float) -> Login:
    """Arrive at monotonic time `at`, log in through the form, follow to the first page."""
    time.sleep(max(0.0, at - time.monotonic()))
    login = Login(user, arrived=time.monotonic())
    session = requests.Session()
    try:
        form = session.get(f"{url}/hub/login", timeout=120)
        token = XSRF.search(form.text)
        if form.status_code != 200 or not token:
            login.error = f"login page {form.status_code}"
            return login
        posted = time.monotonic()
        answer = session.post(f"{url}/hub/login", data={"username": user, "password": password,
                                                        "_xsrf": token.group(1)}, allow_redirects=False, timeout=120)
        login.post_seconds = time.monotonic() - posted
        if answer.status_code != 302:
            login.error = f"login {answer.status_code}"
            return login
        login.logged_in = time.monotonic()
        while answer.status_code in (301, 302, 303, 307):
            answer = session.get(urljoin(answer.url, answer.headers["Location"]), allow_redirects=False, timeout=120)
        login.page = answer.url.removeprefix(url).split("?")[0]
        if answer.status_code != 200:
            login.error = f"first page {login.page} {answer.status_code}"
            return login
        login.first_page = time.monotonic() - login.arrived
    except requests.RequestException as error:
        login.error = type(error).__name__
    return login


@dataclass
class Attacker:
    """One wrong password per `interval` seconds for `user` until stopped; each answer's seconds and status."""

    url: str
    user: str
    active: bool = True  # False: does nothing (the phases without an attack)
    interval: float = 1.0
    answers: list[tuple[int, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _attempt(self) -> None:
        session, start = requests.Session(), time.monotonic()
        try:
            token = XSRF.search(session.get(f"{self.url}/hub/login", timeout=120).text)
            status = session.post(f"{self.url}/hub/login", timeout=120, allow_redirects=False,
                                  data={"username": self.user, "password": "wrong-" + os.urandom(4).hex(),
                                        "_xsrf": token.group(1) if token else ""}).status_code
        except requests.RequestException:
            status = 0
        self.answers.append((status, time.monotonic() - start))

    def _loop(self) -> None:
        """Start an attempt every `interval` seconds, without waiting for the last one's (delayed) answer."""
        while not self._stop.wait(self.interval):
            thread = threading.Thread(target=self._attempt, daemon=True)
            thread.start()
            self._attempts.append(thread)

    def __enter__(self) -> "Attacker":
        self._attempts: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._loop if self.active else lambda: None, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
        for thread in self._attempts:
            thread.join(130)


def class_logins(url: str, passwords: dict[str, str], spread: float) -> tuple[list[Login], float]:
    """Every user of `passwords` arriving evenly over `spread` seconds; their visits and the logins per second."""
    names = list(passwords)
    start = time.monotonic() + 0.5
    with ThreadPoolExecutor(len(names)) as pool:
        logins = list(pool.map(lambda i: visit(url, names[i], passwords[names[i]], start + spread * i / len(names)),
                               range(len(names))))
    done = [x.logged_in for x in logins if x.logged_in is not None]
    rate = len(done) / (max(done) - start) if done else 0.0
    return logins, rate


def seconds(values: list[float], q: float) -> str:
    return f"{percentile(values, q):.2f}" if values else "-"


def hub_cpu(hub: BenchHub) -> float:
    """CPU seconds of the hub process so far (every thread: PAM runs in the hub's; and its reaped children)."""
    times = psutil.Process(hub.proc.pid).cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def row(kind: str, phase: str, logins: list[Login], rate: float, cpu: float) -> list[str]:
    first = [x.first_page for x in logins if x.first_page is not None]
    post = [x.post_seconds for x in logins if x.post_seconds is not None and not x.error]
    pages = sorted({x.page for x in logins if x.page})
    return [LABELS[kind], phase, seconds(first, 50), seconds(first, 95), seconds(first, 100), seconds(post, 50),
            seconds(post, 95), f"{rate:.1f}", f"{cpu * 1000:.0f}", str(sum(bool(x.error) for x in logins)),
            ", ".join(pages)]


def ratio(ours: str, stock: str) -> str:
    try:
        return f"{float(ours) / float(stock):.2f}x"
    except (ValueError, ZeroDivisionError):
        return "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100, help="the class's size")
    parser.add_argument("--spread", type=float, default=10, help="seconds over which the class arrives")
    parser.add_argument("--sides", default="stock,ours", help="which hubs, in order (development: 'ours')")
    parser.add_argument("--again", action=argparse.BooleanOptionalAction, default=True,
                        help="then log in again, and again with one wrong password per second for another user")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (it adds users with passwords)")
    sides = [side for side in args.sides.split(",") if side]
    if not set(sides) <= set(PORTS):
        sys.exit("--sides: stock, ours or both")
    cleanup_on_signals()
    names = bench_names(args.users + 1, prefix="blogin")
    victim, students = names[0], names[1:]  # the attacked account is not one of the class
    phases = PHASES if args.again else PHASES[:1]
    rows: dict[tuple[str, str], list[str]] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-login-") as tmp, bench_users(names, groups=(GROUP,)):
        os.chmod(tmp, 0o755)
        passwords = set_passwords(names)
        site_file = class_site_file(Path(tmp, "site.yaml"), names)
        class_passwords = {n: passwords[n] for n in students}
        with ExitStack() as stack:
            hubs = {kind: stack.enter_context(BenchHub(kind, PORTS[kind], site_file=site_file, extra=(
                stock_auth(site_file) if kind == "stock" else OURS_CONFIG.format(site_file=site_file))))
                for kind in sides}
            for number, phase in enumerate(phases):
                for kind in sides if number % 2 == 0 else sides[::-1]:  # each side first in turn: others' load
                    hub = hubs[kind]
                    before = hub_cpu(hub)
                    with Attacker(hub.url, victim, active=phase == ATTACKED) as attacker:
                        logins, rate = class_logins(hub.url, class_passwords, args.spread)
                    cpu = (hub_cpu(hub) - before) / max(1, sum(x.logged_in is not None for x in logins))
                    rows[kind, phase] = row(kind, phase, logins, rate, cpu)
                    notes += [f"failed: {kind} ({phase}): {x.user}: {x.error}" for x in logins if x.error][:10]
                    if attacker.answers:
                        wrong = [s for status, s in attacker.answers if status == 403]
                        notes.append(f"{kind}: the wrong passwords were answered 403 {len(wrong)} times (p50 "
                                     f"{seconds(wrong, 50)} s), otherwise {len(attacker.answers) - len(wrong)} times")
    header = ["hub", "phase", "first page p50 s", "p95 s", "max s", "POST p50 s", "POST p95 s", "logins/s",
              "hub CPU ms/login", "failed", "first page"]
    table(f"Logins: {args.users} users arriving over {args.spread:.0f} s, PAM (same run)", header,
          [rows[kind, phase] for kind in sides for phase in phases])
    if set(sides) == set(PORTS):
        for phase in phases:
            ours, stock = rows["ours", phase], rows["stock", phase]
            print(f"  ours/stock, {phase}: " + ", ".join(f"{h} {ratio(o, s)}" for h, o, s in
                                                         zip(header[2:9], ours[2:9], stock[2:9])))
    for line in notes:
        print("  " + line)


if __name__ == "__main__":
    main()
