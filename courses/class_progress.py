"""How a class is doing, per assignment: who fetched, who submitted, who was graded, and their scores.

Every number comes from where the course keeps it, read with the reader's own permissions
(the course's formgrader runs as ``grader-<course>``, a member of both course groups):

* **released**: the folders of the exchange's ``outbound/``;
* **fetched**: the ``.fetched+<assignment>`` file a student's own fetch leaves in their inbound folder
  (`aifactory.courses.exchange.transfer.record_fetch`); a hand-in counts too, as it shows the student had
  the assignment;
* **submitted**: their ``<assignment>+<time>`` hand-ins in ``inbound/<student>/``;
* **graded** and the scores: the course's gradebook (what `aifactory grade` and the formgrader wrote),
  opened read-only.

``inbound/<student>/`` is the student's own (see `exchange.layout`): only they can write there, so a
classmate can forge neither a fetch nor a hand-in in their name, and what lies there is counted for the
folder's name only when the folder belongs to that student. A student can only claim things for themself,
which they can do as well by fetching or submitting. Entries are judged by ``lstat`` (a link is neither),
at most `MAX_ENTRIES` per student, and only for assignments the course has, so a student's folder cannot
add rows to the page nor make it slow.

`summarize` and `histogram` are pure; `read_exchange` and `read_gradebook` are the edges.
"""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aifactory.courses.exchange.layout import CoursePaths, course_of
from aifactory.courses.exchange.transfer import FETCHED_PREFIX

MAX_ENTRIES = 10_000          # of one student's inbound folder
BIN_WIDTH = 10                # percentage points per histogram bar


@dataclass(frozen=True)
class Graded:
    """One student's autograded submission in the gradebook."""

    student: str
    assignment: str
    score: float
    max_score: float
    needs_manual_grade: bool = False


@dataclass(frozen=True)
class Bin:
    low: int                  # percent, inclusive
    high: int                 # percent, exclusive but for the last bin (100 included)
    count: int


@dataclass(frozen=True)
class AssignmentProgress:
    name: str
    released: bool
    fetched: int
    submitted: int
    graded: int
    needs_manual_grade: int   # graded by the autograder, a written answer still to score by hand
    max_score: float | None   # None until the gradebook knows the assignment
    mean_percent: float | None
    bins: list[Bin] = field(default_factory=list)


@dataclass(frozen=True)
class ClassProgress:
    course: str
    title: str
    students: int
    assignments: list[AssignmentProgress]

    def as_json(self) -> dict:
        return asdict(self)


