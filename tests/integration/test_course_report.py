"""`aifactory course report` against the real course gradebook, as the trainer."""

from __future__ import annotations

import csv
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.integration.test_exchange_permissions import (  # noqa: F401  (fixture)
    COURSE,
    aifactory,
    answer,
    released,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_report_has_every_students_grade_and_a_distribution_plot(released):
    root, name = released
    subs = root / "report"
    subs.mkdir()
    answer(subs, "student1", name, "def square(x):\n    return x * x")   # both tests: 2 of 3 points
    answer(subs, "student2", name, "def square(x):\n    return x + 1")   # 0 points
    subprocess.run(["chmod", "-R", "a+rX", str(subs)], check=True)
    for student in ("student1", "student2"):
        aifactory(student, "exchange", "submit", COURSE, name, "--dir", str(subs / student))
    aifactory("trainer1", "grade", COURSE, name)

    out = Path("/tmp") / f"aifactory-report-{uuid.uuid4().hex[:8]}"
    try:
        said = aifactory("trainer1", "course", "report", COURSE, "--output", str(out)).stdout
        assert f"{out}/{COURSE}-grades.csv" in said
        rows = {r["student"]: r for r in csv.DictReader((out / f"{COURSE}-grades.csv").open())}
        assert rows["student1"][name] == "2" and rows["student2"][name] == "0"
        assert rows["(max)"][name] == "3"
        assert float(rows["student1"]["total"]) >= 2 and 0 <= float(rows["student1"]["percent"]) <= 100

        import matplotlib.image

        png = out / f"{COURSE}-grades.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        pixels = matplotlib.image.imread(png)
        assert pixels.shape[:2] == (400, 700)
        assert len({tuple(p) for p in pixels.reshape(-1, pixels.shape[-1])[::97]}) > 2   # bars drawn, not blank
        # A student cannot make the report: the gradebook is the trainers'.
        refused = aifactory("student1", "course", "report", COURSE, "--output", f"/tmp/{out.name}-s", check=False)
        assert refused.returncode == 1
        assert f"cannot read the gradebook of {COURSE}: only its trainers can" in refused.stderr, refused.stderr
    finally:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(f"/tmp/{out.name}-s", ignore_errors=True)
