"""Live help (issue #16, point 4): a stuck student shares their running server with their course's trainers
from JupyterLab; student and trainer edit and run the same notebook at once (jupyter-collaboration).

On the real cluster, through the hub, one course-profile server of student3, whose course here is
dask-scaling (its profile `course`; dask-scaling does not let its trainers open students' servers, so
whatever trainer1 can do there comes from the share alone):

- two Chromium browsers: student3 opens a notebook, shares the server from the "Live help" panel (reached
  with the status bar's button), the panel names trainer1 and the address; trainer1 finds it on the hub's
  home page, opens it (JupyterHub asks them to authorize), types into the cell: the student's notebook
  shows the edit; the cell trainer1 runs shows its output in both browsers;
- classmates and others (student2 of dask-scaling, student1 of intro-dl), each as their own Unix process
  with their own token, and student1 in a browser session with the address: refused by the server, by
  live help's endpoint on student3's server, and by JupyterHub's own sharing API; student3 forging whom
  to share with is refused, and has no `shares` scope for JupyterHub's API;
- student3 stops sharing in the panel: trainer1's open notebook no longer reaches the server (its edits
  stop arriving, its requests are refused);
- shared again, then the server stops: JupyterHub no longer lists the share.

Screenshots for courses/README.md: live-help-*.png.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC

from .browser import axe_violations, chromium, logged_in, login, screenshot, wait
from .test_spawner_slurm import Hub, cleanup, wait_no_job

pytestmark = [pytest.mark.slurm, pytest.mark.hub, pytest.mark.browser, pytest.mark.slow]

STUDENT, TRAINER = "student3", "trainer1"
CLASSMATE, OTHER_COURSE = "student2", "student1"  # dask-scaling like student3; intro-dl (not dask-scaling)
SERVER = "live-help"
PROFILE = {"profile": "course", "cpus": "1", "memory": "1G"}
NOTEBOOK = "live-help-test.ipynb"
CODE = "6 * 7 + 1000"  # its output, 1042, appears nowhere in the source
OUTPUT = "1042"


def token_of(api: Hub, user: str) -> str:
    made = api.api("POST", f"/users/{user}/tokens", json={"expires_in": 1800, "note": "live help test"})
    assert made.status_code == 201, made.text
    return made.json()["token"]


CALL_AS = r'''
import json, sys, urllib.request, urllib.error
out = []
for method, url, host, body in json.loads(sys.argv[1]):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": "token " + sys.argv[2], "Host": host, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            out.append((r.status, r.read().decode()[:2000]))
    except urllib.error.HTTPError as e:
        out.append((e.code, e.read().decode()[:2000]))
print(json.dumps(out))
'''


def call_as(user: str, token: str, calls: list[tuple[str, str, dict | None]]) -> list[tuple[int, str]]:
    """Each (method, URL, JSON body) from `user`'s own Unix process with their own token (no redirects
    followed); *.localhost goes to loopback with its host name, as a browser's request would."""
    targets = [[method, url.replace(urlsplit(url).hostname, "127.0.0.1", 1), urlsplit(url).netloc, body]
               for method, url, body in calls]
    done = subprocess.run(["runuser", "-u", user, "--", "python3", "-I", "-c", CALL_AS, json.dumps(targets), token],
                          capture_output=True, text=True, timeout=300, cwd="/")
    assert done.returncode == 0, done.stderr
    return [tuple(answer) for answer in json.loads(done.stdout)]


def shares_seen_by(api: Hub, user: str, token: str) -> list[str]:
    """The servers JupyterHub says are shared with `user`, asked with their own token."""
    answer = requests.get(f"{api.url}/hub/api/users/{user}/shared", timeout=60,
                          headers={"Authorization": f"token {token}"})
    assert answer.status_code == 200, answer.text
    return sorted(f"{s['server']['user']['name']}/{s['server']['name']}" for s in answer.json()["items"])


@pytest.fixture
def shared_server(hub, operator_token):
    """student3's running course server with a one-cell notebook in their home; stopped and removed after."""
    api = Hub(hub, operator_token)
    home = Path(f"~{STUDENT}").expanduser()
    notebook = {"cells": [{"cell_type": "code", "execution_count": None, "id": "first", "metadata": {},
                           "outputs": [], "source": "# stuck here"}],
                "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
                "nbformat": 4, "nbformat_minor": 5}
    cleanup(api, STUDENT, SERVER)
    subprocess.run(["runuser", "-u", STUDENT, "--", "python3", "-I", "-c",
                    "import sys; open(sys.argv[1], 'w').write(sys.argv[2])", str(home / NOTEBOOK),
                    json.dumps(notebook)], check=True)
    try:
        assert api.spawn(STUDENT, SERVER, PROFILE).status_code in (201, 202)
        api.wait_ready(STUDENT, SERVER, timeout=240)
        yield api
    finally:
        cleanup(api, STUDENT, SERVER)
        wait_no_job(STUDENT, SERVER)
        (home / NOTEBOOK).unlink(missing_ok=True)


