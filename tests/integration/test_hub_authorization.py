"""Who may do what on the running hub: every role of the demo site against the REST API.

Each person acts through a token the operator issues for them (POST
/hub/api/users/<name>/tokens), so the token carries exactly that person's roles.
Demo site: trainer1 teaches intro-dl (student1, student2; trainers may open
servers) and dask-scaling (student2, student3; they may not). Each course's
formgrader is a hub service its trainers (and admins) may open, nobody else.
"""

from __future__ import annotations

import pytest
import requests

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

DENIED = {403, 404}
PEOPLE = ["student1", "trainer1", "researcher1", "admin1"]
# A start that passes authorization is refused by the spawner's option check, so no job is submitted.
BAD_OPTIONS = {"profile": "no-such-profile"}


@pytest.fixture(scope="module")
def tokens(hub, operator_token):
    from aifactory.hub.service import metrics_token_file

    operator = {"Authorization": f"token {operator_token}"}
    issued = {"operator": operator_token, "metrics": metrics_token_file().read_text().strip()}
    for name in PEOPLE:
        response = requests.post(f"{hub}/hub/api/users/{name}/tokens", headers=operator,
                                 json={"note": "authorization matrix test", "expires_in": 600}, timeout=10)
        assert response.status_code == 201, response.text
        issued[name] = response.json()["token"]
    return issued


def call(hub: str, token: str, method: str, path: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"token {token}", "Accept": "application/json"}
    if path.startswith("/hub/user/"):
        headers["Accept"] = "text/html"  # a browser opening the server
    return requests.request(method, f"{hub}{path}", headers=headers, allow_redirects=False, timeout=60, **kwargs)


# (what, method, path, who may); everyone else is denied. Six callers per row.
MATRIX = [
    ("list users", "GET", "/hub/api/users", {"trainer1", "admin1", "operator"}),
    ("read a student of one's course", "GET", "/hub/api/users/student3", {"trainer1", "admin1", "operator"}),
    ("read a researcher", "GET", "/hub/api/users/researcher1", {"researcher1", "admin1", "operator"}),
    ("start another's server", "POST", "/hub/api/users/student3/server", {"admin1", "operator"}),
    ("stop another's server", "DELETE", "/hub/api/users/student3/server", {"admin1", "operator"}),
    ("open a server of a course that allows it", "GET", "/hub/user/student1/", {"student1", "trainer1", "admin1", "operator"}),
    ("open a server of a course that does not", "GET", "/hub/user/student3/", {"admin1", "operator"}),
    ("read a course group", "GET", "/hub/api/groups/course-intro-dl-students", {"trainer1", "admin1", "operator"}),
    ("list groups", "GET", "/hub/api/groups", {"admin1", "operator"}),
    ("change a group", "POST", "/hub/api/groups/course-intro-dl-students/users", {"admin1", "operator"}),
    ("scrape metrics", "GET", "/hub/metrics", {"admin1", "operator", "metrics"}),
    ("grade in one's course's formgrader", "GET", "/services/formgrader-intro-dl/formgrader/manage_assignments",
     {"trainer1", "admin1"}),
]
CALLERS = [*PEOPLE, "operator", "metrics"]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(("what", "method", "path", "allowed"), MATRIX, ids=[row[0] for row in MATRIX])
def test_authorization_matrix(hub, tokens, caller, what, method, path, allowed):
    body = {}
    if path.endswith("/server") and method == "POST":
        body = {"json": BAD_OPTIONS}
    elif path.endswith("/users"):
        body = {"json": {"users": []}}  # adding nobody: the permission is what is checked
    try:
        response = call(hub, tokens[caller], method, path, **body)
    finally:
        if method == "POST" and path.endswith("/server"):
            call(hub, tokens["operator"], "DELETE", path)
    if caller in allowed:
        assert response.status_code not in DENIED, f"{caller} may {what}: {response.status_code} {response.text[:200]}"
        if method == "POST" and path.endswith("/server"):
            assert response.status_code == 400 and "profile" in response.text
    else:
        assert response.status_code in DENIED, f"{caller} may not {what}: {response.status_code}"


@pytest.mark.parametrize("person", PEOPLE)
def test_everyone_starts_and_stops_their_own_server(hub, tokens, person):
    path = f"/hub/api/users/{person}/server"
    try:
        started = call(hub, tokens[person], "POST", path, json=BAD_OPTIONS)
    finally:
        stopped = call(hub, tokens[person], "DELETE", path)
    # Past authorization, the spawner refuses the options: the user sees why.
    assert started.status_code == 400 and "profile" in started.text, started.text
    assert stopped.status_code not in DENIED


def test_a_trainer_lists_only_the_students_of_their_courses(hub, tokens):
    names = {u["name"] for u in call(hub, tokens["trainer1"], "GET", "/hub/api/users").json()}
    assert names == {"student1", "student2", "student3"}


def test_admins_list_everyone(hub, tokens):
    names = {u["name"] for u in call(hub, tokens["admin1"], "GET", "/hub/api/users").json()}
    assert {"student1", "trainer1", "researcher1", "admin1"} <= names
