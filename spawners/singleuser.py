"""The launcher inside the job: report the port, run the server, watch the walltime.

    python -m aifactory.spawners.singleuser -- jupyterhub-singleuser [args...]

Standard library only (it starts before the server, on every spawn):

1. picks a free port and reports it to the hub at `$JUPYTERHUB_API_URL/aifactory/port`
   with the server's own token; the hub accepts nothing but that port;
2. runs the server as its child with the port in `JUPYTERHUB_SERVICE_URL`, and
   `AIFACTORY_JOB_END` (epoch seconds) and `AIFACTORY_SESSION_FILE` in its
   environment, so extensions can show the time left;
3. on SIGUSR1 (Slurm's warning, `--signal=B:USR1@...`) records the warning in the
   session file; on SIGTERM (the end of the walltime or scancel) stops the server
   cleanly and exits with its status.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlparse, urlunparse


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def report_port(port: int, attempts: int = 8) -> None:
    """POST {"port": port}; retried with backoff while the hub is unreachable, fatal if refused."""
    url = os.environ["JUPYTERHUB_API_URL"].rstrip("/") + "/aifactory/port"
    body = json.dumps({"port": port}).encode()
    delay = 0.5
    for attempt in range(attempts):
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Authorization": f"token {os.environ['JUPYTERHUB_API_TOKEN']}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10):
                return
        except urllib.error.HTTPError as error:
            if error.code < 500:
                sys.exit(f"aifactory: the hub refused the port report: {error.code} {error.read()[:200]!r}")
        except OSError as error:
            print(f"aifactory: hub not reachable ({error}); retrying", file=sys.stderr, flush=True)
        time.sleep(delay)
        delay = min(delay * 2, 10)
    sys.exit("aifactory: could not report the server's port to the hub")


def write_session(path: str, data: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as out:
        json.dump(data, out)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        sys.exit("usage: python -m aifactory.spawners.singleuser -- SERVER [ARGS...]")
    port = free_port()
    report_port(port)
    env = dict(os.environ)
    service = urlparse(env.get("JUPYTERHUB_SERVICE_URL", "http://0.0.0.0:0/"))
    env["JUPYTERHUB_SERVICE_URL"] = urlunparse(service._replace(netloc=f"0.0.0.0:{port}"))
    job = env.get("SLURM_JOB_ID", "local")
    ends_at = int(time.time()) + 60 * int(env.get("AIFACTORY_WALLTIME_MINUTES", "0") or 0)
    session_dir = os.path.join(os.path.expanduser("~"), ".aifactory")
    os.makedirs(session_dir, exist_ok=True)
    session_file = os.path.join(session_dir, f"session-{job}.json")
    session = {"job_id": job, "port": port, "ends_at": ends_at, "warned_at": None}
    write_session(session_file, session)
    env["AIFACTORY_JOB_END"] = str(ends_at)
    env["AIFACTORY_SESSION_FILE"] = session_file

    children: list[subprocess.Popen] = []

    def warn(signum, frame):
        session["warned_at"] = int(time.time())
        write_session(session_file, session)
        left = max(0, ends_at - session["warned_at"])
        print(f"aifactory: walltime ends in {left} s; the server will stop then", file=sys.stderr, flush=True)

    def stop(signum, frame):
        print(f"aifactory: signal {signum}: stopping the server", file=sys.stderr, flush=True)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    # Handlers first: Slurm's signals may come as soon as the job runs.
    signal.signal(signal.SIGUSR1, warn)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    children.append(subprocess.Popen(argv, env=env))
    code = children[0].wait()
    print(f"aifactory: server exited with {code}", file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
