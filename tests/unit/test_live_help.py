"""Live help (hub/live_help.py): the pure choice of course and trainers, and the endpoint in an in-process
JupyterHub (`MockHub`, its real database, handlers and scopes) served on a loopback port, with tokens as a
student's server, another student and a trainer hold them. No Slurm: a server counts as running when
JupyterHub has its address, as for any spawner."""

from __future__ import annotations

import json
import os

import pytest
from jupyterhub import orm
from jupyterhub.tests.mocking import MockHub
from jupyterhub.tests.utils import add_user
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from traitlets.config import Config

from aifactory.hub import live_help
from aifactory.hub.live_help import Refusal, choose_course, end_shares, helpers_of, parse_body, shared_with
from aifactory.site.load import parse_site

SITE = """
cluster: {name: tiny, title: Tiny centre}
partitions:
  - {name: cpu, nodes: 1, cpus_per_node: 4, memory_per_node: 8G, max_walltime: "1-00:00:00", default: true}
projects:
  - {name: proj_a, title: Project A, members: [t1, t2, s1, s2, s3], cpu_hours: 100}
environments:
  - {name: base, kind: python, path: /opt/aifactory/venv}
profiles:
  - {name: small, title: Small, partition: cpu, environment: base, cpus: {min: 1, max: 2, default: 1},
     memory: {min: 1G, max: 2G, default: 1G}, walltime: {max: "8:00:00", default: "1:00:00"}}
  - {name: other, title: Other, partition: cpu, environment: base, cpus: {min: 1, max: 2, default: 1},
     memory: {min: 1G, max: 2G, default: 1G}, walltime: {max: "8:00:00", default: "1:00:00"}}
courses:
  - {id: ml, title: ML, trainers: [t1], students: [s1, s2], profile: small, project: proj_a}
  - {id: hpc, title: HPC, trainers: [t2, s2], students: [s2, s3], profile: other, project: proj_a}
groups:
  - {name: people}
users:
  - {name: t1, groups: [people]}
  - {name: t2, groups: [people]}
  - {name: s1, groups: [people]}
  - {name: s2, groups: [people]}
  - {name: s3, groups: [people]}
auth: {kind: pam}
local: {cpus: 4, memory: 8G}
"""


# -- pure ------------------------------------------------------------------------------------------
def test_the_body_names_a_course_at_most_never_people():
    assert parse_body(None) is None and parse_body({}) is None
    assert parse_body({"course": "ml"}) == "ml"
    for forged in ({"user": "s3"}, {"course": "ml", "users": ["s3"]}, {"scopes": ["shares"]}, ["t1"], "ml",
                   {"course": ""}, {"course": ["ml"]}):
        with pytest.raises(ValueError, match="the hub decides"):
            parse_body(forged)


def test_the_course_is_the_students_own_and_asked_for_when_several_could_be():
    site = parse_site(SITE)
    assert choose_course(site, "s1", "small", None).id == "ml"
    assert choose_course(site, "s1", "other", None).id == "ml"  # their only course, whatever the profile
    assert choose_course(site, "s2", "other", None).id == "hpc"  # two courses: the server's profile tells
    both = choose_course(site, "s2", "gpu", None)
    assert both == Refusal(409, "choose_course", both.message, ("ml", "hpc")) and "ml, hpc" in both.message
    assert choose_course(site, "s2", "gpu", "ml").id == "ml"
    assert choose_course(site, "s1", "small", "hpc").reason == "not_your_course"
    assert choose_course(site, "t1", "small", None).reason == "not_a_student"  # a trainer is no student
    assert choose_course(site, "nobody", None, None).status == 403


def test_a_student_who_is_also_a_trainer_never_shares_with_themselves():
    site = parse_site(SITE)
    hpc = next(c for c in site.courses if c.id == "hpc")
    assert helpers_of(hpc, "s2") == ["t2"] and helpers_of(hpc, "s3") == ["s2", "t2"]