NOTEBOOK_TAB = (f"//li[contains(@class, 'lm-TabBar-tab')]"
                f"[.//*[contains(@class, 'lm-TabBar-tabLabel')][text()='{NOTEBOOK}']]")
EDITOR = ".jp-NotebookPanel .jp-Cell .cm-content"


def open_notebook(driver, lab: str) -> None:
    """The notebook in JupyterLab, its tab in front (a course server may open the assignment list over it)."""
    driver.get(f"{lab}lab/tree/{NOTEBOOK}")
    authorize_if_asked(driver)
    wait(driver, 180).until(EC.presence_of_element_located((By.CSS_SELECTOR, EDITOR)))
    wait(driver, 60).until(lambda d: "stuck here" in cell_source(d) or CODE in cell_source(d))
    time.sleep(2)  # the layout settles (a course server's assignment list opens once per start)
    wait(driver, 30).until(EC.element_to_be_clickable((By.XPATH, NOTEBOOK_TAB))).click()
    wait(driver, 30).until(EC.visibility_of_element_located((By.CSS_SELECTOR, EDITOR)))


def authorize_if_asked(driver) -> None:
    """JupyterHub asks a person once before it lets them into someone else's server."""
    if "oauth2/authorize" in driver.current_url:
        wait(driver, 30).until(EC.element_to_be_clickable(
            (By.CSS_SELECTOR, "form input[type=submit], form button[type=submit]"))).click()


def cell_source(driver) -> str:
    """The notebook's first cell as the editor holds it (also while its tab is behind another)."""
    cells = driver.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell .cm-content")
    return (cells[0].get_attribute("textContent") or "").strip() if cells else ""


def cell_output(driver) -> str:
    outputs = driver.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell .jp-OutputArea")
    return outputs[0].get_attribute("textContent") or "" if outputs else ""


def replace_cell(driver, text: str) -> None:
    editor = driver.find_element(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell .cm-content")
    editor.click()
    ActionChains(driver).key_down(Keys.CONTROL).send_keys("a").key_up(Keys.CONTROL).send_keys(text).perform()


def fetch_status(driver, url: str) -> int:
    """The status of a GET from the page the browser is on, as JupyterLab's own requests go (its cookies, its
    origin, the _xsrf cookie's value in X-XSRFToken)."""
    driver.set_script_timeout(60)
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const xsrf = (document.cookie.match(/(?:^|; )_xsrf=([^;]*)/) || [, ''])[1];"
        "fetch(arguments[0], {credentials: 'include', redirect: 'manual', headers: {'X-XSRFToken': xsrf}})"
        ".then(r => done(r.type === 'opaqueredirect' ? 302 : r.status), e => done(-1));", url)


def open_live_help(driver):
    """The status bar's "Get live help" button (keyboard: focus it, press Enter) opens the panel."""
    button = wait(driver, 120).until(EC.element_to_be_clickable((By.CSS_SELECTOR, ".aif-help-button")))
    assert "share this server with your trainers" in button.get_attribute("aria-label")
    driver.execute_script("arguments[0].focus()", button)
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    return wait(driver, 30).until(EC.visibility_of_element_located((By.ID, "aifactory-live-help")))


