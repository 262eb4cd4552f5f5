"""What a student does in a real browser (Debian's headless Chromium) against the running hub.

Log in, pick the course profile on the spawn page, watch the progress page,
land in JupyterLab running as a Slurm job, run a cell; a wrong password and a
refused option are shown where the user looks.
"""

from __future__ import annotations

import re
import subprocess
import time

import pytest
import requests
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC

from aifactory.slurm.sinfo import SINFO_ARGV, parse_sinfo

from .browser import chromium, login, wait
from .test_spawner_slurm import cleanup, jobs_of, wait_no_job

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

USER = "student1"


def cards(driver) -> dict[str, object]:
    return {c.find_element(By.CSS_SELECTOR, "input[name=profile]").get_attribute("value"): c
            for c in driver.find_elements(By.CSS_SELECTOR, ".aif-card")}


def open_spawn_page(driver, hub: str, password: str, server: str) -> None:
    """Log in as the student and open the spawn page of one of their named servers."""
    login(driver, hub, USER, password)
    wait(driver).until(EC.url_contains("/hub/"))
    driver.get(f"{hub}/hub/spawn/{USER}/{server}")
    wait(driver).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".aif-card")))


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
            open_spawn_page(driver, hub, passwords[USER], name)
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


def test_a_refused_form_never_reaches_another_students_page(hub, passwords, api):
    """student2 opens a spawn page while student1's refused options are remembered: nothing of them shows."""
    name, other = "br-leak", "student2"
    with chromium() as driver:
        try:
            login(driver, hub, other, passwords[other])  # ready before the refusal: its page comes within seconds
            wait(driver).until(EC.url_contains("/hub/"))
            refused = api.spawn(USER, name, {"profile": "course", "memory": "77G"})
            assert refused.status_code == 400 and "77G" in refused.text
            for page in (f"{hub}/hub/spawn/{other}", f"{hub}/hub/spawn/{other}/{name}"):
                driver.get(page)
                wait(driver).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".aif-card")))
                assert "77G" not in driver.page_source and not driver.find_elements(By.ID, "error-memory")
            # The control: student1's own form of that server (straight from the login) brings the value back.
            driver.delete_all_cookies()
            login(driver, hub, USER, passwords[USER], next_path=f"/hub/spawn/{USER}/{name}")
            wait(driver).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".aif-card")))
            assert driver.find_element(By.ID, "input-memory").get_attribute("value") == "77G"
        finally:
            cleanup(api, USER, name)
            cleanup(api, other, name)


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


def run_cell(driver, code: str, timeout: float = 180) -> str:
    """Open a notebook from JupyterLab's launcher, run `code` in its first cell, return the output text.
    A course server opens on its assignment list: the Launcher's tab is brought forward, as a student would."""
    def notebook_card(d):
        cards = [c for c in d.find_elements(By.CSS_SELECTOR, ".jp-LauncherCard[data-category='Notebook']")
                 if c.is_displayed()]
        if cards:
            return cards[0]
        tabs = d.find_elements(By.XPATH, "//li[contains(@class, 'lm-TabBar-tab')]"
                                         "[.//*[contains(@class, 'lm-TabBar-tabLabel')][text()='Launcher']]")
        for tab in tabs:
            tab.click()
        if not tabs:  # the main area's '+': a new Launcher
            for add in d.find_elements(By.CSS_SELECTOR, ".jp-MainAreaWidget ~ * .lm-TabBar-addButton, "
                                                        "#jp-main-dock-panel .lm-TabBar-addButton"):
                if add.is_displayed():
                    add.click()
                    break
        return False

    wait(driver, timeout).until(notebook_card).click()
    deadline = time.monotonic() + timeout
    # Wait for the kernel; on a loaded node JupyterLab may ask which one to start: the default, as a student would.
    while "Python 3" not in "".join(e.text for e in driver.find_elements(
            By.CSS_SELECTOR, ".jp-NotebookPanel-toolbar .jp-Toolbar-kernelName")):
        assert time.monotonic() < deadline, "the notebook got no kernel"
        for accept in driver.find_elements(By.CSS_SELECTOR, ".jp-Dialog .jp-mod-accept"):
            accept.click()
        time.sleep(0.5)
    editor = wait(driver, timeout).until(EC.element_to_be_clickable(
        (By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell .cm-content")))
    editor.click()
    # Keys typed in command mode are commands ('m' makes the cell Markdown, which then "runs" with no
    # output): type only once the notebook is in edit mode, and run only the code as typed.
    wait(driver, 60).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".jp-Notebook.jp-mod-editMode")))
    editor.send_keys(code)
    wait(driver, 30).until(lambda _: editor.text == code, f"the cell does not hold {code!r}: {editor.text!r}")
    ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
    output = wait(driver, timeout).until(EC.visibility_of_element_located(
        (By.CSS_SELECTOR, ".jp-NotebookPanel .jp-OutputArea-output")))
    return output.text


