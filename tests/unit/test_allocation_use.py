"""Allocation use from what Slurm enforces (the association manager), on real captures; accounting only
where Slurm tracks no usage."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from aifactory.site import parse_site
from aifactory.slurm.assoc import CONFIG_ARGV, assoc_mgr_argv, parse_assoc_mgr, usage_tracked
from aifactory.slurm.runner import Failed, NoAnswer
from aifactory.spawners import cluster_state
from aifactory.spawners.cluster_state import AllocationUse, allocation_use, hours_left

from .sites import SMALL_SITE

DATA = Path(__file__).parent / "data" / "slurm"
SITE = parse_site(SMALL_SITE)  # proj_a: 100 core-hours, no GPU-hours
USED_CPU_MINUTES, USED_GPU_MINUTES = 155, 3  # in assoc-mgr.txt (README.md: the jobs that used them)


def captured(name: str) -> str:
    return (DATA / name).read_text()


def test_the_association_managers_grptresmins_limit_and_usage_of_each_account():
    assert assoc_mgr_argv(("project_465000001", "project_465000002")) == [
        "scontrol", "--oneliner", "show", "assoc_mgr", "accounts=project_465000001,project_465000002", "users=root",
        "flags=assoc"]
    usage = parse_assoc_mgr(captured("assoc-mgr.txt"))  # priority/multifactor: usage tracked
    assert list(usage) == ["project_465000001", "project_465000002"]
    assert usage["project_465000002"]["cpu"] == (1200000, USED_CPU_MINUTES)
    assert usage["project_465000002"]["gres/gpu"] == (60000, USED_GPU_MINUTES)
    assert usage["project_465000001"]["cpu"] == (6000000, 0) and usage["project_465000001"]["mem"] == (None, 443)
    assert usage_tracked(captured("config.txt"))
    # Without a user filter every member's record comes too (a class: hundreds); only the account's own counts.
    basic = parse_assoc_mgr(captured("assoc-mgr-basic.txt"))
    assert list(basic) == ["project_465000001"] and basic["project_465000001"]["gres/gpu"] == (1200000, 0)
    assert not usage_tracked(captured("config-basic.txt"))  # priority/basic: its 0 means "not tracked"
    with pytest.raises(Failed):
        usage_tracked("Configuration data as of 2026-12-02T00:01:47\n")
    with pytest.raises(Failed):
        parse_assoc_mgr("ClusterName=tiny Account=proj_a UserName= Partition= Priority=0 ID=3\n")


class FakeSlurm:
    """Answers config (tracked or not), assoc_mgr and sacct; records every argv; config may not answer."""

    def __init__(self, tracked: bool = True, config_down: bool = False):
        self.tracked, self.config_down, self.calls = tracked, config_down, []

    async def run(self, argv, *, timeout=None, input=None, env=None):
        self.calls.append(argv[0] if argv[0] == "sacct" else " ".join(a for a in argv[1:5] if a != "--oneliner"))
        if argv == CONFIG_ARGV:
            if self.config_down:
                raise NoAnswer("Unable to contact slurm controller")
            return f"PriorityType            = priority/{'multifactor' if self.tracked else 'basic'}\n"
        if argv[:4] == ["scontrol", "--oneliner", "show", "assoc_mgr"]:
            return ("Current Association Manager state\nAssociation Records\n"
                    "ClusterName=tiny Account=proj_a UserName= Partition= Priority=0 ID=3 "
                    "GrpTRESMins=cpu=6000(5130),mem=N(0),gres/gpu=N(45) MaxJobs=\n"
                    "ClusterName=tiny Account=proj_a UserName=alice(1001) Partition= Priority=0 ID=4 "
                    "GrpTRESMins=cpu=N(5130),mem=N(0),gres/gpu=N(45) MaxJobs=\n")
        if argv[0] == "sacct":
            return "7|7|COMPLETED|0:0|proj_a|alice|2026-11-30T10:00:00|2026-11-30T12:00:00|cpu=3,node=1\n"
        raise AssertionError(argv)


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    monkeypatch.setattr(cluster_state, "_CACHE", {})
    monkeypatch.setattr(cluster_state, "_LOCKS", {})


async def test_use_is_what_slurm_charges_the_allocation_asked_once_per_max_age():
    slurm = FakeSlurm()
    use = await allocation_use(SITE, ("proj_a",), max_age=60, runner=slurm)
    assert use == {"proj_a": AllocationUse("proj_a", 85.5, 0.75, cpu_hours=100, gpu_hours=None)}
    assert await hours_left(SITE, "proj_a", max_age=60, runner=slurm) == (14.5, None)
    assert slurm.calls == ["show config", "show assoc_mgr accounts=proj_a"]  # never a scan of accounting
    await allocation_use(SITE, ("proj_a",), max_age=0, runner=slurm)
    assert slurm.calls[2:] == ["show assoc_mgr accounts=proj_a"]  # the plugin is asked once an hour


@pytest.mark.parametrize("slurm", [FakeSlurm(tracked=False), FakeSlurm(config_down=True)])
async def test_where_slurm_tracks_no_usage_accounting_is_summed_instead(slurm):
    use = await allocation_use(SITE, ("proj_a",), max_age=60, runner=slurm)
    assert use == {"proj_a": AllocationUse("proj_a", 6.0, 0.0, cpu_hours=100, gpu_hours=None)}
    assert slurm.calls == ["show config", "sacct"]


async def test_a_slurm_that_does_not_answer_costs_the_waiting_users_one_timeout_not_one_each():
    """Six spawn pages ask at once while Slurm times out: one fetch, its error shared, all answered in one timeout;
    a later ask (past FAILURE_SECONDS) tries again."""
    calls = []

    async def fetch():
        calls.append(1)
        await asyncio.sleep(0.3)
        raise NoAnswer("scontrol: timed out")

    started = time.monotonic()
    results = await asyncio.gather(*(cluster_state.cached("k", 60, fetch) for _ in range(6)), return_exceptions=True)
    assert all(isinstance(r, NoAnswer) for r in results) and len(calls) == 1
    assert time.monotonic() - started < 0.6
    cluster_state._CACHE["k"] = (time.monotonic() - cluster_state.FAILURE_SECONDS, cluster_state._CACHE["k"][1])
    with pytest.raises(NoAnswer):
        await cluster_state.cached("k", 60, fetch)
    assert len(calls) == 2
