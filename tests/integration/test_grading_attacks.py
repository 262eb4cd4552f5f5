"""Submissions that attack `aifactory grade` on the real cluster, next to honest ones.

A graded student's code may neither forge the results that go back to the trainer,
nor see or change another task's or student's files, nor change what runs after it
(the kernel spec of the next notebook, the executed notebooks). Each test makes its
own assignment in the demo course, grades it as trainer1 and removes all of it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import nbformat
import pytest

from tests.conftest import BIN
from tests.integration.grading import grade
from tests.integration.test_exchange_permissions import (
    COURSE,
    COURSE_DIR,
    EXCHANGE,
    aifactory,
    answer,
    as_user,
    remove_assignment,
    shared_tmp,
    tiny_assignment,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

RIGHT = "def square(x):\n    return x * x\n"

# Writes a forged results archive (every student failed, "FORGED") to every descriptor it
# holds but its own kernel's sockets and event descriptors (garbage there only wedges itself),
# and leaves its notebook a link to the sandbox's first free descriptor for nbgrader to write to.
FORGER = RIGHT + '''import glob, io, json, os, tarfile
forged = json.dumps({s: {"status": "failed", "detail": "FORGED"} for s in ("student1", "student2")})
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as tar:
    info = tarfile.TarInfo("results.json")
    info.size = len(forged)
    tar.addfile(info, io.BytesIO(forged.encode()))
wrote = []
for fd in sorted(os.listdir("/proc/self/fd"), key=int):
    try:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(("socket:", "anon_inode:")):
            continue
        os.write(int(fd), buf.getvalue())
        wrote.append(fd)
    except OSError:
        pass
print("WROTE TO", wrote)
for notebook in glob.glob("*.ipynb"):
    os.symlink("/proc/self/fd/3", notebook + ".link")
    os.replace(notebook + ".link", notebook)'''
ECHO = RIGHT + 'import os\nos.system("echo hello")'
BANG_LS = RIGHT + "!ls"

MARKER = "aifactory-victim-marker"
# Leaves a marker wherever it can write, then stays a while.
VICTIM = RIGHT + f'''import os, time
start = time.time()
for folder in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", os.getcwd(), os.path.expanduser("~")):
    try:
        with open(os.path.join(folder, "{MARKER}"), "w") as f:
            f.write("secret")
    except OSError:
        pass
time.sleep(14)
print("WINDOW", start, time.time())'''
# Meanwhile, in another task, searches every folder a grading kernel could share.
ATTACKER = RIGHT + f'''import os, time
start, found = time.time(), set()
while time.time() - start < 10:
    for root in ("/tmp", "/var/tmp", "/dev/shm", "/run", "/home"):
        for folder, _, names in os.walk(root):
            found.update(os.path.join(folder, n) for n in names if "{MARKER}" in n)
    time.sleep(0.5)
print("FOUND", sorted(found) or "nothing")
print("WINDOW", start, time.time())'''

# Notebook 1: tries to replace the kernel spec of notebook 2 wherever Jupyter would look for it.
SPEC_WRITER = '''def square(x):
    return 0
import json, os, sys
spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "unsandboxed", "language": "python", "env": {"FORGED_SPEC": "yes"}}
folders = [d for d in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if d]
folders += [os.path.expanduser("~/.local/share/jupyter"), os.path.join(sys.prefix, "share", "jupyter"),
            "/usr/local/share/jupyter", "/usr/share/jupyter"]
for folder in folders:
    try:
        os.makedirs(os.path.join(folder, "kernels", "python3"), exist_ok=True)
        with open(os.path.join(folder, "kernels", "python3", "kernel.json"), "w") as f:
            json.dump(spec, f)
    except OSError as exc:
        print("REFUSED", folder, type(exc).__name__)
connection_file = sys.argv[sys.argv.index("-f") + 1]
try:
    open(connection_file, "a").close()
except OSError as exc:
    print("REFUSED", connection_file, type(exc).__name__)'''
# Notebook 2: says which spec it runs under, and rewrites notebook 1's executed copy as a pass.
RESULT_WRITER = RIGHT + '''import glob, json, os
print("SPEC", os.environ.get("FORGED_SPEC", "unchanged"))
for path in glob.glob("*.ipynb"):
    with open(path) as f:
        nb = json.load(f)
    for cell in nb["cells"]:
        cell["outputs"] = [o for o in cell.get("outputs", []) if o.get("output_type") != "error"]
    with open(path, "w") as f:
        json.dump(nb, f)'''


def rows(out: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("student")}


def printed(student: str, name: str, notebook: str | None = None) -> str:
    """What the answer cell printed, from the notebook the trainer's side imported."""
    nb = nbformat.read(COURSE_DIR / "autograded" / student / name / f"{notebook or name}.ipynb", 4)
    return "".join(o.get("text", "") for o in nb.cells[0].outputs)


def window(text: str) -> tuple[float, float]:
    start, end = text.split("WINDOW")[1].split()[:2]
    return float(start), float(end)