def notebooks(contents_url: str, headers: dict) -> set[str]:
    """Names of the notebooks in the top folder of a server's contents API."""
    listing = requests.get(contents_url, headers=headers, timeout=30)
    listing.raise_for_status()
    return {item["name"] for item in listing.json()["content"] if item["type"] == "notebook"}


def test_a_student_starts_a_course_server_and_runs_a_cell_in_a_slurm_job(hub, passwords, api, server_url):
    name = "br-course"
    with chromium(1400, 1000) as driver:
        try:
            open_spawn_page(driver, hub, passwords[USER], name)
            offered = cards(driver)
            assert set(offered) == {"cpu", "course", "course-pytorch"}  # no GPU profile for a student
            assert re.search(r"\d+ of 2 nodes idle · \d+ of 8 CPUs free", offered["course"].text), offered["course"].text
            offered["course"].click()
            start(driver)

            # The progress page tells the story of the Slurm job, then JupyterLab opens.
            wait(driver).until(EC.url_contains(f"/hub/spawn-pending/{USER}/{name}"))
            events = progress_until_lab(driver, f"/user/{USER}/{name}/lab", timeout=240)
            assert any("Submitting course on interactive" in line for line in events), events
            ((job_id, state),) = jobs_of(USER, name)
            assert state == "RUNNING"
            driver.get(f"{server_url(USER, name)}lab?reset")  # a fresh workspace, whatever earlier runs left open
            contents = f"{server_url(USER, name)}api/contents"
            before = notebooks(contents, api.headers)
            output = run_cell(driver, 'import os, getpass; print(getpass.getuser(), os.environ["SLURM_JOB_ID"])')
            assert output.strip() == f"{USER} {job_id}"
            # The student's home keeps no trace of the test: the notebook the launcher made is removed.
            for notebook in notebooks(contents, api.headers) - before:
                removed = requests.delete(f"{contents}/{notebook}", headers=api.headers, timeout=30)
                assert removed.status_code == 204, (notebook, removed.status_code, removed.text[:200])
            # Compute nodes are offline: JupyterLab does not offer to fetch news.
            assert "Jupyter news" not in driver.find_element(By.TAG_NAME, "body").text
        finally:
            cleanup(api, USER, name)
    wait_no_job(USER, name)


def fill_the_node() -> list[str]:
    """Jobs of student3 that take every MiB of the interactive nodes, so the next course server waits
    for resources."""
    jobs = [subprocess.run(
        ["sudo", "-u", "student3", "sbatch", "--parsable", "-J", "br-blocker", "-p", partition,
         "-A", "project_465000002", f"--mem={memory}", "-c", "1", "-t", "5", "--chdir=/tmp",
         "--output=/dev/null", "--wrap", "sleep 240"], capture_output=True, text=True, check=True).stdout.strip()
        for partition, memory in (("interactive", "3G"), ("interactive", "3G"))]
    deadline = time.monotonic() + 180
    while parse_sinfo(subprocess.run(SINFO_ARGV, capture_output=True, text=True).stdout)["interactive"].free_memory_mib:
        if time.monotonic() > deadline:
            subprocess.run(["scancel", *jobs])
            pytest.fail("the blocking jobs did not start")
        time.sleep(1)
    time.sleep(6)  # the spawn page's view of the partitions is a few seconds old
    return jobs


def test_a_queued_server_shows_why_and_its_stop_button_cancels_that_job(hub, passwords, api):
    name = "br-wait"
    blockers = fill_the_node()
    with chromium() as driver:
        try:
            open_spawn_page(driver, hub, passwords[USER], name)
            assert "will queue" in cards(driver)["course"].text
            cards(driver)["course"].click()
            start(driver)
            message = wait(driver, 60).until(EC.visibility_of_element_located((By.ID, "progress-message")))
            wait(driver, 90).until(lambda d: "waiting for resources" in message.text)
            assert re.search(r"number \d+ of \d+ waiting in partition interactive", message.text), message.text
            assert [state for _, state in jobs_of(USER, name)] == ["PENDING"]
            driver.find_element(By.ID, "stop-server-btn").click()
            # Only a successful cancel leads home; a failure stays with its message.
            status = wait(driver, 30).until(EC.visibility_of_element_located((By.ID, "stop-server-status")))
            wait(driver, 60).until(lambda d: "Cancelled" in status.text or "Could not" in status.text)
            assert "Cancelled: the job is gone from the queue" in status.text, status.text
            wait(driver, 30).until(EC.url_contains("/hub/home"))
            wait_no_job(USER, name, timeout=30)
        finally:
            cleanup(api, USER, name)
            subprocess.run(["scancel", *blockers])
