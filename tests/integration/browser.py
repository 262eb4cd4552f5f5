"""Debian's headless Chromium, driven through Debian's chromedriver (never a downloaded browser)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# axe-core, installed by `make test-tools` from tests/browser_tools/package.json (the npm registry).
AXE = Path(os.environ.get("AIFACTORY_PREFIX", "/opt/aifactory")) / "test-node/node_modules/axe-core/axe.min.js"
# Where `screenshot` saves the README's pictures when asked (make screenshots); else a throw-away folder.
SCREENSHOTS = os.environ.get("AIFACTORY_SCREENSHOTS", "")


@contextmanager
def chromium(width: int = 1280, height: int = 900):
    """A fresh headless browser with its own profile; always quit afterwards."""
    profile = tempfile.mkdtemp(prefix="aifactory-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-extensions", "--no-first-run",
                 f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver, seconds: float = 30) -> WebDriverWait:
    return WebDriverWait(driver, seconds, poll_frequency=0.25)


def login(driver, hub: str, user: str, password: str, next_path: str = "") -> None:
    """Fill JupyterHub's login form and submit it."""
    driver.get(f"{hub}/hub/login" + (f"?next={next_path}" if next_path else ""))
    wait(driver).until(EC.presence_of_element_located((By.ID, "username_input")))
    driver.find_element(By.ID, "username_input").send_keys(user)
    driver.find_element(By.ID, "password_input").send_keys(password)
    driver.find_element(By.ID, "login_submit").click()


def axe_violations(driver, context: str | None = None, impacts: tuple[str, ...] = ("serious", "critical")) -> list[str]:
    """axe-core's violations of `impacts` on the page as it is now (or inside the CSS selector `context`),
    each as 'rule: help (n nodes: first target)', so a failing assert names what to mend."""
    driver.execute_script(AXE.read_text())
    driver.set_script_timeout(60)
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(arguments[0] || document, {resultTypes: ['violations']})"
        ".then(r => done(JSON.stringify(r.violations)), e => done(JSON.stringify({error: String(e)})));",
        context,
    )
    violations = json.loads(result)
    if isinstance(violations, dict):
        raise RuntimeError(f"axe-core failed: {violations['error']}")
    return [
        f"{v['id']}: {v['help']} ({len(v['nodes'])} nodes: {v['nodes'][0]['target']})"
        for v in violations if v.get("impact") in impacts
    ]


def screenshot(driver, name: str) -> Path:
    """Save the page as `<name>.png`: into $AIFACTORY_SCREENSHOTS (the README's pictures, `make screenshots`)
    or a temporary folder, so the same test code makes them either way."""
    folder = Path(SCREENSHOTS or tempfile.mkdtemp(prefix="aifactory-screenshots-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def logged_in(hub: str, user: str, password: str) -> requests.Session:
    """A browser's session: logged in, its cookies sent as a browser sends them to the hub's host."""
    session = requests.Session()
    session.get(f"{hub}/hub/login", timeout=10)
    response = session.post(f"{hub}/hub/login", timeout=30, allow_redirects=False,
                            data={"username": user, "password": password, "_xsrf": session.cookies.get("_xsrf", "")})
    assert response.status_code == 302, response.status_code
    # The session id cookie is set for `.localhost` (the users' subdomains share it); a browser sends it to
    # `localhost`, the stdlib's cookie jar does not (it calls the host `localhost.local`). The xsrf token is
    # tied to that session id.
    for cookie in list(session.cookies):
        if cookie.domain == ".localhost":
            session.cookies.set(cookie.name, cookie.value, domain="localhost.local", path=cookie.path)
    return session
