#!/usr/bin/python3 -IS
"""A stand-in for jupyterhub-singleuser that speaks only what the hub needs, so a thousand fit on one machine.

bench_scale starts it through the product's real batch script and launcher, and
through stock batchspawner's batch script. Standard library only, run with -I -S,
no threads: a few MiB per server.

- listens on the port in $JUPYTERHUB_SERVICE_URL (the launcher chose it; on every address,
  the hub reaches it on the node's); with `--batchspawner` it does what stock's
  batchspawner-singleuser does instead (which imports jupyterhub and requests, 78 MiB,
  and runs the server in its own process): takes a free port and POSTs it to
  $JUPYTERHUB_API_URL/batchspawner;
- answers every GET: `<prefix>api` with the version JSON and `X-JupyterHub-Version` (the hub's
  check that the server is up, `User._wait_up`), `<prefix>api/status` with the activity
  fields jupyter-server gives, anything else with a short page (a request through the proxy);
- posts its activity to $JUPYTERHUB_ACTIVITY_URL with $JUPYTERHUB_API_TOKEN at start and every
  $JUPYTERHUB_ACTIVITY_INTERVAL seconds (300, jupyterhub-singleuser's default), as the real one does;
- SIGTERM (the launcher's stop, Slurm's end) ends it.
"""

import json
import os
import selectors
import socket
import sys
import time

VERSION = os.environ.get("STANDIN_JUPYTERHUB_VERSION", "")  # the hub's, set by the benchmark's spawner environment


def iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1e6):06d}Z"


def split_url(url: str) -> tuple[str, int, str]:
    """(host, port, path) of an http:// URL."""
    rest = url.split("://", 1)[-1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "80")
    return host.strip("[]"), int(port), "/" + path


def post(url: str, token: str, data: dict, timeout: float | None = 30) -> bytes:
    """POST `data` as JSON to the hub with `token`; the answer's status code, b"" if there was none."""
    body = json.dumps(data).encode()
    host, port, path = split_url(url)
    head = (f"POST {path} HTTP/1.0\r\nHost: {host}:{port}\r\nAuthorization: token {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(head + body)
            return (sock.recv(64).split(b" ", 2)[1:2] or [b""])[0]
    except OSError as error:
        print(f"standin: POST {path} failed: {error}", flush=True)
        return b""


def post_activity(url: str, token: str, server: str) -> None:
    """One activity report, as jupyterhub-singleuser's (errors are logged and ignored, as there)."""
    now = iso(time.time())
    status = post(url, token, {"servers": {server: {"last_activity": now}}, "last_activity": now})
    if not status.startswith(b"2"):
        print(f"standin: activity report answered {status!r}", flush=True)


def response(path: str, prefix: str, started: str) -> bytes:
    status, kind = "200 OK", "application/json"
    path = path.split("?", 1)[0]
    if path.rstrip("/") == prefix + "api":
        text = json.dumps({"version": "2.0.0-standin"})
    elif path.rstrip("/") == prefix + "api/status":
        text = json.dumps({"started": started, "last_activity": started, "connections": 0, "kernels": 0})
    else:
        text, kind = "stand-in server\n", "text/plain"
    body = text.encode()
    return (f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
            f"X-JupyterHub-Version: {VERSION}\r\nConnection: close\r\n\r\n").encode() + body


def serve() -> None:
    env = os.environ
    host, port, _ = split_url(env.get("JUPYTERHUB_SERVICE_URL", "http://0.0.0.0:8888/"))
    prefix = env.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    activity_url = env.get("JUPYTERHUB_ACTIVITY_URL", "")
    interval = float(env.get("JUPYTERHUB_ACTIVITY_INTERVAL", "300"))
    started = iso(time.time())
    batchspawner = "--batchspawner" in sys.argv[1:]
    listener = socket.create_server((host if host not in ("", "0.0.0.0") else "", 0 if batchspawner else port),
                                    backlog=64)
    if batchspawner:
        port = listener.getsockname()[1]
        # No timeout: batchspawner-singleuser's requests.post waits as long as the hub takes.
        status = post(env["JUPYTERHUB_API_URL"].rstrip("/") + "/batchspawner", env["JUPYTERHUB_API_TOKEN"],
                      {"port": port}, timeout=None)
        if not status.startswith(b"2"):
            sys.exit(f"standin: the hub answered {status!r} to the port report")
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    pending: dict[socket.socket, bytes] = {}
    next_report = time.monotonic()
    print(f"standin: listening on {port}", flush=True)
    while True:
        if activity_url and time.monotonic() >= next_report:
            post_activity(activity_url, env.get("JUPYTERHUB_API_TOKEN", ""), env.get("JUPYTERHUB_SERVER_NAME", ""))
            next_report = time.monotonic() + interval
        for key, _ in selector.select(timeout=max(0.0, next_report - time.monotonic()) if activity_url else None):
            sock = key.fileobj
            if sock is listener:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    continue
                conn.setblocking(False)
                pending[conn] = b""
                selector.register(conn, selectors.EVENT_READ)
                continue
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            pending[sock] += data
            if data and b"\r\n\r\n" not in pending[sock]:
                continue
            request = pending.pop(sock)
            selector.unregister(sock)
            try:
                if request:
                    sock.setblocking(True)
                    sock.settimeout(5)
                    sock.sendall(response(request.split(b" ", 2)[1].decode("latin-1"), prefix, started))
            except (OSError, IndexError):
                pass
            sock.close()


if __name__ == "__main__":
    serve()
