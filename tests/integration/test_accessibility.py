"""axe-core in Chromium on the hub's pages a user meets: no serious or critical violation.

The login page, the spawn page (as it opens and with a refused field), the progress page of a
queued server, the home page with its session card, and the "not running" page with the stop reason.
"""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from .browser import axe_violations, chromium, login, screenshot, wait
from .test_spawner_slurm import cleanup, hold_jobs_of, wait_job, wait_no_job

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

USER, SERVER, ACCOUNT = "student3", "a11y", "project_465000002"


def test_the_hubs_pages_pass_axe(api, hub, passwords):
    cleanup(api, USER, SERVER)
    try:
        with chromium() as driver:
            driver.get(f"{hub}/hub/login")
            wait(driver).until(EC.presence_of_element_located((By.ID, "login_submit")))
            assert axe_violations(driver) == [], "login page"

            login(driver, hub, USER, passwords[USER])
            wait(driver).until(EC.url_contains("/hub/"))
            driver.get(f"{hub}/hub/spawn/{USER}/{SERVER}")
            wait(driver, 60).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".aif-card")))
            assert axe_violations(driver) == [], "spawn page"
            screenshot(driver, "spawn-page")

            # A refused field comes back with its message next to it.
            memory = driver.find_element(By.ID, "input-memory")
            memory.clear()
            memory.send_keys("99G")  # a text field: the browser lets it through, the hub refuses it
            button = driver.find_element(By.CSS_SELECTOR, "#spawn_form button[type=submit]")
            driver.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})", button)
            button.click()
            wait(driver, 60).until(EC.presence_of_element_located((By.ID, "error-memory")))
            assert axe_violations(driver) == [], "spawn page with a refused field"

            hold_jobs_of(USER, ACCOUNT, True)  # the server stays queued: the progress page keeps its story
            assert api.spawn(USER, SERVER, {"profile": "cpu", "memory": "1G", "account": ACCOUNT}).status_code \
                in (201, 202)
            wait_job(USER, SERVER, "PENDING")
            driver.get(f"{hub}/hub/spawn-pending/{USER}/{SERVER}")
            wait(driver, 60).until(EC.text_to_be_present_in_element((By.ID, "progress-message"), "Pending"))
            assert axe_violations(driver) == [], "progress page"

            driver.get(f"{hub}/hub/home")
            wait(driver, 60).until(EC.presence_of_element_located((By.CSS_SELECTOR, f'#session-{SERVER}[data-state="queued"]')))
            assert axe_violations(driver) == [], "home page"

            api.stop(USER, SERVER)
            wait_no_job(USER, SERVER)
            api.wait_stopped(USER, SERVER, 60)
            driver.get(f"{hub}/hub/user/{USER}/{SERVER}/")
            wait(driver, 60).until(EC.presence_of_element_located((By.ID, "stop-reason")))
            assert "[CANCELLED]" in driver.find_element(By.ID, "stop-reason").text
            assert axe_violations(driver) == [], "not-running page"
    finally:
        hold_jobs_of(USER, ACCOUNT, False)
        cleanup(api, USER, SERVER)
    wait_no_job(USER, SERVER)
