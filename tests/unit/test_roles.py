"""Groups and roles derived from the site, compared by equality."""

from __future__ import annotations

import yaml

from aifactory.hub.roles import ADMIN_SCOPES, CourseGroups, course_groups, hub_groups, roles
from aifactory.site import parse_site
from aifactory.site.load import read_yaml

from .sites import SMALL_SITE


def two_course_site():
    data = read_yaml(SMALL_SITE)
    data["users"].append({"name": "carol", "groups": ["students"]})
    data["courses"].append(
        {"id": "dl", "title": "DL", "trainers": ["bob"], "students": ["carol", "alice"], "profile": "small",
         "project": "proj_a", "trainers_access_servers": True}
    )
    data["projects"][0]["members"].append("carol")
    return parse_site(yaml.safe_dump(data))


def test_course_groups_come_from_the_course_lists():
    assert course_groups(two_course_site()) == {
        "course-ml101-students": ["alice"],
        "course-ml101-trainers": ["bob"],
        "course-dl-students": ["alice", "carol"],
        "course-dl-trainers": ["bob"],
    }


def test_hub_groups_are_site_groups_and_course_groups():
    assert hub_groups(parse_site(SMALL_SITE)) == {
        "students": ["alice"],
        "researchers": ["bob"],
        "course-ml101-students": ["alice"],
        "course-ml101-trainers": ["bob"],
    }


def test_roles_of_a_site():
    assert roles(two_course_site()) == [
        {
            "name": "course-ml101-trainers",
            "description": "Trainers of ML 101",
            "scopes": [
                "list:users!group=course-ml101-students",
                "read:users!group=course-ml101-students",
                "read:servers!group=course-ml101-students",
                "read:groups!group=course-ml101-students",
                "access:services!service=formgrader-ml101",
            ],
            "groups": ["course-ml101-trainers"],
        },
        {
            "name": "course-dl-trainers",
            "description": "Trainers of DL",
            "scopes": [
                "list:users!group=course-dl-students",
                "read:users!group=course-dl-students",
                "read:servers!group=course-dl-students",
                "read:groups!group=course-dl-students",
                "access:services!service=formgrader-dl",
                "access:servers!group=course-dl-students",
            ],
            "groups": ["course-dl-trainers"],
        },
        {
            "name": "site-admin",
            "description": "Operators of the centre: everything an admin does",
            "scopes": ADMIN_SCOPES,
            "groups": ["researchers"],
        },
    ]


def test_a_site_without_admin_groups_has_no_admin_role():
    data = read_yaml(SMALL_SITE)
    data["auth"] = {"kind": "pam"}
    assert [r["name"] for r in roles(parse_site(yaml.safe_dump(data)))] == ["course-ml101-trainers"]


def test_trainers_cannot_reach_servers_unless_the_course_says_so():
    (ml101,) = parse_site(SMALL_SITE).courses
    assert ml101.trainers_access_servers is False


def test_federated_login_gets_the_course_groups_of_the_site():
    hook = CourseGroups(two_course_site())
    assert hook(None, None, {"name": "alice", "groups": ["students"]}) == {
        "name": "alice",
        "groups": ["students", "course-ml101-students", "course-dl-students"],
    }
    assert hook(None, None, {"name": "dave", "groups": []}) == {"name": "dave", "groups": []}
    assert hook(None, None, None) is None
