"""Moving files through a course's exchange (see layout.py for who may do what).

Students: `fetch`, `submit`, `fetch_feedback`. Trainers: `release`, `collect`,
`release_feedback`. Each runs as the calling Unix user; the permissions of
the tree, not this code, keep students apart. A fetch leaves a note for the trainers
in the student's own inbound folder (`record_fetch`), which the class progress page counts.

Every copy goes through `copy_tree`, which works the way `tar` and `rsync` do
when root runs them: each name is opened relative to its folder's descriptor
with ``O_NOFOLLOW`` and judged by ``fstat`` of the descriptor it got, never by a
check followed by a second lookup. A student who swaps a file of their hand-in
for a link to the gradebook while a trainer collects gets the link skipped, not
the gradebook copied; FIFOs and devices are skipped unopened (and opened
non-blocking should one be swapped in); the size limit is counted in bytes read
by the collector, whatever `submit` checked. Small files (``timestamp.txt``) are
read with `read_small`: a regular file of a few hundred bytes or nothing.

Submission time: a student writes ``timestamp.txt`` but could forge it, so the
collector trusts the newest *ctime* of what it copied instead (taken from the
descriptors it read, when it archives the hand-in): ctime cannot be set back by
a non-root user, and any later change to a file moves it forward. Collect copies
every submission into an archive and never deletes from the exchange, so nothing
submitted is lost; what it will not take it names per student (`Collected.refused`).
"""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import stat
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .layout import CoursePaths

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f %Z"
MAX_SMALL_BYTES = 512   # timestamp.txt and the collector's markers
SKIP = {".ipynb_checkpoints", "__pycache__", "feedback", ".git"}
TIMESTAMP = "timestamp.txt"
MAX_ENTRIES = 10_000    # files and folders in one copy
MAX_DEPTH = 64          # nested folders
CHUNK = 1 << 20

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class ExchangeError(RuntimeError):
    """A transfer that cannot happen; the message says why."""


class Refused(ExchangeError):
    """Something in a user's tree the copy will not take (a link, a FIFO, too large)."""


class TooLarge(Refused):
    """More bytes (or files, or levels) than the limit: the copy stopped there."""


