"""The PyTorch course's `distributed-training` assignment on the real cluster.

A student (student1) runs the instructor's solution as their notebook would: inside their course
server's Slurm job on an interactive node (`srun --overlap`, as a kernel of the server), with the
course environment's Python. Its Slurm cells submit, with submitit, a data-parallel training of two
ranks on two nodes of the standard partition (gloo over the nodes' own addresses), then the same
training on one node. The
ranks must have run on two different nodes and ended with the same weights, which are those of the
one-node run. A second student then tries the submitit folder, whose pickles the notebook loads.
Then the assignment goes the course's way: released, submitted, graded by `aifactory grade` on Slurm
in the sandbox: the solution gets full marks, the student version 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import nbformat
import pytest

from aifactory.courses.material import find_course
from tests.conftest import BIN, DEMO
from tests.integration.grading import grade
from tests.integration.test_dask_server import started_server
from tests.integration.test_exchange_permissions import aifactory, denied, remove_assignment, shared_tmp
from tests.integration.test_grading_material import autograded_points

pytestmark = [pytest.mark.slurm, pytest.mark.hub, pytest.mark.slow]

COURSE, ASSIGNMENT = "pytorch", "distributed-training"
ENV_PYTHON = "/opt/aifactory/envs/pytorch/bin/python"
STUDENT, OTHER, OTHER_IN_COURSE = "student1", "student2", "student3"
JOB_NAME = "ddp-digits"   # what the solution's make_executor names its jobs
JOBS = ".submitit/distributed-training"   # the notebook's jobs folder, under the student's home
EXCHANGE = Path("/srv/aifactory/exchange") / COURSE
COURSE_DIR = Path("/srv/aifactory/courses") / COURSE

REPORT = """
import json as _json
_public = lambda run: [{k: v for k, v in r.items() if k != "weights"} for r in run]
print("RESULT " + _json.dumps({
    "on_slurm": ON_SLURM, "account": ACCOUNT, "partition": PARTITION, "jobs": str(JOBS),
    "two": _public(two_nodes), "one": _public(one_node),
    "ranks_differ": max_weight_difference(two_nodes),
    "runs_differ": max_weight_difference([one_node[0], two_nodes[0]]),
    "speedup": speedup(one_node[0], two_nodes[0])}), flush=True)
"""


def solution_notebook() -> Path:
    material = next(a for a in find_course(COURSE).assignments if a.id == ASSIGNMENT)
    return material.source / f"{ASSIGNMENT}.ipynb"


def notebook_as_program() -> str:
    """The solution's code cells, in order, as one program, and a line reporting its results."""
    nb = nbformat.read(solution_notebook(), 4)
    return "\n\n".join(c.source for c in nb.cells if c.cell_type == "code") + "\n" + REPORT


