"""`aifactory hub up|down|status`: run this machine's JupyterHub in the background."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from .config import HubPaths
from .localcluster.system import ProvisionError, pid_from, secret_file, spawn_daemon, stop_pid, wait_for
from aifactory.site import INSTALLED_SITE
from aifactory.site.schema import Site

LOG = Path("/var/log/aifactory/jupyterhub.log")
CONFIG = Path(__file__).resolve().parent / "jupyterhub_config.py"


def _pidfile(paths: HubPaths) -> Path:
    return Path(paths.state, "jupyterhub.pid")


def operator_token_file(paths: HubPaths = HubPaths()) -> Path:
    """Root-only file holding the API token of the operators' service."""
    return Path(paths.state, "operator-token")


def metrics_token_file(paths: HubPaths = HubPaths()) -> Path:
    """Root-only file holding the token Prometheus scrapes /hub/metrics with (read:metrics only)."""
    return Path(paths.state, "metrics-token")


def url(site: Site) -> str:
    """Where people log in: with subdomains, the parent domain of the users' servers, whose
    cookies and OAuth the servers share (the proxy's own address still reaches the hub)."""
    return site.hub.subdomain_host or f"http://{site.hub.ip}:{site.hub.port}"


def answers(site: Site) -> bool:
    try:
        with urllib.request.urlopen(f"{url(site)}/hub/api", timeout=3) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def up(site: Site, paths: HubPaths = HubPaths(), site_file: str | None = None) -> None:
    """Start JupyterHub unless it runs; wait until its API answers."""
    if os.geteuid() != 0:
        raise ProvisionError("`aifactory hub up` needs root: PAM login and sudo to users need it")
    state = Path(paths.state)
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o700)
    secret_file(operator_token_file(paths), nbytes=32)
    secret_file(metrics_token_file(paths), nbytes=32)
    if pid_from(_pidfile(paths)) is None:
        env = dict(os.environ)
        env["AIFACTORY_SITE"] = str(site_file or env.get("AIFACTORY_SITE") or INSTALLED_SITE)
        env["AIFACTORY_HUB_STATE"] = paths.state
        env["PATH"] = f"{paths.venv}/bin:{Path(paths.proxy).parent}:{env.get('PATH', '/usr/bin:/bin')}"
        pid = spawn_daemon([f"{paths.venv}/bin/jupyterhub", "-f", str(CONFIG)], LOG, env=env, cwd=state)
        _pidfile(paths).write_text(f"{pid}\n")
        print(f"[hub] starting JupyterHub (pid {pid}), log {LOG}", flush=True)
    if not wait_for(lambda: answers(site), 90, interval=0.5):
        raise ProvisionError(f"JupyterHub does not answer on {url(site)}: see {LOG}")
    print(f"[hub] JupyterHub answers on {url(site)}", flush=True)


def down(paths: HubPaths = HubPaths()) -> None:
    """Stop the hub and its proxy. Servers are Slurm jobs: `cluster down` ends them."""
    for pidfile in (_pidfile(paths), Path(paths.state, "proxy.pid")):
        pid = pid_from(pidfile)
        if pid is not None:
            print(f"[hub] stopping pid {pid} ({pidfile.name})", flush=True)
            stop_pid(pid)


def main_status(paths: HubPaths = HubPaths()) -> int:
    pid = pid_from(_pidfile(paths))
    print(f"jupyterhub {'running (pid %d)' % pid if pid else 'stopped'}")
    return 0 if pid else 3
