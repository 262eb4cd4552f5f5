"""Live help: a student shares a running server with their course's trainers, and only with them.

    GET    /hub/api/aifactory/users/{name}/server/help                (the default server)
    GET    /hub/api/aifactory/users/{name}/servers/{server}/help      (a named one)
    POST   the same, body {} or exactly {"course": "<id>"}: share it with that course's trainers
    DELETE the same: stop sharing

Students do not hold JupyterHub's `shares` scope (with it they could share with anyone); this endpoint
is the only way in, and it decides whom: the trainers of one course the caller is a student of, from
the site file (`Course.trainers`), never from the request. It then uses JupyterHub's own sharing
(`orm.Share`, one direct share per trainer with `access:servers!server=<owner>/<server>`), so the
trainer reaches the server through JupyterHub's OAuth like its owner, and JupyterHub's
`/hub/api/shares` and `/hub/api/users/<trainer>/shared` show the shares.

Only the server's owner may call it (their browser's cookie with the page's _xsrf, any token of
theirs that may access that server, such as the server's own token, which the JupyterLab
extension's server side uses); anyone else gets JupyterHub's 404/403. The server must be running.
Which course: the one named in the body (it must be one of the caller's), else the only course of
the caller, else the only one whose profile the server runs; otherwise 409 with the choices.

A share ends when the student stops it (DELETE) or the server stops (`end_shares`, the spawner's
`post_stop_hook`: JupyterHub itself keeps shares across a stop, and the next start would be shared
again). Ending a share also removes the OAuth tokens its trainers hold for that server, so the next
request they make to it is refused (the JupyterLab side also drops its cache and closes their
connections, `aifactory.extensions.workbench.live_help`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from jupyterhub import orm
from jupyterhub.apihandlers import APIHandler
from jupyterhub.scopes import needs_scope
from jupyterhub.utils import url_escape_path, url_path_join
from tornado import web

from aifactory.site import load_site_cached
from aifactory.site.schema import Course, Site

HELP_PATHS = (r"/api/aifactory/users/([^/]+)/server/help", r"/api/aifactory/users/([^/]+)/servers/([^/]+)/help")


# -- pure decisions -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str  # not_a_student | not_your_course | choose_course | no_trainer | not_running | bad_request
    message: str
    choices: tuple[str, ...] = field(default=())


def parse_body(body: Any) -> str | None:
    """The course the student asks for: None for an empty body or {}, the id of exactly {"course": "<id>"}.
    Anything else (other keys, such as a list of people to share with) is refused: the hub decides whom."""
    if body is None or body == {}:
        return None
    if isinstance(body, dict) and set(body) == {"course"} and isinstance(body["course"], str) and body["course"]:
        return body["course"]
    raise ValueError('The body must be empty, {} or exactly {"course": "<course id>"}; the hub decides who '
                     "is asked: the course's trainers.")


def student_courses(site: Site, student: str) -> list[Course]:
    """The courses `student` is a student of, in the site file's order."""
    return [course for course in site.courses if student in course.students]


def choose_course(site: Site, student: str, profile: str | None, asked: str | None) -> Course | Refusal:
    """Whose trainers help: the course asked for (one of the student's), the student's only course, or
    the only one of theirs whose profile this server runs."""
    courses = student_courses(site, student)
    if not courses:
        return Refusal(403, "not_a_student", "Live help is for the students of a course; you are a student "
                                             "of none on this site.")
    if asked is not None:
        chosen = next((course for course in courses if course.id == asked), None)
        if chosen is None:
            return Refusal(403, "not_your_course", f"You are not a student of a course {asked!r}; your courses: "
                                                   f"{', '.join(c.id for c in courses)}.",
                           tuple(c.id for c in courses))
        return chosen
    if len(courses) == 1:
        return courses[0]
    by_profile = [course for course in courses if course.profile == profile]
    if len(by_profile) == 1:
        return by_profile[0]
    return Refusal(409, "choose_course", "You are a student of several courses; choose whose trainers to ask: "
                                         f"{', '.join(c.id for c in courses)}.", tuple(c.id for c in courses))


def helpers_of(course: Course, student: str) -> list[str]:
    """The people a student of `course` shares with: its trainers (never the student themselves)."""
    return sorted(trainer for trainer in course.trainers if trainer != student)


def course_model(course: Course, student: str) -> dict:
    return {"id": course.id, "title": course.title, "trainers": helpers_of(course, student),
            "trainers_access_servers": course.trainers_access_servers}


# -- JupyterHub's shares of one server ------------------------------------------------------------
def shares_of(db: Any, orm_spawner: orm.Spawner) -> list[orm.Share]:
    return db.query(orm.Share).filter_by(spawner_id=orm_spawner.id).all()


def revoke(db: Any, orm_spawner: orm.Spawner, keep: frozenset[str] = frozenset()) -> list[str]:
    """End the shares of this server (but those with the people in `keep`) and its share codes, and log
    those people out of it (their OAuth tokens for the server's client); returns whom it ended for. A
    student has no other way to share than live help, so a server's shares are live help's."""
    shares = [share for share in shares_of(db, orm_spawner) if share.user is None or share.user.name not in keep]
    users = [share.user for share in shares if share.user is not None]
    for share in shares:
        db.delete(share)
    db.query(orm.ShareCode).filter_by(spawner_id=orm_spawner.id).delete()
    client_id = orm_spawner.oauth_client_id
    if client_id and users:
        db.query(orm.APIToken).filter(orm.APIToken.client_id == client_id,
                                      orm.APIToken.user_id.in_([u.id for u in users])).delete()
    db.commit()
    return sorted(u.name for u in users)


