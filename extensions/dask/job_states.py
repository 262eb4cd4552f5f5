"""What Slurm says about a cluster's worker jobs, and why a worker is missing, in sentences.

dask-jobqueue never looks at its jobs after submitting them. Here `squeue`
answers for queued and running jobs, `sacct` (accounting) for ended ones.
Parsing and explaining are pure; `query_job_states` is the edge.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

SQUEUE_FORMAT = "%i|%T|%r|%S"
SACCT_FIELDS = "JobID,State,ExitCode,Elapsed"

PENDING_REASONS = {
    "Priority": "other jobs have higher priority",
    "Resources": "it is waiting for free cores, memory or GPUs on the partition",
    "None": "the scheduler has not looked at it yet",
    "BeginTime": "its start time has not been reached",
    "Dependency": "it waits for another job to finish",
    "JobHeldUser": "you put it on hold",
    "JobHeldAdmin": "an administrator put it on hold",
    "ReqNodeNotAvail": "the nodes it needs are down, drained or reserved",
    "PartitionDown": "the partition is down",
    "PartitionInactive": "the partition is not accepting jobs",
    "PartitionNodeLimit": "it asks for more nodes than the partition allows",
    "PartitionTimeLimit": "its walltime is longer than the partition allows",
    "QOSMaxJobsPerUserLimit": "you already run as many jobs as your QOS allows",
    "AssocMaxJobsLimit": "you already run as many jobs as your project allows",
    "AssocGrpCpuLimit": "the project uses all the cores it may use at once",
    "AssocGrpMemLimit": "the project uses all the memory it may use at once",
    "AssocGrpGRES": "the project uses all the GPUs it may use at once",
    "AssocGrpCPUMinutesLimit": "the project has used up its core-hours",
    "AssocGrpBillingMinutes": "the project has used up its allocation",
    "InvalidAccount": "the project (Slurm account) is not valid for you",
    "InvalidQOS": "the QOS is not valid for you",
    "Reservation": "it waits for its reservation to start",
    "Licenses": "it waits for licenses",
}

FINAL_STATES = {
    "COMPLETED": "ended normally (the worker retired before the walltime, or was stopped)",
    "FAILED": "failed",
    "TIMEOUT": "was killed at the walltime",
    "CANCELLED": "was cancelled",
    "OUT_OF_MEMORY": "ran out of memory; ask for more memory per worker",
    "NODE_FAIL": "was lost because its node failed",
    "PREEMPTED": "was preempted by a higher-priority job",
    "BOOT_FAIL": "could not start because its node failed to boot",
    "DEADLINE": "missed its deadline",
}


@dataclass(frozen=True)
class JobState:
    job_id: str
    state: str  # Slurm's state name: PENDING, RUNNING, COMPLETED, FAILED, ...
    reason: str = ""  # pending reason (squeue)
    exit_code: str = ""  # "exit:signal" (sacct)
    start: str = ""  # expected or actual start time (squeue %S)

    @property
    def pending(self) -> bool:
        return self.state in ("PENDING", "CONFIGURING", "REQUEUED")

    @property
    def running(self) -> bool:
        return self.state in ("RUNNING", "COMPLETING")

    @property
    def ended(self) -> bool:
        return not (self.pending or self.running)


def squeue_argv(user: str) -> list[str]:
    return ["squeue", "-h", "-t", "all", "-u", user, "-o", SQUEUE_FORMAT]


def sacct_argv(job_ids: list[str]) -> list[str]:
    return ["sacct", "-n", "-P", "-X", "-j", ",".join(job_ids), "-o", SACCT_FIELDS]


def parse_squeue(text: str) -> dict[str, JobState]:
    states = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 4:
            continue
        job_id, state, reason, start = parts
        states[job_id] = JobState(job_id, state, reason="" if reason == "None" and state != "PENDING" else reason, start=start)
    return states


def parse_sacct(text: str) -> dict[str, JobState]:
    states = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 4:
            continue
        job_id, state, exit_code, _elapsed = parts
        # "CANCELLED by 1005" -> "CANCELLED"
        states[job_id] = JobState(job_id, state.split()[0], exit_code=exit_code)
    return states


def explain(job: JobState) -> str:
    """One sentence about one job, for people."""
    if job.pending:
        why = PENDING_REASONS.get(job.reason, f"Slurm gives the reason {job.reason}")
        when = f" Slurm expects it to start at {job.start}." if job.start not in ("", "N/A", "Unknown") else ""
        return f"Job {job.job_id} is pending: {why}.{when}"
    if job.running:
        return f"Job {job.job_id} is running."
    what = FINAL_STATES.get(job.state, f"ended in state {job.state}")
    code = ""
    if job.state == "FAILED" and job.exit_code and job.exit_code != "0:0":
        code = f" with exit code {job.exit_code.split(':')[0]}; see the job's log for the error"
    return f"Job {job.job_id} {what}{code}."


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


async def _run(argv: list[str], timeout: float) -> str | None:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
    except OSError:
        return None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except (asyncio.TimeoutError, asyncio.CancelledError) as stopped:
        if proc.returncode is None:
            proc.kill()
        await asyncio.shield(proc.wait())  # reap it on this loop, before the loop may close
        if isinstance(stopped, asyncio.CancelledError):
            raise
        return None
    return out.decode() if proc.returncode == 0 else None


async def query_job_states(user: str, job_ids: list[str], timeout: float = 10) -> dict[str, JobState] | None:
    """States of `job_ids`: squeue for live jobs, sacct (with exit codes) for ended or forgotten ones.

    None when squeue did not answer.
    """
    text = await _run(squeue_argv(user), timeout)
    if text is None:
        return None
    states = {k: v for k, v in parse_squeue(text).items() if k in job_ids}
    gone = [j for j in job_ids if j not in states or states[j].ended]
    if gone:
        text = await _run(sacct_argv(gone), timeout)
        if text is not None:
            states.update(parse_sacct(text))
    return states
