"""Students attacking the exchange while trainers copy, as real Unix users on the real machine
(issue #11): links swapped in during collect, a FIFO or /dev/zero as timestamp.txt, a hand-in
over the size limit written straight into the inbound folder, links where feedback goes.
Each test makes its own assignment of intro-dl and removes what it made."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import BIN
from tests.integration.grading import grade as grade_as_trainer
from tests.integration.test_exchange_permissions import (
    COURSE,
    COURSE_DIR,
    EXCHANGE,
    aifactory,
    answer,
    as_user,
    release_tiny,
    remove_assignment,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
ATTACKERS = Path(__file__).with_name("attackers.py")
RIGHT = "def square(x):\n    return x * x"

# The trainer's collect, in the trainer's own process (as `aifactory grade` and the formgrader run it);
# `limit` > 0 lowers the size limit in that process only.
COLLECT = """
import dataclasses, json, os, sys, time
from aifactory.courses.exchange import transfer
from aifactory.courses.exchange.layout import CoursePaths
from aifactory.site import load_site
os.umask(0o007)
name, rounds, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
paths = CoursePaths.of(load_site(), "intro-dl")
if limit:
    paths = dataclasses.replace(paths, max_submission_bytes=limit)
out = []
for _ in range(rounds):
    started = time.monotonic()
    got = transfer.collect(paths, name)
    out.append({"seconds": time.monotonic() - started,
                "students": {c.submission.student: {"refused": c.refused, "accepted": c.accepted,
                                                    "source": c.submission.path.name} for c in got}})
    time.sleep(0.2)
print(json.dumps(out))
"""

RELEASE_FEEDBACK = """
import json, os, sys, time
from aifactory.courses.exchange import transfer
from aifactory.courses.exchange.layout import CoursePaths
from aifactory.site import load_site
os.umask(0o007)
out = []
for _ in range(int(sys.argv[2])):
    out.append(transfer.release_feedback(CoursePaths.of(load_site(), "intro-dl"), sys.argv[1]))
    time.sleep(0.05)
