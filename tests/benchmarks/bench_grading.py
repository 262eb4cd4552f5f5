"""Benchmark (not a test): stock serial `nbgrader autograde` vs `aifactory grade`.

40 submissions of one small assignment, graded both ways in the same run, as
trainer1 on the local cluster. Run as root: python tests/benchmarks/bench_grading.py
Prints both times and the speedup; the target is >= 0.8 x the parallel slots
(on a 2-core machine, >= 1.6x). BENCH_TASKS=N forces N array tasks (default:
what `aifactory grade` chooses), BENCH_SUBMISSIONS the class size. Its course tree lives next to the site's
courses, on the file system the compute nodes share (their /tmp is their own).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from aifactory.site import load_site

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.integration.test_exchange_permissions import tiny_assignment  # noqa: E402

BIN = Path(sys.prefix) / "bin"
N = int(os.environ.get("BENCH_SUBMISSIONS", "40"))
TASKS = os.environ.get("BENCH_TASKS", "auto")   # auto: as `aifactory grade` chooses
TRAINER = "trainer1"

GRADE = """
import sys
from pathlib import PurePosixPath
from aifactory.site import load_site
from aifactory.courses.exchange.layout import CoursePaths
from aifactory.courses.grading.run import grade
root = PurePosixPath(sys.argv[1])
r = grade(load_site(), "intro-dl", "a1", tasks=None if sys.argv[2] == "auto" else int(sys.argv[2]),
          paths=CoursePaths("intro-dl", courses_root=root / "courses", exchange_root=root / "exchange",
                            max_submission_bytes=100 * 2**20))
print(len(r.failures()), "failures,", len({o.student for o in r.outcomes}), "graded")
"""


def as_trainer(*argv, cwd="/"):
    t0 = time.monotonic()
    proc = subprocess.run(["sudo", "-u", TRAINER, "-H", "--", "env", f"PATH={BIN}:/usr/bin:/bin", *argv], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return time.monotonic() - t0, proc.stdout


def shared_dir() -> Path:
    """Where the grading tasks on the compute nodes see the same files: beside the site's courses."""
    return Path(load_site().course_storage.courses_root).parent


def main() -> None:
    subprocess.run([str(BIN / "aifactory"), "course", "setup", "intro-dl"], check=True, capture_output=True)
    root = Path(tempfile.mkdtemp(prefix="aifactory-bench-", dir=shared_dir()))
    try:
        root.chmod(0o755)
        serial = root / "serial"
        tiny_assignment(serial, "a1")
        (serial / "nbgrader_config.py").write_text('c = get_config()\nc.CourseDirectory.course_id = "intro-dl"\n')
        shutil.chown(root, TRAINER)
        subprocess.run(["chown", "-R", TRAINER, str(root)], check=True)
        as_trainer(str(BIN / "nbgrader"), "generate_assignment", "a1", "--create", cwd=serial)
        release = nbformat.read(serial / "release" / "a1" / "a1.ipynb", 4)
        release.cells[0].source = "def square(x):\n    return x * x"
        students = [f"bench{i:02d}" for i in range(N)]
        # The parallel side: the same course tree plus an exchange holding the submissions.
        par = root / "par"
        course_dir = par / "courses" / "intro-dl"
        inbound = par / "exchange" / "intro-dl" / "inbound"
        course_dir.mkdir(parents=True)
        for name in ("source", "release", "gradebook.db"):
            src = serial / name
            (shutil.copytree if src.is_dir() else shutil.copyfile)(src, course_dir / name)
        for s in students:
            sub = serial / "submitted" / s / "a1"
            sub.mkdir(parents=True)
            nbformat.write(release, sub / "a1.ipynb")
            dest = inbound / s / "a1+20250101T000000.000000Z"
            dest.mkdir(parents=True)
            nbformat.write(release, dest / "a1.ipynb")
            (dest / "timestamp.txt").write_text("2025-01-01 00:00:00.000000 UTC")
        subprocess.run(["chown", "-R", TRAINER, str(root)], check=True)
        subprocess.run(["chmod", "-R", "u+rwX,go+rX", str(root)], check=True)

        t_serial, _ = as_trainer(str(BIN / "nbgrader"), "autograde", "a1", "--create", cwd=serial)
        t_par, out = as_trainer(str(BIN / "python3"), "-c", GRADE, str(par), str(TASKS))
        graded = len(list((course_dir / "autograded").glob("*/a1/a1.ipynb")))
        print(f"\n{'':<34}{'submissions':>12}{'seconds':>10}")
        print(f"{'nbgrader autograde (serial)':<34}{N:>12}{t_serial:>10.1f}")
        print(f"{f'aifactory grade ({TASKS} Slurm tasks)':<34}{graded:>12}{t_par:>10.1f}")
        print(f"speedup {t_serial / t_par:.2f}x on {os.cpu_count()} cores "
              f"(target >= {0.8 * os.cpu_count():.1f}x); {out.strip()}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
