"""nbgrader's Assignments panel on our exchange: what JupyterLab asks student1's real
server (a Slurm job) for, through nbgrader's own endpoints and our Exchange plugin.

student1 takes intro-dl, not dask-scaling; student2 takes both. Each sees the
courses they are enrolled in and no other; fetch and submit go through the plugin
into the per-course exchange, as the student.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import requests

from tests.integration.test_exchange_permissions import (  # noqa: F401  (fixture)
    EXCHANGE,
    as_user,
    release_tiny,
    remove_assignment,
    released,
)
from tests.integration.test_spawner_slurm import Hub, cleanup, wait_no_job

from tests.conftest import BIN

pytestmark = [pytest.mark.slurm, pytest.mark.hub, pytest.mark.slow]
OTHER = "dask-scaling"
SERVER = "nbx"


@pytest.fixture(scope="module")
def other_release(cluster):
    """A fresh assignment released in dask-scaling, which student1 does not take."""
    root, name = release_tiny(OTHER, "d")
    yield name
    shutil.rmtree(root, ignore_errors=True)
    remove_assignment(OTHER, name)


@pytest.fixture
def student1_server(hub, operator_token, server_url):
    api = Hub(hub, operator_token)
    assert api.spawn("student1", SERVER, {"profile": "course"}).status_code in (201, 202)
    try:
        api.wait_ready("student1", SERVER, timeout=180)
        yield lambda method, path, **kw: requests.request(
            method, f"{server_url('student1', SERVER)}{path.lstrip('/')}", headers=api.headers, timeout=120, **kw).json()
    finally:
        cleanup(api, "student1", SERVER)
        wait_no_job("student1", SERVER)


def by_id(listing: dict) -> dict[str, dict]:
    assert listing["success"], listing
    return {a["assignment_id"]: a for a in listing["value"]}


def test_the_assignments_panel_shows_only_my_courses_and_fetches_and_submits(released, other_release,
                                                                             student1_server):
    _, name = released
    server = student1_server
    # The course menu of the panel: intro-dl only, though dask-scaling has a release too.
    courses = server("GET", "/courses")
    assert courses["success"] and "intro-dl" in courses["value"] and OTHER not in courses["value"]
    assert server("GET", "/assignments", params={"course_id": OTHER}) == {"success": True, "value": []}
    assert by_id(server("GET", "/assignments", params={"course_id": "intro-dl"}))[name]["status"] == "released"

    # Fetch through the plugin: into ~/intro-dl/<assignment>, as student1.
    listing = by_id(server("POST", "/assignments/fetch", data={"course_id": "intro-dl", "assignment_id": name}))
    assert listing[name]["status"] == "fetched"
    fetched = Path(f"/home/student1/intro-dl/{name}/{name}.ipynb")
    assert fetched.is_file() and fetched.stat().st_uid == int(as_user("student1", "id", "-u").stdout)
    # A course the student does not take cannot be fetched from.
    refused = server("POST", "/assignments/fetch", data={"course_id": OTHER, "assignment_id": other_release})
    assert not Path(f"/home/student1/{OTHER}/{other_release}").exists(), refused

    # Submit through the plugin: into the student's own inbound folder, listed back with its time.
    before = time.time()
    listing = server("POST", "/assignments/submit", data={"course_id": "intro-dl", "assignment_id": name})
    submitted = [a for a in listing["value"] if a["assignment_id"] == name and a["status"] == "submitted"]
    assert len(submitted) == 1 and len(submitted[0]["submissions"]) == 1
    (inbound,) = (EXCHANGE / "inbound" / "student1").glob(f"{name}+*")
    assert (inbound / f"{name}.ipynb").is_file() and inbound.stat().st_uid == fetched.stat().st_uid
    assert inbound.stat().st_ctime >= before - 1
    assert submitted[0]["submissions"][0]["timestamp"] == (inbound / "timestamp.txt").read_text().strip()


def nbgrader_list(user: str) -> str:
    """`nbgrader list` as the user, from their home: what the plugin finds for them."""
    proc = as_user(user, "bash", "-c", f"cd ~ && {BIN}/nbgrader list")
    return proc.stdout + proc.stderr


def test_the_command_line_lists_per_student_too(released, other_release):
    _, name = released
    both = nbgrader_list("student2")
    assert f"intro-dl {name}" in both and f"{OTHER} {other_release}" in both, both
    one = nbgrader_list("student1")
    assert f"intro-dl {name}" in one and other_release not in one, one
    assert name not in nbgrader_list("student3")


FORMGRADER_API = """import json, os, sys
from nbgrader.apps import NbGrader, NbGraderAPI
os.chdir("/srv/aifactory/courses/intro-dl")
app = NbGrader()
app.load_config_file()                       # what the formgrader loads: the shared nbgrader_config.py
app.config.CourseDirectory.root = os.getcwd()
app.config.CourseDirectory.course_id = "intro-dl"
api = NbGraderAPI(config=app.config)
print(json.dumps({"release": api.release_assignment(sys.argv[1]), "collect": api.collect(sys.argv[1])}))
"""


def test_the_formgraders_release_and_collect_buttons_use_the_course_exchange(released):
    """What the formgrader runs for its Release and Collect buttons, as the course's grader account."""
    import json

    root, name = released
    script = root / "formgrader_api.py"
    script.write_text(FORMGRADER_API)
    script.chmod(0o644)
    out = as_user("grader-intro-dl", str(BIN / "python"), str(script), name).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["release"]["success"], result["release"]
    assert result["collect"]["success"], result["collect"]
    assert (EXCHANGE / "outbound" / name / f"{name}.ipynb").is_file()
    assert "/usr/local/share/nbgrader" not in json.dumps(result)   # never nbgrader's world-writable default
