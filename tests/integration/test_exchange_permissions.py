"""The course exchange on the real machine: real Unix users, real permissions."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import nbformat
import pytest

from tests.conftest import BIN

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
COURSE = "intro-dl"
EXCHANGE = Path("/srv/aifactory/exchange") / COURSE
COURSE_DIR = Path("/srv/aifactory/courses") / COURSE


def as_user(user: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["sudo", "-u", user, "-H", "--", *argv], capture_output=True, text=True, timeout=300,
                          cwd="/")
    if check and proc.returncode != 0:
        raise AssertionError(f"{user}: {' '.join(argv)} failed: {proc.stdout}{proc.stderr}")
    return proc


def denied(user: str, *argv: str) -> bool:
    """`argv` as `user` fails because the system refuses that user access (EACCES)."""
    proc = as_user(user, *argv, check=False)
    return proc.returncode != 0 and "Permission denied" in proc.stderr


def aifactory(user: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return as_user(user, str(BIN / "aifactory"), *args, check=check)


def _cell(source, kind="code", **nbgrader):
    cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
    cell.metadata["nbgrader"] = {"schema_version": 3, "task": False, **nbgrader}
    return cell


def tiny_assignment(root: Path, name: str) -> Path:
    """One autograded function with a hidden test, one manually graded answer."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        _cell("def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION",
              grade=False, solution=True, locked=False, grade_id="square"),
        _cell("assert square(2) == 4\n### BEGIN HIDDEN TESTS\nassert square(3) == 9  # HIDDEN-MARKER\n"
              "### END HIDDEN TESTS", grade=True, solution=False, locked=True, grade_id="test_square", points=2),
        _cell("YOUR ANSWER HERE", kind="markdown", grade=True, solution=True, locked=False, grade_id="explain",
              points=1),
    ]
    folder = root / "source" / name
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / f"{name}.ipynb")
    return folder


def answer(root: Path, student: str, name: str, code: str) -> Path:
    """A student's work folder (world-readable, outside their home) with `code` as the answer."""
    release = nbformat.read(EXCHANGE / "outbound" / name / f"{name}.ipynb", 4)
    release.cells[0].source = code
    folder = root / student / name
    folder.mkdir(parents=True)
    nbformat.write(release, folder / f"{name}.ipynb")
    return root / student


def shared_tmp() -> Path:
    """A folder every user can read (pytest's own tmp folders are root's only)."""
    root = Path(tempfile.mkdtemp(prefix="aifactory-test-"))
    root.chmod(0o755)
    return root


def release_tiny(course: str, prefix: str) -> tuple[Path, str]:
    """A fresh tiny assignment in a folder everyone reads, the course set up, released by trainer1."""
    root = shared_tmp()
    name = prefix + uuid.uuid4().hex[:8]
    subprocess.run([str(BIN / "aifactory"), "course", "setup", course], check=True, capture_output=True)
    tiny_assignment(root, name)
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    aifactory("trainer1", "course", "release", course, name, "--source", str(root / "source" / name))
    return root, name


def remove_assignment(course: str, name: str) -> None:
    """Everything a test's assignment left: files named after it in the course and exchange
    trees (walked shallowly, never through a student's link), the students' work folders,
    its gradebook entry; the trainers' formgrader then lists what it listed before."""
    course_dir, exchange = Path("/srv/aifactory/courses") / course, Path("/srv/aifactory/exchange") / course
    for base in (course_dir, exchange):
        for path in sorted(_walk_shallow(base, 3), key=lambda p: -len(p.parts)):
            if name in path.name:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
    for home in Path("/home").glob("student*"):
        for path in home.glob(f"{name}*"):
            shutil.rmtree(path, ignore_errors=True)
    code = ("import sys\nfrom nbgrader.api import Gradebook, MissingEntry\n"
            f"with Gradebook('sqlite:///{course_dir}/gradebook.db', '{course}') as gb:\n"
            "    try:\n        gb.remove_assignment(sys.argv[1])\n    except MissingEntry:\n        pass\n")
    if (course_dir / "gradebook.db").exists():
        as_user("trainer1", str(BIN / "python"), "-c", code, name, check=False)  # the file stays the trainers'


