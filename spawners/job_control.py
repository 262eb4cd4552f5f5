"""Submitting and cancelling a server's Slurm job through the hub's one `SlurmRunner`.

Bounded and idempotent: sbatch is given its own time limit; scancel is retried, and if
Slurm still does not answer the poller keeps retrying it after each query that answers.
A job is never assumed gone because Slurm did not answer.
"""

from __future__ import annotations

import asyncio
import logging

from aifactory.slurm.runner import Failed, NoAnswer, Refused, SlurmRunner
from aifactory.slurm.sbatch import parse_job_id

from .poller import SlurmPoller
from .script import job_name


async def submit(runner: SlurmRunner, argv: list[str], script: str, env: dict[str, str], timeout: float) -> str:
    """Submit the batch script on stdin; the job id, or NoAnswer / Refused / Failed."""
    return parse_job_id(await runner.run(argv, timeout=timeout, input=script, env=env))


async def cancel_job(runner: SlurmRunner, job_id: str, poller: SlurmPoller, log: logging.Logger,
                     attempts: int = 3, backoff: float = 1.0) -> None:
    """scancel `job_id`, retried with backoff; if Slurm never answers, the poller retries it later."""
    if not job_id:
        return
    for attempt in range(attempts):
        try:
            await runner.run(["scancel", job_id])
            return
        except Refused as error:
            if "already completed" in error.stderr or "Invalid job id" in error.stderr:
                return
            log.warning("scancel %s: %s", job_id, error)
        except (NoAnswer, Failed) as error:
            log.warning("scancel %s: no answer (%s)", job_id, error)
        await asyncio.sleep(backoff * 2 ** attempt)
    poller.cancel_later(job_id)


async def cancel_by_name(runner: SlurmRunner, user: str, server: str, log: logging.Logger) -> None:
    """After a submission without a usable answer: cancel any job of this server (none may legitimately run)."""
    name = job_name(user, server)
    try:
        await runner.run(["scancel", f"--user={user}", f"--name={name}"])
    except (NoAnswer, Refused, Failed) as error:
        log.error("Could not cancel %s's jobs named %s after a failed submission: %s", user, name, error)