def histogram(percents: list[float], width: int = BIN_WIDTH) -> list[Bin]:
    """Counts of `percents` in bins of `width` points from 0 to 100: [0, 10), ..., [90, 100].

    100 % falls in the last bin; below 0 counts in the first, above 100 (extra credit) in the last. Pure."""
    edges = list(range(0, 100, width))
    counts = [0] * len(edges)
    for percent in percents:
        index = min(max(int(percent // width), 0), len(edges) - 1)
        counts[index] += 1
    return [Bin(low, min(low + width, 100), n) for low, n in zip(edges, counts)]


def percent(score: float, max_score: float) -> float:
    return 100.0 * score / max_score if max_score else 0.0


def summarize(course: str, title: str, roster: list[str], released: list[str],
              fetched: dict[str, set[str]], submitted: dict[str, set[str]],
              gradebook: list[tuple[str, float]], graded: list[Graded]) -> ClassProgress:
    """Per assignment (the gradebook's order, then released ones it does not know yet, by name), how many
    of the `roster`'s students fetched, submitted and were graded, and their scores' histogram.

    `fetched` and `submitted` map a student to the assignments the exchange shows for them; `gradebook`
    lists (assignment, points available). Only the roster's students and the course's assignments
    count. Pure."""
    class_ = set(roster)
    names = [name for name, _ in gradebook]
    names += sorted(set(released) - set(names))
    available = dict(gradebook)
    rows = []
    for name in names:
        handed_in = {s for s in class_ if name in submitted.get(s, set())}
        got = [g for g in graded if g.assignment == name and g.student in class_]
        percents = [percent(g.score, g.max_score) for g in got]
        rows.append(AssignmentProgress(
            name=name,
            released=name in released,
            fetched=len({s for s in class_ if name in fetched.get(s, set())} | handed_in),
            submitted=len(handed_in),
            graded=len(got),
            needs_manual_grade=sum(g.needs_manual_grade for g in got),
            max_score=available.get(name),
            mean_percent=sum(percents) / len(percents) if percents else None,
            bins=histogram(percents),
        ))
    return ClassProgress(course, title, len(class_), rows)


# ---- the edges: the exchange and the gradebook, as the reader's own Unix user ----------------------

def _uid(user: str) -> int | None:
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def student_entries(inbound: Path, student: str) -> tuple[set[str], set[str]]:
    """(fetched, submitted) assignment names in inbound/<student>/, when that folder is the student's.

    The folder is opened without following a link and judged by its descriptor; its entries by lstat;
    at most MAX_ENTRIES of them are looked at."""
    fetched: set[str] = set()
    submitted: set[str] = set()
    try:
        fd = os.open(inbound / student, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return fetched, submitted
    try:
        if os.fstat(fd).st_uid != _uid(student):
            return fetched, submitted
        with os.scandir(fd) as entries:
            for seen, entry in enumerate(entries):
                if seen >= MAX_ENTRIES:
                    break
                try:
                    mode = entry.stat(follow_symlinks=False).st_mode
                except OSError:
                    continue
                if entry.name.startswith(FETCHED_PREFIX) and stat.S_ISREG(mode):
                    fetched.add(entry.name[len(FETCHED_PREFIX):])
                elif "+" in entry.name and not entry.name.startswith(".") and stat.S_ISDIR(mode):
                    submitted.add(entry.name.split("+", 1)[0])
    finally:
        os.close(fd)
    return fetched, submitted


def released_assignments(outbound: Path) -> list[str]:
    """The assignments released to the students: outbound's folders (a release's staging copies start with '.')."""
    try:
        with os.scandir(outbound) as entries:
            return sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir(follow_symlinks=False))
    except OSError:
        return []


def read_exchange(paths: CoursePaths, roster: list[str]) -> tuple[list[str], dict[str, set[str]], dict[str, set[str]]]:
    """(released, fetched, submitted) from a course's exchange."""
    fetched, submitted = {}, {}
    inbound = Path(paths.inbound)
    for student in roster:
        fetched[student], submitted[student] = student_entries(inbound, student)
    return released_assignments(Path(paths.outbound)), fetched, submitted


def read_gradebook(gradebook: Path, course_id: str) -> tuple[list[tuple[str, float]], list[Graded]]:
    """(assignments with their points, graded submissions) from nbgrader's gradebook, opened read-only
    (this page never writes it); empty while nothing has been graded."""
    if not gradebook.is_file():
        return [], []
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///file:{gradebook}?mode=ro&uri=true", course_id) as gb:
        assignments, graded = [], []
        for assignment in gb.assignments:
            assignments.append((assignment.name, float(assignment.max_score or 0.0)))
            for sub in assignment.submissions:
                graded.append(Graded(sub.student_id, assignment.name, float(sub.score or 0.0),
                                     float(sub.max_score or 0.0), bool(sub.needs_manual_grade)))
    return assignments, graded


def class_progress(site, course_id: str) -> ClassProgress:
    """Everything the progress page shows of one course of the `site`, read now."""
    course = course_of(site, course_id)
    paths = CoursePaths.of(site, course_id)
    roster = sorted(course.students)
    released, fetched, submitted = read_exchange(paths, roster)
    assignments, graded = read_gradebook(Path(paths.gradebook), course_id)
    return summarize(course_id, course.title, roster, released, fetched, submitted, assignments, graded)
