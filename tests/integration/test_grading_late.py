"""Late submissions on the real cluster: a due date set in the course gradebook, lateness
measured from trusted times (a forged timestamp.txt changes nothing), recorded in the
gradebook and shown by `aifactory grade`; every submission is kept through collect."""

from __future__ import annotations

import subprocess
import time
from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import BIN
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
HOURS_LATE = 2
RIGHT = "def square(x):\n    return x * x"


def set_duedate(name: str, due: datetime) -> None:
    """The trainer sets the assignment's due date in the course gradebook, as nbgrader does."""
    code = ("import sys, datetime\nfrom nbgrader.api import Gradebook\n"
            f"with Gradebook('sqlite:///{COURSE_DIR}/gradebook.db', '{COURSE}') as gb:\n"
            f"    gb.update_or_create_assignment('{name}', duedate=datetime.datetime.fromisoformat(sys.argv[1]))\n")
    as_user("trainer1", str(BIN / "python"), "-c", code, due.replace(tzinfo=None).isoformat())


def seconds_late(name: str, student: str) -> float:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{COURSE_DIR}/gradebook.db", COURSE) as gb:
        return gb.find_submission(name, student).total_seconds_late


def late_column(out: str) -> dict[str, float]:
    """The 'late (s)' column of `aifactory grade`'s table (fixed width: 16, 12, 7, 9)."""
    return {line.split()[0]: float(line[38:47]) for line in out.splitlines()[1:] if line.startswith("student")}


def test_lateness_is_recorded_from_trusted_times_and_no_submission_is_lost(released):
    root, name = released
    set_duedate(name, datetime.now(timezone.utc) - timedelta(hours=HOURS_LATE))
    subs = root / "late"
    subs.mkdir()
    for student in ("student1", "student2"):
        answer(subs, student, name, RIGHT)
    subprocess.run(["chmod", "-R", "a+rX", str(subs)], check=True)

    # student1 hands in twice; student2 forges a submission stamped long before the due date.
    aifactory("student1", "exchange", "submit", COURSE, name, "--dir", str(subs / "student1"))
    time.sleep(1.1)
    aifactory("student1", "exchange", "submit", COURSE, name, "--dir", str(subs / "student1"))
    forged = EXCHANGE / "inbound" / "student2" / f"{name}+20200101T000000.000000Z"
    as_user("student2", "cp", "-r", str(subs / "student2" / name), str(forged))
    as_user("student2", "bash", "-c", f"echo '2020-01-01 00:00:00.000000 UTC' > {forged}/timestamp.txt")

    out = grade(name).stdout
    expected = HOURS_LATE * 3600
    late = late_column(out)
    for student in ("student1", "student2"):
        assert expected - 5 <= late[student] <= expected + 600, out
        assert expected - 5 <= seconds_late(name, student) <= expected + 600   # in the gradebook too
    assert "ok" in out.split("student1")[1].split()[0]

    # Nothing submitted is lost: both of student1's hand-ins are archived, the exchange keeps them,
    # and the newest is the one graded.
    inbound = sorted(p.name for p in (EXCHANGE / "inbound" / "student1").glob(f"{name}+*"))
    archived = sorted(p.name for p in (COURSE_DIR / "archive" / "student1" / name).iterdir())
    assert len(inbound) == 2 and archived == inbound
    assert (COURSE_DIR / "submitted" / "student1" / name / ".aifactory-source").read_text() == inbound[-1]

    # A third, later hand-in: collected again, graded again, the earlier two still there.
    aifactory("student1", "exchange", "submit", COURSE, name, "--dir", str(subs / "student1"))
    again = grade(name).stdout
    assert late_column(again)["student1"] >= late["student1"]
    assert len(list((COURSE_DIR / "archive" / "student1" / name).iterdir())) == 3
    assert len(list((EXCHANGE / "inbound" / "student1").glob(f"{name}+*"))) == 3
