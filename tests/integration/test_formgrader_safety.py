"""The course's formgrader (the hub's service, run as grader-intro-dl) is as safe as `aifactory grade`.

student1 hands in a notebook whose Markdown and outputs carry scripts; student2 one whose
code leaves a marker file. Both are graded by `aifactory grade`. Then trainer1, through the hub:

* opens student1's submission in Chromium: nothing of the student's runs, the text shows,
  and grading by hand still works; a student's HTML file next to it is served sandboxed;
* generates feedback with the formgrader's button (its REST endpoint): no hidden test in it;
* presses autograde: the formgrader answers with `aifactory grade`, and runs nothing;
* cannot make it load another folder's nbgrader_config.py (``/formgrader?path=``).

The assignment is removed from the course afterwards (gradebook, course folders, exchange).
"""

from __future__ import annotations

import pwd
import re
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import nbformat
import pytest
import requests
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC

from tests.integration.test_exchange_permissions import COURSE, COURSE_DIR, EXCHANGE, aifactory, answer, release_tiny
from tests.integration.test_exchange_permissions import remove_assignment

from .browser import chromium, login, wait
from .grading import grade

pytestmark = [pytest.mark.slurm, pytest.mark.hub, pytest.mark.slow]

FORMGRADER = f"/services/formgrader-{COURSE}/formgrader"
MARKER = Path("/tmp") / f"aifactory-formgrader-ran-{uuid.uuid4().hex[:8]}"

XSS_CODE = '''def square(x):
    return x * x
from IPython.display import HTML, Javascript, display
display(HTML('<p>STUDENT-OUTPUT</p><img src=x onerror="document.title=\\'pwned\\'; window.pwned=1">'
             '<script>window.pwned=2; alert(2)</script>'))
display(Javascript('window.pwned=3; alert(3)'))'''
XSS_MARKDOWN = ('STUDENT-ANSWER <img src=x onerror="document.title=\'pwned\'; window.pwned=4">'
                '<script>window.pwned=5; alert(5)</script> <a href="javascript:window.pwned=6">link</a>')
EVIL_FILE = "<p>STUDENT-FILE</p><script>document.title='pwned'; window.pwned=7</script>"
# Leaves a marker named after whoever runs it: the sandbox of `aifactory grade` may, the grader may not.
MARKER_CODE = f'''def square(x):
    return x * x
import os
open("{MARKER}." + str(os.getuid()), "w").close()'''


def listed_assignments() -> set[str]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{COURSE_DIR}/gradebook.db", COURSE) as gb:
        return {a.name for a in gb.assignments}


@pytest.fixture(scope="module")
def graded(cluster, hub):
    """A fresh assignment, handed in by student1 (scripts) and student2 (marker), graded by trainer1."""
    from aifactory.hub.formgrader import wait_until_served

    wait_until_served(hub, COURSE)
    root, name = release_tiny(COURSE, "fgsafe")
    try:
        subs = root / "handed-in"
        subs.mkdir()
        folder = answer(subs, "student1", name, XSS_CODE) / name
        nb = nbformat.read(folder / f"{name}.ipynb", 4)
        nb.cells[2].source = XSS_MARKDOWN
        nbformat.write(nb, folder / f"{name}.ipynb")
        answer(subs, "student2", name, MARKER_CODE)
        subprocess.run(["chmod", "-R", "a+rX", str(subs)], check=True)
        for student in ("student1", "student2"):
            aifactory(student, "exchange", "submit", COURSE, name, "--dir", str(subs / student))
        grade(name)
        yield name
    finally:
        remove_assignment(COURSE, name)
        shutil.rmtree(root, ignore_errors=True)
        for left in MARKER.parent.glob(MARKER.name + ".*"):
            left.unlink()
        # Other engineers' tests add and remove assignments meanwhile: ours only is checked.
        assert name not in listed_assignments()
        assert not [p for base in (COURSE_DIR, EXCHANGE) for p in base.rglob(f"{name}*")]


@pytest.fixture(scope="module")
def trainer_api(hub, operator_token):
    """requests to the formgrader as trainer1, with a token that may do nothing else."""
    admin = {"Authorization": f"token {operator_token}"}
    reply = requests.post(f"{hub}/hub/api/users/trainer1/tokens", headers=admin, timeout=30, json={
        "scopes": [f"access:services!service=formgrader-{COURSE}"], "expires_in": 1800,
        "note": "test_formgrader_safety"})
    reply.raise_for_status()
    token = reply.json()
    session = requests.Session()
    session.headers["Authorization"] = f"token {token['token']}"
    yield session
    requests.delete(f"{hub}/hub/api/users/trainer1/tokens/{token['id']}", headers=admin, timeout=30)


def submission_id(name: str, student: str) -> str:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{COURSE_DIR}/gradebook.db", COURSE) as gb:
        return gb.find_submission_notebook(name, name, student).id


def manual_score(name: str, student: str) -> float | None:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{COURSE_DIR}/gradebook.db", COURSE) as gb:
        return gb.find_grade("explain", name, name, student).manual_score


def pwned(driver) -> list:
    """What a student's script would have left: a title, a variable, an open alert."""
    try:
        alert = driver.switch_to.alert.text
    except NoAlertPresentException:
        alert = None
    return [x for x in (alert, driver.execute_script("return window.pwned === undefined ? null : window.pwned"),
                        "pwned" if driver.title == "pwned" else None) if x is not None]


