"""What Slurm says about a cluster's worker jobs, and why a worker is missing, in sentences.

dask-jobqueue never looks at its jobs after submitting them. Here `squeue`
answers for queued and running jobs, `sacct` (accounting) for ended ones, both
through `aifactory.slurm` (its parsers, and the words for states and reasons the
hub's progress page uses too). Explaining is pure; `query_job_states` is the edge.
"""

from __future__ import annotations

from dataclasses import dataclass

from aifactory.slurm.runner import SlurmError, SlurmRunner
from aifactory.slurm.sacct import AccountingRecord, parse_sacct, sacct_argv
from aifactory.slurm.squeue import QueueEntry, parse_squeue, squeue_argv
from aifactory.slurm.states import PENDING_STATES, RUNNING_STATES, reason_words, state_words


@dataclass(frozen=True)
class JobState:
    job_id: str
    state: str  # Slurm's state name: PENDING, RUNNING, COMPLETED, FAILED, ...
    reason: str = ""  # pending reason (squeue)
    exit_code: str = ""  # "exit:signal" (sacct)
    start: str = ""  # expected or actual start time (squeue), ISO

    @property
    def pending(self) -> bool:
        return self.state in PENDING_STATES

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES

    @property
    def ended(self) -> bool:
        return not (self.pending or self.running)


def from_queue(entry: QueueEntry) -> JobState:
    return JobState(entry.job_id, entry.state, entry.reason, start=entry.start.isoformat() if entry.start else "")


def from_accounting(record: AccountingRecord) -> JobState:
    return JobState(record.job_id, record.state, exit_code=record.exit_code)


def explain(job: JobState) -> str:
    """One sentence about one job, for people."""
    if job.pending:
        when = f" Slurm expects it to start at {job.start}." if job.start else ""
        return f"Job {job.job_id} is pending: {reason_words(job.reason)}.{when}"
    if job.running:
        return f"Job {job.job_id} is running."
    advice = ""
    if job.state == "FAILED" and job.exit_code and job.exit_code != "0:0":
        advice = f" with exit code {job.exit_code.split(':')[0]}; see the job's log for the error"
    elif job.state == "OUT_OF_MEMORY":
        advice = "; ask for more memory per worker"
    return f"Job {job.job_id} stopped: {state_words(job.state)}{advice}."


@dataclass(frozen=True)
class WorkerSummary:
    target: int
    pending: int
    running: int
    connected: int
    explanations: tuple[str, ...]

    @property
    def missing(self) -> int:
        return max(0, self.target - self.connected)


def summarize(jobs: dict[str, JobState] | None, job_ids: list[str], connected: int, target: int) -> WorkerSummary:
    """Counts for the widget, plus a sentence for every job that has no connected worker.

    `jobs` None means Slurm did not answer: the states are unknown, not gone.
    """
    if jobs is None:
        note = "Slurm did not answer just now; the job states are unknown." if connected < target else None
        return WorkerSummary(target, 0, 0, connected, (note,) if note else ())
    mine = [jobs[j] for j in job_ids if j in jobs]
    pending = [j for j in mine if j.pending]
    running = [j for j in mine if j.running]
    explanations: list[str] = []
    if connected < target:
        explanations += [explain(j) for j in pending]
        explanations += [explain(j) for j in mine if j.ended]
        if len(running) > connected:
            explanations.append(
                f"{len(running) - connected} job(s) are running but their workers have not connected yet."
            )
    return WorkerSummary(target, len(pending), len(running), connected, tuple(explanations))


async def query_job_states(user: str, job_ids: list[str], timeout: float = 10,
                           runner: SlurmRunner = SlurmRunner()) -> dict[str, JobState] | None:
    """States of `job_ids`: squeue for live jobs, sacct (with exit codes) for ended or forgotten ones.

    None when squeue did not answer (or gave nothing usable): unknown, not gone.
    """
    try:
        queue = parse_squeue(await runner.run(squeue_argv(users=(user,)), timeout=timeout))
    except SlurmError:
        return None
    states = {job_id: from_queue(entry) for job_id, entry in queue.items() if job_id in job_ids}
    gone = [j for j in job_ids if j not in states or states[j].ended]
    if gone:
        try:
            records = parse_sacct(await runner.run(sacct_argv(job_ids=tuple(gone)), timeout=timeout))
        except SlurmError:
            records = []  # accounting silent: those jobs keep what squeue said, or stay unknown
        states.update((record.job_id, from_accounting(record)) for record in records)
    return states
