"""Dask clusters are private: another user cannot connect to them, only their owner.

student1 starts a cluster with the launcher widget (a SiteCluster with one
worker) and leaves it running; student2, who can read its addresses in `ps`,
tries to connect to the scheduler, the worker and the nanny: with a plain
`distributed.Client`/rpc, over tcp:// and tls://, with certificates of their
own, and with a bare TLS handshake. Every attempt must be refused, student2
must not read the credentials, and student1's own clients must still compute.
"""

from __future__ import annotations

import os
import pwd
import secrets
import stat
import subprocess
import time
from pathlib import Path

import pytest

from aifactory.extensions.dask.tls import LOADER
from tests.integration.test_dask_cluster import UserProgram, wait_until_no_jobs, widget_cluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

OWNER, OTHER = "student1", "student2"

OWNER_PROGRAM = """
import os, asyncio
from distributed.core import rpc
""" + widget_cluster(1, timeout=90) + """
ui.refresh()
say("WIDGET", ui.status.value)
worker, info = next(iter(client.scheduler_info()["workers"].items()))

async def identities():
    # The owner's control: the same addresses answer a client with the cluster's credentials.
    args = cluster.security.get_connection_args("client")
    out = []
    for address in (worker, info["nanny"]):
        async with rpc(address, connection_args=args) as r:
            out.append((await r.identity())["type"])
    return out

say("OWNER_RPC", asyncio.run(identities()))
say("CLUSTER", {
    "scheduler": cluster.scheduler_address, "worker": worker, "nanny": info["nanny"],
    "credentials": str(cluster.credentials), "dashboard": cluster.scheduler_info["services"]["dashboard"],
})
while not os.path.exists(STOP):
    time.sleep(0.2)
say("SUM", client.submit(sum, range(10)).result())
with Client(cluster.scheduler_address, timeout=10) as plain:  # the labextension's cell: found by the loader
    say("PLAIN_CLIENT", plain.submit(lambda: 6 * 7).result())
client.close()
ui.stop()
say("LEFT", os.path.exists(cluster.credentials))
"""

ATTACKER_PROGRAM = """
import asyncio, os, socket, ssl
import dask
from distributed import Client
from distributed.core import rpc
from distributed.security import Security

dask.config.set({"distributed.comm.timeouts.connect": "3s"})
MINE = Security.temporary()

def pwn(dask_scheduler=None):
    open(PWNED, "w").write("ran as " + str(os.getuid()))

def variants(address):
    hostport = address.split("://", 1)[1]
    return {
        "tls, no credentials": (address, None),
        "tcp": ("tcp://" + hostport, None),
        "bare host:port": (hostport, None),
        "tls, own temporary certificate": (address, MINE),
    }

async def as_client(address, security):
    client = await Client(address, security=security, asynchronous=True, timeout=3)
    await client.run_on_scheduler(pwn)
    await client.close()

async def as_rpc(address, security):
    args = security.get_connection_args("client") if security else {}
    async with rpc(address, connection_args=args) as r:
        await r.identity()

async def attempt(call, address, security):
    try:
        await asyncio.wait_for(call(address, security), 20)
    except Exception as exc:
        return f"refused: {type(exc).__name__}: {exc}"
    return "CONNECTED"

def tls_handshake(address):
    # A TLS client that trusts anything and shows no certificate: the server must not talk to it.
    host, port = address.split("://", 1)[1].rsplit(":", 1)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            with context.wrap_socket(raw) as s:
                data = s.recv(100)
    except (OSError, ssl.SSLError) as exc:
        return f"refused: {type(exc).__name__}: {exc}"
    return "CONNECTED" if data else "refused: closed"

async def main():
    tries = []
    for role, call in (("scheduler", as_client), ("worker", as_rpc), ("nanny", as_rpc)):
        for how, (address, security) in variants(TARGET[role]).items():
            tries.append((f"{role} {how}", attempt(call, address, security)))
    results = await asyncio.gather(*(t for _, t in tries))
    out = dict(zip([name for name, _ in tries], results))
    for role in ("scheduler", "worker", "nanny"):
        out[f"{role} tls handshake without certificate"] = tls_handshake(TARGET[role])
    return out

say("ATTEMPTS", asyncio.run(main()))
def read(path, whole):
    try:
        os.listdir(path) if whole else open(path).read()
    except OSError as exc:
        return "refused: " + type(exc).__name__
    return "READ"

files = ("ca.pem", "cert.pem", "key.pem", "address")
reads = {name: read(os.path.join(TARGET["credentials"], name), False) for name in files}
reads[os.path.basename(TARGET["credentials"])] = read(TARGET["credentials"], True)
say("READS", reads)
"""