def _walk_shallow(root: Path, depth: int) -> list[Path]:
    found, level = [], [root]
    for _ in range(depth):
        nxt = []
        for folder in level:
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                path = Path(entry.path)
                found.append(path)
                if entry.is_dir(follow_symlinks=False):
                    nxt.append(path)
        level = nxt
    return found


@pytest.fixture(scope="module")
def released(cluster):
    """A fresh tiny assignment of intro-dl, released by trainer1, removed afterwards."""
    root, name = release_tiny(COURSE, "t")
    yield root, name
    shutil.rmtree(root, ignore_errors=True)
    remove_assignment(COURSE, name)


def test_student_cannot_reach_another_students_submission(released):
    root, name = released
    for student in ("student1", "student2"):
        aifactory(student, "exchange", "submit", COURSE, name,
                  "--dir", str(answer(root, student, name, "def square(x):\n    return x * x")))
    theirs = sorted((EXCHANGE / "inbound" / "student2").glob(f"{name}+*"))[-1]
    notebook = theirs / f"{name}.ipynb"
    # student1 can neither list the inbound, nor student2's folder, nor open, change or add a file:
    # each exists (root sees it) and each is refused for want of permission, not for another reason.
    source = COURSE_DIR / "source" / name / f"{name}.ipynb"
    for path in (EXCHANGE / "inbound", theirs, notebook, COURSE_DIR, COURSE_DIR / "gradebook.db", source):
        assert path.exists(), path
    assert denied("student1", "ls", str(EXCHANGE / "inbound"))
    assert denied("student1", "ls", str(EXCHANGE / "inbound" / "student2"))
    assert denied("student1", "cat", str(notebook))
    assert denied("student1", "cp", "/etc/hostname", str(notebook))
    assert denied("student1", "touch", str(theirs / "extra"))
    # Nor the source, the solutions or the gradebook.
    assert denied("student1", "ls", str(COURSE_DIR))
    assert denied("student1", "cat", str(COURSE_DIR / "gradebook.db"))
    assert denied("student1", "cat", str(source))
    # A user outside the course cannot even fetch; a trainer can read every submission.
    assert aifactory("student3", "exchange", "fetch", COURSE, name, "--dir", "/tmp", check=False).returncode != 0
    assert as_user("trainer1", "cat", str(notebook)).stdout.startswith("{")
    # Students fetch the release.
    assert "fetched" in aifactory("student1", "exchange", "fetch", COURSE, name, "--dir",
                                  f"/home/student1/{name}-fetch").stdout


def test_a_release_replaces_what_another_account_or_a_crashed_release_left(released):
    root, name = released
    outbound = EXCHANGE / "outbound"
    grader = pwd.getpwnam(f"grader-{COURSE}")
    # An earlier release by the formgrader's account, not group-writable, and its crashed staging copy.
    left = [outbound / name, outbound / f".{name}.{grader.pw_uid}.4242.new"]
    try:
        for folder in left:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            (folder / "old.txt").write_text("old\n")
            for path in (folder, folder / "old.txt"):
                os.chown(path, grader.pw_uid, grader.pw_gid)
            folder.chmod(0o2755)
            (folder / "old.txt").chmod(0o644)
        aifactory("trainer1", "course", "release", COURSE, name, "--source", str(root / "source" / name))
        assert sorted(p.name for p in (outbound / name).iterdir()) == [f"{name}.ipynb"]
        assert (outbound / name).stat().st_uid == pwd.getpwnam("trainer1").pw_uid
    finally:
        for stale in outbound.glob(f".{name}.*"):
            shutil.rmtree(stale)
