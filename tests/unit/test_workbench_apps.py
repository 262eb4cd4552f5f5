"""The workbench's apps as jupyter-server-proxy config: pure, one entry per offered app, no TCP port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from aifactory.extensions.workbench import apps, serve
from aifactory.site import load_site
from aifactory.site.load import DEMO_SITE

from tests.conftest import REPO

PATHS = {"python": "/opt/aifactory/venv/bin/python", "code_server": apps.code_server("/opt/aifactory"),
         "home": "/home/student1"}
CONFIG = REPO / "extensions" / "workbench" / "jupyter-config" / "jupyter_server_config.py"


def test_each_offered_app_is_a_proxied_server_with_its_tile():
    servers = apps.servers(["vscode", "tensorboard", "mlflow"], **PATHS)
    assert list(servers) == ["vscode", "tensorboard", "mlflow"]
    assert servers["vscode"]["command"] == [
        "/opt/aifactory/code-server/node_modules/.bin/code-server", "--socket", "{unix_socket}",
        "--session-socket", "{unix_socket}-session", "--auth", "none",
        "--config", "/dev/null", "--disable-telemetry", "--disable-update-check", "--disable-proxy",
        "--disable-getting-started-override", "/home/student1"]
    assert servers["tensorboard"]["command"] == [
        "/opt/aifactory/venv/bin/python", "-m", "aifactory.extensions.workbench.serve", "tensorboard",
        "--socket", "{unix_socket}"]
    assert servers["mlflow"]["command"][3:] == ["mlflow", "--socket", "{unix_socket}"]
    for name, server in servers.items():
        assert server["launcher_entry"]["title"] == apps.TITLES[name]
        assert Path(server["launcher_entry"]["icon_path"]).is_file()
        assert server["new_browser_tab"] is True and server["absolute_url"] is False


@pytest.mark.parametrize("offered", [[], ["tensorboard"], ["mlflow", "vscode"], ["vscode", "tensorboard", "mlflow"]])
def test_only_the_offered_apps_and_each_on_a_private_socket_never_a_port(offered):
    servers = apps.servers(offered, **PATHS)
    assert list(servers) == offered
    for server in servers.values():
        # jupyter-server-proxy makes a fresh 0700 folder for the socket; a port would be open to the node.
        assert server["unix_socket"] is True and "port" not in server
        assert "{port}" not in " ".join(server["command"])
        assert "{unix_socket}" in server["command"]
        assert all(a.startswith("{unix_socket}") for a in server["command"] if "{unix_socket}" in a)


def test_the_apps_list_from_the_environment():
    assert apps.parse_apps("vscode,tensorboard,mlflow") == (["vscode", "tensorboard", "mlflow"], [])
    assert apps.parse_apps(" mlflow , ,vscode,mlflow") == (["mlflow", "vscode"], [])
    assert apps.parse_apps("") == ([], []) and apps.parse_apps(None) == ([], [])
    # An unknown name is left out (and named, for the server's log), never run as a command.
    assert apps.parse_apps("tensorboard,rstudio,../../bin/sh") == (["tensorboard"], ["rstudio", "../../bin/sh"])
    assert apps.servers(["rstudio", "tensorboard"], **PATHS).keys() == {"tensorboard"}


def test_the_site_schema_and_the_apps_agree():
    profiles = load_site(DEMO_SITE).profiles
    assert {app for p in profiles for app in p.apps} <= set(apps.APPS)
    assert {app for p in profiles for app in p.apps} == set(apps.APPS)  # the demo offers each somewhere


def test_the_icons_are_our_own_svgs_with_a_title():
    for app in apps.APPS:
        root = ET.parse(apps.ICONS / f"{app}.svg").getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert root.find("{http://www.w3.org/2000/svg}title").text == apps.TITLES[app]


def test_mlflow_store_is_a_sqlite_file_in_the_home():
    assert apps.mlflow_tracking_uri("/home/student1") == "sqlite:////home/student1/mlflow/mlflow.db"
    assert serve.mlflow_store(None, Path("/home/u")) == "sqlite:////home/u/mlflow/mlflow.db"
    assert serve.mlflow_store("sqlite:////scratch/u/runs.db", Path("/home/u")) == "sqlite:////scratch/u/runs.db"
    # A remote tracking server is no store the UI can open: it shows the default one.
    assert serve.mlflow_store("http://mlflow.example.org", Path("/home/u")) == "sqlite:////home/u/mlflow/mlflow.db"


def test_tensorboard_log_folder_choice(tmp_path):
    home = tmp_path / "home"
    (home / "runs" / "exp1").mkdir(parents=True)
    mine = tmp_path / "scratch"
    mine.mkdir()
    uid = os.getuid()
    assert serve.tensorboard_logdir(None, home, uid) == (home / "tensorboard", "")
    assert serve.tensorboard_logdir("runs/exp1", home, uid) == (home / "runs" / "exp1", "")
    assert serve.tensorboard_logdir(str(home / "not-yet"), home, uid) == (home / "not-yet", "")
    assert serve.tensorboard_logdir(str(mine), home, uid) == (mine, "")
    # Refused, with the reason: someone else's folder, a file, a folder that is not there, a way out of ~.
    for choice in (str(mine), "/etc/hostname", str(tmp_path / "missing"), "../scratch/../../"):
        logdir, why = serve.tensorboard_logdir(choice, home, uid + 1)
        assert logdir == home / "tensorboard" and choice in why, (choice, why)


def server_config(env: dict[str, str], home: Path) -> tuple[dict, str | None, list[str], str, str | None]:
    """Run the jupyter config file as the server would: its servers, the MLFLOW_TRACKING_URI it leaves,
    the modules it imported, its log, the MLFLOW_DISABLE_TELEMETRY it leaves."""
    code = (
        "import json, os, runpy, sys\n"
        "from traitlets.config import Config\n"
        "c = Config()\n"
        f"runpy.run_path({str(CONFIG)!r}, init_globals={{'get_config': lambda: c}})\n"
        "print(json.dumps([c.ServerProxy.servers, os.environ.get('MLFLOW_TRACKING_URI'), sorted(sys.modules),"
        " os.environ.get('MLFLOW_DISABLE_TELEMETRY')]))\n"
    )
    clean = {k: v for k, v in os.environ.items()
             if k not in ("AIFACTORY_APPS", "MLFLOW_TRACKING_URI", "MLFLOW_DISABLE_TELEMETRY")}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env, "HOME": str(home)},
                         capture_output=True, text=True, check=True)
    servers, uri, modules, telemetry = json.loads(out.stdout)
    return servers, uri, modules, out.stderr, telemetry


def test_the_server_config_reads_the_apps_and_sets_the_kernels_tracking_uri(tmp_path):
    servers, uri, modules, log, telemetry = server_config({"AIFACTORY_APPS": "tensorboard,mlflow,nope"}, tmp_path)
    assert list(servers) == ["tensorboard", "mlflow"]
    assert servers["mlflow"]["command"][0] == sys.executable
    assert uri == f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    assert telemetry == "true"  # the nodes are offline: MLflow in the kernels sends nothing out
    assert "nope" in log
    # The server's start pays for nothing of the apps: no TensorBoard, MLflow or werkzeug imported.
    assert not [m for m in modules if m.split(".")[0] in ("tensorboard", "mlflow", "werkzeug", "flask")]


def test_no_apps_no_servers_and_a_users_own_tracking_uri_is_kept(tmp_path):
    assert server_config({}, tmp_path)[:2] == ({}, None)
    assert server_config({"AIFACTORY_APPS": "vscode"}, tmp_path)[1] is None  # MLflow not offered: left alone
    assert server_config({"AIFACTORY_APPS": "mlflow", "MLFLOW_TRACKING_URI": "sqlite:////x.db"},
                         tmp_path)[1] == "sqlite:////x.db"


# /proc/net/tcp as this machine printed it (8000: root's proxy, 3306: uid 102's MariaDB), plus one port
# listened on by uid 1001 and one of its connections (state 01), which is no listening port.
TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3085128 1 000000002fa73a5c 100 0 0 10 0
   2: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000   102        0 2807674 1 00000000f10b938b 100 0 0 10 0
   3: 0100007F:223B 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 2807675 1 00000000f10b938c 100 0 0 10 0
   4: 0100007F:B7F2 0100007F:1F40 01 00000000:00000000 00:00000000 00000000  1001        0 2807676 1 00000000f10b938d 100 0 0 10 0
"""
BASE = "/user/student1/wb/"


