"""A student sees a student's JupyterLab, a trainer the instructor's tools too (issue #16, point 5).

On the real cluster, through the hub, servers of the course profile (intro-dl's and dask-scaling's):

- student1 in Chromium: the server opens on nbgrader's assignment list; the Nbgrader menu and the command
  palette offer the assignment list and nothing of the instructor's (no Create Assignment, Formgrader,
  Course List), the right side bar has no Create Assignment panel; a second page of the same start stays
  where the student left it (the list is opened once per start).
- trainer1 in Chromium: the same list at start, and the instructor's menu items, commands and panel.
- student2, as their own Unix process with their own token, turns the instructor's tools back on in their
  own server (their ~/.jupyter config: the formgrader server extension on, the student page config off,
  the course folder as nbgrader's course) and gets nothing of the course: their formgrader reads no
  gradebook, releases and withdraws nothing, and the course's formgrader service refuses them.

Screenshots for courses/README.md: course-student-*.png, course-trainer-*.png.
"""

from __future__ import annotations

import json
import re
import subprocess
import sysconfig
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC

from aifactory.extensions.workbench import course_lab
from tests.integration.test_exchange_permissions import COURSE, COURSE_DIR, EXCHANGE, denied

from .browser import chromium, login, screenshot, wait
from .test_spawner_slurm import Hub, cleanup, wait_no_job

pytestmark = [pytest.mark.slurm, pytest.mark.hub, pytest.mark.slow]

PROFILE = {"profile": "course", "cpus": "1", "memory": "1G"}
STUDENT, TRAINER, ATTACKER = "student1", "trainer1", "student2"
SERVER = "roles"
ATTACK_SERVER = "roles-attack"
INSTRUCTOR_ITEMS = {"Create assignment", "Formgrader", "Course List"}
MAIN_TAB = "#jp-main-dock-panel .lm-TabBar-tab"
NBGRADER_MENU = "//li[contains(@class, 'lm-MenuBar-item')][.//*[text()='Nbgrader']]"
CREATE_PANEL = "nbgrader-create_assignemnt"  # nbgrader's own id (sic)


def page_config(driver) -> dict:
    return json.loads(driver.find_element(By.ID, "jupyter-config-data").get_attribute("textContent"))


def current_main_tab(driver) -> str:
    tabs = driver.find_elements(By.CSS_SELECTOR, f"{MAIN_TAB}.lm-mod-current .lm-TabBar-tabLabel")
    return tabs[0].text if tabs else ""


def open_lab(driver, hub: str, user: str, password: str, lab: str) -> None:
    """Log in and open the server's JupyterLab; returns once nbgrader's menu is in the menu bar."""
    login(driver, hub, user, password)
    wait(driver).until(EC.url_contains("/hub/"))
    driver.get(f"{lab}lab")
    wait(driver, 150).until(EC.presence_of_element_located((By.XPATH, NBGRADER_MENU)))


def wait_assignment_list_at_start(driver) -> None:
    """nbgrader's Assignments tab, current in the main area, showing the student's courses."""
    wait(driver, 90).until(lambda d: current_main_tab(d) == "Assignments")
    wait(driver, 90).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#course_list li"))


def nbgrader_menu_items(driver) -> set[str]:
    """The labels of the Nbgrader menu's items (opened, read, closed)."""
    wait(driver).until(EC.element_to_be_clickable((By.XPATH, NBGRADER_MENU))).click()
    menu = wait(driver).until(EC.visibility_of_element_located((By.CSS_SELECTOR, ".lm-Menu")))
    return {item.text for item in menu.find_elements(By.CSS_SELECTOR, ".lm-Menu-itemLabel") if item.text}


def close_menu(driver) -> None:
    ActionChains(driver).send_keys(Keys.ESCAPE).perform()
    wait(driver).until(EC.invisibility_of_element_located((By.CSS_SELECTOR, ".lm-Menu")))


