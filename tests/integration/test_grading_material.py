"""The shipped course material through the whole course flow on the local cluster:
released from courses/<id>/source, fetched and submitted by a student, graded by
`aifactory grade` on Slurm in the sandbox."""

from __future__ import annotations

import shutil
import subprocess
import time

import nbformat
import pytest

from aifactory.courses.material import find_course
from tests.conftest import BIN
from tests.integration.grading import grade
from tests.integration.test_exchange_permissions import COURSE, EXCHANGE, aifactory, shared_tmp

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
ASSIGNMENT = "tensors-and-gradients"


def autograded_points(notebook) -> float:
    """Points of the tests (graded, not a solution cell): what the autograder can award."""
    total = 0.0
    for cell in notebook.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            total += float(meta.get("points", 0))
    return total


def test_shipped_assignment_released_submitted_graded_full_marks(cluster):
    started = time.monotonic()
    material = next(a for a in find_course(COURSE).assignments if a.id == ASSIGNMENT)
    solution = nbformat.read(material.source / f"{ASSIGNMENT}.ipynb", 4)
    subprocess.run([str(BIN / "aifactory"), "course", "setup", COURSE], check=True, capture_output=True)
    # No --source: the course's shipped material is what is released.
    aifactory("trainer1", "course", "release", COURSE, ASSIGNMENT)
    released = nbformat.read(EXCHANGE / "outbound" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", 4)
    assert [c.metadata.get("nbgrader", {}).get("grade_id") for c in released.cells] == \
        [c.metadata.get("nbgrader", {}).get("grade_id") for c in solution.cells]

    root = shared_tmp()
    try:
        work = root / "student1"
        work.mkdir()
        shutil.chown(work, "student1")
        aifactory("student1", "exchange", "fetch", COURSE, ASSIGNMENT, "--dir", str(work))
        fetched = nbformat.read(work / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", 4)
        assert autograded_points(fetched) == autograded_points(solution)
        # The student hands in the instructor's solution in place of the fetched notebook.
        shutil.copyfile(material.source / f"{ASSIGNMENT}.ipynb", work / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
        subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
        aifactory("student1", "exchange", "submit", COURSE, ASSIGNMENT, "--dir", str(work))

        out = grade(ASSIGNMENT, "--force").stdout
        row = next(line.split() for line in out.splitlines() if line.startswith("student1 "))
        assert row[1] == "ok", out
        assert float(row[2]) == autograded_points(solution) > 0, out
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert time.monotonic() - started < 90