def test_a_student_and_a_trainer_edit_and_run_one_notebook_and_only_the_courses_trainers_get_in(
        hub, passwords, server_url, shared_server):
    api = shared_server
    lab = server_url(STUDENT, SERVER)
    help_api = f"{hub}/hub/api/aifactory/users/{STUDENT}/servers/{SERVER}/help"
    tokens = {user: token_of(api, user) for user in (STUDENT, TRAINER, CLASSMATE, OTHER_COURSE)}
    # Before anything is shared, trainer1 cannot open the server (dask-scaling gives its trainers no access).
    assert call_as(TRAINER, tokens[TRAINER], [("GET", f"{lab}api/contents", None)])[0][0] == 403

    with chromium(1400, 900) as student, chromium(1400, 900) as trainer:
        login(student, hub, STUDENT, passwords[STUDENT])
        wait(student).until(EC.url_contains("/hub/"))
        open_notebook(student, lab)
        panel = open_live_help(student)
        panel.find_element(By.CSS_SELECTOR, ".aif-help-share").send_keys(Keys.ENTER)
        wait(student, 60).until(EC.visibility_of_element_located((By.CSS_SELECTOR, ".aif-help-stop")))
        assert f"Shared with {TRAINER}" in panel.find_element(By.CSS_SELECTOR, ".aif-help-who").text
        address = panel.find_element(By.ID, "aif-help-url").get_attribute("value")
        assert address == lab, address
        assert student.find_element(By.CSS_SELECTOR, ".aif-help-button").text == f"Shared with {TRAINER}"
        assert axe_violations(student, "#aifactory-live-help") == []
        screenshot(student, "live-help-student-shared")

        # The trainer finds it on the hub's home page and opens it.
        login(trainer, hub, TRAINER, passwords[TRAINER])
        wait(trainer).until(EC.url_contains("/hub/"))
        trainer.get(f"{hub}/hub/home")
        card = wait(trainer, 30).until(EC.visibility_of_element_located(
            (By.CSS_SELECTOR, f".aif-live-help-server[data-owner='{STUDENT}'][data-server='{SERVER}'] a")))
        assert card.get_attribute("href") == lab
        screenshot(trainer, "live-help-trainer-home")
        open_notebook(trainer, lab)

        # The trainer's edit appears in the student's notebook; the cell they run shows its output to both.
        replace_cell(trainer, CODE)
        wait(student, 60).until(lambda d: cell_source(d) == CODE)
        ActionChains(trainer).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
        wait(trainer, 180).until(lambda d: OUTPUT in cell_output(d))
        wait(student, 60).until(lambda d: OUTPUT in cell_output(d))
        screenshot(student, "live-help-student-sees-trainer")
        screenshot(trainer, "live-help-trainer-in-student-server")
        assert fetch_status(trainer, f"{lab}api/contents/{NOTEBOOK}") == 200

        # Nobody else: a classmate, a student of another course, with their own tokens as their own processes.
        shares_api = f"{hub}/hub/api/shares/{STUDENT}/{SERVER}"
        for other in (CLASSMATE, OTHER_COURSE):
            answers = call_as(other, tokens[other], [
                ("GET", f"{lab}api/contents/{NOTEBOOK}", None),
                ("GET", help_api, None), ("POST", help_api, {}), ("POST", help_api, {"course": "intro-dl"}),
                ("DELETE", help_api, None),
                ("POST", shares_api, {"user": other}),
            ])
            # JupyterHub's answers: 403 from the server and for a scope they lack (`shares`), 404 from the hub
            # where they hold the scope for their own servers only (it does not say whose servers exist).
            assert [status for status, _ in answers] == [403, 404, 404, 404, 404, 403], (other, answers)
            assert shares_seen_by(api, other, tokens[other]) == []
        # ... nor in a browser session with the address: JupyterHub refuses them the server.
        browser = logged_in(hub, OTHER_COURSE, passwords[OTHER_COURSE])
        assert browser.get(lab, timeout=120).status_code == 403
        # The student cannot choose whom: forged bodies, and JupyterHub's own sharing API without `shares`.
        forged = call_as(STUDENT, tokens[STUDENT], [
            ("POST", help_api, {"user": OTHER_COURSE}),
            ("POST", help_api, {"course": "dask-scaling", "users": [CLASSMATE]}),
            ("POST", help_api, {"course": "intro-dl"}),
            ("POST", shares_api, {"user": OTHER_COURSE}),
            ("POST", f"{hub}/hub/api/share-codes/{STUDENT}/{SERVER}", {}),
        ])
        assert [status for status, _ in forged] == [400, 400, 403, 403, 403], forged
        assert shares_seen_by(api, TRAINER, tokens[TRAINER]) == [f"{STUDENT}/{SERVER}"]
        for other in (CLASSMATE, OTHER_COURSE):
            assert shares_seen_by(api, other, tokens[other]) == []

        # The student stops sharing: the trainer's open notebook reaches the server no more.
        panel.find_element(By.CSS_SELECTOR, ".aif-help-stop").send_keys(Keys.ENTER)
        wait(student, 60).until(EC.visibility_of_element_located((By.CSS_SELECTOR, ".aif-help-share")))
        assert student.find_element(By.CSS_SELECTOR, ".aif-help-button").text == "Get live help"
        screenshot(student, "live-help-student-stopped")
        wait(trainer, 60).until(lambda d: fetch_status(d, f"{lab}api/contents/{NOTEBOOK}") in (403, 302))
        # JupyterLab tells the trainer their kernel connection ended (a dialog); they close it and type on.
        dialog = wait(trainer, 60).until(EC.element_to_be_clickable((By.CSS_SELECTOR, ".jp-Dialog .jp-mod-accept")))
        screenshot(trainer, "live-help-trainer-after-stop")
        dialog.click()
        wait(trainer, 30).until_not(EC.presence_of_element_located((By.CSS_SELECTOR, ".jp-Dialog")))
        replace_cell(trainer, "7 * 7")
        assert cell_source(trainer) == "7 * 7"
        time.sleep(5)  # what the trainer typed would reach the student within a second while shared
        assert cell_source(student) == CODE
        assert shares_seen_by(api, TRAINER, tokens[TRAINER]) == []
        assert call_as(TRAINER, tokens[TRAINER], [("GET", f"{lab}api/contents", None)])[0][0] == 403

    # Shared again, then the server stops: the share is gone with it.
    again = call_as(STUDENT, tokens[STUDENT], [("POST", help_api, {})])
    assert again[0][0] == 200, again
    assert shares_seen_by(api, TRAINER, tokens[TRAINER]) == [f"{STUDENT}/{SERVER}"]
    assert api.stop(STUDENT, SERVER).status_code in (202, 204)
    api.wait_stopped(STUDENT, SERVER, timeout=120)
    assert shares_seen_by(api, TRAINER, tokens[TRAINER]) == []
