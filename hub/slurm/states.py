"""Slurm's job states and pending reasons, and the one set of words users read for them.

The spawner's progress page, its stop message and the Dask widget's explanations all
word a state or a reason from these tables, so a job reads the same wherever it shows.
"""

from __future__ import annotations

# States of a job that waits (squeue): the server is not up yet, a worker has not started.
PENDING_STATES = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD",
                            "SUSPENDED"})
# States of a job that holds its nodes.
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"})
# Still in the queue: waiting or running.
LIVE_STATES = PENDING_STATES | RUNNING_STATES
# States of a job that has ended, in words that follow "stopped: ".
FINAL_STATES = {
    "COMPLETED": "it ended normally",
    "CANCELLED": "the job was cancelled",
    "TIMEOUT": "the walltime ran out",
    "PREEMPTED": "the job was preempted by a higher-priority job",
    "NODE_FAIL": "the node running it failed",
    "OUT_OF_MEMORY": "it ran out of memory",
    "FAILED": "it failed",
    "BOOT_FAIL": "the node failed to boot",
    "DEADLINE": "its deadline passed",
    "REVOKED": "the job was revoked",
    "SPECIAL_EXIT": "the job ended with a special exit",
}

# Why a job is pending (squeue %r), in words that follow "Pending: " or "Job 7 is pending: ".
PENDING_REASONS = {
    "Resources": "waiting for resources: the CPUs, memory or GPUs you asked for are in use",
    "Priority": "waiting behind jobs with higher priority",
    "Reservation": "waiting for the reservation to start",
    "BeginTime": "waiting for its start time",
    "Dependency": "waiting for another job to finish",
    "JobHeldUser": "held by you (scontrol release it)",
    "JobHeldAdmin": "held by the centre's operators",
    "JobArrayTaskLimit": "waiting: the other tasks of its array use all the tasks it may run at once",
    "Licenses": "waiting for licenses",
    "ReqNodeNotAvail": "waiting: the nodes it needs are unavailable (maintenance or down)",
    "PartitionNodeLimit": "cannot start: it asks for more nodes than the partition allows",
    "PartitionTimeLimit": "cannot start: the walltime is above the partition's limit",
    "PartitionDown": "waiting: the partition is down",
    "PartitionInactive": "waiting: the partition is inactive",
    "InvalidAccount": "cannot start: the project (Slurm account) is not valid for you",
    "InvalidQOS": "cannot start: the quality of service is not valid for you",
    "None": "waiting for the scheduler to look at it",
    "": "waiting for the scheduler to look at it",
}
# What a limit reason means, after the limit's name.
_LIMITS = {
    "AssocMaxJobsLimit": "you already run as many jobs as your project allows",
    "AssocGrpCpuLimit": "the project uses all the cores it may use at once",
    "AssocGrpMemLimit": "the project uses all the memory it may use at once",
    "AssocGrpGRES": "the project uses all the GPUs it may use at once",
    "AssocGrpCPUMinutesLimit": "the project has used up its core-hours",
    "AssocGrpBillingMinutes": "the project has used up its allocation",
    "QOSMaxJobsPerUserLimit": "you already run as many jobs as your QOS allows",
}


def state_name(state: str) -> str:
    """'CANCELLED by 0' -> 'CANCELLED'; 'OUT_OF_ME+' (a cut column) -> 'OUT_OF_MEMORY'; '' -> 'UNKNOWN'."""
    word = state.split()[0] if state.strip() else "UNKNOWN"
    if word.endswith("+"):
        word = next((s for s in FINAL_STATES if s.startswith(word[:-1])), word)
    return word


def state_words(state: str) -> str:
    """How a job ended, in words ('the walltime ran out'); 'it left the queue' for a state Slurm adds later."""
    return FINAL_STATES.get(state_name(state), "it left the queue")


def reason_words(reason: str) -> str:
    """A pending reason in plain words; a project's or QOS's limit is named as such."""
    if reason in PENDING_REASONS:
        return PENDING_REASONS[reason]
    detail = f": {_LIMITS[reason]}" if reason in _LIMITS else ""
    if reason.startswith(("AssocGrp", "AssocMax")):
        return f"waiting: your project's limit is reached ({reason}){detail}"
    if reason.startswith("QOS"):
        return f"waiting: a quality-of-service limit is reached ({reason}){detail}"
    return f"waiting ({reason})"
