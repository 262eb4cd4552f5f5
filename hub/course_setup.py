"""`aifactory course setup <course>`: apply the layout plan (root, idempotent)."""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

from aifactory.courses.exchange.layout import (
    ACL_XATTR,
    SUDOERS_DIR,
    CoursePaths,
    access_acl,
    course_of,
    directory_plan,
    formgrader_user_command,
    grader_user_command,
    group_commands,
    sudoers_file,
    wanted_members,
)
from aifactory.courses.grading.jobs import course_python
from aifactory.site.install import shared_python
from aifactory.site.schema import Site

from .localcluster.system import ProvisionError, run, write_if_changed


def existing_groups(names) -> dict[str, set[str]]:
    out = {}
    for name in names:
        try:
            out[name] = set(grp.getgrnam(name).gr_mem)
        except KeyError:
            pass
    return out


def apply_directories(plan) -> None:
    for spec in plan:
        path = Path(spec.path)
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, pwd.getpwnam(spec.owner).pw_uid, grp.getgrnam(spec.group).gr_gid)
        if spec.readers:
            acl = access_acl(spec.mode, {pwd.getpwnam(user).pw_uid: 0o5 for user in spec.readers})
            try:
                os.setxattr(path, ACL_XATTR, acl)
            except OSError as exc:
                raise ProvisionError(f"{path}: cannot set its ACL ({exc.strerror}); the course exchange needs "
                                     "a file system with POSIX ACLs (mount option acl)") from None
        os.chmod(path, spec.mode)  # after chown and the ACL: chown clears the setgid bit


def setup_course(site: Site, course_id: str, paths: CoursePaths | None = None,
                 python: str | None = None) -> list[str]:
    """Create groups, the grader user, directories and the sudo rule; returns what changed."""
    if os.geteuid() != 0:
        raise ProvisionError("course setup needs root (it creates groups and directories)")
    course = course_of(site, course_id)
    changes = []
    users = {p.pw_name for p in pwd.getpwall()}
    commands = (grader_user_command(users) + formgrader_user_command(course.id, users)
                + group_commands(course, existing_groups(wanted_members(course))))
    for argv in commands:
        run(argv)
        changes.append(" ".join(argv))
    paths = paths or CoursePaths.of(site, course.id)
    apply_directories(directory_plan(course, paths))
    gradebook = Path(paths.gradebook)
    if gradebook.exists() and gradebook.stat().st_mode & 0o060 != 0o060:
        gradebook.chmod(0o660)   # SQLite made it 0644: co-trainers and the formgrader write it too
        changes.append(f"made {gradebook} writable by the course's trainers")
    name, text = sudoers_file(course, python or course_python(site, course, shared_python()))
    target = Path(SUDOERS_DIR) / name
    if write_if_changed(target, text, 0o440, check=lambda tmp: run(["visudo", "-c", "-q", "-f", str(tmp)])):
        changes.append(f"wrote {target}")
    return changes
