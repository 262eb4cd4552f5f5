"""`sbatch --parsable`: the one reader of the job id it prints, for the spawner and grading alike.

An answer that is not a job id cannot be followed or cancelled by id, so it is `Failed`,
never a guessed id (a job may still be queued: the spawner then cancels by job name).
"""

from __future__ import annotations

import re

from .runner import Failed

_JOB_ID = re.compile(r"(\d+)(?:;[^;\s]+)?")


def parse_job_id(text: str) -> str:
    """sbatch --parsable's stdout, 'ID' or 'ID;CLUSTER' -> 'ID'; anything else raises Failed."""
    match = _JOB_ID.fullmatch(text.strip())
    if match is None:
        raise Failed(f"sbatch answered without a job id: {text.strip()[:200]!r}")
    return match.group(1)