def end_shares(spawner: Any) -> None:
    """`Spawner.post_stop_hook`: a stopped server is shared with nobody (JupyterHub keeps shares across a
    stop, so the next start of the same server would be open to the trainers again)."""
    ended = revoke(spawner.user.db, spawner.orm_spawner)
    _SHARED_FOR.pop(spawner.orm_spawner.id, None)
    if ended:
        spawner.log.info("Live help on %s ended with the server (was shared with %s)", spawner._log_name,
                         ", ".join(ended))


def shared_with(user: Any) -> list[dict]:
    """The running servers shared directly with `user` (live help's shares), for the hub's home page:
    [{"owner", "server", "url"}], the server's own address (its owner's origin with `subdomain_host`)."""
    if user is None:
        return []
    from jupyterhub.user import User  # JupyterHub's wrapper gives an owner's address as JupyterHub makes it

    rows = []
    for share in user.orm_user.shared_with_me:
        if share.spawner is None or share.spawner.server is None:
            continue
        owner = User(share.owner, user.settings)
        rows.append({"owner": owner.name, "server": share.spawner.name,
                     "url": url_path_join(owner.url, url_escape_path(share.spawner.name), "/")})
    return sorted(rows, key=lambda row: (row["owner"], row["server"]))


# -- the endpoint ---------------------------------------------------------------------------------
class HelpHandler(APIHandler):
    """GET the state, POST share with the course's trainers, DELETE stop sharing."""

    def _answer(self, status: int, body: dict) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def _refuse(self, refusal: Refusal) -> None:
        self._answer(refusal.status, {"message": refusal.message, "reason": refusal.reason,
                                      "choices": list(refusal.choices)})

    def _owners_server(self, user_name: str, server_name: str) -> Any:
        """The caller's own server (its Spawner); 403 for anyone but its owner, 404 if there is none."""
        caller = self.current_user
        if getattr(caller, "kind", None) != "user" or caller.name != user_name:
            raise web.HTTPError(403, "Only the server's owner may share it for live help.")
        user = self.find_user(user_name)
        if user is None or server_name not in user.orm_spawners:
            raise web.HTTPError(404)
        return user.spawners[server_name]

    def _state(self, spawner: Any) -> dict:
        user = spawner.user
        site = _site(spawner)
        shares = shares_of(self.db, spawner.orm_spawner)
        shared = sorted(s.user.name for s in shares if s.user is not None)
        courses = student_courses(site, user.name)
        course_id = _SHARED_FOR.get(spawner.orm_spawner.id) if shared else None
        default = choose_course(site, user.name, (spawner.user_options or {}).get("profile"), None)
        return {
            "sharing": bool(shared),
            "shared_with": shared,
            "course": course_id,
            "since": _iso(min((s.created_at for s in shares), default=None)),
            "courses": [course_model(c, user.name) for c in courses],
            "default_course": default.id if isinstance(default, Course) else None,
            "url": url_path_join(user.url, url_escape_path(spawner.name), "/"),
            "running": bool(spawner.ready),
        }

    @needs_scope("access:servers")
    async def get(self, user_name: str, server_name: str = "") -> None:
        self._answer(200, self._state(self._owners_server(user_name, server_name)))

    @needs_scope("access:servers")
    async def post(self, user_name: str, server_name: str = "") -> None:
        spawner = self._owners_server(user_name, server_name)
        try:
            asked = parse_body(json.loads(self.request.body or b"null"))
        except ValueError as error:
            return self._refuse(Refusal(400, "bad_request", str(error)))
        if not spawner.ready:
            return self._refuse(Refusal(409, "not_running", "Only a running server can be shared; start it "
                                                            "first."))
        course = choose_course(_site(spawner), user_name, (spawner.user_options or {}).get("profile"), asked)
        if isinstance(course, Refusal):
            return self._refuse(course)
        trainers = helpers_of(course, user_name)
        if not trainers:
            return self._refuse(Refusal(409, "no_trainer", f"{course.title} has no trainer to ask."))
        # one course at a time: switching courses ends the other's trainers' share (the same people keep theirs)
        revoke(self.db, spawner.orm_spawner, keep=frozenset(trainers))
        for name in trainers:
            orm.Share.grant(self.db, spawner.orm_spawner, self.user_from_username(name).orm_user)
        if not spawner.ready:  # stopped meanwhile, after its stop hook ran: nothing may stay shared
            revoke(self.db, spawner.orm_spawner)
            return self._refuse(Refusal(409, "not_running", "The server stopped; start it again to share it."))
        _SHARED_FOR[spawner.orm_spawner.id] = course.id
        self.log.info("Live help: %s shared %s with the trainers of %s (%s)", user_name, spawner._log_name,
                      course.id, ", ".join(trainers))
        self._answer(200, self._state(spawner))

    @needs_scope("access:servers")
    async def delete(self, user_name: str, server_name: str = "") -> None:
        spawner = self._owners_server(user_name, server_name)
        ended = revoke(self.db, spawner.orm_spawner)
        _SHARED_FOR.pop(spawner.orm_spawner.id, None)
        if ended:
            self.log.info("Live help: %s stopped sharing %s (with %s)", user_name, spawner._log_name,
                          ", ".join(ended))
        # whom it was shared with: the server closes their open connections (extensions/workbench/live_help.py)
        self._answer(200, {**self._state(spawner), "ended_for": ended})


# Which course a server was last shared for (shares do not record it); shown by GET, lost with a hub
# restart, when GET says `course: null` and still lists whom it is shared with.
_SHARED_FOR: dict[int, str] = {}


def _iso(when: datetime | None) -> str | None:
    return when.replace(tzinfo=timezone.utc).isoformat() if when else None


def _site(spawner: Any) -> Site:
    site_of = getattr(spawner, "_site", None)
    return site_of() if callable(site_of) else load_site_cached()


handlers = [(path, HelpHandler) for path in HELP_PATHS]
