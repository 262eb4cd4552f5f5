# The workbench's apps in the user's server (installed as <venv>/etc/jupyter/jupyter_server_config.py by
# `make install`): the apps the profile offers (AIFACTORY_APPS, set by the hub in the job) behind
# jupyter-server-proxy, each on a private Unix socket, started when first opened.
# Only the standard library is imported here: this runs at every server's start.
import os
import sys
from pathlib import Path

from aifactory.extensions.workbench import apps
from aifactory.site.install import install_prefix

c = get_config()  # noqa: F821  (provided by traitlets)

_offered, _unknown = apps.parse_apps(os.environ.get("AIFACTORY_APPS"))
if _unknown:
    print(f"[aifactory] AIFACTORY_APPS names unknown apps, left out: {', '.join(_unknown)}", file=sys.stderr)
_home = Path.home()
c.ServerProxy.servers = apps.servers(
    _offered,
    python=sys.executable,
    code_server=apps.code_server(install_prefix()),
    home=_home,
)
# /proxy/<port>/ (the Dask dashboard's way in) only to ports of this user's own processes.
c.ServerProxy.host_allowlist = apps.own_ports_only
if "mlflow" in _offered:
    # Kernels and terminals inherit the server's environment: `mlflow.log_*` in a notebook lands in the
    # store the MLflow app shows (unless the user chose another one).
    os.environ.setdefault("MLFLOW_TRACKING_URI", apps.mlflow_tracking_uri(_home))
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # compute nodes are offline
