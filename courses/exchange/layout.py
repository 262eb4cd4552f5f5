"""Pure plans for a course's groups, directories and the grading sudo rule.

Who may do what, enforced by ownership and mode bits (and one ACL entry, below):

=====================================  ==========================  =====  ==========================
path                                   owner:group                 mode   effect
=====================================  ==========================  =====  ==========================
courses/<id>/                          root:course-<id>-trainers   2770   source, gradebook: trainers
exchange/<id>/                         root:course-<id>            0750   course members only
exchange/<id>/outbound/                root:course-<id>-trainers   2775   trainers write, members read
exchange/<id>/inbound/                 root:course-<id>-trainers   0751   trainers list; students only pass
exchange/<id>/inbound/<student>/       <student>:course-<id>-tr.   2750   student writes, trainers read
  .../<student>/.fetched+<a>           <student>:course-<id>-tr.   0640   the student's fetch of <a>
exchange/<id>/feedback/                root:course-<id>-trainers   0751   trainers list; students only pass
exchange/<id>/feedback/<student>/      root:course-<id>-trainers   2770   trainers write; ACL: student reads
formgrader/<id>/ (home)                grader-<id>:grader-<id>     0700   the formgrader's own files
=====================================  ==========================  =====  ==========================

A student's feedback folder is not theirs: an owner may always chmod their folder
and then put a link where a trainer is about to release, so it belongs to root and
the trainers, and one POSIX ACL entry (``user:<student>:r-x``) lets that student,
and no classmate, read it. It is the only ACL of the tree; the file system must
support them (ext4, XFS and tmpfs do by default).

``grader-<id>`` is the account the course's formgrader runs as (see
``aifactory.hub.formgrader``): a member of both course groups, so it reads
submissions and writes the gradebook and feedback exactly as a trainer does.
It is not the sandbox identity ``aifactory-grader``, which may touch none of this.

A student is "other" on ``inbound/`` (execute only: no listing) and on every
other student's directory (no bits at all), so they cannot list, read or change
anyone else's submission even when they guess its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from aifactory.site.identity import GRADER_USER, formgrader_user, members_group, trainers_group
from aifactory.site.schema import Course, Site

Argv = list[str]

FORMGRADER_HOMES = PurePosixPath("/var/lib/aifactory/formgrader")
SUDOERS_DIR = PurePosixPath("/etc/sudoers.d")
@dataclass(frozen=True)
class CoursePaths:
    """Where one course lives on the shared file system."""

    course_id: str
    courses_root: PurePosixPath
    exchange_root: PurePosixPath
    max_submission_bytes: int  # the largest hand-in: the site's course_storage.max_submission

    @classmethod
    def of(cls, site: Site, course_id: str) -> CoursePaths:
        """Where the site keeps this course (`course_storage` in the site file)."""
        storage = site.course_storage
        return cls(course_id, PurePosixPath(storage.courses_root), PurePosixPath(storage.exchange_root),
                   storage.max_submission * 2**20)

    @property
    def course_dir(self) -> PurePosixPath:
        """The nbgrader course root: source, release, gradebook, autograded, feedback."""
        return self.courses_root / self.course_id

    @property
    def exchange(self) -> PurePosixPath:
        return self.exchange_root / self.course_id

    @property
    def outbound(self) -> PurePosixPath:
        return self.exchange / "outbound"

    @property
    def inbound(self) -> PurePosixPath:
        return self.exchange / "inbound"

    @property
    def feedback(self) -> PurePosixPath:
        return self.exchange / "feedback"

    def inbound_of(self, student: str) -> PurePosixPath:
        return self.inbound / student

    def feedback_of(self, student: str) -> PurePosixPath:
        return self.feedback / student

    @property
    def gradebook(self) -> PurePosixPath:
        return self.course_dir / "gradebook.db"


@dataclass(frozen=True)
class DirSpec:
    path: PurePosixPath
    owner: str
    group: str
    mode: int
    readers: tuple[str, ...] = ()   # users given r-x by an ACL entry each


# POSIX ACL as Linux stores it in the system.posix_acl_access extended attribute.
ACL_XATTR = "system.posix_acl_access"
_ACL_VERSION = 2
_USER_OBJ, _USER, _GROUP_OBJ, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
_NO_ID = 0xFFFFFFFF


def access_acl(mode: int, readers: dict[int, int]) -> bytes:
    """The access ACL of a folder with permission bits `mode` plus `readers` (uid -> rwx bits).

    The mask is the group bits, as chmod keeps it; entries in the kernel's order."""
    import struct

    def entry(tag: int, perm: int, ident: int = _NO_ID) -> bytes:
        return struct.pack("<HHI", tag, perm, ident)

    group = (mode >> 3) & 7
    return b"".join([
        struct.pack("<I", _ACL_VERSION),
        entry(_USER_OBJ, (mode >> 6) & 7),
        *(entry(_USER, perm & 7, uid) for uid, perm in sorted(readers.items())),
        entry(_GROUP_OBJ, group),
        entry(_MASK, group),
        entry(_OTHER, mode & 7),
    ])


