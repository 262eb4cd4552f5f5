"""A student's code, run by `aifactory grade`, cannot read the hidden tests: the
sandbox's copy of the gradebook holds their source, and its folder is covered in
the kernel's mount namespace, which has no capability to uncover it."""

from __future__ import annotations

import subprocess

import nbformat
import pytest

from tests.integration.grading import grade
from tests.integration.test_exchange_permissions import (  # noqa: F401  (fixture)
    COURSE,
    COURSE_DIR,
    aifactory,
    answer,
    released,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# Looks for the gradebook next to every folder above the notebook, and tries to uncover it.
PEEK = '''def square(x):
    return x * x
import pathlib, subprocess
for folder in pathlib.Path.cwd().parents:
    for candidate in (folder / "gradebook.db", folder / "private" / "gradebook.db"):
        try:
            print("READ", b"HIDDEN-MARKER" in candidate.read_bytes())
        except PermissionError:
            print("DENIED", candidate)
            umount = subprocess.run(["umount", str(candidate.parent)], capture_output=True)
            print("UMOUNT", umount.returncode)
        except OSError:
            pass'''


def test_a_submission_cannot_read_the_hidden_tests_from_the_sandbox(released):
    root, name = released
    subs = root / "peek"
    subs.mkdir()
    answer(subs, "student1", name, PEEK)
    subprocess.run(["chmod", "-R", "a+rX", str(subs)], check=True)
    aifactory("student1", "exchange", "submit", COURSE, name, "--dir", str(subs / "student1"))
    proc = grade(name)
    assert "student1" in proc.stdout

    graded = nbformat.read(COURSE_DIR / "autograded" / "student1" / name / f"{name}.ipynb", 4)
    output = "".join(o.get("text", "") for o in graded.cells[0].outputs)
    assert "DENIED" in output, output                  # the gradebook is there, behind the cover
    assert "READ" not in output, output                # and nothing of it was read
    assert "UMOUNT 0" not in output, output            # nor could the cover be lifted
