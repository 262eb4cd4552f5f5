"""nbgrader, in-process, on the trainer's side: gradebook template, import of
sandbox results, feedback. Only the process running `aifactory grade` writes the
course gradebook, one student at a time."""

from __future__ import annotations

import logging
import shutil
from datetime import datetime
from pathlib import Path

from traitlets.config import Config

from aifactory.site.install import shared_environment


def _venv_on_path() -> None:
    """nbgrader runs `alembic` from PATH when it creates a gradebook; sudo's PATH lacks the venv."""
    import os

    bin_dir = str(shared_environment() / "bin")
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def _config(course_dir: Path, course_id: str, **sections) -> Config:
    from .engines import share_engines

    _venv_on_path()
    share_engines()
    c = Config()
    c.CourseDirectory.root = str(course_dir)
    c.CourseDirectory.course_id = course_id
    c.CourseDirectory.db_url = f"sqlite:///{course_dir}/gradebook.db"
    for key, value in sections.items():
        section, trait = key.split("__")
        c[section][trait] = value
    return c


def share_gradebook(course_dir: Path) -> None:
    """Make the gradebook writable by the course's group (co-trainers, the formgrader):
    SQLite creates its file 0644 whatever the umask allows."""
    import os

    db = Path(course_dir) / "gradebook.db"
    if db.exists() and db.stat().st_uid == os.geteuid() and db.stat().st_mode & 0o060 != 0o060:
        db.chmod(0o660)


def duedate(course_dir: Path, course_id: str, assignment: str) -> datetime | None:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course_dir}/gradebook.db", course_id) as gb:
        due = gb.find_assignment(assignment).duedate
    if due is None:
        return None
    from datetime import timezone

    return due.replace(tzinfo=timezone.utc) if due.tzinfo is None else due


def gradebook_template(course_dir: Path, course_id: str, assignment: str, dest: Path) -> None:
    """A copy of the gradebook with this assignment's definition and nothing else:
    no students, no grades, no other assignments. It is what the sandbox sees."""
    from nbgrader.api import Gradebook

    shutil.copyfile(course_dir / "gradebook.db", dest)
    with Gradebook(f"sqlite:///{dest}", course_id) as gb:
        for student in list(gb.students):
            gb.remove_student(student.id)
        for other in list(gb.assignments):
            if other.name != assignment:
                gb.remove_assignment(other.name)


def generate(course_dir: Path, course_id: str, assignment: str) -> None:
    """nbgrader generate_assignment (source -> release, assignment into the gradebook)."""
    from nbgrader.converters import GenerateAssignment
    from nbgrader.coursedir import CourseDirectory

    c = _config(course_dir, course_id, GenerateAssignment__create_assignment=True, BaseConverter__force=True)
    coursedir = CourseDirectory(config=c)
    coursedir.assignment_id = assignment
    GenerateAssignment(coursedir=coursedir, config=c).start()
    share_gradebook(course_dir)


def import_results(course_dir: Path, course_id: str, assignment: str, student: str,
                   log: logging.Logger | None = None) -> None:
    """nbgrader autograde --no-execute on the sandbox's executed notebooks.

    Reads ``sandboxed/<student>/<assignment>/`` (the executed notebooks and the
    trusted timestamp), restores the locked cells from the course gradebook,
    computes scores and late penalties, writes ``autograded/`` and the gradebook.
    """
    from nbgrader.converters import Autograde
    from nbgrader.coursedir import CourseDirectory

    c = _config(course_dir, course_id, Autograde__create_student=True, BaseConverter__force=True,
                Execute__enabled=False, ClearOutput__enabled=False,
                CourseDirectory__submitted_directory="sandboxed")
    coursedir = CourseDirectory(config=c)
    coursedir.assignment_id = assignment
    coursedir.student_id = student
    converter = Autograde(coursedir=coursedir, config=c)
    converter.log = log or logging.getLogger("aifactory.grading")
    converter.start()


def generate_feedback(course_dir: Path, course_id: str, assignment: str, student: str = "*") -> None:
    """nbgrader generate_feedback with hidden tests removed (see feedback.py)."""
    from nbgrader.converters import GenerateFeedback
    from nbgrader.coursedir import CourseDirectory

    from .feedback import PREPROCESSORS

    c = _config(course_dir, course_id, BaseConverter__force=True)
    c.GenerateFeedback.preprocessors = list(PREPROCESSORS)  # the formgrader's buttons run the same
    coursedir = CourseDirectory(config=c)
    coursedir.assignment_id = assignment
    coursedir.student_id = student
    converter = GenerateFeedback(coursedir=coursedir, config=c)
    converter.log = logging.getLogger("aifactory.grading")
    converter.start()
