"""The shared poller: one squeue for all servers, unknown is never gone, final states from sacct."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from aifactory.slurm.runner import NoAnswer, Refused
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
    """A runner that answers like Slurm 22.05 from a queue's text: squeue by job id lists only those jobs (one
    unknown id alone is refused), squeue of pending jobs lists a partition's in its minimal format; sacct from
    text. Records each argv; can stop answering."""

    def __init__(self, squeue=SQUEUE, sacct=""):
        self.squeue, self.sacct, self.calls, self.argvs, self.down = squeue, sacct, [], [], False

    def _squeue(self, argv):
        options = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
        lines = [line for line in self.squeue.splitlines(keepends=True) if line.strip()]
        if "jobs" in options:
            ids = options["jobs"].split(",")
            lines = [line for line in lines if line.split("|")[0] in ids or line.count("|") != 9]  # garbage stays
            if len(ids) == 1 and not lines:
                raise Refused(argv, 1, "slurm_load_jobs error: Invalid job id specified")
        if options.get("states") == "PENDING":
            partitions = options["partition"].split(",")
            return "".join(f"{f[0]}|{f[6]}|{f[7]}|{f[8]}\n" for f in (line.strip().split("|") for line in lines)
                           if f[2] == "PENDING" and f[6] in partitions)
        return "".join(lines)

    async def run(self, argv, *, timeout=None, input=None, env=None):
        self.calls.append(argv[0])
        self.argvs.append(argv)
        if self.down:
            raise NoAnswer("Unable to contact slurm controller")
        if argv[0] == "squeue":
            return self._squeue(argv)
        return {"sacct": self.sacct, "scancel": ""}[argv[0]]


async def test_fifty_servers_one_query():
    slurm = FakeSlurm(squeue="".join(f"{i}|N/A|RUNNING|None|nid{i}|N/A|standard|1|N/A|alice\n" for i in range(50)))
    poller = SlurmPoller(interval=3600, runner=slurm)
    for i in range(50):
        poller.watch(str(i), submitted=False)
    views = await asyncio.gather(*(poller.fresh_view(str(i)) for i in range(50)))
    assert {v.kind for v in views} == {"running"}
    assert slurm.calls == ["squeue"]


async def test_the_poll_asks_only_for_the_hubs_jobs_by_id_whatever_else_is_queued():
    others = "".join(f"{i}|N/A|PENDING|JobHeldUser||N/A|standard|0|2026-11-24T09:00:00|bob\n" for i in range(100, 10100))
    running = "".join(f"{i}|N/A|RUNNING|None|nid{i}|N/A|standard|1|N/A|alice\n" for i in range(50))
    slurm = FakeSlurm(squeue=others + running)
    poller = SlurmPoller(interval=3600, startup_interval=0.01, runner=slurm)
    for i in range(50):
        poller.watch(str(i), submitted=False)
    for _ in range(3):
        await poller.refresh()
    assert {poller.view(str(i)).kind for i in range(50)} == {"running"}
    # one squeue per round, naming the 50 jobs; no partition's whole queue, no pending order while none waits
    assert slurm.calls == ["squeue"] * 3 and poller.scheduler_calls == 3
    assert all(f"--jobs={','.join(sorted(str(i) for i in range(50)))}" in argv for argv in slurm.argvs)
    assert not any(a.startswith("--partition") for argv in slurm.argvs for a in argv)


async def test_the_pending_order_is_asked_only_while_a_job_of_the_hub_waits_in_that_partition():
    slurm = FakeSlurm()
    poller = SlurmPoller(interval=3600, runner=slurm)
    poller.watch("10", submitted=False)
    await poller.refresh()
    assert slurm.calls == ["squeue"]  # running only: no pending order
    poller.watch("13", submitted=False)  # pending in small-g
    await poller.refresh()
    assert slurm.argvs[-1][-1] == "--partition=small-g" and "--states=PENDING" in slurm.argvs[-1]
    assert (poller.view("13").position, poller.view("13").pending_total) == (1, 1)
    assert poller.scheduler_calls == 3
    slurm.squeue = slurm.squeue.replace("13|N/A|PENDING|AssocGrpCpuLimit||N/A", "13|N/A|RUNNING|None|nid003|N/A")
    await poller.refresh()
    assert slurm.calls == ["squeue", "squeue", "squeue", "squeue"] and poller.view("13").kind == "running"


async def test_a_finished_job_goes_to_accounting_once_and_is_not_asked_about_again():
    slurm = FakeSlurm(sacct=sacct_line("99", "COMPLETED"))
    poller = SlurmPoller(interval=3600, runner=slurm)
    poller.watch("99", submitted=False)  # left the queue (purged): squeue refuses its id alone
    poller.watch("10", submitted=False)
    poller.watch("14", submitted=False)  # TIMEOUT, still in the queue: no accounting needed
    for _ in range(3):
        await poller.refresh()
    assert (poller.view("99").kind, poller.view("99").state) == ("gone", "COMPLETED")
    assert (poller.view("14").kind, poller.view("14").state) == ("gone", "TIMEOUT")
    assert slurm.calls == ["squeue", "sacct", "squeue", "squeue"]
    assert [a for a in slurm.argvs if a[0] == "sacct"][0][-1] == "--jobs=99"
    assert [a[-1] for a in slurm.argvs[2:]] == ["--jobs=10", "--jobs=10"]  # the finished ones are not asked again


async def test_one_purged_job_never_blanks_the_other_servers():
    slurm = FakeSlurm()
    poller = SlurmPoller(interval=3600, runner=slurm)
    poller.watch("98", submitted=False)  # unknown to the controller
    await poller.refresh()
    assert poller.view("98").kind == "unknown"  # not in the queue, not yet in accounting: kept, never gone at once

    class Strict(FakeSlurm):  # a Slurm that refuses a whole list for one unknown id
        def _squeue(self, argv):
            if any(a.startswith("--jobs=") and "98" in a.split(",") + [a[7:]] for a in argv):
                raise Refused(argv, 1, "slurm_load_jobs error: Invalid job id specified")
            return super()._squeue(argv)

    strict = Strict()
    poller = SlurmPoller(interval=3600, runner=strict)
    for job_id in ("10", "11", "98"):
        poller.watch(job_id, submitted=False)
    await poller.refresh()
    assert (poller.view("10").kind, poller.view("11").kind, poller.view("98").kind) == ("running", "pending", "unknown")
    assert poller.scheduler_calls == len(strict.calls)


async def test_no_job_to_follow_no_query():
    slurm = FakeSlurm()
    poller = SlurmPoller(interval=3600, runner=slurm)
    await poller.refresh()
    assert slurm.calls == [] and poller.scheduler_calls == 0


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
