"""The launcher in the job: reports only its port, records Slurm's warning, stops the server on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path


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


def test_launcher_reports_port_warns_and_stops_cleanly(tmp_path):
    hub = HTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    child_log = tmp_path / "child.txt"
    server = ("import os, signal, sys, time\n"
              f"open({str(child_log)!r}, 'w').write(os.environ['JUPYTERHUB_SERVICE_URL'] + ' ' + os.environ['AIFACTORY_JOB_END'])\n"
              "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
              "time.sleep(60)\n")
    env = {**os.environ, "HOME": str(tmp_path), "SLURM_JOB_ID": "42", "AIFACTORY_WALLTIME_MINUTES": "10",
           "JUPYTERHUB_API_URL": f"http://127.0.0.1:{hub.server_port}/hub/api", "JUPYTERHUB_API_TOKEN": "secret",
           "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:0/user/alice/"}
    proc = subprocess.Popen([sys.executable, "-m", "aifactory.spawners.singleuser", "--", sys.executable, "-c", server],
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(child_log.exists)
        wait_for(lambda: child_log.read_text().strip() != "")
        ((path, auth, body),) = FakeHub.reports
        assert (path, auth, list(body)) == ("/hub/api/aifactory/port", "token secret", ["port"])
        url, end = child_log.read_text().split()
        assert url == f"http://0.0.0.0:{body['port']}/user/alice/"
        assert abs(int(end) - (time.time() + 600)) < 30
        session_file = Path(tmp_path, ".aifactory", "session-42.json")
        proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: json.loads(session_file.read_text())["warned_at"] is not None)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert "stopping the server" in proc.stderr.read()
    finally:
        proc.kill()
        hub.shutdown()
