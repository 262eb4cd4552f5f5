"""The web apps next to JupyterLab (VS Code, TensorBoard, MLflow's UI) as jupyter-server-proxy servers.

A pure function of the apps the profile offers (`AIFACTORY_APPS`, set by the hub in the job) and a few
paths: `servers(...)` is what `jupyter-config/jupyter_server_config.py` puts in `c.ServerProxy.servers`.

Why each entry looks the way it does:
- Every app listens on a Unix socket (`unix_socket: True`: jupyter-server-proxy makes a fresh 0700 folder
  for it), never on a TCP port: a port on the node's loopback is open to every user with a job there,
  and VS Code's terminal would be theirs. The user's own authenticated server is the only way in.
- An app starts when its URL is first opened (jupyter-server-proxy supervises it), never at server start.
- code-server runs with `--auth none` only because nobody but the user can reach its socket (its session
  socket, for the `code` command, goes into the same private folder); it reads no config file of its own
  (that one may ask for a TCP address and a password) and never calls home (nodes are offline).
- code-server keeps VS Code's workspace trust (a folder another user wrote, opened by a link's `?folder=`,
  may hold a task that runs when the folder opens) and has its own port proxy off (`/proxy/<port>/` of any
  port on the node, behind the user's origin).
- TensorBoard and MLflow are served by our launcher (`serve.py`): their own CLIs listen on TCP only.
- jupyter-server-proxy's `/proxy/<port>/` (the Dask dashboard's way in) reaches only ports the user's own
  processes listen on (`own_ports_only`): a page another user serves on the node's loopback would otherwise
  run on this user's origin, with their cookies.

Standard library only (and the launcher's stdlib-only module): this runs in every server's start.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from aifactory.spawners.singleuser import listening

APPS = ("vscode", "tensorboard", "mlflow")
TITLES = {"vscode": "VS Code", "tensorboard": "TensorBoard", "mlflow": "MLflow"}
ICONS = Path(__file__).resolve().parent / "icons"
SERVE = "aifactory.extensions.workbench.serve"
# Seconds an app may take to answer on its socket the first time (code-server and MLflow's imports are slow
# on a busy node); the user sees jupyter-server-proxy's page until then.
START_SECONDS = 120.0
# Where each user's MLflow runs live, under ~ where they see it: a SQLite store (MLflow 3 deprecates the
# folder store `./mlruns`) and the artifacts of the experiments made in the UI.
MLFLOW_DB = "mlflow/mlflow.db"
MLFLOW_ARTIFACTS = "mlflow/artifacts"
# TensorBoard's log folder when the user chose none (AIFACTORY_TENSORBOARD_LOGDIR), under ~.
TENSORBOARD_LOGDIR = "tensorboard"
# code-server from the npm registry, installed next to the shared environment (`make apps`).
CODE_SERVER = "code-server/node_modules/.bin/code-server"


def parse_apps(value: str | None) -> tuple[list[str], list[str]]:
    """(the known apps named in a comma list, in its order, once each; the unknown names)."""
    names = [n.strip() for n in (value or "").split(",") if n.strip()]
    known = [n for i, n in enumerate(names) if n in APPS and n not in names[:i]]
    return known, [n for n in names if n not in APPS]


def code_server(install_prefix: str | Path) -> str:
    return str(Path(install_prefix) / CODE_SERVER)


def mlflow_tracking_uri(home: str | Path) -> str:
    """The user's MLflow store, the same for the UI and for `mlflow.log_*` in their kernels."""
    return f"sqlite:///{Path(home) / MLFLOW_DB}"


def mlflow_artifacts(home: str | Path) -> str:
    return str(Path(home) / MLFLOW_ARTIFACTS)


def _command(app: str, python: str, code_server: str, home: str) -> list[str]:
    if app == "vscode":
        return [code_server, "--socket", "{unix_socket}", "--session-socket", "{unix_socket}-session",
                "--auth", "none", "--config", "/dev/null",
                "--disable-telemetry", "--disable-update-check", "--disable-proxy",
                "--disable-getting-started-override", home]
    return [python, "-m", SERVE, app, "--socket", "{unix_socket}"]


def servers(apps: list[str], *, python: str, code_server: str, home: str | Path) -> dict[str, dict[str, Any]]:
    """jupyter-server-proxy's `ServerProxy.servers` for the known `apps`: each at `/<app>/` of the user's
    server, on a socket, with a launcher tile (our own icon). Unknown names are left out."""
    return {
        app: {
            "command": _command(app, python, code_server, str(home)),
            "unix_socket": True,
            "timeout": START_SECONDS,
            "absolute_url": False,
            "new_browser_tab": True,
            "launcher_entry": {
                "enabled": True,
                "title": TITLES[app],
                "icon_path": str(ICONS / f"{app}.svg"),
                "category": "Notebook",
            },
        }
        for app in apps if app in APPS
    }


# What jupyter-server-proxy's port routes look like after the server's base URL: /proxy/P/, /proxy/absolute/P/,
# /proxy/<host>:P/ (the host is checked against the allowlist's own rule: loopback names only).
_PORT_ROUTE = re.compile(r"proxy/(?:absolute/)?(?:[^/:@]+:)?(\d+)(?:/|$)")
LOOPBACK = ("localhost", "127.0.0.1")


def listening_ports(tables: list[str], uid: int) -> set[int]:
    """The TCP ports `uid` listens on, from the text of /proc/net/tcp and /proc/net/tcp6 (its owner column)."""
    return {port for table in tables for port, owner, _ in listening(table) if owner == uid}


def proxied_port(path: str, base_url: str) -> int | None:
    """The port a request to jupyter-server-proxy's port route asks for; None for any other path (an app)."""
    if not path.startswith(base_url):
        return None
    match = _PORT_ROUTE.match(path[len(base_url):])
    return int(match.group(1)) if match else None


def _proc_tables() -> list[str]:
    tables = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as table:
                tables.append(table.read())
        except OSError:
            pass
    return tables


def own_ports_only(handler: Any, host: str) -> bool:
    """jupyter-server-proxy's `host_allowlist`: loopback only, and a port route only to a port this user's
    processes listen on (read when asked, so a port that changed hands is not trusted)."""
    if host not in LOOPBACK:
        return False
    port = proxied_port(handler.request.path, handler.base_url)
    return port is None or port in listening_ports(_proc_tables(), os.getuid())