def refused(result: str) -> bool:
    """A refusal by the cluster (TLS or comm closed), or distributed's own refusal to speak tls:// without
    credentials; never a mistake of the attacking program (NameError, AttributeError, ...)."""
    kind = result.split(":")[:2]
    return kind[0] == "refused" and (
        kind[1].strip() in ("CommClosedError", "FatalCommClosedError", "SSLError", "closed")
        or (kind[1].strip() == "TypeError" and "ssl_context" in result)
    )


def listening_addresses(port: int) -> list[str]:
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in out.splitlines() if line.strip()]


def user_cmdlines(user: str) -> list[str]:
    uid = pwd.getpwnam(user).pw_uid
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid:
                found.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return found


@pytest.fixture
def stop_file():
    path = f"/tmp/aifactory-test-stop-{secrets.token_hex(4)}"
    yield path
    if os.path.exists(path):
        os.unlink(path)


def test_another_user_cannot_reach_a_users_dask_cluster(cluster, stop_file):
    pwned = f"/tmp/aifactory-test-pwned-{secrets.token_hex(4)}"
    owner = UserProgram(
        OWNER,
        f"STOP = {stop_file!r}\n" + OWNER_PROGRAM,
        # As in the user's server, with the site's dask config (`aifactory site install` writes the loader there).
        env=(f"JUPYTERHUB_SERVICE_PREFIX=/user/{OWNER}/", f"DASK_DISTRIBUTED__CLIENT__SECURITY_LOADER={LOADER}"),
    )
    try:
        name = owner.wait_for("NAME")
        assert "<b>1</b> of <b>1</b> workers connected" in owner.wait_for("WIDGET", timeout=100)
        assert owner.wait_for("OWNER_RPC") == ["Worker", "Nanny"]
        target = owner.wait_for("CLUSTER")
        assert all(target[role].startswith("tls://") for role in ("scheduler", "worker", "nanny")), target

        # What everyone sees in ps: paths to the credentials, never their content.
        worker_lines = [line for line in user_cmdlines(OWNER) if "distributed.cli.dask_worker" in line]
        assert worker_lines and all(f"--tls-key {target['credentials']}/key.pem" in line for line in worker_lines)
        assert not any("BEGIN" in line for line in user_cmdlines(OWNER))
        # The credentials: a 0700 directory of the owner, 0600 files.
        directory = os.stat(target["credentials"])
        assert (directory.st_uid, stat.S_IMODE(directory.st_mode)) == (pwd.getpwnam(OWNER).pw_uid, 0o700)
        for entry in os.scandir(target["credentials"]):
            assert stat.S_IMODE(entry.stat().st_mode) == 0o600, entry.name
        # Inside the user's server the dashboard listens on loopback only (its proxy reaches it there).
        assert listening_addresses(target["dashboard"]) == [f"127.0.0.1:{target['dashboard']}"]

        attacker = UserProgram(OTHER, f"TARGET = {target!r}\nPWNED = {pwned!r}\n" + ATTACKER_PROGRAM)
        said = attacker.finish(timeout=120)
        attempts = said["ATTEMPTS"]
        assert len(attempts) == 15
        assert {how: result for how, result in attempts.items() if not refused(result)} == {}
        assert not os.path.exists(pwned)
        assert said["READS"] == dict.fromkeys(
            [os.path.basename(target["credentials"]), "ca.pem", "cert.pem", "key.pem", "address"],
            "refused: PermissionError",
        )

        Path(stop_file).touch()
        said = owner.finish(timeout=90)
        assert said["SUM"] == 45
        assert said["PLAIN_CLIENT"] == 42
        assert said["LEFT"] is False
        assert wait_until_no_jobs(OWNER, name) == []
    finally:
        owner.kill()
        if "NAME" in owner.said:
            subprocess.run(["scancel", "--user", OWNER, "--name", owner.said["NAME"]], check=False)
        if os.path.exists(pwned):
            os.unlink(pwned)
