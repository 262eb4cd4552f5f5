"""Dask across the nodes: the scheduler in the user's server on one compute node, its workers on others.

student3's course server runs on an interactive node (a Slurm job started through the hub). The
program runs inside that job on that node (`srun --overlap`, as a kernel of the server would) and
starts a SiteCluster of profile `cpu`, whose workers LLN spreads over the two standard nodes. The
scheduler must advertise its node's address (not loopback), TLS must hold from another node (a second
user tries there), the dashboard answers through the hub, and workers lost with a node that dies are
replaced on another with the reason in words.
"""

from __future__ import annotations

import pwd
import secrets
import socket
import subprocess
from pathlib import Path

import pytest
import requests

from tests.conftest import BIN
from tests.integration.test_dask_cluster import UserProgram, wait_until_no_jobs, widget_cluster
from tests.integration.test_dask_security import ATTACKER_PROGRAM, refused
from tests.integration.test_dask_server import (
    ProgramInServer,
    listening_on_node,
    node_of,
    started_server,
    wait_until,
)

pytestmark = [pytest.mark.slurm, pytest.mark.hub, pytest.mark.slow]

OWNER, OTHER = "student3", "student2"
STANDARD_NODES = ("standard-1", "standard-2")

START = """
import os, socket
import dask.array as da
from distributed import Client

def placement(client):
    hosts = client.run(socket.gethostname)  # worker address -> its node
    return {info["name"]: hosts[address] for address, info in client.scheduler_info()["workers"].items()}

def wait_for(path):
    while not os.path.exists(path):
        time.sleep(0.2)

def total():
    return int((da.arange(1_000_000, chunks=100_000) * 2).sum().compute())
"""

# 3G workers on 5G standard nodes: no node holds two, so the two workers are on two nodes by construction.
SPREAD = START + """
cluster = SiteCluster("cpu", workers=2, cores=1, memory="3G", walltime="15")
say("NAME", cluster.slurm_job_name)
client = Client(cluster)
client.wait_for_workers(2, timeout=120)
say("NODE", socket.gethostname())
say("PLACED", placement(client))
say("SUM", total())
worker, info = next(iter(client.scheduler_info()["workers"].items()))
say("CLUSTER", {"scheduler": cluster.scheduler_address, "worker": worker, "nanny": info["nanny"],
                "credentials": str(cluster.credentials), "link": cluster.dashboard_link,
                "dashboard": cluster.scheduler_info["services"]["dashboard"]})
wait_for(STOP)
client.close(); cluster.close()
say("CLOSED", True)
"""

# Small workers, so that a replacement fits next to the survivor; LLN puts them on the two idle nodes.
NODE_FAILS = START + widget_cluster(2) + """
placement_before = placement(client)
say("PLACED", placement_before)
say("JOBS", cluster.job_ids())
wait_for(DOWN)
failed = open(DOWN).read()
lost = [name for name, node in placement_before.items() if node == failed]
why, deadline = [], time.time() + 150
while time.time() < deadline and not all(any(f"replaces worker {name}." in r for r in why) for name in lost):
    why = cluster.why_missing()
    time.sleep(0.5)
ui.refresh()
say("WHY", why)
say("WIDGET", ui.status.value)
client.wait_for_workers(2, timeout=120)
say("JOBS_AFTER", cluster.job_ids())
say("PLACED_AFTER", placement(client))
say("SUM", total())
say("WHY_AFTER", cluster.why_missing())
client.close()
ui.stop()
"""


def node_state(node: str) -> str:
    return subprocess.run(["sinfo", "-h", "-n", node, "-o", "%t"], capture_output=True, text=True).stdout.strip()


@pytest.fixture
def owner_file(cluster):
    """`owner_file()`: a fresh path in the owner's home, which every node sees; removed afterwards."""
    home = pwd.getpwnam(OWNER).pw_dir
    made: list[Path] = []
    yield lambda: made.append(Path(home, f".aifactory-test-{secrets.token_hex(4)}")) or made[-1]
    for path in made:
        path.unlink(missing_ok=True)