def palette_items(driver, query: str) -> set[str]:
    """The command palette's items for `query` (View > Activate Command Palette, the query typed)."""
    wait(driver).until(EC.element_to_be_clickable(
        (By.XPATH, "//li[contains(@class, 'lm-MenuBar-item')][.//*[text()='View']]"))).click()
    wait(driver).until(EC.element_to_be_clickable(
        (By.XPATH, "//li[contains(@class, 'lm-Menu-item')][.//*[text()='Activate Command Palette']]"))).click()
    palette = ".jp-ModalCommandPalette"
    box = wait(driver).until(EC.element_to_be_clickable((By.CSS_SELECTOR, f"{palette} .lm-CommandPalette-input")))
    content = driver.find_element(By.CSS_SELECTOR, f"{palette} .lm-CommandPalette-content")

    def searched(_) -> bool:
        """The query is in the box (typed again if a key was lost) and the list shows its search: matches
        marked, or the palette's 'no commands found'."""
        if box.get_attribute("value") != query:
            box.clear()
            box.send_keys(query)
            return False
        return bool(content.find_elements(By.CSS_SELECTOR, "mark, .lm-CommandPalette-emptyMessage"))

    wait(driver).until(searched)
    # textContent: an item scrolled out of the palette's view has no visible text
    labels = {item.get_attribute("textContent").strip()
              for item in content.find_elements(By.CSS_SELECTOR, ".lm-CommandPalette-itemLabel")}
    box.send_keys(Keys.ESCAPE)
    wait(driver).until(EC.invisibility_of_element_located((By.CSS_SELECTOR, f"{palette} .lm-CommandPalette-input")))
    return labels


# ---- the attack: student2 turns the instructor's tools back on in their own server ----------------------------

ATTACK_JOB = f"jupyter-{ATTACKER}-{ATTACK_SERVER}"
# Only in this test's server (its Slurm job name), so no other server of student2's changes meanwhile.
ATTACK_SERVER_CONFIG = f'''
import os
if os.environ.get("SLURM_JOB_NAME") == "{ATTACK_JOB}":
    c.ServerApp.jpserver_extensions.update({{"nbgrader.server_extensions.formgrader": True,
                                            "nbgrader.server_extensions.course_list": True}})
    c.ServerApp.root_dir = "/"  # nbgrader's formgrader wants the course inside the server's root
    os.environ["JUPYTER_CONFIG_PATH"] = os.pathsep.join(
        p for p in os.environ.get("JUPYTER_CONFIG_PATH", "").split(os.pathsep) if p and "aifactory-student" not in p)
'''
ATTACK_NBGRADER_CONFIG = f'''
import os
if os.environ.get("SLURM_JOB_NAME") == "{ATTACK_JOB}":
    c.CourseDirectory.root = "{COURSE_DIR}"
    c.CourseDirectory.course_id = "{COURSE}"
'''
CALL_AS = textwrap.dedent('''
    import json, sys, urllib.request, urllib.error
    out = []
    for method, url, host in json.loads(sys.argv[1]):
        req = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None,
                                     headers={"Authorization": "token " + sys.argv[2], "Host": host})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                out.append((r.status, r.read().decode(errors="replace")[:20000]))
        except urllib.error.HTTPError as e:
            out.append((e.code, e.read().decode(errors="replace")[:2000]))
    try:
        open(sys.argv[3], "rb").read(1)
        out.append("read")
    except OSError as e:
        out.append(type(e).__name__)
    print(json.dumps(out))
''')


def call_as(user: str, token: str, calls: list[tuple[str, str]], secret: Path) -> tuple[list, str]:
    """Each (method, URL) through the proxy from `user`'s own Unix process with their token, then their
    attempt to read `secret`: ([(status, body)...], what reading did)."""
    targets = [[method, url.replace(urlsplit(url).hostname, "127.0.0.1", 1), urlsplit(url).netloc]
               for method, url in calls]
    done = subprocess.run(["runuser", "-u", user, "--", "python3", "-I", "-c", CALL_AS, json.dumps(targets), token,
                           str(secret)], capture_output=True, text=True, timeout=300, cwd="/")
    assert done.returncode == 0, done.stderr
    *answers, read = json.loads(done.stdout)
    return [tuple(a) for a in answers], read


