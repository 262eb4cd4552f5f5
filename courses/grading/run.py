"""`aifactory grade <course> <assignment>`: collect, grade in parallel on Slurm, import.

Runs as a trainer of the course (or root). See the package docstring for the flow.
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import shutil
import sys
import tarfile
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from aifactory.courses.exchange.layout import CoursePaths, course_of
from aifactory.courses.exchange.transfer import collect, me
from aifactory.site.files import atomic_write
from aifactory.site.install import shared_python
from aifactory.site.schema import Site
from aifactory.slurm.runner import Refused, SlurmError, SlurmRunner
from aifactory.slurm.sacct import parse_sacct, sacct_argv
from aifactory.slurm.sbatch import parse_job_id
from aifactory.slurm.squeue import parse_squeue, squeue_argv
from aifactory.slurm.states import LIVE_STATES

from . import nbgrader_steps
from .jobs import Limits, chunks, course_python, job_script, plan_tasks, sbatch_argv, task_minutes
from .progress import Progress

LOST_GRACE_S = 5.0   # a task gone from squeue without output: wait this long for the file system
SLURM = SlurmRunner(timeout=20)


class GradingError(RuntimeError):
    """The batch cannot start; the message says why."""


@dataclass
class Outcome:
    student: str
    status: str          # ok | timeout | memory | kernel died | failed | skipped
    detail: str = ""
    seconds_late: float = 0.0
    score: float | None = None


@dataclass
class Report:
    course: str
    assignment: str
    outcomes: list[Outcome] = field(default_factory=list)
    job_id: str | None = None
    seconds: float = 0.0

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status not in ("ok", "skipped")]

    def table(self) -> str:
        lines = [f"{'student':<16} {'status':<12} {'score':>7} {'late (s)':>9}  detail"]
        for o in self.outcomes:
            score = "" if o.score is None else f"{o.score:g}"
            late = f"{o.seconds_late:.0f}" if o.seconds_late else ""
            lines.append(f"{o.student:<16} {o.status:<12} {score:>7} {late:>9}  {o.detail}")
        return "\n".join(lines)


def _pack(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def _tree(root: Path, prefix: str, skip_notebooks: bool = False) -> dict[str, bytes]:
    out = {}
    if root.is_dir():
        for p in sorted(root.rglob("*")):
            if p.is_file() and not p.is_symlink() and not (skip_notebooks and p.suffix == ".ipynb"):
                out[f"{prefix}/{p.relative_to(root)}"] = p.read_bytes()
    return out


class GradedState:
    """Which submission of each student was last graded: course_dir/grading/<assignment>.graded.json."""

    def __init__(self, path: Path):
        self.path = path
        self.data = json.loads(path.read_text()) if path.exists() else {}

    def done(self, student: str, submission: str) -> bool:
        return self.data.get(student) == submission

    def mark(self, student: str, submission: str) -> None:
        self.data[student] = submission
        atomic_write(self.path, json.dumps(self.data, indent=1, sort_keys=True), 0o660)


def _score(course_dir: Path, course_id: str, assignment: str, student: str) -> float | None:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course_dir}/gradebook.db", course_id) as gb:
        try:
            return gb.find_submission(assignment, student).score
        except Exception:
            return None


GRADERS_PER_CORE = 2


def grading_slots(site: Site, partition: str, cores: int | None) -> int:
    """Graders that can run at once in `partition`: its CPUs, and on the local
    cluster (all its nodes share this machine's cores) no more than GRADERS_PER_CORE
    per core of the machine. A grader leaves its core idle part of the time (a kernel's start
    and shutdown, message round trips), which a second one fills: 40 submissions
    on 2 cores took 36-47 s in 2 tasks, 28-31 s in 4 (and 28 s in 6). Pure."""
    p = next(p for p in site.partitions if p.name == partition)
    slots = p.nodes * p.cpus_per_node
    if site.local is not None and cores:
        slots = min(slots, GRADERS_PER_CORE * cores)
    return slots


def grade(site: Site, course_id: str, assignment: str, *, force: bool = False, tasks: int | None = None,
          limits: Limits = Limits(), paths: CoursePaths | None = None, python: str | None = None,
          poll_s: float = 0.5, stream=sys.stderr) -> Report:
    started = time.monotonic()
    course = course_of(site, course_id)
    profile = next(p for p in site.profiles if p.name == course.profile)
    paths = paths or CoursePaths.of(site, course_id)
    course_dir = Path(paths.course_dir)
    report = Report(course_id, assignment)
    grading = course_dir / "grading"
    grading.mkdir(exist_ok=True)
    logging.getLogger("aifactory.grading").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*not in session.*")
    with open(grading / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GradingError(f"another `aifactory grade` of {course_id} is running") from None
        due = nbgrader_steps.duedate(course_dir, course_id, assignment)
        collected = collect(paths, assignment, due)
        state = GradedState(grading / f"{assignment}.graded.json")
        todo = []
        for c in collected:
            if c.refused:   # what collect would not take (links, over the size limit, ...), per student
                print(f"collect: {c.submission.student}: {c.refused}", file=stream)
            if not c.accepted:
                report.outcomes.append(Outcome(c.submission.student, "refused", c.refused, c.seconds_late))
            elif force or not state.done(c.submission.student, c.submission.path.name):
                todo.append(c)
            else:
                report.outcomes.append(Outcome(c.submission.student, "skipped", "already graded (use --force)",
                                               c.seconds_late))
        if todo:
            _run_batch(site, course, profile, assignment, todo, paths, limits, tasks, python, poll_s, stream,
                       state, report)
    report.outcomes.sort(key=lambda o: o.student)
    report.seconds = time.monotonic() - started
    return report


def _run_batch(site, course, profile, assignment, todo, paths, limits, tasks, python, poll_s, stream, state,
               report) -> None:
    course_dir = Path(paths.course_dir)
    run_dir = course_dir / "grading" / f"{assignment}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}"
    run_dir.mkdir()
    template = run_dir / "gradebook.db"
    nbgrader_steps.gradebook_template(course_dir, course.id, assignment, template)
    common = {"gradebook.db": template.read_bytes(),
              **_tree(course_dir / "source" / assignment, f"source/{assignment}", skip_notebooks=True)}
    by_student = {c.submission.student: c for c in todo}
    slots = grading_slots(site, profile.partition, os.cpu_count())
    groups = chunks(sorted(by_student), plan_tasks(len(by_student), slots, tasks))
    for k, chunk in enumerate(groups):
        files = dict(common)
        files["manifest.json"] = json.dumps({"course_id": course.id, "assignment": assignment,
                                             "students": chunk, "limits": limits.as_manifest()}).encode()
        for student in chunk:
            files.update(_tree(course_dir / "submitted" / student / assignment, f"submitted/{student}/{assignment}"))
        (run_dir / f"task-{k}").mkdir()
        (run_dir / f"task-{k}" / "input.tar").write_bytes(_pack(files))
    script = run_dir / "grade.sh"
    script.write_text(job_script(spool=str(run_dir), python=python or course_python(site, course, shared_python())))
    job_name = f"grade-{course.id}-{assignment}"[:64]
    argv = sbatch_argv(script=str(script), spool=str(run_dir), tasks=len(groups),
                       minutes=task_minutes(limits, max(len(g) for g in groups)), limits=limits,
                       account=course.project, partition=profile.partition,
                       job_name=job_name, reservation=course.reservation)
    try:
        job_id = parse_job_id(SLURM.run_sync(argv, timeout=60))
    except Refused as error:
        raise GradingError(f"sbatch refused the grading jobs: {error.stderr}") from None
    except SlurmError as error:
        # Slurm may have queued the array without answering: the grading lock makes the name ours alone.
        try:
            SLURM.run_sync(["scancel", "--user", me(), "--name", job_name], timeout=30)
        except SlurmError:
            pass
        raise GradingError(f"sbatch did not take the grading jobs: {error}") from None
    report.job_id = job_id
    progress = Progress(len(todo), f"grading {course.id}/{assignment}", stream)
    pending = set(range(len(groups)))
    gone_since: dict[int, float] = {}
    try:
        while pending:
            for k in sorted(pending):
                output = run_dir / f"task-{k}" / "output.tar"
                if output.exists():
                    pending.discard(k)
                    for outcome in _merge(course_dir, course.id, assignment, groups[k], output, by_student, state):
                        report.outcomes.append(outcome)
                        progress.advance(outcome.status)
            if not pending:
                break
            states = _array_states(job_id)
            now = time.monotonic()
            for k in sorted(pending):
                if states is not None and k not in states:   # the task has left the queue
                    gone_since.setdefault(k, now)
                    if now - gone_since[k] > LOST_GRACE_S and not (run_dir / f"task-{k}" / "output.tar").exists():
                        pending.discard(k)
                        log = run_dir / f"task-{k}.log"
                        why = _why(job_id, k, log)
                        for student in groups[k]:
                            o = Outcome(student, "failed", why, by_student[student].seconds_late)
                            report.outcomes.append(o)
                            progress.advance(o.status)
            time.sleep(poll_s)
    finally:
        progress.close()
        if pending:
            try:
                SLURM.run_sync(["scancel", job_id], timeout=30)
            except SlurmError:
                pass  # the tasks end at their walltime


def _array_states(job_id: str) -> dict[int, str] | None:
    """Array index -> state of the tasks still in the queue; None when squeue did not answer."""
    try:
        tasks = parse_squeue(SLURM.run_sync(squeue_argv(job_ids=(job_id,))))
    except Refused as error:
        # An unknown job id means every task has finished; anything else is "no answer".
        return {} if "Invalid job id" in error.stderr else None
    except SlurmError:
        return None
    return {task.array_index: task.state for task in tasks.values()
            if task.array_index is not None and task.state in LIVE_STATES}


def _why(job_id: str, k: int, log: Path) -> str:
    try:
        records = parse_sacct(SLURM.run_sync(sacct_argv(job_ids=(f"{job_id}_{k}",))))
        state = f"{records[0].state} {records[0].exit_code}" if records else "unknown"
    except SlurmError:
        state = "unknown"
    return f"grading job {job_id}_{k} ended without a result ({state}); see {log}"


def _merge(course_dir: Path, course_id: str, assignment: str, chunk: list[str], output: Path, by_student,
           state: GradedState) -> list[Outcome]:
    """Import one task's results into the gradebook, one student at a time."""
    from .sandbox import read_archive

    try:
        files = read_archive(output.read_bytes())
        results = json.loads(files.get("results.json", b"{}"))
    except Exception as exc:
        return [Outcome(s, "failed", f"unreadable result archive: {exc}", by_student[s].seconds_late)
                for s in chunk]
    outcomes = []
    for student in chunk:
        late = by_student[student].seconds_late
        result = results.get(student, {"status": "failed", "detail": "no result from the sandbox"})
        prefix = f"autograded/{student}/{assignment}/"
        notebooks = {k[len(prefix):]: v for k, v in files.items() if k.startswith(prefix) and k.endswith(".ipynb")}
        if not notebooks:
            outcomes.append(Outcome(student, "failed", result.get("detail", "no notebook"), late))
            continue
        dest = course_dir / "sandboxed" / student / assignment
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        for name, content in notebooks.items():
            if "/" in name:
                continue
            (dest / name).write_bytes(content)
        stamp = course_dir / "submitted" / student / assignment / "timestamp.txt"
        if stamp.exists():
            shutil.copyfile(stamp, dest / "timestamp.txt")
        try:
            nbgrader_steps.import_results(course_dir, course_id, assignment, student)
        except Exception as exc:
            outcomes.append(Outcome(student, "failed", f"import into the gradebook: {exc}", late))
            continue
        state.mark(student, by_student[student].submission.path.name)
        detail = {"timeout": "a cell ran past the time limit", "memory": "a cell ran out of the memory limit",
                  "kernel died": "the kernel died (memory?)"}
        outcomes.append(Outcome(student, result["status"], detail.get(result["status"], ""), late,
                                _score(course_dir, course_id, assignment, student)))
    return outcomes