# -- the endpoint in an in-process hub -------------------------------------------------------------
@pytest.fixture
async def hub(tmp_path, monkeypatch):
    """MockHub with the live-help handlers and stop hook, on a loopback port; yields (app, base URL)."""
    site = tmp_path / "site.yaml"
    site.write_text(SITE)
    monkeypatch.setenv("AIFACTORY_SITE", str(site))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(live_help, "_SHARED_FOR", {})
    config = Config()
    config.JupyterHub.allow_named_servers = True
    config.JupyterHub.cleanup_servers = False
    config.JupyterHub.cleanup_proxy = False
    config.JupyterHub.cookie_secret = os.urandom(32)
    config.JupyterHub.extra_handlers = live_help.handlers
    config.Spawner.post_stop_hook = end_shares
    app = MockHub(config=config)
    await app.initialize([])
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(app.tornado_application)
    server.add_sockets(sockets)
    yield app, f"http://127.0.0.1:{sockets[0].getsockname()[1]}{app.hub.base_url}api/aifactory/users"
    server.stop()
    app.db.close()
    MockHub.clear_instance()


def running_server(app, owner: str, name: str = "help", profile: str = "small"):
    """`owner`'s server `name`, running as far as JupyterHub knows (it has an address), with its own token."""
    user = add_user(app.db, app, name=owner)
    if name not in user.orm_spawners:
        app.db.add(orm.Spawner(user=user.orm_user, name=name))
        app.db.commit()
    spawner = user.spawners[name]
    spawner.user_options = {"profile": profile}
    spawner.orm_spawner.server = orm.Server(ip="127.0.0.1", port=1)
    app.db.commit()
    # the scopes JupyterHub's `server` role gives a server's own token, filters resolved
    spawner.api_token = user.new_api_token(scopes=[f"access:servers!server={owner}/{name}",
                                                   f"users:activity!user={owner}"])
    # its OAuth client, through which JupyterHub lets people into the server (as User.spawn makes it)
    spawner.orm_spawner.oauth_client = app.oauth_provider.add_client(
        spawner.oauth_client_id, spawner.api_token, f"http://127.0.0.1:1/user/{owner}/{name}/oauth_callback",
        allowed_scopes=[f"access:servers!server={owner}/{name}"])
    app.db.commit()
    return spawner


def token_of(app, name: str) -> str:
    return add_user(app.db, app, name=name).new_api_token()


async def call(url: str, token: str, method: str = "GET", body=None) -> tuple[int, dict]:
    try:
        response = await AsyncHTTPClient().fetch(
            url, method=method, headers={"Authorization": f"token {token}"},
            body=None if method in ("GET", "DELETE") else json.dumps(body if body is not None else {}),
            allow_nonstandard_methods=True)
    except HTTPClientError as error:
        response = error.response
    text = response.body.decode() if response.body else ""
    try:
        return response.code, json.loads(text) if text else {}
    except ValueError:
        return response.code, {"text": text}


def scopes_of(app, name: str) -> set[str]:
    from jupyterhub.scopes import get_scopes_for
    app.db.expire_all()
    return set(get_scopes_for(orm.User.find(app.db, name)))


async def test_a_student_shares_with_their_courses_trainers_only_and_revokes(hub):
    app, api = hub
    spawner = running_server(app, "s1")
    for name in ("t1", "t2", "s2", "s3"):
        add_user(app.db, app, name=name)
    url = f"{api}/s1/servers/help/help"
    access = "access:servers!server=s1/help"
    assert access not in scopes_of(app, "t1")

    status, state = await call(url, spawner.api_token, "POST", {})  # as the lab's server side does
    assert status == 200, state
    assert state["sharing"] and state["shared_with"] == ["t1"] and state["course"] == "ml"
    assert state["url"].endswith("/user/s1/help/")
    assert access in scopes_of(app, "t1")
    for other in ("t2", "s2", "s3"):  # the other course's trainer, a classmate, another course's student
        assert access not in scopes_of(app, other), other
    t1 = app.users["t1"]
    assert shared_with(t1) == [{"owner": "s1", "server": "help", "url": f"{app.base_url}user/s1/help/"}]
    assert (await call(url, spawner.api_token))[1]["shared_with"] == ["t1"]

    status, state = await call(url, spawner.api_token, "DELETE")
    assert status == 200 and state["sharing"] is False and state["shared_with"] == [] and state["ended_for"] == ["t1"]
    assert access not in scopes_of(app, "t1") and shared_with(t1) == []


