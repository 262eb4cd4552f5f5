"""`aifactory grade` on the real cluster when students' code overruns its limits: one
submission exhausts the memory limit, another the time limit. Each is reported on its
own row, is still graded for what ran, and the batch (one array task, both students
in turn) finishes."""

from __future__ import annotations

import subprocess

import pytest

from tests.integration.grading import grade
from tests.integration.test_exchange_permissions import (  # noqa: F401  (fixture)
    COURSE,
    aifactory,
    answer,
    released,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

MEMORY_HOG = "def square(x):\n    return x * x\nhoard = bytearray(8 * 2**30)  # 8 GiB, far over the limit"
SLEEPER = "def square(x):\n    return x * x\nimport time\ntime.sleep(600)"


def rows(out: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("student")}


def test_memory_and_time_overruns_are_reported_per_student_and_the_batch_goes_on(released):
    root, name = released
    subs = root / "limits"
    subs.mkdir()
    answer(subs, "student1", name, MEMORY_HOG)
    answer(subs, "student2", name, SLEEPER)
    subprocess.run(["chmod", "-R", "a+rX", str(subs)], check=True)
    for student in ("student1", "student2"):
        aifactory(student, "exchange", "submit", COURSE, name, "--dir", str(subs / student))

    # One task grades both, the memory hog first: a 5 s cell limit, 1 GiB per kernel (the default).
    proc = grade(name, "--tasks", "1", "--cell-timeout", "5", "--mem", "1024")
    got = rows(proc.stdout)
    assert got["student1"][1:3] == ["memory", "2"], proc.stdout      # graded for what ran before the error
    assert "memory limit" in proc.stdout
    assert got["student2"][1] == "timeout", proc.stdout
    assert "time limit" in proc.stdout
    assert "2 submission(s), 2 problem(s)" in proc.stdout
