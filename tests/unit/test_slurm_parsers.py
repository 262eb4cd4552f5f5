"""The one set of Slurm parsers, on real output of the local cluster (tests/unit/data/slurm/README.md)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from aifactory.site import parse_site
from aifactory.slurm.accounting import JobUsage, UsageRow, job_usage, summarize
from aifactory.slurm.projects import associations_argv, parse_all_associations, parse_associations, site_projects
from aifactory.slurm.runner import Failed
from aifactory.slurm.sacct import AccountingRecord, parse_sacct, sacct_argv
from aifactory.slurm.sinfo import SINFO_ARGV, PartitionState, parse_sinfo, parse_sinfo_nodes
from aifactory.slurm.squeue import (
    INVALID_JOB_ID, QueueEntry, parse_pending, parse_squeue, pending_argv, pending_positions, queue_seconds,
    squeue_argv,
)
from aifactory.slurm.states import (
    FINAL_STATES, PENDING_REASONS, PENDING_STATES, RUNNING_STATES, reason_words, state_name, state_words,
)

from .sites import SMALL_SITE

DATA = Path(__file__).parent / "data" / "slurm"
FORMAT = "--format=%i|%K|%T|%r|%N|%S|%P|%Q|%V|%u"
SACCT = "--format=JobIDRaw,JobID,State,ExitCode,Account,User,Start,End,AllocTRES"


def captured(name: str) -> str:
    return (DATA / name).read_text()


def at(hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2026, 12, 1, hour, minute, second)


def test_the_argv_the_captures_were_made_with():
    assert squeue_argv() == ["squeue", "--noheader", "--all", "--array", "--states=all", FORMAT]
    assert squeue_argv(users=("student1",), job_ids=("707",), partitions=("standard", "small-g")) == [
        "squeue", "--noheader", "--all", "--array", "--states=all", FORMAT,
        "--user=student1", "--jobs=707", "--partition=standard,small-g"]
    assert sacct_argv(job_ids=("698", "707")) == [
        "sacct", "--allocations", "--noheader", "--parsable2", SACCT, "--jobs=698,707"]
    assert sacct_argv(since=at(14, 25), until=at(14, 30), accounts=("proj_a",), all_users=True) == [
        "sacct", "--allocations", "--noheader", "--parsable2", SACCT, "--allusers",
        "--starttime=2026-12-01T14:25:00", "--endtime=2026-12-01T14:30:00", "--accounts=proj_a"]
    assert SINFO_ARGV == ["sinfo", "--noheader", "--Node", "--Format", "PartitionName:0|,NodeHost:0|,StateCompact:0|,"
                          "CPUsState:0|,Gres:0|,GresUsed:0|,AllocMem:0|,Memory:0|"]
    assert associations_argv("student1") == [
        "sacctmgr", "--noheader", "--parsable2", "show", "user", "student1", "withassoc",
        "format=DefaultAccount,Account"]


def test_squeue_lists_every_state_with_its_reason_estimate_and_array_index():
    jobs = parse_squeue(captured("squeue-all.txt"))
    assert {job_id: job.state for job_id, job in jobs.items()} == {
        "698": "COMPLETED", "699": "FAILED", "700": "TIMEOUT", "701": "OUT_OF_MEMORY", "702": "RUNNING",
        "703": "CANCELLED", "704": "PENDING", "705": "PENDING", "706": "PENDING", "707_0": "RUNNING",
        "707_1": "RUNNING", "707_2": "PENDING", "707_3": "PENDING", "710": "CANCELLED", "711": "PENDING",
        "712": "PENDING"}
    assert jobs["711"] == QueueEntry("711", "PENDING", "Resources", "", None, "standard", 4294901110,
                                     at(14, 27, 58), "student1", None)
    assert jobs["705"].reason == "BeginTime" and jobs["705"].start == at(16, 25, 13)  # Slurm's estimate
    assert jobs["707_1"] == QueueEntry("707_1", "RUNNING", "", "vm", at(14, 25, 14), "small-g", 4294901112,
                                       at(14, 25, 13), "student2", 1)
    assert queue_seconds(jobs["702"]) == 1.0 and queue_seconds(jobs["711"]) is None
    assert {job.reason for job in jobs.values() if job.state == "PENDING"} == {
        "BeginTime", "JobArrayTaskLimit", "Dependency", "Resources", "Priority", "JobHeldUser"}


def test_a_users_squeue_and_an_arrays_tasks():
    mine = parse_squeue(captured("squeue-student1.txt"))
    assert {job.user for job in mine.values()} == {"student1"}
    assert sorted(mine) == ["698", "699", "702", "704", "706", "710", "711", "712"]
    tasks = parse_squeue(captured("squeue-array.txt"))
    assert {t.array_index: t.state for t in tasks.values()} == {0: "RUNNING", 1: "RUNNING", 2: "PENDING",
                                                                 3: "PENDING"}


def test_place_in_the_queue_by_priority_then_submission():
    assert pending_positions(parse_squeue(captured("squeue-all.txt"))) == {
        "706": (1, 4), "711": (2, 4), "712": (3, 4), "704": (4, 4),  # held: priority 0
        "707_2": (1, 2), "707_3": (2, 2), "705": (1, 1)}


def test_the_poll_by_job_id_and_a_partitions_pending_order():
    assert pending_argv(("standard", "interactive")) == [
        "squeue", "--noheader", "--all", "--array", "--states=PENDING", "--format=%i|%P|%Q|%V",
        "--partition=standard,interactive"]
    jobs = parse_squeue(captured("squeue-jobs.txt"))
    assert {i: j.state for i, j in jobs.items()} == {
        "2364": "RUNNING", "2363_0": "PENDING", "2363_1": "PENDING", "2363_2": "PENDING", "2362": "PENDING"}
    assert jobs["2364"].nodes == "interactive-1"
    pending = parse_pending(captured("squeue-pending.txt"))
    assert pending["2362"] == QueueEntry("2362", "PENDING", partition="standard", priority=0,
                                         submitted=datetime(2026, 12, 2, 0, 0, 37))
    assert pending_positions(pending) == {"2362": (1, 4), "2363_0": (2, 4), "2363_1": (3, 4), "2363_2": (4, 4)}
    assert INVALID_JOB_ID in captured("squeue-purged-stderr.txt")


def test_sacct_says_how_each_job_ended():
    records = {r.raw_id: r for r in parse_sacct(captured("sacct-jobs.txt"))}
    assert {raw_id: r.state for raw_id, r in records.items()} == {
        "698": "COMPLETED", "699": "FAILED", "700": "TIMEOUT", "701": "OUT_OF_MEMORY", "702": "RUNNING",
        "703": "CANCELLED", "704": "PENDING", "705": "PENDING", "706": "PENDING", "708": "RUNNING",
        "709": "RUNNING", "707": "PENDING", "710": "CANCELLED", "711": "PENDING", "712": "PENDING"}
    assert records["699"] == AccountingRecord("699", "699", "FAILED", "3:0", "project_465000002", "student1",
                                              at(14, 25, 14), at(14, 25, 15),
                                              {"billing": "1", "cpu": "1", "mem": "1G", "node": "1"})
    assert (records["708"].job_id, records["708"].tres["gres/gpu"]) == ("707_0", "1")
    assert records["707"].job_id == "707_[2-3%2]"  # the tasks not started yet, in one line
    assert (records["710"].start, records["710"].tres) == (None, {})  # cancelled before it started


def test_usage_clips_each_job_to_the_window():
    jobs = job_usage(parse_sacct(captured("sacct-usage.txt")), at(14, 25), at(14, 30))
    assert {j.job_id: (j.cpus, j.gpus, j.seconds) for j in jobs} == {
        "699": (1, 0, 1), "700": (1, 0, 61), "703": (1, 0, 8),
        "702": (1, 0, 286), "708": (1, 1, 286), "709": (1, 1, 286),  # still running: up to the window's end
    }  # 698 and 701 ended in the second they started; 710, 711, 712 never ran
    assert summarize(jobs) == [
        UsageRow("project_465000002", "student1", pytest.approx(287 / 3600), 0.0),
        UsageRow("project_465000002", "student2", pytest.approx(641 / 3600), pytest.approx(572 / 3600)),
    ]
    assert JobUsage("1", "p", "u", 4, 2, 1800).core_hours == 2.0


def test_sinfo_free_capacity_per_partition():
    nodes = parse_sinfo_nodes(captured("sinfo.txt"))
    assert [(n.partition, n.node, n.state, n.usable) for n in nodes] == [
        ("standard", "vm", "mix", True), ("small-g", "vm", "mix", True), ("interactive", "vm", "mix", True)]
    assert parse_sinfo(captured("sinfo.txt"))["small-g"] == PartitionState(
        "small-g", nodes=1, idle_nodes=0, idle_cpus=13, cpus=16, free_memory_mib=9216, free_gpus=2, gpus=4,
        free_by_node=((13, 9216, 2),))


def test_sinfo_counts_each_partition_per_node_on_the_multi_node_cluster():
    nodes = parse_sinfo_nodes(captured("sinfo-nodes.txt"))
    assert [(n.node, n.condition) for n in nodes] == [
        ("interactive-1", "in use"), ("interactive-2", "idle"), ("small-g-1", "in use"),
        ("standard-1", "in use"), ("standard-2", "in use")]
    states = parse_sinfo(captured("sinfo-nodes.txt"))
    assert states["interactive"] == PartitionState(
        "interactive", nodes=2, idle_nodes=1, idle_cpus=7, cpus=8, free_memory_mib=2816 + 3072,
        free_by_node=((3, 2816, 0), (4, 3072, 0)))
    assert states["small-g"] == PartitionState(
        "small-g", nodes=1, idle_cpus=7, cpus=8, free_memory_mib=3840, free_gpus=2, gpus=4,
        free_by_node=((7, 3840, 2),))
    assert states["standard"] == PartitionState(
        "standard", nodes=2, idle_cpus=14, cpus=16, free_memory_mib=4096 + 4864,
        free_by_node=((7, 4096, 0), (7, 4864, 0)))


def test_a_node_down_or_drained_is_counted_as_such_and_adds_nothing_free():
    states = parse_sinfo(captured("sinfo-node-down.txt"))
    assert states["standard"] == PartitionState(
        "standard", nodes=1, idle_cpus=7, cpus=8, free_memory_mib=4096, down_nodes=1, free_by_node=((7, 4096, 0),))
    assert states["interactive"] == PartitionState(
        "interactive", nodes=1, idle_cpus=3, cpus=4, free_memory_mib=2816, drained_nodes=1,
        free_by_node=((3, 2816, 0),))
    assert states["small-g"].down_nodes == states["small-g"].drained_nodes == 0


@pytest.mark.parametrize("state, condition", [
    ("idle", "idle"), ("mix", "in use"), ("alloc", "in use"), ("idle*", "down"), ("down*", "down"),
    ("drain", "drained"), ("drng", "drained"), ("mix-", "in use"), ("fail", "down"), ("boot", "down"),
])
def test_a_node_state_in_words(state, condition):
    """A trailing '*' is a slurmd that stopped answering (a node just cut off): Slurm sends it no new work."""
    node = parse_sinfo_nodes(f"standard|standard-1|{state}|0/8/0/8|(null)|gpu:0|0|5120|\n")[0]
    assert node.condition == condition and node.usable == (condition in ("idle", "in use"))


def test_a_users_projects_default_first_and_the_fallback_from_the_site_file():
    assert parse_associations(captured("sacctmgr-student1.txt")) == ("project_465000002",)
    assert parse_associations(captured("sacctmgr-trainer1.txt")) == ("project_465000001", "project_465000002")
    assert parse_associations(captured("sacctmgr-nobody.txt")) == ()
    assert site_projects(parse_site(SMALL_SITE), "alice") == ("proj_a",)


@pytest.mark.parametrize("parse, text", [
    (parse_squeue, "JOBID PARTITION NAME USER ST TIME NODES NODELIST(REASON)\n"),  # a header: the wrong argv
    (parse_pending, "2362|N/A|PENDING|JobHeldUser||N/A|standard|0|2026-12-02T00:00:37|student1\n"),  # the full format
    (parse_sacct, "698|COMPLETED\n"),
    (parse_sinfo, "standard vm mix\n"),
    (parse_associations, "slurm_persist_conn_open_without_init: failed to open persistent connection\n"),
])
def test_output_of_another_shape_is_failed_not_an_empty_queue(parse, text):
    with pytest.raises(Failed):
        parse(text)
    assert not parse("\n")


def test_one_table_of_states_and_one_wording_of_reasons():
    assert not PENDING_STATES & RUNNING_STATES and not (PENDING_STATES | RUNNING_STATES) & set(FINAL_STATES)
    assert [state_name(s) for s in ("CANCELLED by 0", "OUT_OF_ME+", "", "TIMEOUT")] == [
        "CANCELLED", "OUT_OF_MEMORY", "UNKNOWN", "TIMEOUT"]
    assert state_words("CANCELLED by 1001") == "the job was cancelled"
    assert state_words("SOMETHING_NEW") == "it left the queue"
    pending = {job.reason for job in parse_squeue(captured("squeue-all.txt")).values() if job.state == "PENDING"}
    assert pending <= set(PENDING_REASONS)  # every reason the real queue gave has words of its own
    assert reason_words("AssocMaxJobsLimit") == ("waiting: your project's limit is reached (AssocMaxJobsLimit): "
                                                 "you already run as many jobs as your project allows")
    assert reason_words("QOSGrpGRES") == "waiting: a quality-of-service limit is reached (QOSGrpGRES)"
    assert reason_words("Mystery") == "waiting (Mystery)"


def test_every_users_projects_in_one_table_default_first():
    table = parse_all_associations(captured("sacctmgr-all.txt"))
    assert table["student1"] == parse_associations(captured("sacctmgr-student1.txt"))
    assert table["trainer1"] == parse_associations(captured("sacctmgr-trainer1.txt"))
    assert "nobody" not in table and table["root"] == ("root",)
    with pytest.raises(Failed):
        parse_all_associations("project_465000002\n")