async def test_revoking_logs_the_trainer_out_of_the_server(hub):
    app, api = hub
    spawner = running_server(app, "s1")
    await call(f"{api}/s1/servers/help/help", spawner.api_token, "POST", {})
    t1 = add_user(app.db, app, name="t1")
    # what JupyterHub's OAuth gave t1 when they opened the shared server
    oauth = t1.new_api_token(client_id=spawner.oauth_client_id, scopes=["access:servers!server=s1/help"])
    assert orm.APIToken.find(app.db, oauth) is not None
    await call(f"{api}/s1/servers/help/help", spawner.api_token, "POST", {})  # shared again: t1 stays in
    app.db.expire_all()
    assert orm.APIToken.find(app.db, oauth) is not None
    await call(f"{api}/s1/servers/help/help", spawner.api_token, "DELETE")
    app.db.expire_all()
    assert orm.APIToken.find(app.db, oauth) is None
    assert orm.APIToken.find(app.db, spawner.api_token) is not None  # the server's own token stays


async def test_nobody_but_the_owner_shares_or_unshares_and_nobody_chooses_whom(hub):
    app, api = hub
    spawner = running_server(app, "s1")
    url = f"{api}/s1/servers/help/help"
    s3, s2 = token_of(app, "s3"), token_of(app, "s2")
    for token in (s3, s2):  # students of another course, and of the same course
        for method in ("GET", "POST", "DELETE"):
            status, _ = await call(url, token, method, {})
            assert status in (403, 404), (method, status)
    assert live_help.shares_of(app.db, spawner.orm_spawner) == []
    # the owner forging whom to share with, or a course not theirs
    for body, reason in (({"user": "s3"}, "bad_request"), ({"course": "ml", "users": ["s3"]}, "bad_request"),
                         ({"course": "hpc"}, "not_your_course")):
        status, answer = await call(url, spawner.api_token, "POST", body)
        assert status in (400, 403) and answer["reason"] == reason, (body, status, answer)
    assert live_help.shares_of(app.db, spawner.orm_spawner) == []
    # JupyterHub's own sharing API: a student lacks the `shares` scope, so cannot share with anyone
    status, _ = await call(f"{api.rsplit('/aifactory/', 1)[0]}/shares/s1/help", token_of(app, "s1"), "POST",
                           {"user": "s3"})
    assert status == 403
    # a trainer who was shared with cannot change the sharing either
    await call(url, spawner.api_token, "POST", {})
    status, _ = await call(url, token_of(app, "t1"), "DELETE")
    assert status == 403 and [s.user.name for s in live_help.shares_of(app.db, spawner.orm_spawner)] == ["t1"]


async def test_a_student_of_two_courses_chooses_and_a_stopped_server_is_not_shared(hub):
    app, api = hub
    spawner = running_server(app, "s2", profile="gpu-like")
    url = f"{api}/s2/servers/help/help"
    status, answer = await call(url, spawner.api_token, "POST", {})
    assert status == 409 and answer["reason"] == "choose_course" and answer["choices"] == ["ml", "hpc"]
    status, state = await call(url, spawner.api_token, "POST", {"course": "hpc"})
    assert status == 200 and state["shared_with"] == ["t2"] and state["course"] == "hpc"
    status, state = await call(url, spawner.api_token, "POST", {"course": "ml"})  # switching courses
    assert state["shared_with"] == ["t1"] and state["course"] == "ml"
    stopped = running_server(app, "s3", name="idle")
    stopped.orm_spawner.server = None
    app.db.commit()
    status, answer = await call(f"{api}/s3/servers/idle/help", stopped.api_token, "POST", {})
    assert status == 409 and answer["reason"] == "not_running"


async def test_a_share_ends_when_the_server_stops(hub):
    app, api = hub
    spawner = running_server(app, "s1")
    await call(f"{api}/s1/servers/help/help", spawner.api_token, "POST", {})
    assert "access:servers!server=s1/help" in scopes_of(app, "t1")
    await spawner.user.stop("help")  # JupyterHub's stop path, which runs the post_stop_hook
    app.db.expire_all()
    assert live_help.shares_of(app.db, spawner.orm_spawner) == []
    assert "access:servers!server=s1/help" not in scopes_of(app, "t1")


def test_the_home_page_lists_the_servers_shared_with_the_trainer_and_nothing_otherwise():
    from jinja2 import Environment, FileSystemLoader

    from aifactory.hub.config import TEMPLATES

    template = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True).get_template("live_help.html")
    assert template.render(live_help_servers=[]).strip() == "" and template.render().strip() == ""
    page = template.render(live_help_servers=[
        {"owner": "s1", "server": "help", "url": "http://s1.localhost:8000/user/s1/help/"}])
    assert 'href="http://s1.localhost:8000/user/s1/help/"' in page and "Open s1's server help" in page
    assert 'aria-labelledby="aif-live-help-title"' in page
