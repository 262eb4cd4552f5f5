"""The spawn page is built from the cluster: nodes, free CPUs and GPUs as Slurm sees them, and the project's use."""

from __future__ import annotations

import re
import subprocess
import time

import pytest
import requests

from aifactory.slurm.sinfo import SINFO_ARGV, PartitionState, parse_sinfo, parse_sinfo_nodes

from .browser import logged_in
from .test_spawner_slurm import Hub, cleanup, jobs_of

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

USER = "student1"


def spawn_page(session: requests.Session, hub: str) -> str:
    """The spawn page as the browser reads it: UTF-8 by its <meta charset> (the header names no charset)."""
    return session.get(f"{hub}/hub/spawn", timeout=60).content.decode()


def idle_cpus_shown(page: str, partition: str) -> int:
    match = re.search(rf"<code>{partition}</code>: \d+ of \d+ nodes? idle · (\d+) of \d+ CPUs free", page)
    assert match, f"no live state for {partition} on the spawn page"
    return int(match.group(1))


# A card's live line: '2 of 2 nodes idle · 14 of 16 CPUs free · 8960M memory free[ · 4 of 4 MI250X GPUs free]
# [ · 1 node down][ · 1 node drained]', or 'no node of this partition is up · 2 nodes down'.
CARD = re.compile(r"<code>(?P<partition>[\w-]+)</code>: (?:(?P<idle>\d+) of (?P<up>\d+) nodes? idle · (?P<free>\d+) of "
                  r"(?P<cpus>\d+) CPUs free · [\dMGT.]+ memory free(?: · (?P<free_gpus>\d+) of (?P<gpus>\d+) \w+ GPUs free)?"
                  r"|no node of this partition is up)(?: · (?P<down>\d+) nodes? down)?(?: · (?P<drained>\d+) nodes? drained)?")


def counts_shown(page: str) -> dict[str, tuple[int, ...]]:
    """{partition: (idle nodes, usable nodes, free CPUs, CPUs, free GPUs, GPUs, down, drained)} as the page says."""
    return {m["partition"]: tuple(int(m[k] or 0) for k in ("idle", "up", "free", "cpus", "free_gpus", "gpus",
                                                           "down", "drained"))
            for m in CARD.finditer(page)}


def counts(state: PartitionState) -> tuple[int, ...]:
    return (state.idle_nodes, state.nodes, state.idle_cpus, state.cpus, state.free_gpus, state.gpus,
            state.down_nodes, state.drained_nodes)


def test_the_spawn_page_shows_free_cpus_as_slurm_sees_them_and_the_projects_use(hub, passwords, demo_site):
    session = logged_in(hub, USER, passwords[USER])
    blocker = subprocess.run(
        ["runuser", "-u", USER, "--", "sbatch", "--parsable", "-p", "interactive", "-A", "project_465000002",
         "-c", "3", "--mem=128M", "-t", "5", "-J", "spawn-page-blocker", "--chdir=/tmp", "--output=/dev/null",
         "--wrap", "sleep 300"],
        capture_output=True, text=True, check=True).stdout.strip()
    try:
        deadline = time.monotonic() + 180
        while (state := subprocess.run(["squeue", "-h", "-j", blocker, "-o", "%T"], capture_output=True,
                                       text=True).stdout.strip()) != "RUNNING":
            assert state and time.monotonic() < deadline, f"blocker job did not start ({state or 'gone'})"
            time.sleep(1)
        for attempt in range(5):  # other jobs may start or end between the two looks
            time.sleep(6)  # past the page's few seconds of cache
            page = spawn_page(session, hub)
            slurm = parse_sinfo(subprocess.run(SINFO_ARGV, capture_output=True, text=True).stdout)["interactive"]
            if idle_cpus_shown(page, "interactive") == slurm.idle_cpus:
                break
        else:
            pytest.fail(f"page shows {idle_cpus_shown(page, 'interactive')} idle CPUs, Slurm {slurm.idle_cpus}")
        assert slurm.idle_cpus <= slurm.cpus - 3  # the blocker's CPUs are not offered as free
        project = next(p for p in demo_site.projects if p.name == "project_465000002")
        assert re.search(rf"project_465000002: [\d.,]+ of {project.cpu_hours:,} core-hours used \([\d.,]+ left\)",
                         page)
    finally:
        subprocess.run(["scancel", blocker])


def test_each_card_counts_the_partitions_nodes_cpus_and_gpus_as_sinfo_lists_them(hub, passwords, demo_site):
    """admin1 sees all three profiles, one per partition: each card counts that partition's nodes of the real
    cluster (standard-1/2, small-g-1, interactive-1/2), idle, down or drained, and their free CPUs and GPUs."""
    session = logged_in(hub, "admin1", passwords["admin1"])
    text = subprocess.run(SINFO_ARGV, capture_output=True, text=True, check=True).stdout
    assert {(n.partition, n.node) for n in parse_sinfo_nodes(text)} == {
        ("standard", "standard-1"), ("standard", "standard-2"), ("small-g", "small-g-1"),
        ("interactive", "interactive-1"), ("interactive", "interactive-2")}
    for attempt in range(5):  # other people's jobs start and end between the page's look and ours
        page = spawn_page(session, hub)
        shown = counts_shown(page)
        slurm = {name: counts(state) for name, state in
                 parse_sinfo(subprocess.run(SINFO_ARGV, capture_output=True, text=True, check=True).stdout).items()}
        if shown == slurm:
            break
        time.sleep(6)  # past the page's few seconds of cache
    else:
        pytest.fail(f"the spawn page counts {shown}, Slurm {slurm}")
    for partition in demo_site.partitions:  # every node of the site file is counted, in whatever state
        idle, up, _, cpus, _, gpus, down, drained = shown[partition.name]
        assert up + down + drained == partition.nodes and idle <= up
        assert cpus == up * partition.cpus_per_node and gpus == up * partition.gpus_per_node


def test_a_link_with_options_in_its_query_starts_nothing_and_shows_the_form(hub, passwords, operator_token):
    """JupyterHub starts a server from a spawn URL's query on a GET (no xsrf token): a page of another user's
    could make this user's browser start GPU servers on their project. Ours shows the form and says why."""
    session = logged_in(hub, USER, passwords[USER])
    try:
        page = session.get(f"{hub}/hub/spawn/{USER}/by-link?profile=cpu&cpus=2&walltime=1:00:00", timeout=60)
        assert page.status_code == 400, page.status_code
        text = page.content.decode()
        assert "A link cannot start a server: choose the options below and press Start." in text
        assert 'name="profile"' in text  # the form, to start from
        time.sleep(2)  # what a start would have submitted by now
        assert jobs_of(USER, "by-link") == []
    finally:
        cleanup(Hub(hub, operator_token), USER, "by-link")