def write_as(user: str, path: Path, text: str) -> None:
    subprocess.run(["runuser", "-u", user, "--", "python3", "-I", "-c",
                    "import sys; open(sys.argv[1], 'x').write(sys.argv[2])", str(path), text], check=True)


@pytest.fixture
def attackers_config():
    """student2's own ~/.jupyter config that switches the instructor's tools back on (removed afterwards)."""
    folder = Path(f"/home/{ATTACKER}/.jupyter")
    files = {folder / "jupyter_server_config.py": ATTACK_SERVER_CONFIG,
             folder / "nbgrader_config.py": ATTACK_NBGRADER_CONFIG}
    assert not [p for p in files if p.exists()], f"{list(files)}: student2's own, not this test's to replace"
    try:
        for path, text in files.items():
            write_as(ATTACKER, path, text)
        yield
    finally:
        for path in files:
            path.unlink(missing_ok=True)


def test_a_student_who_turns_the_instructors_tools_on_gets_nothing_of_the_course(hub, api, server_url,
                                                                                attackers_config):
    released = sorted(p.name for p in (EXCHANGE / "outbound").iterdir())
    assert released, "the demo course has a released assignment"
    fake = "roles-attack-release"
    try:
        assert api.spawn(ATTACKER, ATTACK_SERVER, PROFILE).status_code in (201, 202)
        api.wait_ready(ATTACKER, ATTACK_SERVER, timeout=240)
        token = api.api("POST", f"/users/{ATTACKER}/tokens", json={"expires_in": 600, "note": "roles attack"}
                        ).json()["token"]
        own = server_url(ATTACKER, ATTACK_SERVER)
        service = f"{hub}/services/formgrader-{COURSE}/formgrader"
        answers, read = call_as(ATTACKER, token, [
            ("GET", f"{own}lab"),
            ("GET", f"{own}formgrader/api/status"),
            ("GET", f"{own}formgrader/api/assignments"),
            ("GET", f"{own}formgrader/api/students"),
            ("POST", f"{own}formgrader/api/assignment/{fake}/release"),
            ("POST", f"{own}formgrader/api/assignment/{released[0]}/unrelease"),
            ("GET", f"{service}/manage_assignments"),
            ("GET", f"{service}/api/assignments"),
        ], COURSE_DIR / "gradebook.db")
        lab, status, assignments, students, release, unrelease, manage, service_api = answers
        said = {name: (code, body[:300]) for name, (code, body) in
                zip(("status", "assignments", "students", "release", "unrelease", "manage", "service_api"),
                    answers[1:])}

        # The attack worked as far as the UI goes: the page offers the instructor's plugins again and the
        # student's own server runs nbgrader's formgrader, as the student.
        config = json.loads(re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                                      lab[1], re.S).group(1))
        assert not set(course_lab.INSTRUCTOR_PLUGINS) & set(config["disabledExtensions"]), config["disabledExtensions"]
        assert status[0] == 200, said

        # Nothing of the course: no gradebook, no student, nothing released or withdrawn.
        assert read == "PermissionError"
        for name, (code, body) in (("assignments", assignments), ("students", students)):
            assert code != 200 or json.loads(body) in ([], None), said
            assert not any(a in body for a in released) and STUDENT not in body, said
        for name, (code, body) in (("release", release), ("unrelease", unrelease)):
            assert code != 200 or json.loads(body).get("success") is False, said
        assert sorted(p.name for p in (EXCHANGE / "outbound").iterdir()) == released
        # The course's formgrader, the hub's service: the student is refused.
        assert manage[0] in (403, 404) and service_api[0] in (403, 404), said
    finally:
        cleanup(api, ATTACKER, ATTACK_SERVER)
        wait_no_job(ATTACKER, ATTACK_SERVER)
        leftover = EXCHANGE / "outbound" / fake
        assert not leftover.exists(), f"{leftover} released by a student"


