"""Servers across the local cluster's compute nodes (issue #13): the paths that cross machines.

The login node (this machine) holds slurmctld, the hub's API on its bridge address and the
proxy on loopback; each compute node is a namespace with its own address. One set of
servers is started for the whole module, 1 CPU and 1G each where the profile allows, each
spawn request as soon as the previous job has a node: student1's and student2's default servers
(standard, LLN spreads them), researcher1's named CPU server (standard) and GPU server (small-g). Every test reads them; the last one
attacks student1's server, straight at its node's address, and the login node's proxy API and
MariaDB from student2's own job on the other standard node. (The grading array's spread over
the interactive nodes is asserted in test_grading_course.py, which grades anyway.)
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from aifactory.hub.localcluster.slurmconf import ComputeNode, Layout, compute_nodes
from aifactory.spawners.script import job_name
from tests.conftest import BIN
from tests.integration.test_spawner_slurm import Hub, wait_no_job

pytestmark = [pytest.mark.slurm, pytest.mark.hub, pytest.mark.slow]

CPU = {"profile": "cpu", "cpus": "1", "memory": "1G"}
GPU = {"profile": "gpu", "cpus": "1", "memory": "2G", "gpus": "1"}   # the GPU profile's least memory
# (user, server name, options): two users' default servers first, then one user's two partitions.
DEFAULTS = [("student1", "", CPU), ("student2", "", CPU)]
NAMED = [("researcher1", "mn-cpu", CPU), ("researcher1", "mn-gpu", GPU)]


@dataclass(frozen=True)
class Running:
    """One ready server: its hub model, its Slurm job and the node it runs on."""

    user: str
    name: str
    server: dict
    job_id: str
    node: ComputeNode


def job_of(user: str, name: str) -> tuple[str, str, str] | None:
    """(job id, state, node list) of the server's job in the queue, or None."""
    out = subprocess.run(["squeue", "-h", "-u", user, "-n", job_name(user, name), "-o", "%i %T %N"],
                         capture_output=True, text=True).stdout.split()
    return (out[0], out[1], out[2] if len(out) > 2 else "") if out else None


def wait_placed(user: str, name: str, spawn: Future, timeout: float = 60) -> None:
    """Until Slurm has put the server's job on a node (its place counts for the next job's LLN choice)."""
    deadline = time.monotonic() + timeout
    while (job := job_of(user, name)) is None or job[1] != "RUNNING":
        if spawn.done():
            assert spawn.result().status_code in (201, 202), f"{user}/{name}: {spawn.result().text}"
        assert time.monotonic() < deadline, f"{user}/{name or 'default'} not running: {job}"
        time.sleep(0.3)


def stop(api: Hub, user: str, name: str) -> None:
    """Stop (and forget, if named: the default server cannot be removed) the server; cancel its job even if
    the hub did not answer (another session may restart it)."""
    try:
        api.stop(user, name, remove=bool(name))
    except requests.RequestException:
        pass
    finally:
        if job := job_of(user, name):
            subprocess.run(["scancel", job[0]])


def standard_load() -> str:
    return subprocess.run(["sinfo", "-N", "-h", "-p", "standard", "-o", "%N %C %e"], capture_output=True,
                          text=True).stdout


@pytest.fixture(scope="module")
def servers(hub, operator_token, cluster) -> dict[tuple[str, str], Running]:
    api = Hub(hub, operator_token)
    nodes = {node.name: node for node in compute_nodes(cluster)}
    try:
        # A spawn request answers once the job starts or after the hub's slow_spawn_timeout (10 s), so each
        # batch is sent at once; the next batch once the last one's jobs have nodes: LLN counts only jobs
        # already placed (two jobs started in one scheduling pass may share a node with the other one idle).
        with ThreadPoolExecutor(len(DEFAULTS + NAMED)) as pool:
            for batch in ([DEFAULTS[0]], [DEFAULTS[1]], NAMED):
                for user, name, _ in batch:
                    wait_no_job(user, name, timeout=300)   # another test's server of the same name ends first
                spawns = {(user, name): pool.submit(api.spawn, user, name, options) for user, name, options in batch}
                for (user, name), spawn in spawns.items():
                    wait_placed(user, name, spawn)
        running = {}
        for user, name, _ in DEFAULTS + NAMED:
            server = api.wait_ready(user, name)
            job_id, _, node = job_of(user, name)
            running[user, name] = Running(user, name, server, job_id, nodes[node])
        yield running
    finally:
        with ThreadPoolExecutor(len(DEFAULTS + NAMED)) as pool:
            list(pool.map(lambda server: stop(api, *server[:2]), DEFAULTS + NAMED))
        for user, name, _ in DEFAULTS + NAMED:
            wait_no_job(user, name)


def server_process_env(user: str, job_id: str) -> tuple[int, dict[str, str]]:
    """The pid and environment of the user's jupyterhub-singleuser in that job (read as root), not its launcher's."""
    for pid in subprocess.run(["pgrep", "-u", user, "-f", "bin/jupyterhub-singleuser"], capture_output=True,
                              text=True).stdout.split():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
            raw = Path(f"/proc/{pid}/environ").read_text().split("\0")
        except OSError:
            continue
        env = dict(item.split("=", 1) for item in raw if "=" in item)
        if env.get("SLURM_JOB_ID") == job_id and "aifactory.spawners.singleuser" not in argv:
            return int(pid), env
    pytest.fail(f"no jupyterhub-singleuser of {user} in job {job_id}")


def netns_of(pid: int) -> str:
    return subprocess.run(["ip", "netns", "identify", str(pid)], capture_output=True, text=True).stdout.strip()


