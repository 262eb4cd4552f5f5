"""`aifactory grade` as trainer1 for the integration tests.

Other engineers' tests grade the demo course at the same time, and a course is
graded by one `aifactory grade` at a time (the others are refused): wait for the
running one, bounded.
"""

from __future__ import annotations

import subprocess
import time

from tests.conftest import BIN
from tests.integration.test_exchange_permissions import COURSE, as_user

BUSY = f"another `aifactory grade` of {COURSE} is running"


def grade(*args: str, home: bool = False, patience_s: float = 600, course: str = COURSE) -> subprocess.CompletedProcess:
    """`aifactory grade intro-dl ARGS...` (or another `course`) as trainer1, from / or, with `home`, from
    their home folder (which the grading account cannot enter)."""
    argv = [str(BIN / "aifactory"), "grade", course, *args]
    busy = f"another `aifactory grade` of {course} is running"
    if home:
        argv = ["bash", "-c", 'cd ~ && exec "$@"', "bash", *argv]
    deadline = time.monotonic() + patience_s
    while True:
        proc = as_user("trainer1", *argv, check=False)
        if proc.returncode == 0:
            return proc
        if busy not in proc.stderr or time.monotonic() > deadline:
            raise AssertionError(f"trainer1: aifactory grade {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
        time.sleep(3)
