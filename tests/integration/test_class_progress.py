"""The class progress page of a course's formgrader (``/services/formgrader-<id>/progress``) on the
running hub, in Debian's headless Chromium, and who may not see it.

A fresh assignment of intro-dl (removed afterwards, as the grading tests do): student1 fetches and
submits a right answer, student2 fetches; trainer1 grades. The page shows 2 fetched, 1 submitted,
1 graded and a bar at 60-70 % (2 of 3 points: the written answer awaits its manual grade). Then,
with the page left open, student2 submits a wrong answer and trainer1 grades again: the page
shows 2 submitted, 2 graded and a bar at 0-10 % without being reloaded.

Attacks, as the second real Unix user and with the hub's own tokens: a student of the course and a
trainer of another course get 403 on the page and its JSON; a student cannot leave a fetch or a
hand-in in a classmate's name (the kernel refuses; a forged $USER changes nothing).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import nbformat
import pytest
import requests
from selenium.webdriver.common.by import By

from tests.conftest import BIN
from tests.integration.grading import grade
from tests.integration.test_exchange_permissions import (
    COURSE,
    EXCHANGE,
    aifactory,
    answer,
    as_user,
    release_tiny,
    remove_assignment,
)

from .browser import axe_violations, chromium, login, screenshot, wait

pytestmark = [pytest.mark.slurm, pytest.mark.hub, pytest.mark.browser, pytest.mark.slow]

PAGE = f"/services/formgrader-{COURSE}/progress"
DATA = f"{PAGE}.json"
OTHER_COURSE = "dask-scaling"     # trainer1 teaches both: researcher1 becomes its trainer for a while
INSTALLED_SITE = Path("/etc/aifactory/site.yaml")
RIGHT = "def square(x):\n    return x * x"
WRONG = "def square(x):\n    return x + x"


@pytest.fixture(scope="module")
def token(hub, operator_token):
    """token(user, scopes=None): a token for `user` issued by the operator, with the user's own permissions
    or fewer; all revoked after the module."""
    admin = {"Authorization": f"token {operator_token}"}
    issued = []

    def issue(user: str, scopes: list[str] | None = None) -> str:
        body = {"note": "test_class_progress", "expires_in": 1800, **({"scopes": scopes} if scopes else {})}
        reply = requests.post(f"{hub}/hub/api/users/{user}/tokens", json=body, headers=admin, timeout=30)
        reply.raise_for_status()
        issued.append((user, reply.json()["id"]))
        return reply.json()["token"]

    yield issue
    for user, ident in issued:
        requests.delete(f"{hub}/hub/api/users/{user}/tokens/{ident}", headers=admin, timeout=30)


def get(hub: str, secret: str, path: str) -> requests.Response:
    return requests.get(f"{hub}{path}", headers={"Authorization": f"token {secret}"}, allow_redirects=False,
                        timeout=60)


def until(read, done, timeout: float = 30):
    """read() again until done(value) (the page's data is cached a few seconds); the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(1)


def row(data: dict, name: str) -> dict:
    (found,) = [a for a in data["assignments"] if a["name"] == name]
    return found


@pytest.fixture(scope="module")
def assignment(cluster, hub):
    from aifactory.hub.formgrader import wait_until_served

    wait_until_served(hub, COURSE)
    root, name = release_tiny(COURSE, "progress")
    yield root, name
    remove_assignment(COURSE, name)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def trainer(hub, token):
    """trainer1's token that opens intro-dl's formgrader and nothing else."""
    secret = token("trainer1", [f"access:services!service=formgrader-{COURSE}"])
    if get(hub, secret, DATA).status_code == 404:
        pytest.fail(f"{COURSE}'s formgrader has no class progress page: it runs the code from before "
                    "hub/class_progress.py; restart the hub (aifactory hub down && aifactory hub up)")
    return secret


def submit(root: Path, student: str, name: str, code: str, written: str = "") -> None:
    """`code` as the answer, and `written` as the written answer (left as released when empty: nbgrader
    then scores it 0 itself, with nothing left to grade by hand)."""
    folder = root / f"handed-in-{student}"
    folder.mkdir()
    work = answer(folder, student, name, code) / name / f"{name}.ipynb"
    if written:
        nb = nbformat.read(work, 4)
        nb.cells[2].source = written
        nbformat.write(nb, work)
    subprocess.run(["chmod", "-R", "a+rX", str(folder)], check=True)
    aifactory(student, "exchange", "submit", COURSE, name, "--dir", str(folder / student))


def counts(driver, name: str) -> dict[str, str]:
    """The page's row of `name`: column -> the number it shows."""
    cells = driver.find_elements(By.CSS_SELECTOR, f'tr[data-assignment="{name}"] td[data-count]')
    return {c.get_attribute("class").split()[-1]: c.get_attribute("data-count") for c in cells}


def bars(driver, name: str) -> dict[int, int]:
    """The histogram of `name`: bin's low edge -> students, as drawn."""
    rects = driver.find_elements(By.CSS_SELECTOR, f'figure[data-assignment="{name}"] rect.bar')
    return {int(r.get_attribute("data-low")): int(r.get_attribute("data-count")) for r in rects}


def test_a_trainer_watches_the_class_fetch_submit_and_get_graded(hub, passwords, assignment, trainer):
    root, name = assignment
    started = time.monotonic()
    for student in ("student1", "student2"):
        aifactory(student, "exchange", "fetch", COURSE, name, "--dir", f"/home/{student}/{name}-work")
    submit(root, "student1", name, RIGHT, written="x times x: the area of a square of side x.")
    grade(name)
    first = until(lambda: row(get(hub, trainer, DATA).json(), name), lambda r: r["graded"] == 1)
    assert (first["fetched"], first["submitted"], first["graded"], first["needs_manual_grade"]) == (2, 1, 1, 1)
    assert [b["count"] for b in first["bins"]] == [0, 0, 0, 0, 0, 0, 1, 0, 0, 0]   # 2 of 3 points
    print(f"fetch, submit and grade: {time.monotonic() - started:.1f}s")

    with chromium(width=1280, height=1000) as driver:
        login(driver, hub, "trainer1", passwords["trainer1"], next_path=PAGE)
        wait(driver, 90).until(lambda d: counts(d, name).get("graded") == "1")
        assert counts(driver, name) == {"fetched": "2", "submitted": "1", "graded": "1", "needs_manual_grade": "1"}
        assert bars(driver, name) == {low: int(low == 60) for low in range(0, 100, 10)}
        row_text = driver.find_element(By.CSS_SELECTOR, f'tr[data-assignment="{name}"]').text
        assert "2 of 2" in row_text and "1 of 2" in row_text and "67 %" in row_text
        chart = driver.find_element(By.CSS_SELECTOR, f'figure[data-assignment="{name}"] svg')
        assert chart.get_attribute("role") == "img"
        assert "1 graded student: 1 student at 60–70 %" in chart.find_element(By.TAG_NAME, "desc").get_attribute(
            "textContent")
        # The same numbers as a table, for those who do not see the chart.
        driver.find_element(By.CSS_SELECTOR, f'figure[data-assignment="{name}"] summary').click()
        assert "60–70 %" in driver.find_element(By.CSS_SELECTOR, f'figure[data-assignment="{name}"] table').text
        assert axe_violations(driver) == []
        screenshot(driver, "course-progress-intro-dl")

        # A second hand-in and grading while the page stays open: it follows without a reload.
        driver.execute_script("window.notReloaded = true;")
        submit(root, "student2", name, WRONG)
        seen = time.monotonic()
        wait(driver, 60).until(lambda d: counts(d, name).get("submitted") == "2")
        print(f"second submission on the open page after {time.monotonic() - seen:.1f}s")
        grade(name)
        seen = time.monotonic()
        wait(driver, 60).until(lambda d: counts(d, name).get("graded") == "2")
        print(f"second grade on the open page after {time.monotonic() - seen:.1f}s")
        assert driver.execute_script("return window.notReloaded === true")
        assert bars(driver, name) == {low: int(low in (0, 60)) for low in range(0, 100, 10)}
        assert "33 %" in driver.find_element(By.CSS_SELECTOR, f'tr[data-assignment="{name}"]').text
        assert axe_violations(driver) == []
        screenshot(driver, "course-progress-intro-dl-updated")


def test_a_student_of_the_course_is_refused_page_and_data(hub, token, passwords):
    secret = token("student1")
    for path in (PAGE, DATA):
        assert get(hub, secret, path).status_code == 403, path
    with chromium() as driver:
        login(driver, hub, "student1", passwords["student1"])
        wait(driver).until(lambda d: "/hub/" in d.current_url)
        driver.get(f"{hub}{PAGE}")
        wait(driver, 30).until(lambda d: "403" in d.find_element(By.TAG_NAME, "body").text)
        assert not driver.find_elements(By.ID, "progress")


@pytest.fixture
def other_trainer(tmp_path):
    """researcher1 as a trainer of dask-scaling (not of intro-dl) for one test: the installed site with
    that change, through `aifactory course add` (the hub serves the course: no restart); put back after."""
    from aifactory.courses.exchange.layout import course_of
    from aifactory.site import load_site

    original = tmp_path / "site-before.yaml"
    original.write_text(INSTALLED_SITE.read_text())
    # The file's own text with one list changed (a YAML round trip would turn walltimes like 4:00:00 into numbers).
    block = re.compile(rf"(- id: {OTHER_COURSE}\n(?:[ ]{{4}}.*\n)*?[ ]{{4}}trainers: \[)([^\]]*)\]")
    text, found = block.subn(lambda m: f"{m[1]}{m[2]}, researcher1]", original.read_text(), count=1)
    assert found == 1, "the site file lists the course's trainers in another form"
    changed = tmp_path / "site.yaml"
    changed.write_text(text)
    assert course_of(load_site(changed), OTHER_COURSE).trainers[-1] == "researcher1"
    assert "researcher1" not in course_of(load_site(original), COURSE).trainers
    for path in (original, changed):
        path.chmod(0o644)
    add = [str(BIN / "aifactory"), "course", "add", OTHER_COURSE, "--site"]
    try:
        out = subprocess.run([*add, str(changed)], capture_output=True, text=True, timeout=600)
        assert out.returncode == 0 and "restarting" not in out.stdout, out.stdout + out.stderr
        yield "researcher1"
    finally:
        back = subprocess.run([*add, str(original)], capture_output=True, text=True, timeout=600)
        assert back.returncode == 0, back.stdout + back.stderr
        assert INSTALLED_SITE.read_text() == original.read_text()


def test_a_trainer_of_another_course_is_refused(hub, token, other_trainer):
    secret = token(other_trainer)
    # Their own course's progress they see (the trainer's role works) ...
    own = get(hub, secret, f"/services/formgrader-{OTHER_COURSE}/progress.json")
    assert own.status_code == 200 and own.json()["course"] == OTHER_COURSE, own.status_code
    # ... intro-dl's neither as a page nor as data.
    for path in (PAGE, DATA):
        assert get(hub, secret, path).status_code == 403, path


def test_a_student_cannot_fetch_or_hand_in_in_a_classmates_name(hub, assignment, trainer):
    root, name = assignment
    victim = EXCHANGE / "inbound" / "student1"
    # Straight into the classmate's folder: the kernel refuses.
    for argv in (["touch", str(victim / f".fetched+{name}-forged")],
                 ["mkdir", str(victim / f"{name}-forged+20260101T000000.000000Z")],
                 ["ln", "-s", "/etc/hostname", str(victim / f".fetched+{name}-link")]):
        proc = as_user("student2", *argv, check=False)
        assert proc.returncode != 0 and "Permission denied" in proc.stderr, (argv, proc.stderr)
    # Through the exchange with a forged name in the environment: the record is their own.
    proc = as_user("student2", "env", "USER=student1", "LOGNAME=student1", "HOME=/home/student2",
                   str(BIN / "aifactory"), "exchange", "fetch", COURSE, name, "--dir", f"/home/student2/{name}-again")
    assert proc.returncode == 0, proc.stderr
    assert not as_user("trainer1", "ls", "-a", str(victim), check=True).stdout.count(f"{name}-")
    owner = as_user("trainer1", "stat", "-c", "%U", str(EXCHANGE / "inbound" / "student2" / f".fetched+{name}")).stdout
    assert owner.strip() == "student2"
    # Nothing of it reached the page: no row for the forged names, student2's fetch counted as theirs.
    data = until(lambda: get(hub, trainer, DATA).json(), lambda d: row(d, name)["fetched"] >= 1)
    names = {a["name"] for a in data["assignments"]}
    assert name in names and not [n for n in names if "forged" in n or "link" in n]
