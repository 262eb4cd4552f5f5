"""What the spawner tells a user about their server's job: sentences from Slurm's states and reasons.

The words for each state and reason are `aifactory.slurm.states`'s, the same the Dask widget uses.
"""

from __future__ import annotations

from datetime import datetime

from aifactory.site.units import format_walltime
from aifactory.slurm.states import reason_words, state_name, state_words

from .singleuser import GPU_IDLE_EXIT


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
    return f"job_{state_name(state).lower()}"


def stop_message(state: str, job_id: str, node: str = "", exit_code: str = "", gpu_idle_minutes: int = 0) -> str:
    """Why a server stopped, for the user and the hub log, naming its node when known (a node failure
    is then plain); a failed server points to its log, unless its launcher's exit code (accounting's
    'exit:signal') says the server stopped itself because its GPUs and kernels were idle."""
    word = state_name(state)
    where = f" on node {node}" if node else ""
    if word == "FAILED" and exit_code.split(":")[0] == str(GPU_IDLE_EXIT):
        idle = f" for {format_walltime(gpu_idle_minutes)}" if gpu_idle_minutes else ""
        return f"Your server (Slurm job {job_id}{where}) stopped: its GPUs and kernels were idle{idle} [GPU_IDLE]"
    log = f" (see ~/.aifactory/jupyter-{job_id}.log)" if word == "FAILED" else ""
    return f"Your server (Slurm job {job_id}{where}) stopped: {state_words(word)}{log} [{word}]"
