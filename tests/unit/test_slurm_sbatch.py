"""sbatch --parsable's job id: read one way for the spawner and grading, anything else is Failed."""

from __future__ import annotations

import pytest

from aifactory.slurm.runner import Failed
from aifactory.slurm.sbatch import parse_job_id


@pytest.mark.parametrize("text, job_id", [
    ("1234\n", "1234"),
    ("1234;cluster1\n", "1234"),
    ("  707  ", "707"),
])
def test_the_job_id_of_sbatch_parsable(text, job_id):
    assert parse_job_id(text) == job_id


@pytest.mark.parametrize("text", [
    "",
    "\n",
    "Submitted batch job 1234\n",  # without --parsable
    "12a4\n",
    ";cluster1\n",
    "1234;\n",
    "1234;cluster1;more\n",
    "1234\n1235\n",
    "-1234\n",
])
def test_anything_else_is_an_answer_that_cannot_be_used(text):
    with pytest.raises(Failed, match="without a job id"):
        parse_job_id(text)