@pytest.fixture
def assignment(cluster):
    """A fresh tiny assignment of the demo course with a second notebook, released by
    trainer1; afterwards everything of it is removed, and the students it added to the
    gradebook."""
    subprocess.run([str(BIN / "aifactory"), "course", "setup", COURSE], check=True, capture_output=True)
    students_before = set(gradebook_students())
    root = shared_tmp()
    name = "atk" + uuid.uuid4().hex[:8]
    source = tiny_assignment(root, name)
    shutil.copyfile(source / f"{name}.ipynb", source / f"{name}_2.ipynb")
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    try:
        aifactory("trainer1", "course", "release", COURSE, name, "--source", str(source))
        yield root, name
    finally:
        remove(name, set(gradebook_students()) - students_before)
        shutil.rmtree(root, ignore_errors=True)


def gradebook_students() -> list[str]:
    code = ("from nbgrader.api import Gradebook\n"
            f"with Gradebook('sqlite:///{COURSE_DIR}/gradebook.db', '{COURSE}') as gb:\n"
            "    print(' '.join(s.id for s in gb.students))\n")
    return as_user("trainer1", str(BIN / "python"), "-c", code).stdout.split()


def remove(name: str, students: set[str]) -> None:
    """The assignment (gradebook, course folders, exchange), then the students the test added."""
    remove_assignment(COURSE, name)
    code = ("import sys\nfrom nbgrader.api import Gradebook\n"
            f"with Gradebook('sqlite:///{COURSE_DIR}/gradebook.db', '{COURSE}') as gb:\n"
            "    for s in sys.argv[1:]:\n"
            "        gb.remove_student(s)\n")
    if students:
        as_user("trainer1", str(BIN / "python"), "-c", code, *sorted(students), check=False)


def submit(root: Path, name: str, answers: dict[str, str], second: dict[str, str] | None = None) -> None:
    """Each student hands in `answers[student]` as the answer of notebook 1 and, if given,
    `second[student]` as that of notebook 2 (else the released notebook 2)."""
    subs = root / "subs"
    for student, code in answers.items():
        folder = answer(subs, student, name, code) / name
        notebook = nbformat.read(EXCHANGE / "outbound" / name / f"{name}_2.ipynb", 4)
        if student in (second or {}):
            notebook.cells[0].source = second[student]
        nbformat.write(notebook, folder / f"{name}_2.ipynb")
    subprocess.run(["chmod", "-R", "a+rX", str(subs)], check=True)
    for student in answers:
        aifactory(student, "exchange", "submit", COURSE, name, "--dir", str(subs / student))


def test_forged_archives_and_shell_output_reach_no_one_and_grading_ignores_the_trainers_cwd(assignment):
    root, name = assignment
    submit(root, name, {"student1": FORGER, "student2": ECHO}, second={"student2": BANG_LS})

    out = grade(name, "--tasks", "1", "--cell-timeout", "20", home=True).stdout   # one task grades both
    got = rows(out)
    # Every score is what the student's own notebooks earned (2 points a right notebook):
    # nothing forged, nothing unreadable.
    assert got["student1"][1:3] == ["ok", "2"] and got["student2"][1:3] == ["ok", "4"], out
    assert "FORGED" not in out and "unreadable" not in out
    assert "hello" in printed("student2", name)                          # shell output is the student's
    assert f"{name}.ipynb" in printed("student2", name, f"{name}_2")
    # The forger wrote to every descriptor it had; none was the result channel, and what it
    # wrote is in the task's log, where a trainer looking into the run sees it.
    assert "WROTE TO" in printed("student1", name)
    run = max((COURSE_DIR / "grading").glob(f"{name}-*"))
    assert b"FORGED" in (run / "task-0.log").read_bytes()


def test_a_kernel_sees_nothing_of_a_task_running_at_the_same_time(assignment):
    root, name = assignment
    submit(root, name, {"student1": VICTIM, "student2": ATTACKER})
    out = grade(name, "--tasks", "2").stdout   # one task each
    got = rows(out)
    assert got["student1"][1:3] == got["student2"][1:3] == ["ok", "2"], out

    attacker, victim = printed("student2", name), printed("student1", name)
    assert "FOUND nothing" in attacker, attacker
    (a_start, a_end), (v_start, v_end) = window(attacker), window(victim)
    assert max(a_start, v_start) < min(a_end, v_end), "the two tasks did not run at the same time"


def test_a_notebook_cannot_change_what_runs_after_it(assignment):
    root, name = assignment
    submit(root, name, {"student1": SPEC_WRITER}, second={"student1": RESULT_WRITER})
    out = grade(name).stdout
    got = rows(out)
    # Notebook 1 fails its test (0 of 2), notebook 2 passes (2): had notebook 2 run under the
    # forged spec or its rewrite of notebook 1's result counted, the total would differ.
    assert got["student1"][1:3] == ["ok", "2"], out
    assert "SPEC unchanged" in printed("student1", name, f"{name}_2")
    refused = printed("student1", name)
    assert "REFUSED" in refused and "OSError" in refused, refused      # the system and its own connection file
    graded = nbformat.read(COURSE_DIR / "autograded" / "student1" / name / f"{name}.ipynb", 4)
    assert any(o.get("output_type") == "error" for o in graded.cells[1].outputs)   # its test's failure kept
    state = json.loads(as_user("trainer1", "cat", str(COURSE_DIR / "grading" / f"{name}.graded.json")).stdout)
    assert set(state) == {"student1"}
