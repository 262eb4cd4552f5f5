"""A compute node dies under a running server: the cluster, the hub and the user see it, and the node comes back.

`aifactory cluster node down NAME` is a power cut: the node's link goes down and every process on
it dies at once, its slurmd and the user's server with it. Slurm must find out on its own
(SlurmdTimeout), end the job NODE_FAIL, and the hub must stop the server and tell its owner in
words; another user's server on the other node must not notice. Runs last (it takes a node away).
"""

from __future__ import annotations

import subprocess
import time

import pytest
import requests

from .browser import chromium, login, wait
from .test_spawner_slurm import cleanup, jobs_of

pytestmark = [pytest.mark.slurm, pytest.mark.hub, pytest.mark.restarts_cluster]

AIFACTORY = "/opt/aifactory/venv/bin/aifactory"
VICTIM, BYSTANDER = ("student1", "nf-victim"), ("trainer1", "nf-bystander")


def node_state(node: str) -> str:
    return subprocess.run(["sinfo", "-h", "-n", node, "-o", "%t"], capture_output=True, text=True).stdout.strip()


def node_of(user: str, name: str) -> str:
    return subprocess.run(["squeue", "-h", "-u", user, "-n", f"jupyter-{user}-{name}", "-o", "%N"],
                          capture_output=True, text=True).stdout.strip()


def until(what: str, condition, timeout: float, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        time.sleep(interval)
    return value


def test_a_node_failure_ends_that_server_with_words_and_spares_the_other_node(api, server_url, passwords):
    victim_node = ""
    try:
        for user, name in (VICTIM, BYSTANDER):  # one after the other: LLN puts the second on the other node
            assert api.spawn(user, name, {"profile": "cpu", "memory": "1G"}).status_code in (201, 202)
            api.wait_ready(user, name)
        victim_node, bystander_node = node_of(*VICTIM), node_of(*BYSTANDER)
        assert victim_node.startswith("standard-") and bystander_node.startswith("standard-")
        assert victim_node != bystander_node, "the two servers should run on the two standard nodes"
        ((job_id, _),) = jobs_of(*VICTIM)

        subprocess.run([AIFACTORY, "cluster", "node", "down", victim_node], check=True, capture_output=True)
        until(f"Slurm marks {victim_node} down", lambda: node_state(victim_node).startswith("down"), 90)
        stopped = api.wait_stopped(*VICTIM, timeout=60)
        reason = stopped["state"]["stop_reason"]
        assert "[NODE_FAIL]" in reason and f"on node {victim_node}" in reason and "node running it failed" in reason
        final = subprocess.run(["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "State"], capture_output=True,
                               text=True).stdout.split()
        assert final == ["NODE_FAIL"]

        # The other user's server, on the other node, answers through the proxy as before.
        bystander = api.server(*BYSTANDER)
        assert bystander["ready"], bystander
        token = requests.post(f"{api.url}/hub/api/users/{BYSTANDER[0]}/tokens", headers=api.headers,
                              json={"expires_in": 300}, timeout=10).json()["token"]
        status = requests.get(server_url(*BYSTANDER) + "api/status", headers={"Authorization": f"token {token}"},
                              timeout=30)
        assert status.status_code == 200

        # The victim opens their server's URL and reads why it is gone.
        with chromium() as driver:
            login(driver, api.url, VICTIM[0], passwords[VICTIM[0]], f"/hub/user/{VICTIM[0]}/{VICTIM[1]}/")
            shown = wait(driver, 30).until(lambda d: d.find_elements("id", "stop-reason"))[0].text
        assert f"on node {victim_node}" in shown and "the node running it failed" in shown

        # Another student asking for that page learns nothing of it (a second real user's token).
        other = requests.post(f"{api.url}/hub/api/users/student2/tokens", headers=api.headers,
                              json={"expires_in": 300}, timeout=10).json()["token"]
        peek = requests.get(f"{api.url}/hub/user/{VICTIM[0]}/{VICTIM[1]}/", timeout=30, allow_redirects=True,
                            headers={"Authorization": f"token {other}", "Accept": "text/html"})
        assert peek.status_code in (403, 404), peek.status_code  # their own such page answers 424
        assert victim_node not in peek.text and "[NODE_FAIL]" not in peek.text
    finally:
        for user, name in (VICTIM, BYSTANDER):
            cleanup(api, user, name)
        if victim_node:
            subprocess.run([AIFACTORY, "cluster", "node", "up", victim_node], check=True, capture_output=True)

    # Back: it takes jobs again.
    out = subprocess.run(["sudo", "-u", "student2", "srun", "-p", "standard", "-A", "project_465000002",
                          "-w", victim_node, "-t", "1", "--mem=100M", "--chdir=/", "hostname"],
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == victim_node, out.stderr
