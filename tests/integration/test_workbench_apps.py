"""The workbench's apps in a real server: VS Code, TensorBoard and MLflow from JupyterLab's launcher.

student1 starts a cpu server (the profile offers all three apps), writes a TensorBoard scalar and logs an
MLflow run from a notebook, then opens each app from its launcher tile in Chromium, through the hub, and
sees its own page work: VS Code's workbench, the scalar in TensorBoard, the run in MLflow.

student2, with a job on the same node, looks for the apps: no TCP port of student1's answers as an app,
the apps' sockets refuse them (their folders are student1's alone), and the apps' URLs in student1's
server refuse student2's own token.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from aifactory.spawners.singleuser import descendants, parent_pids

from .browser import chromium, login, screenshot, wait
from .test_hub_browser import notebooks, run_cell
from .test_spawner_slurm import Hub, cleanup, jobs_of, wait_no_job

pytestmark = [pytest.mark.slurm, pytest.mark.hub, pytest.mark.browser, pytest.mark.slow]

USER, ATTACKER = "student1", "student2"
SERVER = "wb-apps"
HOME = Path(pwd.getpwnam(USER).pw_dir)
TITLES = {"vscode": "VS Code", "tensorboard": "TensorBoard", "mlflow": "MLflow"}
# What each app's own first page holds (and nothing else on the node answers with).
MARKERS = {"vscode": "vscode-workbench", "tensorboard": "tb-relative-root", "mlflow": "<title>MLflow"}
# Folders in the home the apps and the test's notebook write into; removed afterwards if the test made them.
TRACES = ("tensorboard", "mlflow", "mlruns", ".local/share/code-server")
RUN = f"wb-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def server(hub, operator_token, server_url):
    """student1's cpu server with the apps (2G: VS Code, MLflow, TensorBoard and a kernel at once);
    stopped afterwards, and the home left as it was."""
    api = Hub(hub, operator_token)
    before = {t for t in TRACES if (HOME / t).exists()}
    try:
        assert api.spawn(USER, SERVER, {"profile": "cpu", "memory": "2G"}).status_code in (201, 202)
        api.wait_ready(USER, SERVER, timeout=300)
        ((job_id, _),) = jobs_of(USER, SERVER)
        yield api, job_id
    finally:
        # The notebook's MLflow experiment (MLflow deletes softly) and TensorBoard run, in folders the user had.
        mlflow_api = f"{server_url(USER, SERVER)}mlflow/ajax-api/2.0/mlflow/experiments"
        try:
            experiment = requests.get(f"{mlflow_api}/get-by-name", params={"experiment_name": RUN},
                                      headers=api.headers, timeout=60)
            if experiment.status_code == 200:
                requests.post(f"{mlflow_api}/delete", headers=api.headers, timeout=60,
                              json={"experiment_id": experiment.json()["experiment"]["experiment_id"]})
        except requests.RequestException:
            pass  # no server: nothing was logged
        cleanup(api, USER, SERVER)
        wait_no_job(USER, SERVER)
        shutil.rmtree(HOME / "tensorboard" / RUN, ignore_errors=True)
        for trace in set(TRACES) - before:
            shutil.rmtree(HOME / trace, ignore_errors=True)


def open_app(api: Hub, url: str, app: str) -> requests.Response:
    """The app's first page through the server as the operator (an admin may open any server), which also
    starts the app; the same URL for student2's token in the attack test."""
    return requests.get(f"{url}{app}/", headers=api.headers, timeout=180)


def tiles(driver, title: str) -> list:
    """The launcher's tiles of an app (jupyter-server-proxy titles them 'VS Code [↗]': it opens a new tab)."""
    return driver.find_elements(By.XPATH, f"//div[contains(@class, 'jp-LauncherCard')][starts-with(@title, '{title} ')]")


def in_new_tab(driver, click, check, timeout: float = 180) -> None:
    """Click what opens a new tab (jupyter-server-proxy opens each app in one), run `check` there, close it."""
    main, before = driver.current_window_handle, set(driver.window_handles)
    click()
    wait(driver, 30).until(lambda d: set(d.window_handles) - before)
    (tab,) = set(driver.window_handles) - before
    driver.switch_to.window(tab)
    try:
        check(timeout)
    finally:
        driver.close()
        driver.switch_to.window(main)