def directory_plan(course: Course, paths: CoursePaths) -> list[DirSpec]:
    """Every directory of the course with its owner, group and mode, parents first."""
    members, trainers = members_group(course.id), trainers_group(course.id)
    plan = [
        DirSpec(paths.courses_root, "root", "root", 0o755),
        DirSpec(paths.exchange_root, "root", "root", 0o755),
        DirSpec(paths.course_dir, "root", trainers, 0o2770),
        DirSpec(paths.exchange, "root", members, 0o750),
        DirSpec(paths.outbound, "root", trainers, 0o2775),
        DirSpec(paths.inbound, "root", trainers, 0o751),
        DirSpec(paths.feedback, "root", trainers, 0o751),
    ]
    for student in course.students:
        plan.append(DirSpec(paths.inbound_of(student), student, trainers, 0o2750))
        plan.append(DirSpec(paths.feedback_of(student), "root", trainers, 0o2770, readers=(student,)))
    grader = formgrader_user(course.id)
    plan.append(DirSpec(FORMGRADER_HOMES, "root", "root", 0o755))
    plan.append(DirSpec(FORMGRADER_HOMES / course.id, grader, grader, 0o700))
    return plan


def wanted_members(course: Course) -> dict[str, set[str]]:
    """Group -> the users the site says belong in it."""
    grader = formgrader_user(course.id)
    return {
        members_group(course.id): set(course.trainers) | set(course.students) | {grader},
        trainers_group(course.id): set(course.trainers) | {grader},
    }


def group_commands(course: Course, existing: dict[str, set[str]]) -> list[Argv]:
    """groupadd/gpasswd calls that make the course's groups match the site.

    `existing` maps each existing group to its members. Members the site no
    longer lists are removed, so a dropped student loses access.
    """
    commands: list[Argv] = []
    for group, members in wanted_members(course).items():
        have = existing.get(group)
        if have is None:
            commands.append(["groupadd", group])
            have = set()
        for user in sorted(members - have):
            commands.append(["gpasswd", "--add", user, group])
        for user in sorted(have - members):
            commands.append(["gpasswd", "--delete", user, group])
    return commands


def grader_user_command(existing_users: set[str]) -> list[Argv]:
    """The locked system user that runs students' code during autograding.

    No home, no login shell, no password, no Slurm association: it never
    submits jobs and owns nothing but its own temporary files.
    """
    if GRADER_USER in existing_users:
        return []
    return [["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", GRADER_USER]]


def formgrader_user_command(course_id: str, existing_users: set[str]) -> list[Argv]:
    """The locked system account the course's formgrader runs as (no password, no shell)."""
    user = formgrader_user(course_id)
    if user in existing_users:
        return []
    return [["useradd", "--system", "--user-group", "--no-create-home",
             "--home-dir", str(FORMGRADER_HOMES / course_id), "--shell", "/usr/sbin/nologin", user]]


def sandbox_argv(python: str) -> Argv:
    """The one command a trainer may run as the grader (see grading/sandbox.py)."""
    return [python, "-I", "-m", "aifactory.courses.grading.sandbox"]


def sudoers_file(course: Course, python: str) -> tuple[str, str]:
    """(file name, content) of the sudo rule: the course's trainers may start the
    grading sandbox, and only it, without arguments, as the grader user."""
    name = f"aifactory-grading-{course.id}"
    rule = " ".join(sandbox_argv(python))
    text = (
        f"# Generated by `aifactory course setup {course.id}`: trainers start the grading sandbox\n"
        f"# as {GRADER_USER}, so students' code never runs as a trainer or root.\n"
        f"%{trainers_group(course.id)} ALL=({GRADER_USER}) NOPASSWD: {rule}\n"
    )
    return name.replace(".", "_"), text


class UnknownCourse(LookupError, RuntimeError):
    """The site has no course of that id."""


def course_of(site: Site, course_id: str) -> Course:
    for course in site.courses:
        if course.id == course_id:
            return course
    known = ", ".join(c.id for c in site.courses) or "none"
    raise UnknownCourse(f"no course {course_id!r} in the site (courses: {known})")
