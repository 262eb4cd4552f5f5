"""Users' servers are separated in the browser: a page a student serves cannot act as whoever opens it.

A user's server serves whatever its user wants, with scripts: here a web server student1 started
in their own job, reached through their server's /proxy/<port>/ (jupyter-server-proxy, as the
Dask dashboard is). Jupyter's own /files/ would not do: it sandboxes HTML into an opaque origin.
trainer1, who may open the servers of intro-dl's students, is logged in, has their own server
open, and opens the student's page. Its script tries what a script of the hub's origin could:
read cookies (also through a frame or a window of the hub's or trainer1's server), ask the hub
who is there, mint an API token for trainer1 (with and without the XSRF token read so), list
trainer1's files and kernels. Each server on its own origin (`hub.subdomain_host`), the same-origin
policy keeps every answer from the page and the hub refuses what it sends blind.
Without subdomains the page gets trainer1's identity, a token and the listing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from .browser import chromium, login, wait
from .test_spawner_slurm import Hub, cleanup, jobs_of, wait_no_job

pytestmark = [pytest.mark.slurm, pytest.mark.hub, pytest.mark.browser, pytest.mark.slow]

ATTACKER, VICTIM = "student1", "trainer1"  # intro-dl: its trainers may open its students' servers
SERVER = "origin"
NOTE = "minted by a student's page"

PAGE = """<!doctype html>
<html><head><title>loading</title></head><body><pre id="loot"></pre><script>
const HUB = __HUB__, VICTIM = __VICTIM__, VICTIM_SERVER = __VICTIM_SERVER__, NOTE = __NOTE__;
async function attempt(url, init = {}) {
  try {
    const response = await fetch(url, {credentials: "include", ...init});
    return {status: response.status, body: (await response.text()).slice(0, 3000)};
  } catch (error) {
    return {error: String(error)};
  }
}
function cookiesOf(url) {  // a same-origin frame's cookies, whatever their path
  return new Promise(resolve => {
    const frame = document.createElement("iframe");
    frame.onload = () => { try { resolve(frame.contentDocument.cookie); } catch (error) { resolve(String(error)); } };
    frame.src = url;
    document.body.appendChild(frame);
  });
}
function readWindow(url) {  // a page opened in a new window: readable by a script of the same origin only
  return new Promise(resolve => {
    const opened = window.open(url, "_blank");
    if (!opened) return resolve({error: "no window"});
    const deadline = Date.now() + 20000;
    const poll = setInterval(() => {
      try {
        if (opened.location.href === "about:blank" || opened.document.readyState !== "complete") {
          if (Date.now() < deadline) return;
          throw new Error("window did not load");
        }
        clearInterval(poll);
        resolve({body: opened.document.body.innerText.slice(0, 3000), cookie: opened.document.cookie});
        opened.close();
      } catch (error) {
        clearInterval(poll);
        resolve({error: String(error)});
        opened.close();
      }
    }, 200);
  });
}
const xsrf = cookies => (cookies.match(/(?:^|; )_xsrf=([^;]*)/) || [, ""])[1];
(async () => {
  const loot = {cookie: document.cookie};
  loot.hub_cookies = await cookiesOf(`${HUB}/hub/static/favicon.ico`);
  loot.contents_window = await readWindow(`${VICTIM_SERVER}api/contents`);
  const hubHeaders = {"X-XSRFToken": xsrf(loot.hub_cookies)};
  const serverHeaders = {"X-XSRFToken": xsrf(loot.contents_window.cookie || "")};
  loot.hub_user = await attempt(`${HUB}/hub/api/user`, {headers: hubHeaders});
  loot.token = await attempt(`${HUB}/hub/api/users/${VICTIM}/tokens`, {
    method: "POST", headers: {...hubHeaders, "Content-Type": "application/json"},
    body: JSON.stringify({note: NOTE, expires_in: 600})});
  // A "simple" request goes out without a CORS preflight: only the hub's own check can refuse it.
  loot.token_blind = await attempt(`${HUB}/hub/api/users/${VICTIM}/tokens`, {
    method: "POST", body: JSON.stringify({note: NOTE, expires_in: 600})});
  loot.contents = await attempt(`${VICTIM_SERVER}api/contents`, {headers: serverHeaders});
  loot.sessions = await attempt(`${VICTIM_SERVER}api/sessions`, {headers: serverHeaders});
  document.getElementById("loot").textContent = JSON.stringify(loot);
  document.title = "done";
})();
</script></body></html>
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def attack_page(hub, server_url, servers):
    """student1's page, served from their home by a web server they run next to their server (a step of its
    Slurm job, on its compute node), through their server's proxy."""
    home = os.path.expanduser(f"~{ATTACKER}")
    folder = tempfile.mkdtemp(prefix=".origin-test-", dir=home)
    page = PAGE
    for name, value in (("HUB", hub), ("VICTIM", VICTIM), ("VICTIM_SERVER", server_url(VICTIM, SERVER)),
                        ("NOTE", NOTE)):
        page = page.replace(f"__{name}__", json.dumps(value))
    with open(os.path.join(folder, "evil.html"), "w") as f:
        f.write(page)
    shutil.chown(folder, ATTACKER)
    shutil.chown(os.path.join(folder, "evil.html"), ATTACKER)
    port = free_port()
    ((job_id, _),) = jobs_of(ATTACKER, SERVER)
    web = subprocess.Popen(["sudo", "-u", ATTACKER, "srun", f"--jobid={job_id}", "--overlap", "--mem=0", "--ntasks=1",
                            "/usr/bin/python3", "-m", "http.server", str(port),
                            "--bind", "127.0.0.1", "--directory", folder],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield f"{server_url(ATTACKER, SERVER)}proxy/{port}/evil.html"
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


def minted(api: Hub) -> list[str]:
    """Ids of the victim's tokens that the page minted (the operator's view)."""
    tokens = api.api("GET", f"/users/{VICTIM}/tokens").json()["api_tokens"]
    return [t["id"] for t in tokens if t["note"] == NOTE]


@pytest.fixture
def servers(hub, operator_token):
    """The attacker's and the victim's servers; stopped afterwards, and any token the page minted revoked."""
    api = Hub(hub, operator_token)
    try:
        for user in (ATTACKER, VICTIM):
            assert api.spawn(user, SERVER, {"profile": "course"}).status_code in (201, 202)
        for user in (ATTACKER, VICTIM):
            api.wait_ready(user, SERVER)
        yield api
    finally:
        for user in (ATTACKER, VICTIM):
            cleanup(api, user, SERVER)
        for token in minted(api):
            api.api("DELETE", f"/users/{VICTIM}/tokens/{token}")
        for user in (ATTACKER, VICTIM):
            wait_no_job(user, SERVER)


def authorize_if_asked(driver) -> None:
    """JupyterHub asks a person before it lets them into someone else's server."""
    buttons = driver.find_elements(By.CSS_SELECTOR, "form input[type=submit], form button[type=submit]")
    if "oauth2/authorize" in driver.current_url and buttons:
        buttons[0].click()


def test_a_page_a_student_serves_gets_nothing_of_the_trainer_who_opens_it(hub, passwords, servers, server_url,
                                                                            attack_page):
    api = servers
    with chromium() as driver:
        login(driver, hub, VICTIM, passwords[VICTIM])
        wait(driver).until(EC.url_contains("/hub/"))
        # trainer1 works in their own server: the browser holds its cookies.
        driver.get(f"{server_url(VICTIM, SERVER)}files/.no-such-file")
        wait(driver, 90).until(lambda d: "/files/" in d.current_url and "/hub/" not in d.current_url)
        secrets = {c["value"] for c in driver.get_cookies()}
        driver.get(f"{hub}/hub/home")
        secrets |= {c["value"] for c in driver.get_cookies()}

        driver.get(attack_page)
        authorize_if_asked(driver)
        wait(driver, 90).until(EC.title_is("done"))
        loot = json.loads(driver.find_element(By.ID, "loot").text)

    leaked = sorted(name for name, value in loot.items()
                    if isinstance(value, dict) and "body" in value and value.get("status", 200) < 400)
    assert leaked == [], loot
    seen = json.dumps(loot)
    assert [s for s in secrets if len(s) > 8 and s in seen] == [], loot
    assert minted(api) == []
