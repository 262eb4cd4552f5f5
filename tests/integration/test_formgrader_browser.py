"""The course's formgrader, a hub service, in a real browser (Debian's headless Chromium).

trainer1 logs in, opens intro-dl's formgrader from the hub, sees the autograded
submissions of a fresh assignment and gives the manually graded answer its points;
the gradebook holds the manual score. A student of the course is refused.
"""

from __future__ import annotations

import subprocess

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC

from tests.integration.test_exchange_permissions import (  # noqa: F401  (fixture)
    COURSE,
    COURSE_DIR,
    aifactory,
    answer,
    released,
)

from .browser import chromium, login, wait

pytestmark = [pytest.mark.slurm, pytest.mark.hub, pytest.mark.browser, pytest.mark.slow]

FORMGRADER = f"/services/formgrader-{COURSE}/formgrader"


def manual_score(assignment: str, student: str) -> float | None:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{COURSE_DIR}/gradebook.db", COURSE) as gb:
        return gb.find_grade("explain", assignment, assignment, student).manual_score


@pytest.fixture(scope="module")
def graded(released):
    """student1 and student2 submitted and were autograded by trainer1."""
    root, name = released
    subs = root / "formgrader"
    subs.mkdir()
    for student in ("student1", "student2"):
        answer(subs, student, name, "def square(x):\n    return x * x")
    subprocess.run(["chmod", "-R", "a+rX", str(subs)], check=True)
    for student in ("student1", "student2"):
        aifactory(student, "exchange", "submit", COURSE, name, "--dir", str(subs / student))
    aifactory("trainer1", "grade", COURSE, name)
    return name


def test_a_trainer_grades_an_answer_by_hand_in_the_formgrader(hub, passwords, graded):
    name = graded
    assert manual_score(name, "student1") is None
    with chromium() as driver:
        login(driver, hub, "trainer1", passwords["trainer1"])
        wait(driver).until(EC.url_contains("/hub/"))
        # The hub lists the course's formgrader among the trainer's services.
        # The hub's Services menu leads the trainer to the course's formgrader.
        driver.get(f"{hub}/hub/home")
        wait(driver).until(EC.element_to_be_clickable((By.LINK_TEXT, "Services"))).click()
        wait(driver).until(EC.element_to_be_clickable((By.LINK_TEXT, f"formgrader-{COURSE}"))).click()
        # Its own page, not an iframe: it renders under JupyterHub 6's frame-ancestors 'none'.
        wait(driver, 90).until(EC.text_to_be_present_in_element((By.TAG_NAME, "body"), "Manage Assignments"))
        assert FORMGRADER in driver.current_url
        assert not driver.find_elements(By.TAG_NAME, "iframe")

        driver.get(f"{hub}{FORMGRADER}/gradebook/{name}/{name}")
        links = wait(driver, 90).until(
            EC.presence_of_all_elements_located((By.PARTIAL_LINK_TEXT, "Submission #")))
        assert len(links) == 2
        assert "student1" in driver.page_source and "student2" in driver.page_source

        # Open one submission and give the written answer (1 point) its score.
        links[0].click()
        score = wait(driver, 60).until(EC.element_to_be_clickable((By.ID, "explain")))
        student = driver.execute_script(
            "return document.querySelector('.student-name, #student-name') ? "
            "document.querySelector('.student-name, #student-name').textContent : document.title")
        score.clear()
        score.send_keys("1")
        score.send_keys(Keys.TAB)   # leaving the field saves it
        wait(driver, 30).until(lambda d: any(manual_score(name, s) == 1 for s in ("student1", "student2")))
    scores = {s: manual_score(name, s) for s in ("student1", "student2")}
    assert sorted(scores.values(), key=str) == [1.0, None], (scores, student)


def test_a_student_cannot_open_the_formgrader(hub, passwords):
    with chromium() as driver:
        login(driver, hub, "student1", passwords["student1"])
        wait(driver).until(EC.url_contains("/hub/"))
        driver.get(f"{hub}{FORMGRADER}/")
        wait(driver, 30).until(EC.text_to_be_present_in_element((By.TAG_NAME, "body"), "403"))
        assert "Manage Assignments" not in driver.page_source