def me() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def format_timestamp(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> datetime:
    return datetime.strptime(text.strip(), TIMESTAMP_FORMAT).replace(tzinfo=timezone.utc)


# ---- the one safe copy, and bounded reading ----------------------------------------------------

def open_dir(name: str | os.PathLike, dir_fd: int | None = None) -> int:
    """A directory's descriptor; a link at `name` is refused (ELOOP), not followed.

    Only the last component is not followed: callers open the trusted parents
    (root's and trainers' folders) by path and every user-owned level by name.
    """
    return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file or folder"


def _open_entry(name: str, dir_fd: int) -> tuple[int, os.stat_result]:
    """Open one entry without following it and say what it is, from the descriptor itself."""
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Refused("a symbolic link") from None
        if exc.errno == errno.ENXIO:   # a socket
            raise Refused("a socket") from None
        raise
    st = os.fstat(fd)
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        os.close(fd)
        raise Refused(_kind(st.st_mode))
    return fd, st


def read_small(dir_fd: int, name: str, limit: int = MAX_SMALL_BYTES) -> bytes:
    """A small regular file's content, opened without following links and without blocking:
    a link, a FIFO, a device or more than `limit` bytes raise Refused (never a hang)."""
    fd, st = _open_entry(name, dir_fd)
    try:
        if not stat.S_ISREG(st.st_mode):
            raise Refused("a folder")
        data = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise Refused(f"larger than {limit} bytes")
    return data


def write_small(dir_fd: int, name: str, data: bytes, mode: int) -> None:
    """Create `name` (it must not exist, links included) in the folder of `dir_fd`."""
    fd = os.open(name, _CREATE_FLAGS, 0o600, dir_fd=dir_fd)
    try:
        os.fchmod(fd, mode)
        _write_all(fd, data)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


@dataclass
class Copied:
    """What `copy_tree` did: bytes read, the newest ctime it saw, what it skipped and why."""

    bytes: int = 0
    entries: int = 0
    newest_ctime: float = 0.0
    skipped: list[str] = field(default_factory=list)


def copy_tree(src_fd: int, dest_fd: int, *, file_mode: int, dir_mode: int | None, limit: int | None = None,
              skip: set[str] | frozenset[str] = frozenset(SKIP), _done: Copied | None = None,
              _prefix: str = "") -> Copied:
    """Copy the folder open as `src_fd` into the (empty) folder open as `dest_fd`.

    Regular files and folders only, each opened by name relative to its folder's
    descriptor with O_NOFOLLOW (O_NONBLOCK: a FIFO swapped in cannot hang us) and
    judged by fstat of that descriptor. Links, FIFOs, devices and sockets are skipped
    and listed in `Copied.skipped`. More than `limit` bytes read in all raises
    TooLarge, as do more than MAX_ENTRIES entries or MAX_DEPTH levels: the caller
    removes what was written. Modes are set explicitly (the caller's umask is not
    trusted); dir_mode None leaves folders as mkdir made them (0750 less the umask:
    a student must not chmod a folder in their inbound, Linux would clear its
    setgid bit).
    """
    done = _done if _done is not None else Copied()
    if _prefix.count("/") >= MAX_DEPTH:
        raise TooLarge(f"folders nested deeper than {MAX_DEPTH}")
    with os.scandir(src_fd) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        name, where = entry.name, _prefix + entry.name
        if name in skip:
            continue
        done.entries += 1
        if done.entries > MAX_ENTRIES:
            raise TooLarge(f"more than {MAX_ENTRIES} files and folders")
        try:
            if not (entry.is_file(follow_symlinks=False) or entry.is_dir(follow_symlinks=False)):
                raise Refused(_kind(entry.stat(follow_symlinks=False).st_mode))  # never opened
            fd, st = _open_entry(name, src_fd)
        except Refused as why:
            done.skipped.append(f"{where}: {why}")
            continue
        except FileNotFoundError:   # gone since the listing
            continue
        try:
            if stat.S_ISDIR(st.st_mode):
                os.mkdir(name, 0o750 if dir_mode is None else 0o700, dir_fd=dest_fd)
                sub = open_dir(name, dest_fd)
                try:
                    if dir_mode is not None:
                        os.fchmod(sub, dir_mode)
                    copy_tree(fd, sub, file_mode=file_mode, dir_mode=dir_mode, limit=limit, skip=skip,
                              _done=done, _prefix=where + "/")
                finally:
                    os.close(sub)
            else:
                _copy_file(fd, st, name, dest_fd, file_mode, limit, done)
            done.newest_ctime = max(done.newest_ctime, os.fstat(fd).st_ctime)  # after reading it
        finally:
            os.close(fd)
    done.newest_ctime = max(done.newest_ctime, os.fstat(src_fd).st_ctime)
    return done


def _copy_file(fd: int, st: os.stat_result, name: str, dest_fd: int, mode: int, limit: int | None,
               done: Copied) -> None:
    if limit is not None and done.bytes + st.st_size > limit:
        raise TooLarge(f"larger than {_size(limit)}")
    out = os.open(name, _CREATE_FLAGS, 0o600, dir_fd=dest_fd)
    try:
        os.fchmod(out, mode)
        while True:
            want = CHUNK if limit is None else min(CHUNK, limit - done.bytes + 1)
            data = os.read(fd, want)
            if not data:
                break
            done.bytes += len(data)
            if limit is not None and done.bytes > limit:   # grew while we read
                raise TooLarge(f"larger than {_size(limit)}")
            _write_all(out, data)
    finally:
        os.close(out)


def _size(limit: int) -> str:
    return f"{limit // 2**20} MiB" if limit >= 2**20 else f"{limit} bytes"


def _remove(parent_fd: int, name: str) -> None:
    """Remove `name` in the folder of parent_fd, a link as a link (best effort)."""
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):   # fd-based: follows no link inside; others' leftovers may not be ours
        shutil.rmtree(name, dir_fd=parent_fd, ignore_errors=True)
        return
    try:
        os.unlink(name, dir_fd=parent_fd)
    except OSError:
        pass


