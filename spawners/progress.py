"""Slurm's words for a job's state, in words a user understands: pure functions."""

from __future__ import annotations

from datetime import datetime

_REASONS = {
    "Resources": "waiting for resources: the CPUs, memory or GPUs you asked for are in use",
    "Priority": "waiting behind jobs with higher priority",
    "Reservation": "waiting for the reservation to start",
    "BeginTime": "waiting for its start time",
    "Dependency": "waiting for another job to finish",
    "JobHeldUser": "held by you (scontrol release it)",
    "JobHeldAdmin": "held by the centre's operators",
    "ReqNodeNotAvail": "waiting: the nodes it needs are unavailable (maintenance or down)",
    "PartitionTimeLimit": "cannot start: the walltime is above the partition's limit",
    "PartitionDown": "waiting: the partition is down",
    "PartitionInactive": "waiting: the partition is inactive",
    "None": "waiting for the scheduler to look at it",
    "": "waiting for the scheduler to look at it",
}

FINAL_STATES = {
    "COMPLETED": "the server exited",
    "CANCELLED": "the job was cancelled",
    "TIMEOUT": "the walltime ran out",
    "PREEMPTED": "the job was preempted by a higher-priority job",
    "NODE_FAIL": "the node running it failed",
    "OUT_OF_MEMORY": "it ran out of memory",
    "FAILED": "the server failed (see ~/.aifactory/jupyter-<job>.log)",
    "BOOT_FAIL": "the node failed to boot",
    "DEADLINE": "its deadline passed",
    "REVOKED": "the job was revoked",
    "SPECIAL_EXIT": "the job ended with a special exit",
}

PENDING_STATES = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED"}
RUNNING_STATES = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"}


def final_state(state: str) -> str:
    """'CANCELLED by 0' -> 'CANCELLED'; 'OUT_OF_ME+' (sacct truncation) -> 'OUT_OF_MEMORY'."""
    word = state.split()[0] if state.strip() else "UNKNOWN"
    if word.endswith("+"):
        word = next((s for s in FINAL_STATES if s.startswith(word[:-1])), word)
    return word


def reason_words(reason: str) -> str:
    """A pending reason in plain words (project limits are named as such)."""
    if reason in _REASONS:
        return _REASONS[reason]
    if reason.startswith(("AssocGrp", "AssocMax")):
        return f"waiting: your project's limit is reached ({reason})"
    if reason.startswith(("QOSGrp", "QOSMax", "QOS")):
        return f"waiting: a quality-of-service limit is reached ({reason})"
    return f"waiting ({reason})"


def pending_message(reason: str, position: int | None, total: int | None, partition: str,
                    start_estimate: datetime | None, now: datetime) -> str:
    """'Pending: waiting for resources ...; 2nd of 3 waiting in standard; Slurm expects it to start at 14:05.'"""
    parts = [f"Pending: {reason_words(reason)}"]
    if position and total:
        parts.append(f"number {position} of {total} waiting in partition {partition}")
    if start_estimate and start_estimate > now:
        when = start_estimate.strftime("%H:%M" if start_estimate.date() == now.date() else "%Y-%m-%d %H:%M")
        minutes = int((start_estimate - now).total_seconds() // 60)
        parts.append(f"Slurm expects it to start at {when} (in about {minutes} min)")
    return "; ".join(parts)


def job_failure(state: str) -> str:
    """The metrics label of a start whose job ended first: 'job_' and the final state ('job_out_of_memory')."""
    return f"job_{final_state(state).lower()}"


def stop_message(state: str, job_id: str) -> str:
    """Why a server stopped, for the user and the hub log."""
    word = final_state(state)
    return f"Your server (Slurm job {job_id}) stopped: {FINAL_STATES.get(word, 'it left the queue')} [{word}]"
