"""`aifactory usage` on the real Slurm accounting: a GPU job of a researcher is reported."""

from __future__ import annotations

import subprocess
import time

import pytest

from ..conftest import BIN

pytestmark = [pytest.mark.slurm]


def test_usage_reports_a_finished_gpu_job(cluster, tmp_path):
    submitted = subprocess.run(
        ["sbatch", "--parsable", "--uid=researcher1", "--account=project_465000001", "--partition=small-g",
         "--gres=gpu:4", "--cpus-per-task=4", "--mem=500M", "--time=5", "--job-name=usage-test",
         "--output=/dev/null", "--wrap=sleep 10"],
        capture_output=True, text=True, check=True,
    )
    job = submitted.stdout.strip().split(";")[0]
    deadline = time.monotonic() + 90
    while "COMPLETED" not in subprocess.run(["sacct", "-n", "-X", "-P", "-j", job, "-o", "State"],
                                            capture_output=True, text=True).stdout:
        assert time.monotonic() < deadline, f"job {job} did not complete"
        time.sleep(1)
    plot = tmp_path / "usage.png"
    result = subprocess.run([str(BIN / "aifactory"), "usage", "--since", "1h", "--output", str(plot)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    researcher = next(r for r in rows if r[:2] == ["project_465000001", "researcher1"])
    # 4 CPUs and 4 GPUs for 10 s: 0.011 hours of each, shown as 0.01.
    assert float(researcher[2]) > 0 and float(researcher[3]) > 0
    assert any(r[:2] == ["project_465000001", "(total)"] and r[-1].endswith("%") for r in rows)
    assert plot.read_bytes()[:4] == b"\x89PNG"
