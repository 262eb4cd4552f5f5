"""The launcher in the job: reports only its port, records Slurm's warning, stops the server on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from aifactory.spawners import singleuser


class FakeHub(BaseHTTPRequestHandler):
    reports: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        FakeHub.reports.append((self.path, self.headers["Authorization"], json.loads(body)))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args):
        pass


def wait_for(condition, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.05)


# A stand-in for jupyterhub-singleuser: binds the port of JUPYTERHUB_SERVICE_URL after a moment
# (the window in which another server may take it), exits 1 if it is taken (port_retries = 0),
# and answers every GET with its name.
SERVER = """\
import http.server, os, signal, sys, time, urllib.parse
port = urllib.parse.urlparse(os.environ["JUPYTERHUB_SERVICE_URL"]).port
log = os.environ.get("CHILD_LOG")
if log:
    open(log, "w").write(os.environ["JUPYTERHUB_SERVICE_URL"] + " " + os.environ["AIFACTORY_JOB_END"])
class Name(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(os.environ["WHO"].encode())
    def log_message(self, *args):
        pass
time.sleep(0.3)
try:
    server = http.server.HTTPServer(("0.0.0.0", port), Name)
except OSError:
    sys.exit(1)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
server.serve_forever()
"""

# The launcher with its first free port forced to FIRST_PORT: two servers that found the same free port.
LAUNCHER = """\
import os, sys
from aifactory.spawners import singleuser
first, real = [int(os.environ["FIRST_PORT"])], singleuser.free_port
singleuser.free_port = lambda: first.pop() if first else real()
sys.exit(singleuser.main(sys.argv[1:]))
"""


def launcher_env(tmp_path, hub, name, **extra):
    return {**os.environ, "HOME": str(tmp_path / name), "SLURM_JOB_ID": "42", "AIFACTORY_WALLTIME_MINUTES": "10",
            "JUPYTERHUB_API_URL": f"http://127.0.0.1:{hub.server_port}/hub/api",
            "JUPYTERHUB_API_TOKEN": f"token-of-{name}", "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:0/user/{name}/",
            "WHO": name, **extra}


@pytest.fixture
def hub():
    FakeHub.reports = []
    server = HTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def reported(name: str) -> list[int]:
    return [body["port"] for _, auth, body in FakeHub.reports if auth == f"token token-of-{name}"]


def answer(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        return response.read().decode()


def test_launcher_reports_port_warns_and_stops_cleanly(tmp_path, hub):
    child_log = tmp_path / "child.txt"
    env = launcher_env(tmp_path, hub, "alice", CHILD_LOG=str(child_log))
    proc = subprocess.Popen([sys.executable, "-m", "aifactory.spawners.singleuser", "--", sys.executable, "-c", SERVER],
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: FakeHub.reports)
        ((path, auth, body),) = FakeHub.reports
        assert (path, auth, list(body)) == ("/hub/api/aifactory/port", "token token-of-alice", ["port"])
        assert answer(body["port"]) == "alice"  # reported once the server listens on it
        url, end = child_log.read_text().split()
        assert url == f"http://0.0.0.0:{body['port']}/user/alice/"
        assert abs(int(end) - (time.time() + 600)) < 30
        session_file = Path(tmp_path, "alice", ".aifactory", "session-42.json")
        assert json.loads(session_file.read_text())["port"] == body["port"]
        proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: json.loads(session_file.read_text())["warned_at"] is not None)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert "stopping the server" in proc.stderr.read()
    finally:
        proc.kill()


def test_a_port_taken_after_it_was_found_free_is_never_reported(tmp_path, hub):
    with socket.socket() as other:  # another server on the node takes the port first
        other.bind(("0.0.0.0", 0))
        other.listen()
        taken = other.getsockname()[1]
        env = launcher_env(tmp_path, hub, "bob", FIRST_PORT=str(taken))
        log = tmp_path / "bob.log"
        with log.open("w") as stderr:
            proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, "--", sys.executable, "-c", SERVER], env=env,
                                    stderr=stderr)
        try:
            wait_for(lambda: reported("bob"))
            (port,) = reported("bob")
            assert port != taken
            assert answer(port) == "bob"
        finally:
            proc.terminate()
            proc.wait(15)
    assert f"did not listen on port {taken}" in log.read_text()


def test_two_servers_started_at_once_on_one_node_get_distinct_working_ports(tmp_path, hub):
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        same = probe.getsockname()[1]  # both launchers find this port free
    procs = [subprocess.Popen([sys.executable, "-c", LAUNCHER, "--", sys.executable, "-c", SERVER],
                              env=launcher_env(tmp_path, hub, name, FIRST_PORT=str(same)), stderr=subprocess.DEVNULL)
             for name in ("carol", "dave")]
    try:
        wait_for(lambda: reported("carol") and reported("dave"))
        ports = {name: reported(name)[0] for name in ("carol", "dave")}
        assert ports["carol"] != ports["dave"]
        assert same in ports.values()
        assert {name: answer(port) for name, port in ports.items()} == {"carol": "carol", "dave": "dave"}
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(15)


def test_only_sockets_of_the_servers_own_process_tree_count():
    table = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
             "   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1\n"
             "   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 222 1\n"
             "   2: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 333 1\n")
    assert singleuser.listening_inodes(table, 8080) == {"111"}
    parents = singleuser.parent_pids({10: "10 (bash) S 1 x", 11: "11 (a) b) S 10 x", 12: "12 (py) S 11 x",
                                      13: "13 (other) S 1 x"})
    assert parents == {10: 1, 11: 10, 12: 11, 13: 1}
    assert singleuser.descendants(10, parents) == {10, 11, 12}


def test_the_cheap_connect_check_sees_a_listener_and_nothing_else():
    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))
        port = listener.getsockname()[1]
        assert not singleuser.accepts_connections(port)  # bound, not listening yet
        listener.listen()
        assert singleuser.accepts_connections(port)
    assert not singleuser.accepts_connections(port)


def test_a_server_leaves_off_the_extensions_its_user_cannot_use():
    # Outside courses: nbgrader, and live help with the real-time collaboration it runs on.
    nbgrader = [*singleuser.NBGRADER_EXTENSIONS, *singleuser.COLLABORATION_EXTENSIONS]
    assert singleuser.unused_extensions(["researcher1", "researchers"], False) == [*nbgrader, "jupyter_lsp"]
    # A member of a course (its Unix group, as the course's exchange names it) keeps nbgrader's panels; a student
    # (in no course's trainers group) has neither the instructor's formgrader nor the list of courses one grades.
    from aifactory.site.identity import members_group, trainers_group

    instructor = ["nbgrader.server_extensions.course_list", "nbgrader.server_extensions.formgrader"]
    assert singleuser.unused_extensions(["student1", members_group("intro-dl")], False) == [*instructor, "jupyter_lsp"]
    assert singleuser.unused_extensions([members_group("intro-dl")], True) == instructor
    trainer = [members_group("intro-dl"), trainers_group("intro-dl"), members_group("dask-scaling")]
    assert singleuser.unused_extensions(trainer, True) == []
    assert singleuser.unused_extensions(["researchers"], True) == nbgrader
    assert not singleuser.language_server_on("/nonexistent")


def test_the_servers_python_starts_without_jsonschemas_iri_parsers_and_its_kernels_see_no_trace():
    """What the shared environment's aifactory-server-start.pth does in a process started with the launcher's
    marker: jsonschema loads without rfc3987_syntax (a fifth of a server's start CPU) and the marker is gone."""
    pth = Path(__file__).parents[2] / "extensions" / "workbench" / "jupyter-config" / "aifactory-server-start.pth"
    (line,) = pth.read_text().splitlines()
    assert line.startswith("import ")  # site.py runs only the .pth lines that start with an import
    code = (f"exec({line!r})\n"
            "import json, os, sys, jsonschema\n"
            "print(json.dumps([sys.modules.get('rfc3987_syntax') is None, os.environ.get('AIFACTORY_SERVER_START'),"
            " 'iri' in jsonschema.Draft7Validator.FORMAT_CHECKER.checkers]))")
    run = lambda env: json.loads(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                                text=True, timeout=120, check=True).stdout)
    clean = {k: v for k, v in os.environ.items() if k != singleuser.SERVER_START}
    assert run({**clean, singleuser.SERVER_START: "1"}) == [True, None, False]
    assert run(clean)[2]  # any other process keeps jsonschema as it is
