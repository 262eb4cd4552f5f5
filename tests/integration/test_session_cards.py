"""The home page's session cards in Chromium, on the real cluster: one server through every state.

A server is held in the queue (its user's job limit in one project set to 0: nobody else waits),
slowed while it starts (the user's own Jupyter config sleeps for this server only, as a slow
extension would), then runs, is stopped, and is started again from its card with the same options.
What the card says is compared with what Slurm says (squeue, scontrol, sacct).
"""

from __future__ import annotations

import re
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select

from .browser import axe_violations, chromium, logged_in, login, screenshot, wait
from .test_spawner_slurm import cleanup, hold_jobs_of, jobs_of, wait_job, wait_no_job

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

USER, SERVER, ACCOUNT = "trainer1", "sc-cards", "project_465000001"
OPTIONS = {"profile": "cpu", "cpus": "1", "memory": "1G", "walltime": "0:30:00", "account": ACCOUNT}


@contextmanager
def slow_start(user: str, server: str, seconds: int):
    """The user's ~/.jupyter/jupyter_server_config.py sleeps `seconds` when `server` starts (only that one):
    its job runs on a node, its server does not listen yet, so its card reads 'starting' for that long."""
    folder = Path(f"/home/{user}/.jupyter")
    config = folder / "jupyter_server_config.py"
    text = (f"import os, time\nif os.environ.get('JUPYTERHUB_SERVER_NAME') == {server!r}:\n"
            f"    time.sleep({seconds})\n")
    # A run killed inside this block leaves its own file behind: that one is ours to take again.
    assert not config.exists() or config.read_text() == text, f"{config} is the user's own; this test will not touch it"
    made = not folder.exists()
    folder.mkdir(exist_ok=True)
    config.write_text(text)
    subprocess.run(["chown", "-R", f"{user}:{user}", str(folder)], check=True)
    try:
        yield
    finally:
        config.unlink(missing_ok=True)
        if made:
            folder.rmdir()


def scontrol(job_id: str) -> dict[str, str]:
    """`scontrol show job`'s key=value pairs (live jobs only)."""
    out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, check=True).stdout
    return dict(item.split("=", 1) for item in out.split() if "=" in item)


def sacct_state(job_id: str) -> str:
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State"], capture_output=True,
                         text=True).stdout.split()
    return out[0] if out else ""


def card(driver, server: str = SERVER):
    return driver.find_element(By.ID, f"session-{server}")


def field(driver, name: str, server: str = SERVER) -> str:
    return card(driver, server).find_element(By.CSS_SELECTOR, f".aif-{name}").text


def state_becomes(driver, state: str, timeout: float = 120, server: str = SERVER):
    """Wait until the card (refreshed by the page itself) is in `state`."""
    wait(driver, timeout).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, f'#session-{server}[data-state="{state}"]'))
    return card(driver, server)


