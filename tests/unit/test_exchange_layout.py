"""The course exchange's permission plan, groups and sudo rule, by equality."""

from pathlib import PurePosixPath as P

import pytest

from aifactory.courses.exchange.layout import (
    CoursePaths,
    DirSpec,
    UnknownCourse,
    access_acl,
    course_of,
    directory_plan,
    formgrader_user_command,
    grader_user_command,
    group_commands,
    sudoers_file,
)
from aifactory.courses.exchange.transfer import format_timestamp, parse_timestamp
from aifactory.site.identity import NameTooLong, formgrader_user, members_group, trainers_group


def test_directory_plan_keeps_students_apart(demo_site):
    course = course_of(demo_site, "intro-dl")
    plan = directory_plan(course, CoursePaths.of(demo_site, course.id))
    t = "course-intro-dl-trainers"
    assert plan == [
        DirSpec(P("/srv/aifactory/courses"), "root", "root", 0o755),
        DirSpec(P("/srv/aifactory/exchange"), "root", "root", 0o755),
        DirSpec(P("/srv/aifactory/courses/intro-dl"), "root", t, 0o2770),
        DirSpec(P("/srv/aifactory/exchange/intro-dl"), "root", "course-intro-dl", 0o750),
        DirSpec(P("/srv/aifactory/exchange/intro-dl/outbound"), "root", t, 0o2775),
        DirSpec(P("/srv/aifactory/exchange/intro-dl/inbound"), "root", t, 0o751),
        DirSpec(P("/srv/aifactory/exchange/intro-dl/feedback"), "root", t, 0o751),
        DirSpec(P("/srv/aifactory/exchange/intro-dl/inbound/student1"), "student1", t, 0o2750),
        DirSpec(P("/srv/aifactory/exchange/intro-dl/feedback/student1"), "root", t, 0o2770, readers=("student1",)),
        DirSpec(P("/srv/aifactory/exchange/intro-dl/inbound/student2"), "student2", t, 0o2750),
        DirSpec(P("/srv/aifactory/exchange/intro-dl/feedback/student2"), "root", t, 0o2770, readers=("student2",)),
        DirSpec(P("/var/lib/aifactory/formgrader"), "root", "root", 0o755),
        DirSpec(P("/var/lib/aifactory/formgrader/intro-dl"), "grader-intro-dl", "grader-intro-dl", 0o700),
    ]
    # No student directory gives "other" any bit: a classmate can neither list nor open it.
    assert all(spec.mode & 0o007 == 0 for spec in plan if spec.owner.startswith("student") or spec.readers)
    # A student owns no folder a trainer writes into: feedback is root's and the trainers', read through an ACL.
    assert not any(spec.owner.startswith("student") for spec in plan if "/feedback" in str(spec.path))


def test_access_acl_is_the_kernels_layout():
    import struct

    acl = access_acl(0o2770, {1002: 0o5, 1001: 0o5})
    version, *rest = struct.unpack("<I" + "HHI" * 6, acl)
    entries = [tuple(rest[i:i + 3]) for i in range(0, len(rest), 3)]
    no_id = 0xFFFFFFFF
    assert version == 2
    # user::rwx, user:1001:r-x, user:1002:r-x (sorted by uid), group::rwx, mask::rwx, other::---
    assert entries == [(0x01, 7, no_id), (0x02, 5, 1001), (0x02, 5, 1002), (0x04, 7, no_id), (0x10, 7, no_id),
                       (0x20, 0, no_id)]


def test_group_commands_add_and_remove_members(demo_site):
    course = course_of(demo_site, "dask-scaling")
    assert group_commands(course, {}) == [
        ["groupadd", "course-dask-scaling"],
        ["gpasswd", "--add", "grader-dask-scaling", "course-dask-scaling"],
        ["gpasswd", "--add", "student2", "course-dask-scaling"],
        ["gpasswd", "--add", "student3", "course-dask-scaling"],
        ["gpasswd", "--add", "trainer1", "course-dask-scaling"],
        ["groupadd", "course-dask-scaling-trainers"],
        ["gpasswd", "--add", "grader-dask-scaling", "course-dask-scaling-trainers"],
        ["gpasswd", "--add", "trainer1", "course-dask-scaling-trainers"],
    ]
    existing = {"course-dask-scaling": {"student1", "student2", "student3", "trainer1", "grader-dask-scaling"},
                "course-dask-scaling-trainers": {"trainer1", "grader-dask-scaling"}}
    assert group_commands(course, existing) == [["gpasswd", "--delete", "student1", "course-dask-scaling"]]


def test_group_names_fit_unix():
    assert members_group("intro-dl") == "course-intro-dl"
    assert trainers_group("intro-dl") == "course-intro-dl-trainers"
    with pytest.raises(NameTooLong):
        trainers_group("a-very-long-course-identifier")


def test_grader_user_is_locked_and_created_once():
    assert grader_user_command({"aifactory-grader"}) == []
    assert grader_user_command(set()) == [[
        "useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
        "--shell", "/usr/sbin/nologin", "aifactory-grader"]]


def test_each_course_has_a_locked_formgrader_account():
    assert formgrader_user_command("intro-dl", {"grader-intro-dl"}) == []
    assert formgrader_user_command("intro-dl", set()) == [[
        "useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
        "/var/lib/aifactory/formgrader/intro-dl", "--shell", "/usr/sbin/nologin", "grader-intro-dl"]]
    with pytest.raises(NameTooLong):
        formgrader_user("a-course-id-much-too-long-for-unix")


def test_sudo_rule_allows_only_the_sandbox(demo_site):
    name, text = sudoers_file(course_of(demo_site, "intro-dl"), "/opt/aifactory/venv/bin/python3")
    assert name == "aifactory-grading-intro-dl"
    assert text.splitlines()[-1] == (
        "%course-intro-dl-trainers ALL=(aifactory-grader) NOPASSWD: "
        "/opt/aifactory/venv/bin/python3 -I -m aifactory.courses.grading.sandbox")


def test_unknown_course_names_the_known_ones(demo_site):
    with pytest.raises(UnknownCourse, match="intro-dl, dask-scaling"):
        course_of(demo_site, "nope")


def test_timestamp_round_trip():
    from datetime import datetime, timezone

    when = datetime(2025, 3, 1, 12, 30, 5, 123456, tzinfo=timezone.utc)
    assert format_timestamp(when) == "2025-03-01 12:30:05.123456 UTC"
    assert parse_timestamp(format_timestamp(when)) == when


def test_release_takes_the_shipped_material_unless_told_otherwise():
    from pathlib import Path

    from aifactory.courses.material import release_source, shipped_assignments, shipped_source

    shipped = shipped_source("intro-dl", "tensors-and-gradients")
    assert shipped is not None and (shipped / "tensors-and-gradients.ipynb").is_file()
    assert shipped_assignments("intro-dl") == ["tensors-and-gradients", "train-mlp"]
    assert shipped_source("intro-dl", "nope") is None and shipped_source("no-such-course", "a1") is None
    assert release_source(None, shipped, in_course_dir=False) == shipped
    assert release_source(None, shipped, in_course_dir=True) is None        # the trainer's copy is kept
    assert release_source("/tmp/mine", shipped, in_course_dir=True) == Path("/tmp/mine")
