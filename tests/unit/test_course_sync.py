"""The hub-group plan of `aifactory course add` for a running hub, by equality."""

from aifactory.hub.course_sync import plan


def test_enrolment_changes_become_group_requests():
    wanted = {"course-ml-students": ["alice", "carol"], "course-ml-trainers": ["bob"]}
    have = {"course-ml-students": ["alice", "dave"], "course-ml-trainers": ["bob"]}
    assert plan(wanted, have, {"alice", "bob"}) == [
        ("POST", "/users", {"usernames": ["carol"]}),      # a user the hub has not seen yet
        ("POST", "/groups/course-ml-students/users", {"users": ["carol"]}),
        ("DELETE", "/groups/course-ml-students/users", {"users": ["dave"]}),
    ]


def test_a_group_the_hub_lacks_is_created_with_its_members_and_nothing_else_changes():
    wanted = {"course-ml-students": ["alice"]}
    assert plan(wanted, {"course-ml-students": None}, {"alice"}) == [
        ("POST", "/groups/course-ml-students", {"users": ["alice"]})]
    assert plan(wanted, {"course-ml-students": ["alice"]}, {"alice"}) == []