def press(driver, element) -> None:
    """Click as a user would: the control scrolled into view first."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})", element)
    element.click()


def test_a_card_in_each_state_with_its_buttons_and_slurms_facts(api, hub, passwords):
    cleanup(api, USER, SERVER)
    wait_no_job(USER, SERVER)
    hold_jobs_of(USER, ACCOUNT, True)
    try:
        with chromium() as driver:
            with slow_start(USER, SERVER, 25):
                assert api.spawn(USER, SERVER, OPTIONS).status_code in (201, 202)
                job_id = wait_job(USER, SERVER, "PENDING")
                login(driver, hub, USER, passwords[USER])
                wait(driver).until(EC.url_contains("/hub/"))
                driver.get(f"{hub}/hub/home")

                # Queued: why, and where in the partition's queue.
                queued = state_becomes(driver, "queued", 60)
                wait(driver, 60).until(lambda d: "project's limit" in field(d, "detail"))
                assert re.search(r"\d+(st|nd|rd|th) of \d+ in standard", field(driver, "detail")), field(driver, "detail")
                assert queued.find_element(By.CSS_SELECTOR, ".aif-state").text == "Queued"
                assert field(driver, "job") == job_id
                assert not queued.find_elements(By.CSS_SELECTOR, ".aif-open, .aif-extend")
                assert queued.find_elements(By.CSS_SELECTOR, ".aif-stop")
                assert axe_violations(driver) == []

                # Starting: Slurm runs it on a node, the server does not answer yet.
                hold_jobs_of(USER, ACCOUNT, False)
                state_becomes(driver, "starting", 120)
                node = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%N"], capture_output=True,
                                      text=True).stdout.strip()
                wait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, f"#session-{SERVER} .aif-node"))
                assert field(driver, "node") == node and node in field(driver, "detail")

                # Running: the card's facts are Slurm's.
                running = state_becomes(driver, "running", 150)
            slurm = scontrol(job_id)
            assert (field(driver, "partition"), field(driver, "node")) == (slurm["Partition"], slurm["NodeList"])
            assert field(driver, "cpus") == slurm["NumCPUs"] == "1"
            assert field(driver, "memory") == "1G" and "mem=1G" in slurm["TRES"]
            assert (field(driver, "gpus"), field(driver, "profile")) == ("none", "CPU notebook")
            minutes = int(re.match(r"(\d+) min \(until \d\d:\d\d", field(driver, "time-left")).group(1))
            assert 25 <= minutes <= 30, field(driver, "time-left")
            assert axe_violations(driver) == []
            screenshot(driver, "session-cards")

            # Extend: 30 more minutes, Slurm's time limit follows and the card says so.
            Select(running.find_element(By.CSS_SELECTOR, ".aif-extend select")).select_by_visible_text("30 min")
            press(driver, running.find_element(By.CSS_SELECTOR, ".aif-extend button"))
            wait(driver, 60).until(lambda d: field(d, "status").startswith(("Extended", "Not extended")))
            assert field(driver, "status").startswith("Extended by 30 min: the server now ends at"), \
                field(driver, "status")
            assert scontrol(job_id)["TimeLimit"] == "01:00:00"
            assert 50 <= int(re.match(r"(\d+) min", field(driver, "time-left")).group(1)) <= 60
            # A refused extension says why, where the user looks: two days more, as a crafted form would ask.
            select = running.find_element(By.CSS_SELECTOR, ".aif-extend select")
            driver.execute_script("arguments[0].options[0].value = '2880'", select)
            Select(select).select_by_visible_text("30 min")
            press(driver, running.find_element(By.CSS_SELECTOR, ".aif-extend button"))
            wait(driver, 60).until(lambda d: field(d, "status").startswith("Not extended"))
            assert "profile" in field(driver, "status"), field(driver, "status")
            assert scontrol(job_id)["TimeLimit"] == "01:00:00"

            # Copy link: a link to the spawn page with these options, shown to copy by hand if need be.
            press(driver, running.find_element(By.CSS_SELECTOR, ".aif-copy"))
            link_field = wait(driver).until(EC.visibility_of_element_located((By.ID, f"link-{SERVER}")))
            link = link_field.get_attribute("value")
            assert link.startswith(f"{hub}/hub/spawn/{USER}/{SERVER}#") and "profile=cpu" in link
            wait(driver).until(lambda d: field(d, "status") in ("Link copied.", "Copy the link from the field below."))
            assert axe_violations(driver) == []

            # Open: the server itself.
            press(driver, card(driver).find_element(By.CSS_SELECTOR, ".aif-open"))
            wait(driver, 90).until(EC.url_contains(f"/user/{USER}/{SERVER}/"))
            wait(driver, 90).until(lambda d: "JupyterLab" in d.title)

            # Stopped: Slurm's final state, from the card's Stop button.
            driver.get(f"{hub}/hub/home")
            press(driver, card(driver).find_element(By.CSS_SELECTOR, ".aif-stop"))
            stopped = state_becomes(driver, "stopped", 90)
            assert field(driver, "final-state") == "CANCELLED" == sacct_state(job_id).split()[0]
            assert job_id in field(driver, "detail") and "[CANCELLED]" in field(driver, "detail")
            assert not jobs_of(USER, SERVER)
            assert stopped.find_elements(By.CSS_SELECTOR, ".aif-start-again")
            assert axe_violations(driver) == []

            # The copied link opens the spawn page with the fields filled, and starts nothing.
            driver.get(link)
            wait(driver, 60).until(EC.presence_of_element_located((By.ID, "input-cpus")))
            checked = driver.find_element(By.CSS_SELECTOR, "input[name=profile]:checked").get_attribute("value")
            values = {name: driver.find_element(By.ID, f"input-{name}").get_attribute("value")
                      for name in ("cpus", "memory", "walltime", "account")}
            assert (checked, values) == ("cpu", {"cpus": "1", "memory": "1G", "walltime": "0:30:00", "account": ACCOUNT})
            assert not jobs_of(USER, SERVER)

            # Start again: the same options, a new job.
            driver.get(f"{hub}/hub/home")
            press(driver, card(driver).find_element(By.CSS_SELECTOR, ".aif-start-again button"))
            wait(driver, 30).until(EC.url_contains(f"/spawn-pending/{USER}/{SERVER}"))
            again = wait_job(USER, SERVER, "RUNNING", timeout=120)
            assert again != job_id
            slurm = scontrol(again)
            assert (slurm["Partition"], slurm["NumCPUs"], slurm["Account"], slurm["TimeLimit"]) == \
                ("standard", "1", ACCOUNT, "00:30:00")
            assert "mem=1G" in slurm["TRES"]
    finally:
        hold_jobs_of(USER, ACCOUNT, False)
        cleanup(api, USER, SERVER)
    wait_no_job(USER, SERVER)


def test_a_users_home_never_shows_nor_restarts_another_users_server(api, hub, passwords):
    """student2 sees none of student1's servers, and posting student1's card's start-again is refused."""
    victim, name = "student1", "sc-victim"
    cleanup(api, victim, name)
    try:
        assert api.spawn(victim, name, {"profile": "cpu", "memory": "1G"}).status_code in (201, 202)
        wait_job(victim, name, "RUNNING", timeout=120)
        api.stop(victim, name)
        wait_no_job(victim, name)
        api.wait_stopped(victim, name, 60)

        own = logged_in(hub, victim, passwords[victim]).get(f"{hub}/hub/home", timeout=60).text
        assert f'id="session-{name}"' in own  # the control: the owner's card is there

        attacker = logged_in(hub, "student2", passwords["student2"])
        home = attacker.get(f"{hub}/hub/home", timeout=60)
        assert home.status_code == 200
        assert name not in home.text and "student1" not in home.text
        xsrf = attacker.cookies.get("_xsrf", "")
        for url in (f"{hub}/hub/spawn/{victim}/{name}", f"{hub}/hub/spawn/{victim}"):
            answer = attacker.post(f"{url}?_xsrf={xsrf}", data={"profile": "cpu", "memory": "1G"}, timeout=60,
                                   allow_redirects=False)
            assert answer.status_code in (403, 404), (url, answer.status_code)
        assert not jobs_of(victim, name)
    finally:
        cleanup(api, victim, name)