def _replace(src_fd: int, parent_fd: int, name: str, file_mode: int, dir_mode: int,
             extra: dict[str, str] | None = None) -> Copied:
    """Copy src (plus `extra` files: name -> text) to parent/name, replacing an earlier one whole.

    Staging and retired copies carry the caller's uid and pid, so what another
    trainer or a crashed run left behind cannot block this one; renaming inside a
    group-writable parent needs no rights on the old tree's content. An existing
    `name` that is a link is renamed away as a link, never written through.
    """
    mine = f".{name}.{os.getuid()}.{os.getpid()}"
    staging, retired = f"{mine}.new", f"{mine}.old"
    _remove(parent_fd, staging)
    os.mkdir(staging, 0o700, dir_fd=parent_fd)
    fd = open_dir(staging, parent_fd)
    try:
        os.fchmod(fd, dir_mode)
        copied = copy_tree(src_fd, fd, file_mode=file_mode, dir_mode=dir_mode, skip=SKIP | set(extra or {}))
        for extra_name, text in (extra or {}).items():
            write_small(fd, extra_name, text.encode(), file_mode)
    except BaseException:
        os.close(fd)
        _remove(parent_fd, staging)
        raise
    os.close(fd)
    try:
        os.rename(name, retired, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
    except FileNotFoundError:
        pass
    os.rename(staging, name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
    for stale in os.listdir(parent_fd):
        if stale.startswith(f".{name}."):
            _remove(parent_fd, stale)
    return copied


def _open_path(path: Path) -> int:
    """A folder of the caller's own or of a trusted owner, opened by path (the last part not followed)."""
    return open_dir(path)


# ---- trainer side -------------------------------------------------------------------------------

def release(paths: CoursePaths, assignment: str) -> Path:
    """Publish course_dir/release/<assignment> to the students (replaces an earlier release)."""
    src = Path(paths.course_dir) / "release" / assignment
    try:
        src_fd = _open_path(src)
    except OSError:
        raise ExchangeError(f"{src} does not exist: generate the assignment first") from None
    try:
        outbound = _open_path(Path(paths.outbound))
        try:
            _replace(src_fd, outbound, assignment, 0o664, 0o2775)  # co-trainers and the formgrader replace it
        finally:
            os.close(outbound)
    finally:
        os.close(src_fd)
    return Path(paths.outbound) / assignment


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


@dataclass(frozen=True)
class Collected:
    submission: Submission     # the one in submitted/ (accepted), or the newest refused
    new: bool                  # differs from what submitted/ held before
    seconds_late: float
    refused: str = ""          # what of this student's hand-ins the collector would not take, and why
    accepted: bool = True      # False: none of this student's hand-ins could be collected


def _stated(sub_fd: int) -> tuple[datetime | None, str]:
    """The student's own timestamp.txt, bounded; (time, why not) ."""
    try:
        return parse_timestamp(read_small(sub_fd, TIMESTAMP).decode()), ""
    except FileNotFoundError:
        return None, ""
    except Refused as why:
        return None, f"{TIMESTAMP}: {why}, ignored"
    except (OSError, ValueError, UnicodeDecodeError):
        return None, ""


def _archive(sub_fd: int, archive_fd: int, name: str, limit: int) -> tuple[datetime, list[str]]:
    """Copy one hand-in into archive/<student>/<assignment>/<name> (staged, renamed when whole);
    returns its trusted time and what was skipped. Raises Refused or OSError, leaving nothing."""
    staging = f".{name}.{os.getuid()}.{os.getpid()}.new"
    _remove(archive_fd, staging)
    os.mkdir(staging, 0o700, dir_fd=archive_fd)
    try:
        fd = open_dir(staging, archive_fd)
        try:
            os.fchmod(fd, 0o2750)
            copied = copy_tree(sub_fd, fd, file_mode=0o640, dir_mode=0o2750, limit=limit,
                               skip=SKIP | {TIMESTAMP})
            when = datetime.fromtimestamp(copied.newest_ctime, timezone.utc)
            write_small(fd, TIMESTAMP, format_timestamp(when).encode(), 0o640)
        finally:
            os.close(fd)
        os.rename(staging, name, src_dir_fd=archive_fd, dst_dir_fd=archive_fd)
    except BaseException:
        _remove(archive_fd, staging)
        raise
    return when, copied.skipped


def _archived_time(archive_fd: int, name: str) -> datetime | None:
    """The trusted time the collector wrote when it archived `name`, or None if not archived."""
    try:
        fd = open_dir(name, archive_fd)
    except FileNotFoundError:
        return None
    try:
        try:
            return parse_timestamp(read_small(fd, TIMESTAMP).decode())
        except (OSError, Refused, ValueError, UnicodeDecodeError):
            return datetime.fromtimestamp(os.fstat(fd).st_ctime, timezone.utc)
    finally:
        os.close(fd)


def _collect_student(inbound_fd: int, student: str, assignment: str, paths: CoursePaths,
                     archive_root: Path) -> tuple[list[Submission], list[Submission], list[str]]:
    """(accepted, refused, notes) of one student's hand-ins of `assignment`, archiving new ones."""
    accepted, refused, notes = [], [], []
    try:
        student_fd = open_dir(student, inbound_fd)
    except OSError:
        return accepted, refused, notes
    try:
        names = sorted(n for n in os.listdir(student_fd) if n.startswith(f"{assignment}+"))
        if not names:
            return accepted, refused, notes
        archive_dir = archive_root / student / assignment
        archive_dir.mkdir(parents=True, exist_ok=True)
        archive_fd = _open_path(archive_dir)
        try:
            for name in names:
                path = Path(paths.inbound_of(student)) / name
                try:
                    sub_fd = open_dir(name, student_fd)
                except OSError as exc:   # O_DIRECTORY|O_NOFOLLOW: ENOTDIR for a link too; lstat names it
                    try:
                        st = os.stat(name, dir_fd=student_fd, follow_symlinks=False)
                    except OSError:
                        continue
                    kind = exc.strerror if stat.S_ISDIR(st.st_mode) else _kind(st.st_mode)
                    notes.append(f"{name}: {kind}, not collected")
                    refused.append(Submission(student, assignment, path,
                                              datetime.fromtimestamp(st.st_ctime, timezone.utc), None))
                    continue
                try:
                    stated, why = _stated(sub_fd)
                    if why:
                        notes.append(f"{name}: {why}")
                    when = _archived_time(archive_fd, name)
                    if when is None:
                        try:
                            when, skipped = _archive(sub_fd, archive_fd, name, paths.max_submission_bytes)
                        except Refused as exc:
                            notes.append(f"{name}: {exc}, not collected")
                            refused.append(Submission(student, assignment, path,
                                                      datetime.fromtimestamp(os.fstat(sub_fd).st_ctime,
                                                                             timezone.utc), stated))
                            continue
                        except OSError as exc:  # unreadable (made outside `aifactory exchange submit`)
                            notes.append(f"{name}: unreadable ({exc.strerror}), not collected")
                            refused.append(Submission(student, assignment, path,
                                                      datetime.fromtimestamp(os.fstat(sub_fd).st_ctime,
                                                                             timezone.utc), stated))
                            continue
                        notes.extend(f"{name}/{s}, skipped" for s in skipped)
                    accepted.append(Submission(student, assignment, path, when, stated))
                finally:
                    os.close(sub_fd)
        finally:
            os.close(archive_fd)
    finally:
        os.close(student_fd)
    return accepted, refused, notes


def collect(paths: CoursePaths, assignment: str, duedate: datetime | None = None) -> list[Collected]:
    """Copy every submission into course_dir/archive (kept forever) and the newest accepted one
    of each student into nbgrader's submitted/<student>/<assignment>/ with the trusted timestamp.

    Returns one entry per student who handed something in; `refused` names what was
    not taken (links and FIFOs skipped, a hand-in over the size limit or unreadable).
    """
    course = Path(paths.course_dir)
    out = []
    inbound_fd = _open_path(Path(paths.inbound))
    try:
        students = sorted(os.listdir(inbound_fd))
        for student in students:
            accepted, refused, notes = _collect_student(inbound_fd, student, assignment, paths,
                                                        course / "archive")
            if not accepted:
                if refused:
                    newest = max(refused, key=lambda s: s.submitted_at)
                    out.append(Collected(newest, False, newest.seconds_late(duedate), "; ".join(notes), False))
                continue
            sub = max(accepted, key=lambda s: s.submitted_at)
            new = _to_submitted(course, student, assignment, sub)
            out.append(Collected(sub, new, sub.seconds_late(duedate), "; ".join(notes)))
    finally:
        os.close(inbound_fd)
    return out


def _to_submitted(course: Path, student: str, assignment: str, sub: Submission) -> bool:
    """Make submitted/<student>/<assignment> the archived copy of `sub`; True if it changed."""
    marker = ".aifactory-source"
    parent = course / "submitted" / student
    parent.mkdir(parents=True, exist_ok=True)
    parent_fd = _open_path(parent)
    try:
        try:
            dest_fd = open_dir(assignment, parent_fd)
            try:
                if read_small(dest_fd, marker).decode() == sub.path.name:
                    return False
            finally:
                os.close(dest_fd)
        except (OSError, Refused, UnicodeDecodeError):
            pass
        src_fd = _open_path(course / "archive" / student / assignment / sub.path.name)
        try:
            _replace(src_fd, parent_fd, assignment, 0o640, 0o2750, extra={marker: sub.path.name})
        finally:
            os.close(src_fd)
        return True
    finally:
        os.close(parent_fd)


def release_feedback(paths: CoursePaths, assignment: str) -> list[str]:
    """course_dir/feedback/<student>/<assignment>/ -> exchange feedback/<student>/<assignment>/.

    The exchange's feedback/<student>/ is entered by name without following a link
    and written through descriptors only: a link there is replaced, never written through.
    """
    released = []
    try:
        root_fd = _open_path(Path(paths.course_dir) / "feedback")
    except OSError:
        return released
    try:
        exchange_fd = _open_path(Path(paths.feedback))
        try:
            for student in sorted(os.listdir(root_fd)):
                try:
                    src_fd = _open_chain(Path(paths.course_dir) / "feedback", student, assignment)
                except OSError:
                    continue
                try:
                    try:
                        target = open_dir(student, exchange_fd)
                    except OSError:
                        continue
                    try:
                        _replace(src_fd, target, assignment, 0o664, 0o2775)  # co-trainers replace it
                    except OSError:   # only a student who can write there (an old layout) gets here
                        continue
                    finally:
                        os.close(target)
                    released.append(student)
                finally:
                    os.close(src_fd)
        finally:
            os.close(exchange_fd)
    finally:
        os.close(root_fd)
    return released


def _open_chain(path: Path, *names: str) -> int:
    """Open the trusted folder `path`, then each of `names` below it by name, no link followed.

    The levels above the last are opened O_PATH: a student passes through feedback/
    with the execute bit only, and an O_PATH descriptor serves as dir_fd all the same."""
    levels = [str(path), *names]
    current = None
    try:
        for depth, name in enumerate(levels):
            flags = _DIR_FLAGS if depth == len(levels) - 1 else _DIR_FLAGS | os.O_PATH
            nxt = os.open(name, flags, dir_fd=current)
            if current is not None:
                os.close(current)
            current = nxt
    except BaseException:
        if current is not None:
            os.close(current)
        raise
    return current


# ---- student side -------------------------------------------------------------------------------

def fetch(paths: CoursePaths, assignment: str, dest_root: Path) -> Path:
    """Copy a released assignment into dest_root/<assignment> (never overwrites work)."""
    try:
        src_fd = _open_chain(Path(paths.outbound), assignment)
    except OSError:
        raise ExchangeError(f"assignment {assignment!r} of course {paths.course_id!r} is not released") from None
    dest = dest_root / assignment
    try:
        dest_root.mkdir(parents=True, exist_ok=True)
        root_fd = os.open(dest_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the student's own
        try:
            try:
                os.mkdir(assignment, 0o700, dir_fd=root_fd)
            except FileExistsError:
                raise ExchangeError(f"{dest} exists already; move it away to fetch again") from None
            fd = open_dir(assignment, root_fd)
            try:
                os.fchmod(fd, 0o755)
                copy_tree(src_fd, fd, file_mode=0o644, dir_mode=0o755)
            finally:
                os.close(fd)
        finally:
            os.close(root_fd)
    finally:
        os.close(src_fd)
    record_fetch(paths, assignment)
    return dest


FETCHED_PREFIX = ".fetched+"


def record_fetch(paths: CoursePaths, assignment: str, now: datetime | None = None) -> bool:
    """Tell the course's trainers I fetched `assignment`: `.fetched+<assignment>` in my inbound folder.

    My inbound folder is the one place of the exchange only I write and the trainers read
    (layout.py), so a classmate can record no fetch in my name, nor I in theirs. The first fetch
    is kept (O_EXCL); the file's ctime, which I cannot set back, is when. A user with no inbound
    folder in the course (a trainer trying a release) records nothing; False then."""
    if not assignment or "/" in assignment or assignment.startswith("."):
        return False
    try:
        mine_fd = open_dir(Path(paths.inbound_of(me())))
    except OSError:
        return False
    try:
        write_small(mine_fd, FETCHED_PREFIX + assignment,
                    format_timestamp(now or datetime.now(timezone.utc)).encode(), 0o640)
    except FileExistsError:
        pass
    except OSError:
        return False
    finally:
        os.close(mine_fd)
    return True


def submit(paths: CoursePaths, assignment: str, src_root: Path, now: datetime | None = None) -> Path:
    """Copy src_root/<assignment> into inbound/<me>/<assignment>+<time>/."""
    src = src_root / assignment
    try:
        src_fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the student's own work
    except OSError:
        raise ExchangeError(f"{src} does not exist") from None
    try:
        mine = Path(paths.inbound_of(me()))
        if not os.access(mine, os.W_OK | os.X_OK):
            raise ExchangeError(f"you are not a student of course {paths.course_id!r}")
        now = now or datetime.now(timezone.utc)
        name = f"{assignment}+{now.strftime('%Y%m%dT%H%M%S.%fZ')}"
        mine_fd = _open_path(mine)
        old = os.umask(0o027)
        try:
            os.mkdir(name, 0o750, dir_fd=mine_fd)
            fd = open_dir(name, mine_fd)
            try:
                copy_tree(src_fd, fd, file_mode=0o640, dir_mode=None, limit=paths.max_submission_bytes,
                          skip=SKIP | {TIMESTAMP})
                write_small(fd, TIMESTAMP, format_timestamp(now).encode(), 0o640)
            except TooLarge:
                _remove(mine_fd, name)
                raise ExchangeError(f"{src} is larger than {paths.max_submission_bytes // 2**20} MiB") from None
            except BaseException:
                _remove(mine_fd, name)
                raise
            finally:
                os.close(fd)
        finally:
            os.umask(old)
            os.close(mine_fd)
    finally:
        os.close(src_fd)
    return mine / name


def fetch_feedback(paths: CoursePaths, assignment: str, dest_root: Path) -> Path | None:
    """Copy my released feedback into dest_root/<assignment>/feedback/ (replaced each time)."""
    return copy_feedback(paths, assignment, dest_root / assignment / "feedback")


def copy_feedback(paths: CoursePaths, assignment: str, dest: Path) -> Path | None:
    """Replace `dest` (a folder of my own) with my released feedback of `assignment`; None if none.

    Read through descriptors from feedback/<me>/<assignment>, neither level followed
    if it is a link; a link at `dest` is replaced, not written through."""
    try:
        src_fd = _open_chain(Path(paths.feedback), me(), assignment)
    except OSError:
        return None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        parent_fd = os.open(dest.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the student's own
        try:
            _replace(src_fd, parent_fd, dest.name, 0o644, 0o755)
        finally:
            os.close(parent_fd)
    finally:
        os.close(src_fd)
    return dest


def read_timestamp(submission: Path) -> str | None:
    """A hand-in's timestamp.txt, read bounded; None if absent, not a regular file or too long."""
    try:
        fd = open_dir(submission)
    except OSError:
        return None
    try:
        return read_small(fd, TIMESTAMP).decode().strip()
    except (OSError, Refused, UnicodeDecodeError):
        return None
    finally:
        os.close(fd)