def test_the_ports_a_user_listens_on():
    assert apps.listening_ports([TCP], 1001) == {0x223B}
    assert apps.listening_ports([TCP, ""], 0) == {8000}
    assert apps.listening_ports([TCP], 1002) == set()


@pytest.mark.parametrize("path, port", [
    (BASE + "proxy/8787/status", 8787), (BASE + "proxy/8787", 8787), (BASE + "proxy/absolute/8787/", 8787),
    (BASE + "proxy/localhost:8787/x", 8787), (BASE + "vscode/", None), (BASE + "vscode/proxy/8787/", None),
    (BASE + "tensorboard/proxy/8787/", None), ("/user/student2/wb/proxy/8787/", None),
])
def test_which_port_a_request_asks_the_proxy_for(path, port):
    assert apps.proxied_port(path, BASE) == port


class _Request:
    def __init__(self, path):
        self.path = path


class _Handler:
    base_url = BASE

    def __init__(self, path):
        self.request = _Request(path)


def test_the_proxy_reaches_only_this_users_own_ports(monkeypatch):
    monkeypatch.setattr(apps, "_proc_tables", lambda: [TCP])
    monkeypatch.setattr(apps.os, "getuid", lambda: 1001)
    assert apps.own_ports_only(_Handler(BASE + "proxy/8763/status"), "localhost")  # 0x223B: theirs
    assert not apps.own_ports_only(_Handler(BASE + "proxy/3306/"), "localhost")  # MariaDB's, uid 102
    assert not apps.own_ports_only(_Handler(BASE + "proxy/8000/"), "127.0.0.1")  # root's
    assert not apps.own_ports_only(_Handler(BASE + "proxy/8763/"), "10.77.0.1")  # not loopback
    assert apps.own_ports_only(_Handler(BASE + "vscode/"), "localhost")  # an app on its own socket


