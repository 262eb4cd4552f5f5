"""The PyTorch course on the real machine: its environment as the site file describes it and `make`
builds it (PyTorch from PyPI, layered on the platform's environment, root's), the first two assignments
graded by `aifactory grade` on Slurm in the sandbox with that environment (the solution full marks, the
student version 0), and a second real user who tries to change what the environment runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import uuid
from importlib.metadata import distributions
from pathlib import Path

import nbformat
import pytest

from aifactory.courses.material import find_course
from aifactory.site.pyenvs import PTH, STAMP
from tests.conftest import BIN, DEMO, REPO
from tests.integration.grading import grade
from tests.integration.test_exchange_permissions import aifactory, as_user, denied, remove_assignment, shared_tmp
from tests.integration.test_grading_material import autograded_points

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

COURSE = "pytorch"
ENV = Path("/opt/aifactory/envs/pytorch")
PYTHON = ENV / "bin" / "python3"
PURELIB = ENV / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
COURSE_DIR = Path("/srv/aifactory/courses") / COURSE
BUILD = [str(BIN / "python"), "-m", "aifactory.site.pyenvs", str(DEMO), "--constraint",
         str(REPO / "tests" / "requirements.lock")]


def run(*argv: str, user: str = "student1") -> str:
    return as_user(user, *argv).stdout.strip()


@pytest.fixture(scope="module")
def environment(cluster):
    if not os.access(PYTHON, os.X_OK):
        pytest.fail(f"the course environment {ENV} is missing: `make` builds it from the site file")
    return cluster.environment("pytorch")


# --- the environment ----------------------------------------------------------------------------------

def test_the_environment_holds_pytorch_and_the_hubs_does_not(environment):
    versions = run(str(PYTHON), "-c", "import torch, submitit; print(torch.__version__, submitit.__version__)")
    assert versions.split()[0].split("+")[0] == "2.15.0" and versions.split()[1] == "1.5.4", versions
    assert [p.split("==")[1] for p in environment.packages] == ["2.15.0", "1.5.4"]
    assert run(str(BIN / "python"), "-c", "import importlib.util as u; print(u.find_spec('torch'))") == "None"
    # Layered: the platform's locked packages come from the platform's environment, none installed again.
    numpy = run(str(PYTHON), "-c", "import numpy; print(numpy.__file__)")
    assert numpy.startswith("/opt/aifactory/venv/"), numpy
    locked = {line.split("==")[0].lower().replace("_", "-")
              for line in (REPO / "tests" / "requirements.lock").read_text().splitlines() if "==" in line}
    mine = {d.metadata["Name"].lower().replace("_", "-") for d in distributions(path=[str(PURELIB)])}
    assert {"torch", "submitit"} <= mine and not mine & locked, mine & locked


def test_a_second_build_does_nothing(environment):
    stamp = ENV / STAMP
    before = stamp.stat().st_mtime_ns
    started = time.monotonic()
    done = subprocess.run(BUILD, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr
    assert stamp.stat().st_mtime_ns == before
    assert json.loads(stamp.read_text())["packages"] == environment.packages
    print(f"second build: {time.monotonic() - started:.1f} s")


def test_servers_and_kernels_of_the_environment_run_with_pytorch(environment):
    # What the spawner runs (launch: the environment's bin/jupyterhub-singleuser) has the environment's interpreter.
    assert (ENV / "bin" / "jupyterhub-singleuser").read_text().splitlines()[0] == f"#!{PYTHON}"
    # The notebooks' kernel (`python3`, as the server starts it) imports PyTorch from the environment.
    code = (
        "from jupyter_client.manager import start_new_kernel\n"
        "km, kc = start_new_kernel(kernel_name='python3')\n"
        "out = []\n"
        "try:\n"
        "    kc.execute_interactive('import sys, torch; print(sys.prefix, torch.__version__)', timeout=120,\n"
        "                           output_hook=lambda m: out.append(m['content'].get('text', '')))\n"
        "finally:\n"
        "    kc.stop_channels(); km.shutdown_kernel(now=True)\n"
        "print(''.join(out))\n"
    )
    prefix, version = run(str(PYTHON), "-c", code).split()[-2:]
    assert prefix == str(ENV) and version.startswith("2.15.0"), (prefix, version)


# --- the assignments, graded on Slurm with the environment --------------------------------------------

def cell_output(notebook, grade_id: str) -> str:
    cell = next(c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    return "".join(o.get("text", "") for o in cell.get("outputs", []))


@pytest.mark.parametrize("assignment,first_cell", [("tensors-and-autograd", "setup"), ("digits-cnn", "data")])
def test_solution_full_marks_and_student_version_zero_graded_with_the_environment(environment, assignment,
                                                                                   first_cell):
    started = time.monotonic()
    material = next(a for a in find_course(COURSE).assignments if a.id == assignment)
    notebook = f"{assignment}.ipynb"
    solution = nbformat.read(material.source / notebook, 4)
    name = f"{assignment}-{uuid.uuid4().hex[:6]}"   # the demo's own releases stay as they are
    root = shared_tmp()
    try:
        subprocess.run([str(BIN / "aifactory"), "course", "setup", COURSE, "--site", str(DEMO)], check=True,
                       capture_output=True)
        shutil.copytree(material.source, root / "source" / name)
        subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
        aifactory("trainer1", "course", "release", COURSE, name, "--source", str(root / "source" / name),
                  "--site", str(DEMO))
        # student1 hands in the instructor's solution, student3 the student version as fetched.
        for student in ("student1", "student3"):
            work = root / student
            work.mkdir()
            shutil.chown(work, student)
            aifactory(student, "exchange", "fetch", COURSE, name, "--dir", str(work), "--site", str(DEMO))
            if student == "student1":
                shutil.copyfile(material.source / notebook, work / name / notebook)
            subprocess.run(["chmod", "-R", "a+rX", str(work)], check=True)
            aifactory(student, "exchange", "submit", COURSE, name, "--dir", str(work), "--site", str(DEMO))

        out = grade(name, "--force", "--site", str(DEMO), course=COURSE).stdout
        rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("student")}
        assert rows["student1"][1] == "ok" and float(rows["student1"][2]) == autograded_points(solution) > 0, out
        assert rows["student3"][1] == "ok" and float(rows["student3"][2]) == 0, out
        # The Slurm job ran the sandbox with the course's environment, and its kernel used PyTorch (on the CPU).
        (script,) = (COURSE_DIR / "grading").glob(f"{name}-*/grade.sh")
        assert f"{PYTHON} -I -m aifactory.courses.grading.sandbox" in script.read_text()
        graded = nbformat.read(COURSE_DIR / "autograded" / "student1" / name / notebook, 4)
        assert "on cpu" in cell_output(graded, first_cell), cell_output(graded, first_cell)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        remove_assignment(COURSE, name)
    print(f"{assignment}: released, fetched, submitted by two students, graded in {time.monotonic() - started:.0f} s")


# --- a second real user -------------------------------------------------------------------------------

def test_no_student_can_change_what_the_environment_runs(environment):
    """student2 (outside the course) and student1 (in it) try to put code where student1's kernels, their
    server or the grader's sandbox (the same interpreter, with -I) would run it."""
    path = json.loads(run(str(PYTHON), "-I", "-c", "import json, sys; print(json.dumps(sys.path))"))
    folders = [Path(p) for p in path if Path(p).is_dir()]
    assert PURELIB in folders and Path(sysconfig.get_path("purelib")) in folders   # the layer's and its base's
    jupyter = [ENV / "etc" / "jupyter", ENV / "etc" / "jupyter" / "jupyter_server_config.d",
               ENV / "share" / "jupyter" / "kernels" / "python3"]   # the base's, through links
    folders += [ENV, ENV.parent, ENV / "bin", *jupyter]
    files = [ENV / "bin" / "jupyterhub-singleuser", ENV / "pyvenv.cfg", ENV / STAMP, PURELIB / PTH,
             ENV / "share" / "jupyter" / "kernels" / "python3" / "kernel.json", Path(f"{ENV}.log")]
    assert all(f.is_file() for f in files), files
    for attacker in ("student2", "student1"):
        for folder in folders:
            dropped = folder / f"{attacker}-was-here.pth"
            assert denied(attacker, "sh", "-c", f"echo 'import os' > {dropped}"), folder
            assert not dropped.exists()
        for file in files:
            assert denied(attacker, "sh", "-c", f"echo 'import os' >> {file}"), file
        # Nor put another environment in its place.
        assert denied(attacker, "mv", str(ENV), f"{ENV}.{attacker}")
        assert denied(attacker, "ln", "-sfn", "/tmp", str(ENV / "bin" / "python3"))
    assert run(str(PYTHON), "-c", "import torch; print('ok')") == "ok"
