"""`aifactory grade` on the real local cluster: students' code as the grader, in parallel."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.grading import grade
from tests.integration.test_exchange_permissions import (  # noqa: F401  (fixture)
    COURSE,
    COURSE_DIR,
    EXCHANGE,
    aifactory,
    answer,
    as_user,
    released,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

PROBE = '''import os, socket
def square(x):
    return x + x
WHO = os.getuid(), os.geteuid()
try:
    socket.create_connection(("127.0.0.1", 6817), timeout=2)
    NET = "NET-REACHABLE"
except OSError as exc:
    NET = "NET-BLOCKED " + type(exc).__name__
print(NET, open("/proc/self/status").read().split("Uid:")[1].split()[0])
try:
    open("/srv/aifactory/courses/intro-dl/gradebook.db", "rb").read(1)
    print("GRADEBOOK-READABLE")
except OSError:
    print("GRADEBOOK-DENIED")
'''


def tasks_nodes(job_id: str, tasks: int, timeout: float = 60) -> list[str]:
    """The node of each task of array job `job_id` from accounting, once it lists all `tasks`: slurmctld sends
    the tasks' records to slurmdbd on its own time, so right after the job one task may not be there yet."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = subprocess.run(["sacct", "-j", job_id, "-X", "-n", "-P", "-o", "NodeList"], capture_output=True,
                               text=True, check=True).stdout.split()
        if len(nodes) >= tasks or time.monotonic() > deadline:
            return nodes
        time.sleep(1)


def test_grade_feedback_and_rerun(released):
    root, name = released
    # Fresh submissions: student1 right, student2 wrong and probing its sandbox.
    sub_root = root / "subs"
    sub_root.mkdir()
    sub_root.chmod(0o755)
    first = answer(sub_root, "student1", name, "def square(x):\n    return x - x")
    subprocess.run(["chmod", "-R", "a+rX", str(sub_root)], check=True)
    aifactory("student1", "exchange", "submit", COURSE, name, "--dir", str(first))
    (first / name).rename(sub_root / "old")
    aifactory("student1", "exchange", "submit", COURSE, name,   # a second try replaces the first
              "--dir", str(answer(sub_root, "student1", name, "def square(x):\n    return x * x")))
    probe = answer(sub_root, "student2", name, PROBE)
    subprocess.run(["chmod", "-R", "a+rX", str(sub_root)], check=True)
    aifactory("student2", "exchange", "submit", COURSE, name, "--dir", str(probe))

    out = grade(name, "--tasks", "2").stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:] if line.startswith("student")}
    assert rows["student1"][1:3] == ["ok", "2"]
    assert rows["student2"][1:3] == ["ok", "0"]
    # The two array tasks ran on both nodes of the course's partition (LLN spreads them).
    job_id = out.rsplit(", job ", 1)[1].split()[0]
    nodes = tasks_nodes(job_id, 2)
    assert len(set(nodes)) == 2 and all(node.startswith("interactive-") for node in nodes), nodes
    # The probe ran as the grader, outside the network, away from the gradebook.
    import nbformat

    graded = nbformat.read(COURSE_DIR / "autograded" / "student2" / name / f"{name}.ipynb", 4)
    text = "".join(o.get("text", "") for o in graded.cells[0].outputs)
    assert "NET-BLOCKED" in text and "GRADEBOOK-DENIED" in text
    grader_uid = subprocess.run(["id", "-u", "aifactory-grader"], capture_output=True, text=True).stdout.strip()
    assert text.split("NET-BLOCKED")[1].split()[1] == grader_uid != "0"   # the grader, in its own namespaces

    # Re-running skips what is graded; --force grades again.
    again = grade(name).stdout
    assert again.count("skipped") == 2
    assert "skipped" not in grade(name, "--force").stdout
    # Nothing submitted is lost: every submission is archived.
    archived = as_user("trainer1", "ls", str(COURSE_DIR / "archive" / "student1" / name)).stdout.split()
    assert len(archived) == 2

    # Feedback: released, fetched by the student, no hidden test in it, private.
    aifactory("trainer1", "feedback", COURSE, name)
    aifactory("student2", "exchange", "feedback", COURSE, name, "--dir", f"/home/student2/{name}-work")
    html = as_user("student2", "cat", f"/home/student2/{name}-work/{name}/feedback/{name}.html").stdout
    assert "square" in html and "HIDDEN-MARKER" not in html and "square(3)" not in html
    theirs = EXCHANGE / "feedback" / "student2" / name / f"{name}.html"
    assert theirs.is_file()  # there, and refused to student1 for want of permission
    peek = as_user("student1", "cat", str(theirs), check=False)
    assert peek.returncode != 0 and "Permission denied" in peek.stderr, peek.stderr
    state = json.loads(as_user("trainer1", "cat", str(COURSE_DIR / "grading" / f"{name}.graded.json")).stdout)
    assert set(state) == {"student1", "student2"}