def test_workers_on_two_other_nodes_compute_over_tls_and_the_dashboard_answers_through_the_hub(
        hub, operator_token, server_url, owner_file):
    stop, pwned = owner_file(), owner_file()
    with started_server(hub, operator_token, "course", OWNER) as server:
        node = node_of(server["job"])
        program = ProgramInServer(server["job"], f"STOP = {str(stop)!r}\n" + SPREAD, user=OWNER)
        try:
            name = program.wait_for("NAME")
            assert program.wait_for("NODE", timeout=150) == node and node.startswith("interactive-")
            placed = program.wait_for("PLACED")
            assert len(set(placed.values())) == 2 and node not in placed.values(), placed
            assert program.wait_for("SUM") == 2 * sum(range(1_000_000))

            target = program.wait_for("CLUSTER")
            # The scheduler advertises its node's own address on the nodes' network, and speaks TLS only.
            assert target["scheduler"] == f"tls://{socket.gethostbyname(node)}:{target['scheduler'].rsplit(':')[-1]}"

            # The dashboard through the hub and the user's server, though it listens on that node's loopback only.
            link = target["link"]
            assert link == f"/user/{OWNER}/proxy/{target['dashboard']}/status", link
            page = requests.get(server_url(OWNER) + link.removeprefix(f"/user/{OWNER}/"), headers=server["headers"],
                                timeout=30)
            assert page.status_code == 200 and "<title>Dask Diagnostic UI</title>" in page.text, page.text[:500]
            assert listening_on_node(node, target["dashboard"]) == [f"127.0.0.1:{target['dashboard']}"]

            # Another user, in a job on a CPU node, reaches the addresses but gets no plain or foreign connection.
            attack = ("srun", "--partition=standard", "--ntasks=1", "--cpus-per-task=1", "--mem=512M",
                      "--time=5", "--job-name=aifactory-test-dask-attack", "--quiet")
            attacker = UserProgram(OTHER, f"TARGET = {target!r}\nPWNED = {str(pwned)!r}\n"
                                   "say('NODE', __import__('socket').gethostname())\n" + ATTACKER_PROGRAM,
                                   launcher=attack)
            try:
                said = attacker.finish(timeout=150)
            finally:
                attacker.kill()
            assert said["NODE"].startswith("standard-"), said["NODE"]
            assert len(said["ATTEMPTS"]) == 15
            assert {how: result for how, result in said["ATTEMPTS"].items() if not refused(result)} == {}
            assert not pwned.exists()
            assert set(said["READS"].values()) == {"refused: PermissionError"}

            stop.touch()
            assert program.finish(timeout=60)["CLOSED"] is True
            assert wait_until_no_jobs(OWNER, name) == []
        finally:
            program.kill()


@pytest.mark.restarts_cluster
def test_workers_lost_with_their_node_are_replaced_on_another_and_the_widget_says_why(
        hub, operator_token, owner_file):
    down = owner_file()
    with started_server(hub, operator_token, "course", OWNER) as server:
        assert node_of(server["job"]) not in STANDARD_NODES
        program = ProgramInServer(server["job"], f"DOWN = {str(down)!r}\n" + NODE_FAILS, user=OWNER)
        try:
            program.wait_for("NAME", timeout=150)
            placed = program.wait_for("PLACED", timeout=150)
            # standard-2 when it holds a worker (on idle nodes LLN puts one on each); else the node that holds both.
            failing = "standard-2" if "standard-2" in placed.values() else placed["SiteCluster-0"]
            other = next(node for node in STANDARD_NODES if node != failing)
            jobs = program.wait_for("JOBS")
            lost = [name for name, node in placed.items() if node == failing]
            try:
                subprocess.run([str(BIN / "aifactory"), "cluster", "node", "down", failing], check=True,
                               capture_output=True, timeout=60)
                written = down.with_name(down.name + ".new")
                written.write_text(failing)
                written.rename(down)  # whole, as the program reads it once it exists
                why = program.wait_for("WHY", timeout=200)
                widget = program.wait_for("WIDGET")
                for name in lost:
                    replaced = f"Job {jobs[name]} stopped: the node running it failed; a new job replaces worker {name}."
                    assert replaced in why and replaced in widget, (why, widget)
                after = program.wait_for("JOBS_AFTER", timeout=150)
                assert sorted(after) == sorted(jobs)
                assert {name for name in after if after[name] != jobs[name]} == set(lost)
                assert set(program.wait_for("PLACED_AFTER").values()) == {other}
                assert program.wait_for("SUM") == 2 * sum(range(1_000_000))
                assert program.wait_for("WHY_AFTER") == []  # the replacements connected: nothing left to explain
                program.finish(timeout=60)
            finally:
                subprocess.run([str(BIN / "aifactory"), "cluster", "node", "up", failing], check=False,
                               capture_output=True, timeout=120)
                wait_until(lambda: node_state(failing) in ("idle", "mix"), 120, f"{failing} not back in service")
        finally:
            program.kill()
