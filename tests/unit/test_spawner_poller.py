"""The shared poller: one squeue for all servers, unknown is never gone, final states from sacct."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from aifactory.slurm.runner import NoAnswer
from aifactory.slurm.states import FINAL_STATES, reason_words
from aifactory.spawners.metrics import SPAWN_FAILURE_REASONS
from aifactory.spawners.poller import SlurmPoller
from aifactory.spawners.port_api import parse_port_body, token_digest
from aifactory.spawners.progress import job_failure, pending_message, stop_message
from aifactory.spawners.slurm import interrupted_reason

# squeue_argv's format: %i|%K|%T|%r|%N|%S|%P|%Q|%V|%u (real output: tests/unit/data/slurm/)
SQUEUE = """\
10|N/A|RUNNING|None|nid001|2026-11-24T10:00:00|standard|100|2026-11-24T09:59:00|alice
11|N/A|PENDING|Resources||2026-11-24T12:30:00|standard|100|2026-11-24T10:01:00|alice
12|N/A|PENDING|Priority||N/A|standard|200|2026-11-24T10:02:00|bob
13|N/A|PENDING|AssocGrpCpuLimit||N/A|small-g|100|2026-11-24T10:03:00|bob
14|N/A|TIMEOUT|TimeLimit|nid002|2026-11-24T09:00:00|standard|100|2026-11-24T08:00:00|carol
"""


def sacct_line(job_id: str, state: str) -> str:
    """A line of sacct_argv's format: JobIDRaw|JobID|State|ExitCode|Account|User|Start|End|AllocTRES."""
    return f"{job_id}|{job_id}|{state}|0:0|proj_a|alice|2026-11-24T10:00:00|2026-11-24T11:00:00|cpu=1\n"


class FakeSlurm:
    """A runner that answers squeue/sacct from text; counts calls; can stop answering."""

    def __init__(self, squeue=SQUEUE, sacct=""):
        self.squeue, self.sacct, self.calls, self.down = squeue, sacct, [], False

    async def run(self, argv, *, timeout=None, input=None, env=None):
        self.calls.append(argv[0])
        if self.down:
            raise NoAnswer("Unable to contact slurm controller")
        return {"squeue": self.squeue, "sacct": self.sacct, "scancel": ""}[argv[0]]


async def test_fifty_servers_one_query():
    slurm = FakeSlurm(squeue="".join(f"{i}|N/A|RUNNING|None|nid{i}|N/A|standard|1|N/A|alice\n" for i in range(50)))
    poller = SlurmPoller(interval=3600, runner=slurm)
    for i in range(50):
        poller.watch(str(i), submitted=False)
    views = await asyncio.gather(*(poller.fresh_view(str(i)) for i in range(50)))
    assert {v.kind for v in views} == {"running"}
    assert slurm.calls == ["squeue"]


async def test_no_answer_is_unknown_never_gone():
    slurm = FakeSlurm()
    slurm.down = True
    poller = SlurmPoller(interval=3600, startup_interval=0.01, runner=slurm)
    poller.watch("10", submitted=False)
    assert (await poller.fresh_view("10")).kind == "unknown"
    slurm.down = False
    assert (await poller.fresh_view("10")).kind == "running"


async def test_output_the_poller_cannot_read_is_unknown_never_gone():
    poller = SlurmPoller(interval=3600, runner=FakeSlurm(squeue="slurm_load_jobs: something else entirely\n"))
    poller.watch("10", submitted=False)
    view = await poller.fresh_view("10")
    assert view.kind == "unknown" and "squeue printed a line" in view.reason


async def test_a_job_that_left_is_looked_up_in_accounting():
    slurm = FakeSlurm(sacct=sacct_line("99", "CANCELLED by 1001"))
    poller = SlurmPoller(interval=3600, runner=slurm)
    poller.watch("99", submitted=False)
    poller.watch("14", submitted=False)
    view = await poller.fresh_view("99")
    assert (view.kind, view.state) == ("gone", "CANCELLED")
    assert (poller.view("14").kind, poller.view("14").state) == ("gone", "TIMEOUT")
    assert slurm.calls == ["squeue", "sacct"]


async def test_pending_view_carries_reason_position_and_estimate():
    poller = SlurmPoller(interval=3600, runner=FakeSlurm())
    poller.watch("11", submitted=False)
    view = await poller.fresh_view("11")
    assert (view.kind, view.reason, view.position, view.pending_total) == ("pending", "Resources", 2, 2)
    message = pending_message(view.reason, view.position, view.pending_total, view.partition, view.start_estimate,
                              datetime(2026, 11, 24, 12, 0))
    assert message == ("Pending: waiting for resources: the CPUs, memory or GPUs you asked for are in use; "
                       "number 2 of 2 waiting in partition standard; "
                       "Slurm expects it to start at 12:30 (in about 30 min)")


async def test_a_running_view_carries_how_long_slurm_kept_the_job_queued():
    poller = SlurmPoller(interval=3600, runner=FakeSlurm())
    poller.watch("10", submitted=False)
    view = await poller.fresh_view("10")
    assert (view.kind, view.node, view.partition, view.queue_seconds) == ("running", "nid001", "standard", 60.0)


def test_a_start_that_failed_is_labelled_by_slurms_final_state_within_the_metrics_labels():
    assert [job_failure(s) for s in ("OUT_OF_ME+", "CANCELLED by 0", "NODE_FAIL")] == [
        "job_out_of_memory", "job_cancelled", "job_node_fail"]
    assert {job_failure(state) for state in FINAL_STATES} <= set(SPAWN_FAILURE_REASONS)
    assert interrupted_reason(asyncio.CancelledError(), 299.5, 300) == "timeout"
    assert interrupted_reason(asyncio.CancelledError(), 12.0, 300) == "cancelled"
    assert interrupted_reason(RuntimeError(), 12.0, 300) == "other"


def test_the_port_handler_recognises_a_token_by_its_digest_only():
    assert token_digest("secret") == "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
    assert token_digest("secret") != token_digest("secret ")


def test_plain_words():
    assert reason_words("AssocGrpCpuLimit").startswith("waiting: your project's limit")
    assert reason_words("Priority") == "waiting behind jobs with higher priority"
    assert stop_message("TIMEOUT", "7") == "Your server (Slurm job 7) stopped: the walltime ran out [TIMEOUT]"
    assert stop_message("NODE_FAIL", "7", "standard-2") == (
        "Your server (Slurm job 7 on node standard-2) stopped: the node running it failed [NODE_FAIL]")
    assert stop_message("FAILED", "7") == ("Your server (Slurm job 7) stopped: it failed "
                                           "(see ~/.aifactory/jupyter-7.log) [FAILED]")


@pytest.mark.parametrize("body", [{"port": "1"}, {"port": 0}, {"port": True}, {"port": 80, "ip": "evil"},
                                  {"cmd": "x"}, [8000], None])
def test_port_reports_carry_only_a_port(body):
    with pytest.raises(ValueError):
        parse_port_body(body)
    assert parse_port_body({"port": 8888}) == 8888
