"""JupyterLab's Assignments panel (nbgrader's lab extension) in a real browser, on
student1's server running as a Slurm job: the course menu offers intro-dl and not
dask-scaling, Fetch and Submit go through our exchange plugin."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from tests.integration.test_exchange_permissions import EXCHANGE, released  # noqa: F401  (fixture)
from tests.integration.test_nbgrader_exchange_plugin import OTHER, other_release  # noqa: F401  (fixture)
from tests.integration.test_spawner_slurm import Hub, cleanup, wait_no_job

from .browser import chromium, login, wait

pytestmark = [pytest.mark.slurm, pytest.mark.hub, pytest.mark.browser, pytest.mark.slow]
USER, SERVER = "student1", "nbl"


def row_button(driver, panel: str, name: str, label: str):
    """The button of the assignment's row in one of the panel's lists (released, fetched, submitted)."""
    xpath = (f"//div[@id='{panel}']//div[contains(@class, 'list_item')][.//*[contains(text(), '{name}')]]"
             f"//button[contains(., '{label}')]")
    return wait(driver, 90).until(EC.element_to_be_clickable((By.XPATH, xpath)))


def test_a_student_fetches_and_submits_from_the_assignments_panel(hub, passwords, operator_token, server_url, released,
                                                                  other_release):
    _, name = released
    api = Hub(hub, operator_token)
    try:
        assert api.spawn(USER, SERVER, {"profile": "course"}).status_code in (201, 202)
        api.wait_ready(USER, SERVER, timeout=180)
        with chromium(1400, 1000) as driver:
            login(driver, hub, USER, passwords[USER])
            wait(driver).until(EC.url_contains("/hub/"))
            driver.get(f"{server_url(USER, SERVER)}lab?reset")
            menu = wait(driver, 120).until(EC.element_to_be_clickable(
                (By.XPATH, "//li[contains(@class, 'lm-MenuBar-item')][.//*[text()='Nbgrader']]")))
            menu.click()
            wait(driver).until(EC.element_to_be_clickable(
                (By.XPATH, "//li[contains(@class, 'lm-Menu-item')][.//*[text()='Assignment List']]"))).click()

            # The course menu: the student's courses only.
            wait(driver, 90).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#course_list li"))
            courses = [li.get_attribute("textContent").strip()
                       for li in driver.find_elements(By.CSS_SELECTOR, "#course_list li")]
            assert "intro-dl" in courses and OTHER not in courses, courses
            if driver.find_element(By.ID, "course_list_default").text.strip() != "intro-dl":
                (li,) = [li for li in driver.find_elements(By.CSS_SELECTOR, "#course_list li")
                         if li.get_attribute("textContent").strip() == "intro-dl"]
                driver.execute_script("arguments[0].querySelector('a').click()", li)
            assert other_release not in driver.find_element(By.ID, "released_assignments_list").text

            row_button(driver, "released_assignments_list", name, "Fetch").click()
            row_button(driver, "fetched_assignments_list", name, "Submit").click()
            wait(driver, 90).until(EC.text_to_be_present_in_element((By.ID, "submitted_assignments_list"), name))
        assert len(list((EXCHANGE / "inbound" / USER).glob(f"{name}+*"))) == 1
    finally:
        cleanup(api, USER, SERVER)
        wait_no_job(USER, SERVER)
