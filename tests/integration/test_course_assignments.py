"""Every shipped assignment, through real nbgrader and real kernels, in a throwaway course:
the student version scores 0 on its autograded tests, the instructor's solution full
marks, and neither solutions nor hidden tests reach the students."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from aifactory.courses.grading.jobs import course_python
from aifactory.courses.material import Assignment, list_courses
from aifactory.site import load_site
from tests.conftest import DEMO

pytestmark = pytest.mark.slow

ASSIGNMENTS = [a for course in list_courses() for a in course.assignments]
INSTRUCTOR, STUDENT, PARTIAL = "instructor", "student", "partial"
NOTEBOOK_LIMIT_S = 60


@dataclass(frozen=True)
class GradeRow:
    notebook: str
    grade_id: str
    kind: str            # "autograded" (a test cell) or "manual" (a written answer)
    auto_score: float | None
    max_score: float
    needs_manual_grade: bool


@dataclass(frozen=True)
class Graded:
    assignment: Assignment
    root: Path
    grades: dict[str, list[GradeRow]]   # student -> rows
    seconds: dict[str, float]           # student -> autograde wall time


def nbgrader(root: Path, *argv: str, python: str = sys.executable) -> None:
    # nbgrader runs `alembic` from PATH to set up the gradebook: put this environment's bin first.
    path = os.pathsep.join([str(Path(python).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "JUPYTER_RUNTIME_DIR": str(root / ".runtime")}
    proc = subprocess.run([python, "-m", "nbgrader", *argv], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"nbgrader {' '.join(argv)} failed:\n{proc.stdout}\n{proc.stderr}"


def course_config(root: Path, course_id: str) -> str:
    return "\n".join([
        "c = get_config()",
        f"c.CourseDirectory.root = {str(root)!r}",
        f"c.CourseDirectory.course_id = {course_id!r}",
        f"c.CourseDirectory.db_url = {f'sqlite:///{root}/gradebook.db'!r}",
        "c.Execute.timeout = 60",
        "",
    ])


def read_grades(root: Path, course_id: str, assignment: str, student: str) -> list[GradeRow]:
    from nbgrader.api import Gradebook

    rows = []
    with Gradebook(f"sqlite:///{root}/gradebook.db", course_id) as gb:
        submission = gb.find_submission(assignment, student)
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                kind = "autograded" if grade.cell.cell_type == "code" else "manual"
                rows.append(GradeRow(notebook.name, grade.name, kind, grade.auto_score, grade.max_score,
                                     grade.needs_manual_grade))
    return rows


def _nbgrader_meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def solve_first_exercise(release: Path, source: Path, dest: Path) -> None:
    """The student version with only the first answer cell of each notebook filled in."""
    dest.mkdir(parents=True)
    for path in release.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        solutions = {_nbgrader_meta(c).get("grade_id"): c.source
                     for c in nbformat.read(source / path.name, as_version=4).cells}
        first = next(c for c in nb.cells if c.cell_type == "code" and _nbgrader_meta(c).get("solution"))
        first.source = solutions[_nbgrader_meta(first)["grade_id"]]
        nbformat.write(nb, dest / path.name)


def first_test(source: Path) -> set[str]:
    """grade_id of the first autograded test cell of each notebook."""
    out = set()
    for path in source.glob("*.ipynb"):
        cells = nbformat.read(path, as_version=4).cells
        out.add(next(_nbgrader_meta(c)["grade_id"] for c in cells
                     if _nbgrader_meta(c).get("grade") and not _nbgrader_meta(c).get("solution")))
    return out


@pytest.fixture(scope="module", params=ASSIGNMENTS, ids=lambda a: f"{a.course_id}/{a.id}")
def graded(request, tmp_path_factory) -> Graded:
    """generate_assignment, then autograde the source (as `instructor`) and the release (as `student`)."""
    assignment: Assignment = request.param
    # With the interpreter `aifactory grade` grades the course with: its environment's (PyTorch) or this one.
    site = load_site(DEMO)
    python = course_python(site, next(c for c in site.courses if c.id == assignment.course_id), sys.executable)
    root = tmp_path_factory.mktemp(f"{assignment.course_id}-{assignment.id}")
    (root / "nbgrader_config.py").write_text(course_config(root, assignment.course_id))
    shutil.copytree(assignment.source, root / "source" / assignment.id)
    nbgrader(root, "generate_assignment", assignment.id, "--force")
    shutil.copytree(assignment.source, root / "submitted" / INSTRUCTOR / assignment.id)
    shutil.copytree(root / "release" / assignment.id, root / "submitted" / STUDENT / assignment.id)
    solve_first_exercise(root / "release" / assignment.id, assignment.source,
                         root / "submitted" / PARTIAL / assignment.id)
    grades, seconds = {}, {}
    for student in (INSTRUCTOR, STUDENT, PARTIAL):
        start = time.monotonic()
        nbgrader(root, "autograde", assignment.id, f"--student={student}", "--force", python=python)
        seconds[student] = time.monotonic() - start
        grades[student] = read_grades(root, assignment.course_id, assignment.id, student)
    return Graded(assignment, root, grades, seconds)


def test_instructor_solution_gets_full_marks(graded):
    autograded = [r for r in graded.grades[INSTRUCTOR] if r.kind == "autograded"]
    assert autograded, "the assignment has no autograded test"
    lost = [r.grade_id for r in autograded if r.auto_score != r.max_score]
    assert not lost, f"the solution fails these tests: {lost}"


def test_student_version_scores_zero(graded):
    autograded = [r for r in graded.grades[STUDENT] if r.kind == "autograded"]
    passing = [r.grade_id for r in autograded if r.auto_score]
    assert not passing, f"these tests pass without any work: {passing}"


def test_one_exercise_solved_earns_exactly_its_points(graded):
    """Exercises are graded independently: solving the first one passes its tests and no other."""
    autograded = [r for r in graded.grades[PARTIAL] if r.kind == "autograded"]
    passing = {r.grade_id for r in autograded if r.auto_score}
    assert passing == first_test(graded.assignment.source)
    assert all(r.auto_score == r.max_score for r in autograded if r.grade_id in passing)


def test_written_answers_wait_for_the_trainer(graded):
    answered = [r for r in graded.grades[INSTRUCTOR] if r.kind == "manual"]
    assert answered, "the assignment has no manually graded answer"
    assert all(r.needs_manual_grade and r.auto_score is None for r in answered)
    # A written answer left as released ("YOUR ANSWER HERE") gets 0 without the trainer.
    blank = [r for r in graded.grades[STUDENT] if r.kind == "manual"]
    assert [r.grade_id for r in blank] == [r.grade_id for r in answered]
    assert all(r.auto_score == 0 and not r.needs_manual_grade for r in blank)


def test_release_has_no_solution_and_no_hidden_test(graded):
    released = graded.root / "release" / graded.assignment.id
    for name in graded.assignment.notebooks:
        text = (released / name).read_text()
        source = (graded.assignment.source / name).read_text()
        assert "BEGIN HIDDEN TESTS" in source and "BEGIN SOLUTION" in source
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
            assert marker not in text, f"{name}: {marker} left in the student version"
        student_nb = nbformat.read(released / name, as_version=4)
        assert "raise NotImplementedError()" in "".join(c.source for c in student_nb.cells)


def test_hidden_tests_run_when_grading(graded):
    """The autograded notebook carries the hidden tests again (restored from the gradebook)."""
    for name in graded.assignment.notebooks:
        autograded = graded.root / "autograded" / INSTRUCTOR / graded.assignment.id / name
        assert "BEGIN HIDDEN TESTS" in autograded.read_text()


def test_each_notebook_runs_within_a_minute(graded):
    per_notebook = graded.seconds[INSTRUCTOR] / len(graded.assignment.notebooks)
    print(f"{graded.assignment.course_id}/{graded.assignment.id}: autograde "
          f"{graded.seconds[INSTRUCTOR]:.1f} s (instructor), {graded.seconds[STUDENT]:.1f} s (student)")
    assert per_notebook < NOTEBOOK_LIMIT_S
