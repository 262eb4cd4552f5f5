"""Who may do what on the hub: groups and roles derived from the site, by pure functions.

- Every user keeps JupyterHub's default `user` role (scope `self`): students and
  researchers reach their own servers and nothing else.
- Each course has two groups, `course-<id>-students` and `course-<id>-trainers`,
  taken from the course's lists. A course's trainers see their students (names,
  activity, server state), open the course's formgrader service and, only where the course sets
  `trainers_access_servers: true`, may open their students' running servers.
- The site's admin groups (`auth.admin_groups`) get the `site-admin` role.

Groups come from the site file on a PAM site (`hub_groups`). On an OIDC site the
identity provider's groups claim is the source; the course groups are then added
at login by `CourseGroups`, as the IdP knows nothing of the site's courses.
"""

from __future__ import annotations

from dataclasses import dataclass

from aifactory.site.identity import students_group, trainers_group
from aifactory.site.schema import Course, Site

from .formgrader import service_name as formgrader_service

SITE_ADMIN_ROLE = "site-admin"
# What an admin may do through the API and the admin page; the same as JupyterHub's
# `admin` role, spelled out so that a role from the site file can carry it.
ADMIN_SCOPES = [
    "admin-ui",
    "admin:users",
    "admin:servers",
    "admin:groups",
    "admin:services",
    "access:servers",
    "access:services",
    "tokens",
    "read:roles",
    "read:hub",
    "read:metrics",
    "proxy",
    "shutdown",
]


def groups_of_course(course: Course) -> dict[str, list[str]]:
    """A course's two hub groups with their members from the course's lists."""
    return {students_group(course.id): sorted(course.students), trainers_group(course.id): sorted(course.trainers)}


def course_groups(site: Site) -> dict[str, list[str]]:
    """The two groups of every course."""
    return {name: members for course in site.courses for name, members in groups_of_course(course).items()}


def site_groups(site: Site) -> dict[str, list[str]]:
    """The site's groups with the users that list them."""
    return {g.name: [u.name for u in site.users if g.name in u.groups] for g in site.groups}


def hub_groups(site: Site) -> dict[str, list[str]]:
    """Every group the hub knows on a PAM site: the site's groups and the course groups."""
    return {**site_groups(site), **course_groups(site)}


def course_groups_of(site: Site, user: str) -> list[str]:
    """The course groups a user belongs to, in the site file's order."""
    return [name for name, members in course_groups(site).items() if user in members]


def trainer_scopes(course: Course) -> list[str]:
    """A course's trainers: read their students; open their servers only if the course allows it."""
    students = f"group={students_group(course.id)}"
    scopes = [
        f"list:users!{students}",
        f"read:users!{students}",
        f"read:servers!{students}",
        f"read:groups!{students}",
        f"access:services!service={formgrader_service(course)}",
    ]
    if course.trainers_access_servers:
        scopes.append(f"access:servers!{students}")
    return scopes


def roles(site: Site) -> list[dict]:
    """JupyterHub `load_roles` entries for the people of the site (services have their own)."""
    result = [
        {
            "name": trainers_group(course.id),
            "description": f"Trainers of {course.title}",
            "scopes": trainer_scopes(course),
            "groups": [trainers_group(course.id)],
        }
        for course in site.courses
    ]
    if site.auth.admin_groups:
        result.append(
            {
                "name": SITE_ADMIN_ROLE,
                "description": "Operators of the centre: everything an admin does",
                "scopes": list(ADMIN_SCOPES),
                "groups": list(site.auth.admin_groups),
            }
        )
    return result


@dataclass(frozen=True)
class CourseGroups:
    """`Authenticator.post_auth_hook` of an OIDC site: add the site's course groups
    to the groups the identity provider sent, so course roles apply to federated users."""

    site: Site

    def __call__(self, authenticator, handler, authentication: dict | None) -> dict | None:
        if not authentication or authentication.get("groups") is None:
            return authentication
        extra = [g for g in course_groups_of(self.site, authentication["name"]) if g not in authentication["groups"]]
        return {**authentication, "groups": [*authentication["groups"], *extra]}