def body_text(driver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def test_each_app_opens_from_its_launcher_tile_and_shows_the_notebooks_work(hub, passwords, server, server_url):
    api, job_id = server
    url = server_url(USER, SERVER)
    code = (
        'import os, mlflow; from tensorboard.summary import Writer; '
        f'w = Writer(os.path.expanduser("~/tensorboard/{RUN}")); w.add_scalar("wb_test_loss", 0.5, step=1); '
        'w.add_scalar("wb_test_loss", 0.25, step=2); w.close(); '
        f'mlflow.set_experiment("{RUN}"); run = mlflow.start_run(run_name="{RUN}-run"); '
        'mlflow.log_metric("wb_test_accuracy", 0.875); mlflow.end_run(); '
        'print("RESULT", os.environ["MLFLOW_TRACKING_URI"], run.info.experiment_id)'
    )
    contents = f"{url}api/contents"
    made = set()
    with chromium(1400, 1000) as driver:
        try:
            login(driver, hub, USER, passwords[USER])
            wait(driver).until(EC.url_contains("/hub/"))
            driver.get(f"{url}lab?reset")
            before = notebooks(contents, api.headers)
            run_cell(driver, code)
            made = notebooks(contents, api.headers) - before
            result = wait(driver, 180).until(lambda d: next(
                (e.text for e in d.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output") if "RESULT" in e.text),
                None))
            # The kernel has the store that the MLflow app shows.
            uri, experiment = re.search(r"RESULT (\S+) (\d+)", result).groups()
            assert uri == f"sqlite:///{HOME}/mlflow/mlflow.db"

            driver.get(f"{url}lab?reset")
            wait(driver, 60).until(lambda d: all(tiles(d, title) for title in TITLES.values()))
            screenshot(driver, "launcher-apps")

            def vscode(timeout):
                wait(driver, timeout).until(EC.presence_of_element_located(
                    (By.CSS_SELECTOR, ".monaco-workbench .part.editor")))
                # Its explorer lists the home folder, read by code-server on the node: the folder the notebook made.
                wait(driver, 60).until(lambda d: "tensorboard" in d.find_element(
                    By.CSS_SELECTOR, ".explorer-folders-view").text.split())

            def tensorboard(timeout):
                wait(driver, timeout).until(lambda d: "wb_test_loss" in body_text(d))
                assert RUN in body_text(driver)  # the run (its folder) the notebook wrote

            def mlflow(timeout):
                # Its home page lists the notebook's experiment; the experiment's training runs list the run.
                wait(driver, timeout).until(lambda d: d.find_elements(By.XPATH, f"//a[normalize-space(.)='{RUN}']"))
                link = driver.find_element(By.XPATH, f"//a[normalize-space(.)='{RUN}']").get_attribute("href")
                assert link.endswith(f"#/experiments/{experiment}"), link
                driver.get(f"{link}/runs")
                wait(driver, 60).until(lambda d: f"{RUN}-run" in body_text(d))

            for app, check in (("vscode", vscode), ("tensorboard", tensorboard), ("mlflow", mlflow)):
                in_new_tab(driver, lambda: tiles(driver, TITLES[app])[0].click(), check)
        finally:
            for notebook in made:
                requests.delete(f"{contents}/{notebook}", headers=api.headers, timeout=30)


def app_of(cmdline: str) -> str | None:
    if "code-server" in cmdline and "--socket" in cmdline:
        return "vscode"
    return next((a for a in ("tensorboard", "mlflow") if f"workbench.serve {a}" in cmdline), None)


def app_sockets(job_id: str) -> dict[str, dict[str, list[str]]]:
    """The apps of a server's job, as root sees them in /proc (the nodes share the host's process table; each
    has its own network namespace): {app: {"tcp_listen": local addresses, "unix": listening socket paths}}."""
    stats, apps = {}, {}
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if f"SLURM_JOB_ID={job_id}".encode() not in environ:
                continue
            stats[pid] = Path(f"/proc/{pid}/stat").read_text()
            apps[pid] = app_of(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            pass
    parents = parent_pids(stats)
    found: dict[str, dict[str, list[str]]] = {}
    for pid, app in apps.items():
        if app is None or apps.get(parents.get(pid)) == app:
            continue  # not an app, or a process of an app under its first one
        inodes = set()
        for p in descendants(pid, parents):
            try:
                links = [os.readlink(f"/proc/{p}/fd/{fd}") for fd in os.listdir(f"/proc/{p}/fd")]
            except OSError:
                continue
            inodes |= {link[8:-1] for link in links if link.startswith("socket:[")}
        net = Path(f"/proc/{pid}/net")
        tcp = [line.split() for t in ("tcp", "tcp6") for line in (net / t).read_text().splitlines()[1:]]
        unix = [line.split() for line in (net / "unix").read_text().splitlines()[1:]]
        entry = found.setdefault(app, {"tcp_listen": [], "unix": []})
        entry["tcp_listen"] += [f[1] for f in tcp if f[3] == "0A" and f[9] in inodes]
        entry["unix"] += [f[7] for f in unix if len(f) > 7 and f[6] in inodes and f[3] == "00010000"]
    return found


def test_another_user_on_the_node_reaches_no_app(server, server_url, hub):
    api, job_id = server
    url = server_url(USER, SERVER)
    for app in TITLES:  # student1's apps run (an admin's request starts them as a user's click would)
        page = open_app(api, url, app)
        assert page.status_code == 200 and MARKERS[app] in page.text, (app, page.status_code, page.text[:300])

    # As root: each app listens on a socket in jupyter-server-proxy's private folder, on no TCP port.
    sockets = app_sockets(job_id)
    assert set(sockets) == set(TITLES), sockets
    for app, seen in sockets.items():
        assert seen["tcp_listen"] == [], (app, seen)
        assert any(re.search(r"/jupyter-server-proxy-[^/]+/socket$", path) for path in seen["unix"]), (app, seen)

    # student2, in a job of their own on the same node, looks for them.
    node = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%N"], capture_output=True, text=True).stdout.strip()
    victim = pwd.getpwnam(USER).pw_uid
    attack = subprocess.run(
        ["sudo", "-u", ATTACKER, "srun", "-p", "standard", "-A", "project_465000002", f"--nodelist={node}",
         "-n", "1", "-c", "1", "--mem=256M", "-t", "5", "-J", "wb-attack", "--chdir=/tmp",
         "/usr/bin/python3", "-I", "-", str(victim)],
        input=(Path(__file__).parent / "app_attacker.py").read_text(), capture_output=True, text=True, timeout=300)
    assert attack.returncode == 0, attack.stderr
    loot = json.loads(attack.stdout.strip().splitlines()[-1])
    session = json.loads((HOME / ".aifactory" / f"session-{job_id}.json").read_text())
    # The control: student2 does see student1's ports (the server's own, which wants the hub's login).
    assert str(session["port"]) in loot["ports"], loot
    for port, answer in loot["ports"].items():
        assert not [m for m in MARKERS.values() if m in answer], (port, answer[:500])
    theirs = [(path, result) for path, owner, result in loot["sockets"] if owner == victim]
    assert len([path for path, _ in theirs if "/jupyter-server-proxy-" in path]) >= len(TITLES), loot["sockets"]
    assert {result for _, result in theirs} == {"Permission denied"}, theirs  # VS Code's own IPC sockets too

    # Through student1's server, with a token of student2's own: refused, never the app.
    token = requests.post(f"{api.url}/hub/api/users/{ATTACKER}/tokens", headers=api.headers,
                          json={"expires_in": 300}, timeout=10).json()["token"]
    for app in TITLES:
        answer = requests.get(f"{url}{app}/", headers={"Authorization": f"token {token}"}, allow_redirects=False,
                              timeout=60)
        assert answer.status_code in (302, 403), (app, answer.status_code, answer.text[:300])
        assert not [m for m in MARKERS.values() if m in answer.text], (app, answer.text[:300])


# What student2 serves on their node's loopback: a page that, on student1's origin, would act as student1.
SERVE_ON_LOOPBACK = r"""
import http.server, sys, threading
class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<title>student2-was-here</title>"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Page)
print(server.server_address[1], flush=True)
threading.Timer(90, server.shutdown).start()
server.serve_forever()
"""


def test_the_users_server_proxies_no_port_of_another_users(server, server_url):
    """student2 serves a page on the loopback of student1's node; student1's server, through
    jupyter-server-proxy's /proxy/<port>/ or code-server's own /proxy/<port>/, never serves it on student1's
    origin. The control: the same route reaches a port of student1's own (their Jupyter server)."""
    api, job_id = server
    url = server_url(USER, SERVER)
    node = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%N"], capture_output=True, text=True).stdout.strip()
    page = subprocess.Popen(
        ["sudo", "-u", ATTACKER, "srun", "-p", "standard", "-A", "project_465000002", f"--nodelist={node}",
         "-n", "1", "-c", "1", "--mem=128M", "-t", "3", "-J", "wb-loopback", "--chdir=/tmp",
         "/usr/bin/python3", "-I", "-c", SERVE_ON_LOOPBACK], stdout=subprocess.PIPE, text=True)
    try:
        port = int(page.stdout.readline())
        for route in (f"proxy/{port}/", f"proxy/absolute/{port}/", f"proxy/localhost:{port}/",
                      f"vscode/proxy/{port}/", f"vscode/absproxy/{port}/"):
            answer = requests.get(f"{url}{route}", headers=api.headers, timeout=120)
            assert answer.status_code in (403, 404) and "student2-was-here" not in answer.text, (route, answer.text[:300])
        own = json.loads((HOME / ".aifactory" / f"session-{job_id}.json").read_text())["port"]
        control = requests.get(f"{url}proxy/{own}/api/status", headers=api.headers, timeout=60)
        assert "is not allowed" not in control.text and control.status_code != 403, control.text[:300]
    finally:
        page.kill()
        subprocess.run(["scancel", "-u", ATTACKER, "-n", "wb-loopback"])
