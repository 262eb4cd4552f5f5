"""Moving files through a course's exchange (see layout.py for who may do what).

Students: `fetch`, `submit`, `fetch_feedback`. Trainers: `release`, `collect`,
`release_feedback`. Each runs as the calling Unix user; the permissions of
the tree, not this code, keep students apart.

Submission time: a student writes ``timestamp.txt`` but could forge it, so the
collector trusts the newest *ctime* of anything in the submission instead:
ctime cannot be set back by a non-root user, and any later change to a file
moves it forward. Collect copies every submission into an archive and never
deletes from the exchange, so nothing submitted is lost.
"""

from __future__ import annotations

import os
import pwd
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .layout import CoursePaths

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f %Z"
MAX_SUBMISSION_BYTES = 100 * 1024 * 1024
SKIP = {".ipynb_checkpoints", "__pycache__", "feedback", ".git"}


class ExchangeError(RuntimeError):
    """A transfer that cannot happen; the message says why."""


def me() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def format_timestamp(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> datetime:
    return datetime.strptime(text.strip(), TIMESTAMP_FORMAT).replace(tzinfo=timezone.utc)


def _copy_tree(src: Path, dest: Path, file_mode: int, dir_mode: int | None) -> None:
    """Copy src into dest (created), setting modes explicitly: the caller's umask is not trusted.

    dir_mode None: leave directories as mkdir made them. A student must not chmod
    a directory in their inbound: Linux clears the setgid bit when someone outside
    the directory's group changes its mode, and files would lose the trainers' group.
    """
    dest.mkdir(mode=0o750 if dir_mode is None else 0o700, parents=False, exist_ok=False)
    if dir_mode is not None:
        dest.chmod(dir_mode)
    for entry in sorted(src.iterdir()):
        if entry.name in SKIP or entry.is_symlink():
            continue
        if entry.is_dir():
            _copy_tree(entry, dest / entry.name, file_mode, dir_mode)
        elif entry.is_file():
            shutil.copyfile(entry, dest / entry.name)
            (dest / entry.name).chmod(file_mode)


def _replace_tree(src: Path, dest: Path, file_mode: int, dir_mode: int, extra: dict[str, str] | None = None) -> None:
    """Copy src (plus `extra` files: name -> text) to dest, replacing an earlier dest whole.

    Staging and retired copies carry the caller's uid and pid, so what another
    trainer or a crashed run left behind cannot block this one; renaming inside a
    group-writable parent needs no rights on the old tree's content.
    """
    mine = f".{dest.name}.{os.getuid()}.{os.getpid()}"
    staging, retired = dest.parent / f"{mine}.new", dest.parent / f"{mine}.old"
    _copy_tree(src, staging, file_mode, dir_mode)
    for name, text in (extra or {}).items():
        (staging / name).write_text(text)
    if dest.exists():
        dest.rename(retired)
    staging.rename(dest)
    for stale in dest.parent.glob(f".{dest.name}.*"):
        shutil.rmtree(stale, ignore_errors=True)  # best effort: others' leftovers may not be ours to remove


def _tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


# ---- trainer side -------------------------------------------------------------------------------

def release(paths: CoursePaths, assignment: str) -> Path:
    """Publish course_dir/release/<assignment> to the students (replaces an earlier release)."""
    src = Path(paths.course_dir) / "release" / assignment
    if not src.is_dir():
        raise ExchangeError(f"{src} does not exist: generate the assignment first")
    dest = Path(paths.outbound) / assignment
    _replace_tree(src, dest, 0o664, 0o2775)  # co-trainers and the formgrader replace it
    return dest


@dataclass(frozen=True)
class Submission:
    student: str
    assignment: str
    path: Path                 # in the exchange, never modified
    submitted_at: datetime     # trusted (ctime based)
    stated_at: datetime | None  # what the student's timestamp.txt says

    def seconds_late(self, duedate: datetime | None) -> float:
        if duedate is None:
            return 0.0
        return max(0.0, (self.submitted_at - duedate).total_seconds())


def trusted_time(root: Path) -> datetime:
    """Newest ctime of root and everything below it."""
    newest = root.lstat().st_ctime
    for p in root.rglob("*"):
        newest = max(newest, p.lstat().st_ctime)
    return datetime.fromtimestamp(newest, timezone.utc)


def submissions(paths: CoursePaths, assignment: str) -> list[Submission]:
    """Every submission of an assignment in the exchange, oldest first per student."""
    found = []
    inbound = Path(paths.inbound)
    for student_dir in sorted(inbound.iterdir()):
        if not student_dir.is_dir():
            continue
        for sub in sorted(student_dir.glob(f"{assignment}+*")):
            if not sub.is_dir() or sub.is_symlink():
                continue
            try:
                stated = parse_timestamp((sub / "timestamp.txt").read_text())
            except (OSError, ValueError):
                stated = None
            found.append(Submission(student_dir.name, assignment, sub, trusted_time(sub), stated))
    found.sort(key=lambda s: (s.student, s.submitted_at))
    return found


@dataclass(frozen=True)
class Collected:
    submission: Submission
    new: bool            # differs from what submitted/ held before
    seconds_late: float


def collect(paths: CoursePaths, assignment: str, duedate: datetime | None = None) -> list[Collected]:
    """Copy every submission into course_dir/archive (kept forever) and the newest
    of each student into nbgrader's submitted/<student>/<assignment>/ with the
    trusted timestamp. Returns one entry per student."""
    course = Path(paths.course_dir)
    latest: dict[str, Submission] = {}
    for sub in submissions(paths, assignment):
        archived = course / "archive" / sub.student / assignment / sub.path.name
        if not archived.exists():
            archived.parent.mkdir(parents=True, exist_ok=True)
            try:
                _copy_tree(sub.path, archived, 0o640, 0o2750)
            except OSError:  # unreadable (made outside `aifactory exchange submit`): left in the exchange
                shutil.rmtree(archived, ignore_errors=True)
                continue
            (archived / "timestamp.txt").write_text(format_timestamp(sub.submitted_at))
        latest[sub.student] = sub
    out = []
    for student, sub in sorted(latest.items()):
        dest = course / "submitted" / student / assignment
        marker = dest / ".aifactory-source"
        new = not (marker.exists() and marker.read_text() == sub.path.name)
        if new:
            dest.parent.mkdir(parents=True, exist_ok=True)
            _replace_tree(course / "archive" / student / assignment / sub.path.name, dest, 0o640, 0o2750,
                          extra={marker.name: sub.path.name})
        out.append(Collected(sub, new, sub.seconds_late(duedate)))
    return out


def release_feedback(paths: CoursePaths, assignment: str) -> list[str]:
    """course_dir/feedback/<student>/<assignment>/ -> exchange feedback/<student>/<assignment>/."""
    released = []
    root = Path(paths.course_dir) / "feedback"
    if not root.is_dir():
        return released
    for student_dir in sorted(root.iterdir()):
        src = student_dir / assignment
        target_root = Path(paths.feedback_of(student_dir.name))
        if not src.is_dir() or not target_root.is_dir():
            continue
        _replace_tree(src, target_root / assignment, 0o664, 0o2775)  # co-trainers and the formgrader replace it
        released.append(student_dir.name)
    return released


# ---- student side -------------------------------------------------------------------------------

def fetch(paths: CoursePaths, assignment: str, dest_root: Path) -> Path:
    """Copy a released assignment into dest_root/<assignment> (never overwrites work)."""
    src = Path(paths.outbound) / assignment
    if not src.is_dir():
        raise ExchangeError(f"assignment {assignment!r} of course {paths.course_id!r} is not released")
    dest = dest_root / assignment
    if dest.exists():
        raise ExchangeError(f"{dest} exists already; move it away to fetch again")
    dest_root.mkdir(parents=True, exist_ok=True)
    _copy_tree(src, dest, 0o644, 0o755)
    return dest


def submit(paths: CoursePaths, assignment: str, src_root: Path, now: datetime | None = None) -> Path:
    """Copy src_root/<assignment> into inbound/<me>/<assignment>+<time>/."""
    src = src_root / assignment
    if not src.is_dir():
        raise ExchangeError(f"{src} does not exist")
    if _tree_size(src) > MAX_SUBMISSION_BYTES:
        raise ExchangeError(f"{src} is larger than {MAX_SUBMISSION_BYTES // 2**20} MiB")
    mine = Path(paths.inbound_of(me()))
    if not os.access(mine, os.W_OK | os.X_OK):
        raise ExchangeError(f"you are not a student of course {paths.course_id!r}")
    now = now or datetime.now(timezone.utc)
    dest = mine / f"{assignment}+{now.strftime('%Y%m%dT%H%M%S.%fZ')}"
    old = os.umask(0o027)
    try:
        _copy_tree(src, dest, 0o640, None)
    finally:
        os.umask(old)
    (dest / "timestamp.txt").write_text(format_timestamp(now))
    (dest / "timestamp.txt").chmod(0o640)
    return dest


def fetch_feedback(paths: CoursePaths, assignment: str, dest_root: Path) -> Path | None:
    """Copy my released feedback into dest_root/<assignment>/feedback/ (replaced each time)."""
    src = Path(paths.feedback_of(me())) / assignment
    if not src.is_dir():
        return None
    dest = dest_root / assignment / "feedback"
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        shutil.rmtree(dest)
    _copy_tree(src, dest, 0o644, 0o755)
    return dest
