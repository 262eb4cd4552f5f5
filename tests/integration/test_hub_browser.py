"""What a student does in a real browser (Debian's headless Chromium) against the running hub.

Log in, pick the course profile on the spawn page, watch the progress page,
land in JupyterLab running as a Slurm job, run a cell; a wrong password and a
refused option are shown where the user looks.
"""

from __future__ import annotations

import time

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC

from .browser import chromium, login, wait
from .test_spawner_slurm import Hub, cleanup, jobs_of, wait_no_job

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

USER = "student1"


@pytest.fixture
def api(hub, operator_token) -> Hub:
    return Hub(hub, operator_token)


def cards(driver) -> dict[str, object]:
    return {c.find_element(By.CSS_SELECTOR, "input[name=profile]").get_attribute("value"): c
            for c in driver.find_elements(By.CSS_SELECTOR, ".aif-card")}


def start(driver) -> None:
    """Press the spawn form's Start button (scrolled into view, as a user would)."""
    button = driver.find_element(By.CSS_SELECTOR, "#spawn_form button[type=submit]")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})", button)
    button.click()


def test_a_wrong_password_shows_the_login_error(hub, passwords):
    with chromium() as driver:
        login(driver, hub, USER, passwords[USER] + "x")
        wait(driver).until(EC.text_to_be_present_in_element((By.TAG_NAME, "body"), "Invalid username or password"))
        assert "/hub/login" in driver.current_url
        assert not driver.get_cookie("jupyterhub-session-id") or "/hub/home" not in driver.current_url


def test_a_refused_option_is_shown_next_to_its_field_and_nothing_is_queued(hub, passwords, api):
    name = "br-refused"
    with chromium() as driver:
        try:
            login(driver, hub, USER, passwords[USER])
            wait(driver).until(EC.url_contains("/hub/"))
            driver.get(f"{hub}/hub/spawn/{USER}/{name}")
            wait(driver).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".aif-card")))
            cards(driver)["course"].click()
            driver.find_element(By.ID, "input-memory").send_keys("64G")
            start(driver)
            error = wait(driver).until(EC.visibility_of_element_located((By.ID, "error-memory")))
            assert "64G is out of range; allowed 1G to 2G" in error.text
            # The form comes back as the student left it.
            assert cards(driver)["course"].find_element(By.TAG_NAME, "input").is_selected()
            assert driver.find_element(By.ID, "input-memory").get_attribute("value") == "64G"
            assert jobs_of(USER, name) == []
        finally:
            cleanup(api, USER, name)


def progress_until_lab(driver, lab_path: str, timeout: float) -> list[str]:
    """The progress page's event log lines, read until the browser lands in JupyterLab."""
    events: list[str] = []
    deadline = time.monotonic() + timeout
    while lab_path not in driver.current_url:
        assert time.monotonic() < deadline, f"not in JupyterLab after {timeout}s; events: {events}"
        try:
            lines = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#progress-log .progress-log-event")]
            events = lines if len(lines) >= len(events) else events
        except StaleElementReferenceException:
            pass  # the page moved on
        time.sleep(0.2)
    return events


def run_cell(driver, code: str, timeout: float = 120) -> str:
    """Open a notebook from JupyterLab's launcher, run `code` in its first cell, return the output text."""
    wait(driver, timeout).until(EC.element_to_be_clickable(
        (By.CSS_SELECTOR, ".jp-LauncherCard[data-category='Notebook']"))).click()
    editor = wait(driver, timeout).until(EC.element_to_be_clickable(
        (By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell .cm-content")))
    editor.click()
    editor.send_keys(code)
    ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
    output = wait(driver, timeout).until(EC.visibility_of_element_located(
        (By.CSS_SELECTOR, ".jp-NotebookPanel .jp-OutputArea-output")))
    return output.text


def test_a_student_starts_a_course_server_and_runs_a_cell_in_a_slurm_job(hub, passwords, api):
    name = "br-course"
    with chromium(1400, 1000) as driver:
        try:
            login(driver, hub, USER, passwords[USER])
            wait(driver).until(EC.url_contains("/hub/"))
            driver.get(f"{hub}/hub/spawn/{USER}/{name}")
            wait(driver).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".aif-card")))
            offered = cards(driver)
            assert set(offered) == {"cpu", "course"}  # no GPU profile for a student
            assert "CPUs idle" in offered["course"].text
            offered["course"].click()
            start(driver)

            # The progress page tells the story of the Slurm job, then JupyterLab opens.
            wait(driver).until(EC.url_contains(f"/hub/spawn-pending/{USER}/{name}"))
            events = progress_until_lab(driver, f"/user/{USER}/{name}/lab", timeout=240)
            assert any("Submitting course on interactive" in line for line in events), events
            ((job_id, state),) = jobs_of(USER, name)
            assert state == "RUNNING"
            output = run_cell(driver, 'import os, getpass; print(getpass.getuser(), os.environ["SLURM_JOB_ID"])')
            assert output.strip() == f"{USER} {job_id}"
            # Compute nodes are offline: JupyterLab does not offer to fetch news.
            assert "Jupyter news" not in driver.find_element(By.TAG_NAME, "body").text
        finally:
            cleanup(api, USER, name)
    wait_no_job(USER, name)