def test_a_student_cannot_change_the_student_page_config_nor_what_reads_it(hub):
    """The shared pieces that hide the instructor's tools in every student's server are root's."""
    page = Path(sysconfig.get_path("data")) / "etc/jupyter" / course_lab.STUDENT_CONFIG / "labconfig/page_config.json"
    assert page.is_file(), "installed by make install"
    for path in (page, Path(course_lab.__file__)):
        assert denied(ATTACKER, "sh", "-c", f"echo '{{}}' >> {path}"), path
        assert denied(ATTACKER, "sh", "-c", f"echo x > {path.parent}/{ATTACKER}-was-here"), path.parent
        assert not (path.parent / f"{ATTACKER}-was-here").exists()


# ---- both roles in Chromium (after the attack, so that at most two servers run at once) ---------------------

@pytest.fixture(scope="module")
def course_servers(hub, operator_token):
    """A course-profile server each for student1 and trainer1, started together."""
    api = Hub(hub, operator_token)
    try:
        for user in (STUDENT, TRAINER):
            assert api.spawn(user, SERVER, PROFILE).status_code in (201, 202)
        for user in (STUDENT, TRAINER):
            api.wait_ready(user, SERVER, timeout=240)
        yield
    finally:
        for user in (STUDENT, TRAINER):
            cleanup(api, user, SERVER)
        for user in (STUDENT, TRAINER):
            wait_no_job(user, SERVER)


@pytest.mark.browser
def test_a_student_sees_the_assignment_list_and_none_of_the_instructors_tools(hub, passwords, server_url,
                                                                                course_servers):
    lab = server_url(STUDENT, SERVER)
    with chromium(1400, 900) as driver:
        open_lab(driver, hub, STUDENT, passwords[STUDENT], lab)
        config = page_config(driver)
        assert set(course_lab.INSTRUCTOR_PLUGINS) <= set(config["disabledExtensions"])
        items = nbgrader_menu_items(driver)
        screenshot(driver, "course-student-menu")
        close_menu(driver)
        assert "Assignment List" in items and not items & INSTRUCTOR_ITEMS, items
        found = palette_items(driver, "nbgrader")
        assert "Assignment List" in found and not found & INSTRUCTOR_ITEMS, found
        assert not palette_items(driver, "formgrader") & INSTRUCTOR_ITEMS
        assert not driver.find_elements(By.ID, CREATE_PANEL)
        assert not driver.find_elements(By.CSS_SELECTOR, f"li[data-id='{CREATE_PANEL}']")

        # The course server opened on the assignment list.
        assert config.get(course_lab.START_OPTION), "no start id: does the hub pass AIFACTORY_COURSES (restarted)?"
        wait_assignment_list_at_start(driver)
        screenshot(driver, "course-student-assignments")

        # Another page of the same start (a fresh layout): the list is not forced open again.
        driver.get(f"{lab}lab?reset")
        wait(driver, 150).until(EC.presence_of_element_located((By.XPATH, NBGRADER_MENU)))
        wait(driver, 60).until(EC.visibility_of_element_located((By.CSS_SELECTOR, ".jp-Launcher")))
        with pytest.raises(TimeoutException):
            wait(driver, 8).until(lambda d: current_main_tab(d) == "Assignments")


@pytest.mark.browser
def test_a_trainer_sees_the_assignment_list_and_the_instructors_tools(hub, passwords, server_url, course_servers):
    with chromium(1400, 900) as driver:
        open_lab(driver, hub, TRAINER, passwords[TRAINER], server_url(TRAINER, SERVER))
        config = page_config(driver)
        assert not set(course_lab.INSTRUCTOR_PLUGINS) & set(config["disabledExtensions"])
        wait_assignment_list_at_start(driver)  # a trainer's course server opens on it too

        items = nbgrader_menu_items(driver)
        screenshot(driver, "course-trainer-menu")
        close_menu(driver)
        assert {"Assignment List", *INSTRUCTOR_ITEMS} <= items, items
        assert {"Assignment List", *INSTRUCTOR_ITEMS} <= palette_items(driver, "nbgrader")
        # The Create Assignment panel's tab in the right side bar (the menu's screenshot shows it).
        assert driver.find_elements(By.CSS_SELECTOR, f"li[data-id='{CREATE_PANEL}']")