@pytest.mark.browser
def test_a_trainer_sees_a_submission_and_none_of_its_scripts_run(hub, passwords, graded, trainer_api):
    name = graded
    sid = submission_id(name, "student1")
    with chromium() as driver:
        login(driver, hub, "trainer1", passwords["trainer1"])
        wait(driver).until(EC.url_contains("/hub/"))
        driver.get(f"{hub}{FORMGRADER}/submissions/{sid}/")
        score = wait(driver, 90).until(EC.element_to_be_clickable((By.ID, "explain")))
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "STUDENT-OUTPUT" in body and "STUDENT-ANSWER" in body   # the trainer sees the work
        driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")   # every image tried
        assert pwned(driver) == []
        # The page's own scripts still work: a manual grade is saved.
        score.clear()
        score.send_keys("1")
        score.send_keys(Keys.TAB)
        wait(driver, 30).until(lambda d: manual_score(name, "student1") == 1)
        assert pwned(driver) == []

        # The formgrader serves the files next to an autograded notebook (nbgrader's own autograde
        # copies a submission's extra files there; `aifactory grade` keeps only the notebook): a
        # student's HTML file there is shown sandboxed, its script does not run.
        evil = COURSE_DIR / "autograded" / "student1" / name / "evil.html"
        evil.write_text(EVIL_FILE)
        evil.chmod(0o644)
        driver.get(f"{hub}{FORMGRADER}/submissions/{sid}/evil.html")
        wait(driver, 30).until(EC.text_to_be_present_in_element((By.TAG_NAME, "body"), "STUDENT-FILE"))
        assert pwned(driver) == []

    # Both layers, each on its own: the sanitised page holds no student script ...
    page = trainer_api.get(f"{hub}{FORMGRADER}/submissions/{sid}/", timeout=120)
    assert page.status_code == 200, page.text[:500]
    assert "<p>STUDENT-OUTPUT</p>" in page.text                   # the output is rendered ...
    assert not re.search(r"<[^>]*\sonerror=", page.text)          # ... but no element has a handler
    assert "<script>window.pwned" not in page.text
    # ... and the browser would run none: only the template's own inline scripts, by hash.
    script_src = page.headers["Content-Security-Policy"].split(";")[0]
    assert script_src.startswith("script-src 'self' 'sha256-") and "'unsafe-inline'" not in script_src
    served = trainer_api.get(f"{hub}{FORMGRADER}/submissions/{sid}/evil.html", timeout=60)
    assert served.headers["Content-Security-Policy"].startswith("sandbox;")


def test_feedback_from_the_formgrader_hides_the_hidden_tests(hub, graded, trainer_api):
    name = graded
    feedback = COURSE_DIR / "feedback"
    for student in ("student1", "student2"):   # whatever `aifactory grade` may have written
        shutil.rmtree(feedback / student / name, ignore_errors=True)
    reply = trainer_api.post(f"{hub}{FORMGRADER}/api/assignment/{name}/generate_feedback", timeout=300)
    assert reply.status_code == 200 and reply.json()["success"], reply.text[-2000:]
    for student in ("student1", "student2"):
        html = (feedback / student / name / f"{name}.html").read_text()
        assert (feedback / student / name / f"{name}.html").stat().st_uid == pwd.getpwnam(f"grader-{COURSE}").pw_uid
        assert "hidden tests are not shown" in html
        assert "HIDDEN-MARKER" not in html


def test_the_formgraders_autograde_runs_nothing_and_points_to_aifactory_grade(hub, graded, trainer_api):
    name = graded
    grader_marker = Path(f"{MARKER}.{pwd.getpwnam(f'grader-{COURSE}').pw_uid}")
    autograded = COURSE_DIR / "autograded" / "student2" / name / f"{name}.ipynb"
    before = autograded.read_bytes()
    reply = trainer_api.post(f"{hub}{FORMGRADER}/api/submission/{name}/student2/autograde", timeout=300)
    assert reply.status_code == 200
    result = reply.json()
    assert result["success"] is False
    for shown in ("log", "error"):                    # the formgrader's dialog shows both
        assert f"aifactory grade {COURSE} {name}" in result[shown]
    assert not grader_marker.exists()                 # the student's code did not run as the grader
    assert autograded.read_bytes() == before          # what `aifactory grade` wrote is kept


def test_the_formgrader_loads_no_config_from_another_folder(hub, trainer_api):
    """nbgrader's /formgrader?path=DIR would run DIR/nbgrader_config.py as the grader account."""
    folder = Path(tempfile.mkdtemp(prefix="aifactory-fgpath-"))
    ran = folder / "ran"
    try:
        folder.chmod(0o777)
        (folder / "nbgrader_config.py").write_text(f"open({str(ran)!r}, 'w').close()\n")
        (folder / "nbgrader_config.py").chmod(0o644)
        reply = trainer_api.get(f"{hub}{FORMGRADER}?path={folder}", timeout=60)
        assert reply.status_code == 400, reply.status_code
        assert not ran.exists()
    finally:
        trainer_api.get(f"{hub}{FORMGRADER}", timeout=60)    # nbgrader's way back to the course's config
        shutil.rmtree(folder, ignore_errors=True)


def test_the_formgrader_runs_no_kernel_and_no_terminal(hub, trainer_api):
    """Its "open live notebook" link must not become a way to run a student's code as the grader."""
    server = FORMGRADER.rsplit("/formgrader", 1)[0]
    assert trainer_api.get(f"{hub}{server}/api/kernelspecs", timeout=60).json()["kernelspecs"] == {}
    started = trainer_api.post(f"{hub}{server}/api/kernels", json={"name": "python3"}, timeout=60)
    assert started.status_code >= 400, started.text
    assert trainer_api.post(f"{hub}{server}/api/terminals", timeout=60).status_code == 404