def student_jobs() -> list[str]:
    out = subprocess.run(["squeue", "-h", "-u", STUDENT, "--name", JOB_NAME, "-o", "%i"],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


@pytest.fixture(scope="module")
def launched(hub, operator_token, demo_site):
    """The solution run by student1 in their server of the course's profile; yields its report."""
    profile = next(c.profile for c in demo_site.courses if c.id == COURSE)
    if not os.access(ENV_PYTHON, os.X_OK):
        pytest.fail(f"the course environment is missing: {ENV_PYTHON}")
    home = Path(pwd.getpwnam(STUDENT).pw_dir)
    shutil.rmtree(home / JOBS, ignore_errors=True)   # the folder this run makes
    try:
        with started_server(hub, operator_token, profile, user=STUDENT) as server:
            started = time.monotonic()
            proc = subprocess.run(
                ["sudo", "-u", STUDENT, "-H", "srun", f"--jobid={server['job']}", "--overlap", "--mem=0",
                 "--ntasks=1", "--quiet", "env", "MPLBACKEND=Agg", ENV_PYTHON, "-c", notebook_as_program()],
                cwd=home, capture_output=True, text=True, timeout=540)
            seconds = time.monotonic() - started
            assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
            line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
            server_node = subprocess.run(["sacct", "-nXP", "-j", server["job"], "-o", "NodeList"],
                                         capture_output=True, text=True).stdout.strip()
        # The server is stopped: the tests read what the run left.
        yield {"report": json.loads(line.removeprefix("RESULT ")), "seconds": seconds,
               "server_node": server_node, "home": home}
    finally:
        for job in student_jobs():
            subprocess.run(["scancel", job], check=False)
        deadline = time.monotonic() + 60
        while student_jobs() and time.monotonic() < deadline:
            time.sleep(1)
        assert not student_jobs(), f"{JOB_NAME} jobs of {STUDENT} left: {student_jobs()}"
        shutil.rmtree(home / JOBS, ignore_errors=True)
        with contextlib.suppress(OSError):
            (home / JOBS).parent.rmdir()   # .submitit, if the run made it and nothing else is there


def test_two_ranks_on_two_nodes_train_the_same_weights_as_one_node(launched):
    report = launched["report"]
    assert report["on_slurm"] and report["partition"] == "standard", report
    assert report["account"] == "project_465000002", report
    two, one = report["two"], report["one"]
    assert [r["rank"] for r in two] == [0, 1] and {r["world_size"] for r in two} == {2}, two
    nodes = [r["node"] for r in two]
    assert len(set(nodes)) == 2 and set(nodes) <= {"standard-1", "standard-2"}, nodes
    # Each rank ran in its node's own namespace (its hostname), and met rank 0 on the job's first node.
    assert [r["hostname"] for r in two] == nodes, two
    assert {r["master"].split(":")[0] for r in two} == {nodes[0]}, two
    assert len({r["job_id"] for r in two}) == 1 and one[0]["job_id"] != two[0]["job_id"]
    assert [r["world_size"] for r in one] == [1]
    assert report["ranks_differ"] == 0.0, "the two ranks ended with different weights"
    assert report["runs_differ"] < 1e-4, "two nodes trained another model than one node"
    assert two[0]["losses"][-1] < two[0]["losses"][0]
    epoch = lambda run: sum(run[0]["epoch_seconds"][1:]) / (len(run[0]["epoch_seconds"]) - 1)  # noqa: E731
    print(f"server on {launched['server_node']}; two-node job on {nodes}; epoch {epoch(one):.2f} s on one "
          f"node, {epoch(two):.2f} s on two; speed-up {report['speedup']:.2f}; "
          f"whole notebook {launched['seconds']:.0f} s")


def test_another_student_cannot_read_or_forge_the_submitit_folder(launched):
    """The folder holds the pickled function submitted and the results the notebook unpickles (a
    forged result pickle would run the attacker's code as the student): mode 0700, closed to student2
    even where homes are open to all (many clusters make them 0755)."""
    home = launched["home"]
    jobs = home / JOBS
    results = sorted(jobs.glob("*_result.pkl"))
    submitted = sorted(jobs.glob("*_submitted.pkl"))
    assert results and submitted, sorted(p.name for p in jobs.iterdir())
    for folder in (jobs, jobs.parent):
        st = folder.lstat()
        assert folder.is_dir() and not folder.is_symlink()
        assert (st.st_mode & 0o777, pwd.getpwuid(st.st_uid).pw_name) == (0o700, STUDENT), folder
    mode = home.stat().st_mode & 0o777
    home.chmod(0o755)
    try:
        assert denied(OTHER, "ls", str(jobs))
        assert denied(OTHER, "cat", str(results[0]))
        assert denied(OTHER, "cat", str(submitted[0]))
        forged = jobs / "999999_0_result.pkl"
        assert denied(OTHER, "cp", "/etc/hostname", str(forged))
        assert denied(OTHER, "cp", "/etc/hostname", str(results[0]))
        assert denied(OTHER, "mv", str(jobs), str(jobs) + "-moved")
        assert denied(OTHER, "mkdir", str(home / ".submitit-planted"))
        assert not forged.exists() and jobs.is_dir()
        before = results[0].read_bytes()
    finally:
        home.chmod(mode)
    assert results[0].read_bytes() == before


def test_released_submitted_graded_solution_full_marks_student_version_zero(cluster):
    """Released under a fresh name (the demo's own releases stay as they are), graded with the course's
    environment; the Slurm cells skip themselves under the grader (else the sandbox, with no Slurm and no
    network, would fail them), and the two-rank tests run there on the loopback interface."""
    started = time.monotonic()
    solution = nbformat.read(solution_notebook(), 4)
    notebook = f"{ASSIGNMENT}.ipynb"
    name = f"{ASSIGNMENT}-{uuid.uuid4().hex[:6]}"
    root = shared_tmp()
    try:
        subprocess.run([str(BIN / "aifactory"), "course", "setup", COURSE, "--site", str(DEMO)], check=True,
                       capture_output=True)
        shutil.copytree(solution_notebook().parent, root / "source" / name)
        subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
        aifactory("trainer1", "course", "release", COURSE, name, "--source", str(root / "source" / name),
                  "--site", str(DEMO))
        released = (EXCHANGE / "outbound" / name / notebook).read_text()
        assert "BEGIN SOLUTION" not in released and "HIDDEN TESTS" not in released
        # student1 hands in the instructor's solution, student3 the student version as fetched.
        for student in (STUDENT, OTHER_IN_COURSE):
            work = root / student
            work.mkdir()
            shutil.chown(work, student)
            aifactory(student, "exchange", "fetch", COURSE, name, "--dir", str(work), "--site", str(DEMO))
            if student == STUDENT:
                shutil.copyfile(solution_notebook(), work / name / notebook)
            subprocess.run(["chmod", "-R", "a+rX", str(work)], check=True)
            aifactory(student, "exchange", "submit", COURSE, name, "--dir", str(work), "--site", str(DEMO))

        out = grade(name, "--force", "--site", str(DEMO), course=COURSE).stdout
        rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("student")}
        assert rows[STUDENT][1] == "ok" and float(rows[STUDENT][2]) == autograded_points(solution) > 0, out
        assert rows[OTHER_IN_COURSE][1] == "ok" and float(rows[OTHER_IN_COURSE][2]) == 0, out
        graded = nbformat.read(COURSE_DIR / "autograded" / STUDENT / name / notebook, 4)
        skipped = [c for c in graded.cells if c.cell_type == "code" and "run_on_slurm(2)" in c.source]
        assert "skipped: no Slurm here" in "".join(o.get("text", "") for o in skipped[0].outputs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        remove_assignment(COURSE, name)
    print(f"released, fetched, submitted by two students, graded in {time.monotonic() - started:.0f} s")