print(json.dumps(out))
"""


def collect_as_trainer(name: str, rounds: int = 1, limit: int = 0, timeout: float = 120) -> list[dict]:
    proc = subprocess.run(["sudo", "-u", "trainer1", "-H", "--", str(BIN / "python"), "-c", COLLECT, name,
                           str(rounds), str(limit)], capture_output=True, text=True, timeout=timeout, cwd="/")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def walk(root: Path):
    """Everything below root, links not followed (as root: what a trainer's copy holds)."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            yield Path(dirpath) / name



@pytest.fixture
def fresh(cluster):
    """A new tiny assignment of intro-dl released by trainer1; everything of it removed afterwards."""
    root, name = release_tiny(COURSE, "x")
    try:
        yield root, name
    finally:
        shutil.rmtree(root, ignore_errors=True)
        remove_assignment(COURSE, name)
        subprocess.run([str(BIN / "aifactory"), "course", "setup", COURSE], check=True, capture_output=True)


def hand_in(root: Path, student: str, name: str, code: str = RIGHT) -> Path:
    """A normal `aifactory exchange submit`; returns the new hand-in folder in the exchange."""
    before = set((EXCHANGE / "inbound" / student).glob(f"{name}+*"))
    folder = answer(root / uuid.uuid4().hex[:6], student, name, code)
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    aifactory(student, "exchange", "submit", COURSE, name, "--dir", str(folder))
    (new,) = set((EXCHANGE / "inbound" / student).glob(f"{name}+*")) - before
    return new


def test_links_swapped_in_while_the_trainer_collects_bring_nothing_of_their_targets(fresh):
    root, name = fresh
    marker = f"S1-ONLY-{uuid.uuid4().hex}"
    theirs = hand_in(root, "student1", name, f"{RIGHT}  # {marker}")
    hand_in(root, "student2", name)
    source = COURSE_DIR / "source" / name
    targets = [str(source / f"{name}.ipynb"), str(theirs / f"{name}.ipynb"), str(COURSE_DIR / "gradebook.db"),
               f"{source}/", f"{theirs}/", f"{COURSE_DIR}/"]
    attacker = subprocess.Popen(["runuser", "-u", "student2", "--", str(BIN / "python"), "-I", str(ATTACKERS),
                                 "swap", str(EXCHANGE / "inbound" / "student2"), name, "15", *targets],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        time.sleep(1.0)
        during = collect_as_trainer(name, rounds=8)
    finally:
        out, err = attacker.communicate(timeout=120)
    assert attacker.returncode == 0, err
    after = collect_as_trainer(name)   # the attacker has stopped: every hand-in is taken now
    print(out, [r["seconds"] for r in during])

    # The attack ran against real copies: links were met and named for student2, never for student1.
    notes = [r["students"]["student2"]["refused"] for r in during + after]
    assert any("a symbolic link, skipped" in n for n in notes), notes
    assert all(r["students"]["student1"] == {"refused": "", "accepted": True, "source": theirs.name}
               for r in during + after)
    assert all(r["seconds"] < 30 for r in during + after)
    # Nothing of the targets is in what the trainer holds of student2: no link, no solution, no hidden
    # test, nothing of student1's, no gradebook.
    forbidden = [b"BEGIN SOLUTION", b"HIDDEN-MARKER", marker.encode(), b"SQLite format 3", b"course-intro-dl"]
    held = [COURSE_DIR / "archive" / "student2" / name, COURSE_DIR / "submitted" / "student2" / name]
    files = 0
    for path in (p for folder in held for p in walk(folder)):
        st = path.lstat()
        assert stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode), f"{path} is not a plain file or folder"
        if stat.S_ISREG(st.st_mode):
            files += 1
            content = path.read_bytes()
            assert not any(f in content for f in forbidden), f"{path} holds a target's content"
    assert files > 10
    # Nothing handed in is lost: every hand-in of student2 in the exchange is archived, student1's too.
    inbound = sorted(p.name for p in (EXCHANGE / "inbound" / "student2").glob(f"{name}+*"))
    archived = sorted(p.name for p in (COURSE_DIR / "archive" / "student2" / name).iterdir())
    assert len(inbound) > 2 and archived == inbound
    assert [p.name for p in (COURSE_DIR / "archive" / "student1" / name).iterdir()] == [theirs.name]
    assert marker in (COURSE_DIR / "submitted" / "student1" / name / f"{name}.ipynb").read_text()


def test_a_fifo_or_dev_zero_as_timestamp_neither_hangs_collect_nor_goes_unnamed(fresh):
    root, name = fresh
    fifo = hand_in(root, "student1", name)
    zero = hand_in(root, "student2", name)
    as_user("student1", "bash", "-c", f"rm {fifo}/timestamp.txt && mkfifo {fifo}/timestamp.txt")
    as_user("student2", "bash", "-c", f"rm {zero}/timestamp.txt && ln -s /dev/zero {zero}/timestamp.txt")

    started = time.monotonic()
    (result,) = collect_as_trainer(name, timeout=60)
    assert time.monotonic() - started < 30
    got = result["students"]
    assert f"{fifo.name}: timestamp.txt: a FIFO, ignored" in got["student1"]["refused"]
    assert f"{zero.name}: timestamp.txt: a symbolic link, ignored" in got["student2"]["refused"]
    # The work itself is collected, with the collector's own timestamp.
    for student in ("student1", "student2"):
        assert got[student]["accepted"]
        held = COURSE_DIR / "submitted" / student / name
        assert (held / f"{name}.ipynb").is_file()
        assert stat.S_ISREG((held / "timestamp.txt").lstat().st_mode)
        assert (held / "timestamp.txt").stat().st_size < 100
    # The students' own listing (nbgrader's Assignments panel reads timestamp.txt) does not hang either.
    code = "import sys\nfrom aifactory.courses.exchange.transfer import read_timestamp\nprint(read_timestamp(sys.argv[1]))"
    started = time.monotonic()
    assert as_user("student1", str(BIN / "python"), "-c", code, str(fifo)).stdout.strip() == "None"
    assert as_user("student2", str(BIN / "python"), "-c", code, str(zero)).stdout.strip() == "None"
    assert time.monotonic() - started < 30


def test_a_hand_in_over_the_limit_is_refused_by_the_collector_and_named(fresh):
    root, name = fresh
    hand_in(root, "student1", name)
    # student2 bypasses `submit`: a sparse 101 MiB file written straight into their inbound folder.
    big = EXCHANGE / "inbound" / "student2" / f"{name}+20260101T000000.000000Z"
    as_user("student2", "bash", "-c", f"mkdir {big} && truncate -s 101M {big}/data.bin && echo '{{}}' > {big}/a.ipynb")

    grade = grade_as_trainer(name)   # waits for other engineers' grading of intro-dl
    rows = {line.split()[0]: line for line in grade.stdout.splitlines() if line.startswith("student")}
    assert "refused" in rows["student2"] and "larger than 100 MiB" in rows["student2"], grade.stdout
    assert "refused" not in rows["student1"], grade.stdout
    assert f"collect: student2: {big.name}: larger than 100 MiB, not collected" in grade.stderr
    assert not (COURSE_DIR / "submitted" / "student2" / name).exists()
    assert not (COURSE_DIR / "archive" / "student2" / name / big.name).exists()
    assert (COURSE_DIR / "submitted" / "student1" / name / f"{name}.ipynb").is_file()

    # Now a good hand-in, then one over a (lowered) limit only when counted: files each small.
    good = hand_in(root, "student2", name)
    many = EXCHANGE / "inbound" / "student2" / f"{name}+29990101T000000.000000Z"
    as_user("student2", "bash", "-c", f"mkdir {many} && for k in 1 2 3; do head -c 400000 /dev/urandom > "
            f"{many}/part$k.bin; done")
    (result,) = collect_as_trainer(name, limit=2**20)
    got = result["students"]
    assert got["student2"]["accepted"] and got["student2"]["source"] == good.name
    assert f"{many.name}: larger than 1 MiB, not collected" in got["student2"]["refused"]
    assert got["student1"]["accepted"] and got["student1"]["refused"] == ""
    # Nothing handed in is lost or half-copied: the exchange keeps all three, the archive the good one.
    assert sorted(p.name for p in (EXCHANGE / "inbound" / "student2").glob(f"{name}+*")) == sorted(
        [big.name, good.name, many.name])
    assert [p.name for p in (COURSE_DIR / "archive" / "student2" / name).iterdir()] == [good.name]
    assert (COURSE_DIR / "submitted" / "student2" / name / ".aifactory-source").read_text() == good.name


def test_links_where_feedback_goes_redirect_no_write_and_leak_nothing(fresh):
    root, name = fresh
    feedback = EXCHANGE / "feedback"
    # The trainer's generated feedback (as nbgrader's generate_feedback leaves it).
    as_user("trainer1", "bash", "-c", "umask 007 && " + " && ".join(
        f"mkdir -p {COURSE_DIR}/feedback/{s}/{name} && echo 'feedback of {s} {name}' > "
        f"{COURSE_DIR}/feedback/{s}/{name}/{name}.html" for s in ("student1", "student2")))

    # The layout: a student's feedback folder is not theirs; they read it, cannot write or chmod it.
    mine = feedback / "student2"
    assert mine.stat().st_uid == 0
    assert as_user("student2", "ls", str(mine), check=False).returncode == 0
    assert as_user("student2", "ln", "-s", str(COURSE_DIR), str(mine / name), check=False).returncode != 0
    assert as_user("student2", "chmod", "u+w", str(mine), check=False).returncode != 0
    assert as_user("student1", "ls", str(mine), check=False).returncode != 0

    # The layout before this fix gave the student their folder; put it back that way for this part,
    # and let student2 keep a link where the feedback goes and swap every staging copy the trainer makes
    # for a link to a folder the trainer can write (the assignment's source).
    source = COURSE_DIR / "source" / name
    before_source = sorted(p.name for p in source.iterdir())
    os.chown(mine, int(as_user("student2", "id", "-u").stdout), -1)
    os.chmod(mine, 0o2770)
    attacker = subprocess.Popen(["runuser", "-u", "student2", "--", str(BIN / "python"), "-I", str(ATTACKERS),
                                 "staging", str(mine), name, "8", str(source)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        time.sleep(0.5)
        proc = as_user("trainer1", str(BIN / "python"), "-c", RELEASE_FEEDBACK, name, "30")
        rounds = json.loads(proc.stdout)
    finally:
        out, err = attacker.communicate(timeout=60)
        subprocess.run([str(BIN / "aifactory"), "course", "setup", COURSE], check=True, capture_output=True)
    print(out, rounds)
    assert all("student1" in r for r in rounds)
    assert sorted(p.name for p in source.iterdir()) == before_source   # nothing written through a link
    for path in walk(mine):
        if path.is_file() and not path.is_symlink():
            assert "feedback of student1" not in path.read_text(errors="replace")
    assert (feedback / "student1" / name / f"{name}.html").read_text().startswith("feedback of student1")
    for path in list(mine.iterdir()):   # what the attack left, then the setup's layout again
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    assert mine.stat().st_uid == 0 and stat.S_IMODE(mine.stat().st_mode) == 0o2770

    # Released again into the fixed layout; student2 fetches with a link at the destination pointing
    # to a folder of their own: the link is replaced, not written through, and only their feedback comes.
    as_user("trainer1", str(BIN / "python"), "-c", RELEASE_FEEDBACK, name, "1")
    work, decoy = Path(f"/home/student2/{name}-work"), Path(f"/home/student2/{name}-decoy")
    as_user("student2", "bash", "-c", f"mkdir -p {work}/{name} {decoy} && ln -s {decoy} {work}/{name}/feedback")
    aifactory("student2", "exchange", "feedback", COURSE, name, "--dir", str(work))
    assert list(decoy.iterdir()) == []
    fetched = work / name / "feedback"
    assert not fetched.is_symlink() and fetched.stat().st_uid == int(as_user("student2", "id", "-u").stdout)
    assert (fetched / f"{name}.html").read_text().startswith("feedback of student2")
    # Another student's feedback stays theirs.
    assert as_user("student2", "cat", str(feedback / "student1" / name / f"{name}.html"),
                   check=False).returncode != 0
