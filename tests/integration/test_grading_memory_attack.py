"""A notebook that fills its grading task's memory where RLIMIT_DATA does not count (tmpfs files,
shared mappings) costs only its own grade: the kernel is the OOM killer's choice and its tmpfs
folders hold less than the task's room, so the nbgrader that grades the task's next student lives on.
Both students in one array task, the attacker first."""

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
from tests.integration.test_grading_limits import rows

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# Writes to every tmpfs of the sandbox until each is full, then maps and touches shared memory.
FILLER = """def square(x):
    return x * x
import mmap, os
for folder in ("/tmp", "/dev/shm", "/var/tmp", "/run"):
    try:
        with open(os.path.join(folder, "fill"), "wb") as f:
            while True:
                f.write(bytes(2**20))
    except OSError:
        pass
shared = mmap.mmap(-1, 3 * 2**30)
for i in range(0, len(shared), 4096):
    shared[i] = 1
"""
HONEST = "def square(x):\n    return x * x"


def test_a_notebook_filling_memory_outside_its_limit_does_not_cost_the_next_students_grade(released):
    root, name = released
    subs = root / "fill"
    subs.mkdir()
    answer(subs, "student1", name, FILLER)
    answer(subs, "student2", name, HONEST)
    subprocess.run(["chmod", "-R", "a+rX", str(subs)], check=True)
    for student in ("student1", "student2"):
        aifactory(student, "exchange", "submit", COURSE, name, "--dir", str(subs / student))

    proc = grade(name, "--tasks", "1", "--cell-timeout", "60", "--mem", "512")
    got = rows(proc.stdout)
    assert got["student1"][1] in ("memory", "kernel died", "failed"), proc.stdout   # its kernel was killed
    assert got["student2"][1] == "ok" and float(got["student2"][2]) > 0, proc.stdout
    assert "2 submission(s)" in proc.stdout, proc.stdout