def test_the_server_config_sets_the_proxys_allowlist(tmp_path):
    """What the installed config does: jupyter-server-proxy gets `own_ports_only` as its host_allowlist."""
    code = ("from traitlets.config import Config\n"
            "c = Config()\n"
            f"exec(open({str(CONFIG)!r}).read(), {{'get_config': lambda: c}})\n"
            "from aifactory.extensions.workbench import apps\n"
            "print(c.ServerProxy.host_allowlist is apps.own_ports_only)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "HOME": str(tmp_path), "AIFACTORY_APPS": ""})
    assert out.stdout.strip() == "True", out.stderr


def launched_config(env: dict[str, str], home: Path) -> dict:
    """The installed config as the server reads it (traitlets' loader, with __file__) under the platform's launcher."""
    code = (
        "import json, os\n"
        "from traitlets.config import Config, PyFileConfigLoader\n"
        f"c = PyFileConfigLoader({CONFIG.name!r}, path={str(CONFIG.parent)!r}).load_config()\n"
        "print(json.dumps({'extensions': dict(c.ServerApp.jpserver_extensions.get_value({})) "
        "if 'jpserver_extensions' in c.ServerApp else {}, 'manager': c.LabApp.get('extension_manager'),"
        " 'config_path': os.environ.get('JUPYTER_CONFIG_PATH')}))\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIFACTORY_", "JUPYTER_CONFIG_PATH"))}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env, "HOME": str(home)},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_launched_server_leaves_off_what_the_launcher_names_and_hides_nbgrader_with_it(tmp_path):
    off = "nbgrader.server_extensions.assignment_list,jupyter_lsp"
    config = launched_config({"AIFACTORY_SERVER_EXTENSIONS_OFF": off}, tmp_path)
    assert config["extensions"] == {"nbgrader.server_extensions.assignment_list": False, "jupyter_lsp": False}
    assert config["manager"] == "readonly"  # compute nodes are offline: no PyPI client at start
    (labconfig,) = config["config_path"].split(os.pathsep)
    # The page config that hides nbgrader's menus sits where the installed config looks for it.
    assert Path(labconfig).name == "aifactory-no-nbgrader"
    page = REPO / "extensions" / "workbench" / "jupyter-config" / "no-nbgrader" / "labconfig" / "page_config.json"
    # ... and live help with the real-time collaboration it runs on (course servers only).
    assert json.loads(page.read_text()) == {"disabledExtensions": {
        "@jupyter/nbgrader": True, "@jupyter/collaboration-extension": True, "@jupyter/docprovider-extension": True,
        "@aifactory/workbench:live-help": True}}
    # In a course: nbgrader stays, its panels too.
    config = launched_config({"AIFACTORY_SERVER_EXTENSIONS_OFF": "jupyter_lsp"}, tmp_path)
    assert config["extensions"] == {"jupyter_lsp": False} and config["config_path"] is None
    # A server not started by the launcher (the formgrader service, a bare jupyterhub-singleuser) is left as installed.
    assert launched_config({}, tmp_path) == {"extensions": {}, "manager": None, "config_path": None}