def test_a_server_runs_on_a_compute_node_reaches_the_hub_on_its_bridge_address_and_is_proxied(
        servers, cluster, hub, operator_token, server_url):
    mine = servers["student1", ""]
    assert mine.node.name != socket.gethostname() and mine.node.partition == "standard"
    pid, env = server_process_env("student1", mine.job_id)
    assert netns_of(pid) == mine.node.netns(Layout())   # in the node's network, not the login node's
    assert env["SLURMD_NODENAME"] == mine.node.name
    hub_api = f"http://{cluster.hub_api_ip()}:{cluster.hub.hub_port}/hub/api"
    assert hub_api.startswith("http://10.77.0.1:")
    assert env["JUPYTERHUB_API_URL"] == hub_api and env["JUPYTERHUB_ACTIVITY_URL"].startswith(hub_api)
    assert not [f"{k}={v}" for k, v in env.items() if k.startswith("JUPYTERHUB_") and "127.0.0.1" in v]
    # The hub recorded the node, and the proxy routes the user's path to the node's address.
    state = mine.server["state"]
    assert state["ip"] == mine.node.name and socket.gethostbyname(state["ip"]) == mine.node.address
    api = Hub(hub, operator_token)
    routes = api.api("GET", "/proxy").json()
    (target,) = [r["target"] for r in routes.values() if r["data"].get("user") == "student1"
                 and r["data"].get("server_name") == ""]
    assert target == f"http://{mine.node.name}:{state['port']}"
    direct = f"http://{mine.node.address}:{state['port']}/user/student1/api/status"
    assert requests.get(direct, headers=api.headers, timeout=10).status_code == 200   # it listens on the node's address
    reach = requests.get(f"{server_url('student1')}api/status", headers=api.headers, timeout=10)
    assert reach.status_code == 200 and "started" in reach.json()


def test_two_users_default_servers_run_on_the_two_standard_nodes_at_once(servers):
    one, two = servers["student1", ""], servers["student2", ""]
    assert {one.node.partition, two.node.partition} == {"standard"}
    assert one.node.name != two.node.name, f"both on {one.node.name}; standard nodes now:\n{standard_load()}"


def test_one_users_cpu_and_gpu_servers_run_on_their_partitions_nodes_at_once(servers):
    cpu, gpu = servers["researcher1", "mn-cpu"], servers["researcher1", "mn-gpu"]
    assert (cpu.node.partition, gpu.node.partition) == ("standard", "small-g")
    assert gpu.node.gpus and cpu.node.name != gpu.node.name
    assert cpu.server["ready"] and gpu.server["ready"]


# Run as student2 in a job of their own: stdlib only, prints what it reached as JSON.
PROBE = r'''
import json, os, socket, sys, urllib.error, urllib.request

class Stay(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None

def get(url, headers):
    try:
        with urllib.request.build_opener(Stay).open(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return [r.status, r.read(2000).decode(errors="replace")]
    except urllib.error.HTTPError as e:
        return [e.code, e.read(2000).decode(errors="replace")]
    except OSError as e:
        return [None, type(e).__name__]

def tcp(address):
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        return "open"
    except OSError as e:
        return type(e).__name__

url, token, addresses = sys.argv[1], os.environ["PROBE_TOKEN"], sys.argv[2:]
print(json.dumps({
    "node": socket.gethostname(),
    "no token": get(url, {}),
    "own token": get(url, {"Authorization": "token " + token}),
    "own token in the URL": get(url + "?token=" + token, {}),
    "tcp": {a: tcp(a) for a in addresses},
}))
'''


def run_as(user: str, node: str, token: str, *argv: str) -> dict:
    """PROBE ARGV as `user` in a one-minute Slurm job of theirs on `node` (srun as the user on the login node)."""
    proc = subprocess.run(
        ["runuser", "-u", user, "--", "env", f"PROBE_TOKEN={token}",
         "srun", "-p", "standard", "-w", node, "-A", "project_465000002", "-c", "1", "--mem=256M", "-t", "2",
         "-J", "mn-probe", "--chdir=/tmp", str(BIN / "python"), "-I", "-c", PROBE, *argv],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_another_student_on_the_other_node_gets_nothing_from_the_server_or_the_login_nodes_services(
        servers, cluster, hub, operator_token):
    victim = servers["student1", ""]
    (other,) = [n.name for n in compute_nodes(cluster) if n.partition == "standard" and n != victim.node]
    api = Hub(hub, operator_token)
    contents = f"http://{victim.node.address}:{victim.server['state']['port']}/user/student1/api/contents"
    tokens = {user: api.api("POST", f"/users/{user}/tokens", json={"expires_in": 300, "note": "multinode test"}
                            ).json()["token"] for user in ("student1", "student2")}
    # The control: straight to the node, student1's own token opens the contents API.
    own = requests.get(contents, headers={"Authorization": f"token {tokens['student1']}"}, timeout=10)
    assert own.status_code == 200 and own.json()["type"] == "directory"

    login = cluster.hub_api_ip()
    hub_api, proxy_api, mariadb = f"{login}:{cluster.hub.hub_port}", f"{login}:8001", f"{login}:3306"
    said = run_as("student2", other, tokens["student2"], contents,
                  hub_api, proxy_api, mariadb, "127.0.0.1:8001", "127.0.0.1:3306")
    assert said["node"] == other
    for attempt in ("no token", "own token", "own token in the URL"):
        status, body = said[attempt]
        assert status in (302, 401, 403), f"{attempt}: {status} {body[:300]}"
        assert '"type": "directory"' not in body and '"content"' not in body
    assert said["tcp"][hub_api] == "open"   # the node reaches the hub's API, as every server must
    for closed in (proxy_api, mariadb, "127.0.0.1:8001", "127.0.0.1:3306"):
        assert said["tcp"][closed] != "open", f"{closed} reachable from a compute node"
