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

# A server started by the platform's launcher (aifactory.spawners.singleuser) leaves off the server extensions
# it names as unused by this user (nbgrader's outside courses, jupyter-lsp without a language server) and
# nbgrader's JupyterLab panels with them; its extension manager only lists what is installed (compute nodes
# are offline; the PyPI manager's HTTP client costs a tenth of the start). Each start is 4-5 CPU-seconds.
if "AIFACTORY_SERVER_EXTENSIONS_OFF" in os.environ:
    _off = [name for name in os.environ["AIFACTORY_SERVER_EXTENSIONS_OFF"].split(",") if name]
    c.ServerApp.jpserver_extensions.update(dict.fromkeys(_off, False))
    c.LabApp.extension_manager = "readonly"
    if "nbgrader.server_extensions.assignment_list" in _off:  # nbgrader off whole: outside courses
        # JupyterLab reads its page config (disabledExtensions) from labconfig/ in the Jupyter config path at
        # each page: this one, installed next to this file, hides nbgrader's menus and panels.
        os.environ["JUPYTER_CONFIG_PATH"] = os.pathsep.join(
            filter(None, [str(Path(__file__).parent / "aifactory-no-nbgrader"), os.environ.get("JUPYTER_CONFIG_PATH")]))
    # A course's student: the instructor's nbgrader panels hidden too; a course server opens on the assignment list.
    from aifactory.extensions.workbench import course_lab

    course_lab.configure(c, _off, os.environ, Path(__file__).parent)
