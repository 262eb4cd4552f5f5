"""The workbench in JupyterLab, in Chromium through the hub, on the real cluster (issue #14, points 2-4).

- A GPU server of researcher1 on small-g-1: the status bar's "Time left" is the job's end as
  `scontrol show job` has it, and follows an extension of the time limit; the "GPUs" panel, opened with the
  keyboard, shows the job's GPUs (and only them) with their readings. There is no GPU tool on this machine,
  so the test puts a stand-in `rocm-smi` on the job's PATH that prints a real capture
  (tests/unit/data/gpus/) for this test's job alone.
- A CPU server with a 3-minute walltime: the panel says "No GPU in this session", and Slurm's walltime
  warning (at half the walltime) reaches JupyterLab as a notification.
- Another user, with a token of their own, gets 403 from the victim's workbench endpoints through the proxy.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC

from aifactory.extensions.workbench.gpus import parse_rocm_smi
from aifactory.spawners.script import signal_seconds

from .browser import axe_violations, chromium, login, screenshot, wait
from .test_spawner_slurm import cleanup, jobs_of, wait_no_job

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

USER, OTHER = "researcher1", "student1"
GPU_SERVER, CPU_SERVER = "wb-gpu", "wb-cpu"
GPU = {"profile": "gpu", "cpus": "1", "memory": "2G", "gpus": "2"}
CPU = {"profile": "cpu", "cpus": "1", "memory": "1G", "walltime": "0:03:00"}
WARN_S = signal_seconds(3, 5)  # when Slurm warns a 3-minute job: at half its walltime (the hub's rule)
CAPTURE = Path(__file__).resolve().parent.parent / "unit" / "data" / "gpus" / "rocm-smi-mi100x4-rocm6.0.2.json"
# On the PATH a server job starts with (Slurm's default, the environment's bin prepended); no rocm-smi on this machine.
STAND_IN = Path("/usr/local/bin/rocm-smi")
PANEL, STATUS = "#aifactory-gpus", "#aifactory-time-left"


@pytest.fixture
def stand_in_rocm_smi():
    """A `rocm-smi` that prints the capture for this test's GPU job only (other jobs: an error, exit 2)."""
    assert not STAND_IN.exists(), f"{STAND_IN} exists: not this test's to replace"
    STAND_IN.write_text(
        "#!/bin/sh\n# Stand-in of tests/integration/test_workbench_lab.py (removed when it ends).\n"
        f'if [ "$SLURM_JOB_NAME" = "jupyter-{USER}-{GPU_SERVER}" ]; then exec cat {CAPTURE}; fi\n'
        'echo "rocm-smi: a test stand-in, not for this job" >&2\nexit 2\n')
    STAND_IN.chmod(0o755)
    try:
        yield STAND_IN
    finally:
        STAND_IN.unlink()


def job_facts(job_id: str) -> dict[str, str]:
    """`scontrol show job -d` as {key: value} (EndTime, NodeList, GRES, ...)."""
    out = subprocess.run(["scontrol", "show", "job", "-d", job_id], capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r"(\w[\w/:]*)=(\S*)", out))


def gpu_indices(job_id: str) -> list[int]:
    """The job's GPU indices on its node, from scontrol's detailed GRES ('GRES=gpu:mi250x:2(IDX:0-1)')."""
    out = subprocess.run(["scontrol", "show", "job", "-d", job_id], capture_output=True, text=True, check=True).stdout
    (idx,) = re.findall(r"IDX:([\d,-]+)", out)
    return [i for part in idx.split(",") for i in (range(int(part.split("-")[0]), int(part.split("-")[-1]) + 1))]


def end_of(job_id: str) -> float:
    return datetime.fromisoformat(job_facts(job_id)["EndTime"]).timestamp()


def minutes_shown(driver) -> int:
    """The status bar's 'Time left h:mm' in minutes."""
    text = driver.find_element(By.CSS_SELECTOR, STATUS).text
    match = re.fullmatch(r"Time left (\d+):(\d\d)", text)
    assert match, f"status bar item says {text!r}"
    return int(match.group(1)) * 60 + int(match.group(2))


def open_lab(driver, hub: str, password: str, lab: str) -> None:
    login(driver, hub, USER, password)
    wait(driver).until(EC.url_contains("/hub/"))
    driver.get(f"{lab}lab?reset")
    wait(driver, 120).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, STATUS), "Time left"))


def open_gpu_panel_with_the_keyboard(driver):
    """Focus the left sidebar's tab list (its one tabbable tab), arrow down to "GPUs", press Enter.

    Tried again from the start while JupyterLab is still restoring its layout (focus may move meanwhile)."""
    wait(driver, 60).until(EC.presence_of_element_located((By.CSS_SELECTOR, "li[data-id='aifactory-gpus']")))
    wait(driver, 60).until(EC.visibility_of_element_located((By.CSS_SELECTOR, ".jp-Launcher")))
    seen: list[list[str | None]] = []
    for _ in range(3):
        seen.append([])
        driver.find_element(By.CSS_SELECTOR, ".jp-SideBar.jp-mod-left .lm-TabBar-tab[tabindex='0']").send_keys(
            Keys.ARROW_DOWN)
        for _ in range(30):
            seen[-1].append(driver.switch_to.active_element.get_attribute("data-id"))
            if seen[-1][-1] == "aifactory-gpus":
                break
            driver.switch_to.active_element.send_keys(Keys.ARROW_DOWN)
        if driver.switch_to.active_element.get_attribute("title") == "GPUs":
            break
        time.sleep(2)
    assert driver.switch_to.active_element.get_attribute("title") == "GPUs", f"focus went {seen}"
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    return wait(driver, 30).until(EC.visibility_of_element_located((By.CSS_SELECTOR, PANEL)))


GPUS_SHOWN = """
return [...document.querySelectorAll(arguments[0] + ' .aif-gpu')].map(gpu => ({
  index: Number(gpu.getAttribute('data-index')),
  title: gpu.querySelector('h3').textContent.trim(),
  util: gpu.querySelector('.aif-gpu-util').textContent.trim(),
  mem: gpu.querySelector('.aif-gpu-mem').textContent.trim(),
  points: ((gpu.querySelector('.aif-line-util') || {getAttribute: () => ''}).getAttribute('points') || '')
    .trim().split(/\\s+/).filter(Boolean).length,
}));
"""


def gpus_shown(driver) -> list[dict]:
    """Each GPU the panel shows: index, title, utilisation and memory texts, points of its sparkline."""
    return driver.execute_script(GPUS_SHOWN, PANEL)


def test_a_gpu_server_shows_its_time_left_and_its_own_gpus(hub, passwords, api, server_url, stand_in_rocm_smi):
    try:
        assert api.spawn(USER, GPU_SERVER, GPU).status_code in (201, 202)
        api.wait_ready(USER, GPU_SERVER, timeout=240)
        ((job_id, _),) = jobs_of(USER, GPU_SERVER)
        facts = job_facts(job_id)
        assert facts["NodeList"] == "small-g-1"
        mine = gpu_indices(job_id)
        assert len(mine) == 2
        capture = {r.index: r for r in parse_rocm_smi(CAPTURE.read_text())}
        lab = server_url(USER, GPU_SERVER)
        with chromium(1400, 1000) as driver:
            open_lab(driver, hub, passwords[USER], lab)
            # The time left is Slurm's end of this job, within a minute.
            assert abs(minutes_shown(driver) - (end_of(job_id) - time.time()) / 60) <= 1.5
            item = driver.find_element(By.CSS_SELECTOR, STATUS)
            assert item.find_element(By.CSS_SELECTOR, "[aria-live='polite']")
            assert axe_violations(driver, STATUS) == []

            open_gpu_panel_with_the_keyboard(driver)
            # The panel redraws at each sample: what it shows is read in one script, never from elements
            # that a redraw may have replaced meanwhile.
            wait(driver, 60).until(lambda _: len(gpus_shown(driver)) == 2, "the panel shows no two GPUs")
            shown = {gpu["index"]: gpu for gpu in gpus_shown(driver)}
            assert sorted(shown) == sorted(mine)  # the job's GPUs, none of the node's others
            for index, gpu in shown.items():
                reading = capture[index]
                assert gpu["title"] == f"GPU {index}: {reading.name}"
                assert gpu["util"] == f"{round(reading.utilization_percent)} %"
                assert gpu["mem"] == f"{reading.memory_used_mib / 1024:.1f} of {reading.memory_total_mib / 1024:.1f} GiB"
            # The sparklines grow with each sample (every 5 s): a few for the README's picture.
            wait(driver, 60).until(lambda _: all(gpu["points"] >= 4 for gpu in gpus_shown(driver)))
            assert axe_violations(driver, PANEL) == []
            screenshot(driver, "gpu-panel")

            # The walltime extended (as the hub's home page does): the status bar follows within a minute.
            before = minutes_shown(driver)
            limit = job_facts(job_id)["TimeLimit"]
            h, m, s = (int(x) for x in limit.split("-")[-1].split(":"))
            subprocess.run(["scontrol", "update", f"JobId={job_id}", f"TimeLimit={h * 60 + m + 30}"], check=True)
            wait(driver, 90).until(lambda _: minutes_shown(driver) >= before + 28)
            assert abs(minutes_shown(driver) - (end_of(job_id) - time.time()) / 60) <= 1.5

        # Another user, with a token of their own, through the proxy: 403, nothing of the victim's.
        token = api.api("POST", f"/users/{OTHER}/tokens", json={"expires_in": 300, "note": "workbench attack"}
                        ).json()["token"]
        said = fetch_as(OTHER, token, [f"{lab}aifactory/workbench/gpus", f"{lab}aifactory/workbench/session"])
        for url, (status, body) in said.items():
            assert status == 403, (url, status, body[:300])
            assert "ends_at" not in body and "utilization" not in body
        own = requests.get(f"{lab}aifactory/workbench/gpus", headers=api.headers, timeout=30).json()
        assert own["devices"] == mine and own["message"] == ""
    finally:
        cleanup(api, USER, GPU_SERVER)
    wait_no_job(USER, GPU_SERVER)


def fetch_as(user: str, token: str, urls: list[str]) -> dict[str, tuple[int, str]]:
    """GET each URL through the proxy as `user` (their own Unix process), with their token: {url: (status, body)}."""
    program = (
        "import json, sys, urllib.request, urllib.error\n"
        "out = {}\n"
        "for url, host in json.loads(sys.argv[1]):\n"
        "    req = urllib.request.Request(url, headers={'Authorization': 'token ' + sys.argv[2], 'Host': host})\n"
        "    try:\n"
        "        with urllib.request.urlopen(req, timeout=30) as r: out[url] = (r.status, r.read().decode()[:2000])\n"
        "    except urllib.error.HTTPError as e: out[url] = (e.code, e.read().decode()[:2000])\n"
        "print(json.dumps(out))\n")
    # *.localhost: the request goes to loopback with the server's host name, as a browser's would.
    targets = [[url.replace(urlsplit(url).hostname, "127.0.0.1", 1), urlsplit(url).netloc] for url in urls]
    done = subprocess.run(["runuser", "-u", user, "--", "python3", "-I", "-c", program, json.dumps(targets), token],
                          capture_output=True, text=True, timeout=120, cwd="/")
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    return {url: tuple(said[target]) for url, (target, _) in zip(urls, targets)}


def test_a_cpu_server_has_no_gpu_and_is_warned_before_its_walltime_ends(hub, passwords, api, server_url):
    try:
        assert api.spawn(USER, CPU_SERVER, CPU).status_code in (201, 202)
        api.wait_ready(USER, CPU_SERVER, timeout=180)
        ((job_id, _),) = jobs_of(USER, CPU_SERVER)
        end = end_of(job_id)
        with chromium(1400, 1000) as driver:
            open_lab(driver, hub, passwords[USER], server_url(USER, CPU_SERVER))
            assert abs(minutes_shown(driver) - (end - time.time()) / 60) <= 1.5
            panel = open_gpu_panel_with_the_keyboard(driver)
            wait(driver, 30).until(lambda _: "No GPU in this session" in panel.text)
            assert not panel.find_elements(By.CSS_SELECTOR, ".aif-gpu")
            assert axe_violations(driver, PANEL) == []
            # Slurm's warning comes at half the 3-minute walltime; JupyterLab shows it until dismissed.
            toast = wait(driver, max(60, end - time.time())).until(EC.visibility_of_element_located(
                (By.CSS_SELECTOR, ".jp-Notification-Toast-warning .jp-toast-message")))
            at = datetime.fromtimestamp(end).strftime("%H:%M")
            assert re.fullmatch(rf"Your session ends in [12] minutes? \(at {at}\)\. Save your work, or extend it "
                                r"on the hub's home page\.", toast.text), toast.text
            # Not before its time: Slurm may send its signal up to 60 s early, then the status poll (30 s).
            assert time.time() >= end - WARN_S - 60 - 5
            # The toast's button is drawn after its message: waited for, and read as text, not as it looks mid-animation.
            button = wait(driver, 30).until(EC.visibility_of_element_located(
                (By.CSS_SELECTOR, ".jp-Notification-Toast-warning .jp-toast-button")))
            assert button.get_attribute("textContent").strip() == "Open the hub's home page"
            assert button.get_attribute("title").endswith("/hub/home")
            session = Path(f"/home/{USER}/.aifactory/session-{job_id}.json")
            wait(driver, 90).until(lambda _: json.loads(session.read_text())["warned_at"],
                                   "Slurm's SIGUSR1 did not reach the launcher")
    finally:
        cleanup(api, USER, CPU_SERVER)
    wait_no_job(USER, CPU_SERVER)


def test_a_server_whose_gpus_and_kernels_idle_is_warned_then_stops_itself_for_the_launcher(tmp_path):
    """The reclaim loop in a real Jupyter server (no Slurm: a GPU job's environment, a stand-in rocm-smi printing
    an idle capture, a 1-minute idle timeout, a 30-second warning): the session endpoint warns, then the server
    leaves the launcher's stop file with the idle reason and exits by itself."""
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "rocm-smi").write_text(f"#!/bin/sh\nexec cat {CAPTURE}\n")
    (tools / "rocm-smi").chmod(0o755)
    stop_file = tmp_path / "stop-4242.json"
    env = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}", "HOME": str(tmp_path),
           "SLURM_JOB_ID": "4242", "SLURM_JOB_GPUS": "1,2", "AIFACTORY_GPU_IDLE_MINUTES": "1",
           "AIFACTORY_STOP_FILE": str(stop_file), "AIFACTORY_JOB_END": str(int(time.time()) + 3600)}
    env.pop("JUPYTERHUB_API_TOKEN", None)
    port = 18000 + os.getpid() % 1000
    server = subprocess.Popen(
        [str(Path(os.environ.get("AIFACTORY_PREFIX", "/opt/aifactory")) / "venv/bin/jupyter"), "server",
         "--allow-root", f"--port={port}", "--port-retries=0", "--IdentityProvider.token=wb-test",
         "--ServerApp.jpserver_extensions={'aifactory.extensions.workbench.handlers': True}",
         "--Workbench.sample_seconds=2", "--Workbench.idle_warn_seconds=30", f"--ServerApp.root_dir={tmp_path}"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base, auth = f"http://127.0.0.1:{port}/aifactory/workbench", {"Authorization": "token wb-test"}
    try:
        warnings, gpus = [], {}
        deadline = time.monotonic() + 150
        while server.poll() is None and time.monotonic() < deadline:
            try:
                warnings.append(requests.get(f"{base}/session", headers=auth, timeout=5).json()["idle_warning"])
                gpus = gpus or requests.get(f"{base}/gpus", headers=auth, timeout=5).json()
            except (requests.ConnectionError, ValueError):
                pass  # starting, or stopping
            time.sleep(2)
        assert server.wait(timeout=30) == 0, "the server did not stop by itself"
        assert [g["index"] for g in gpus["gpus"]] == [1, 2] and gpus["devices"] == [1, 2]
        warned = [w for w in warnings if w.startswith("Your GPUs have been idle")]
        assert warned and re.fullmatch(r"Your GPUs have been idle for 1 minute; this server stops in 1 minute "
                                       r"unless they are used\.", warned[0]), warnings
        marker = json.loads(stop_file.read_text())
        assert marker == {"reason": "gpu-idle", "message": "its GPUs and kernels were idle for 0:01:00"}
    finally:
        if server.poll() is None:
            server.kill()
        log = server.communicate()[0]
    assert "Stopping this server: its GPUs and kernels were idle" in log, log[-3000:]


def test_a_job_that_exits_with_the_idle_code_reaches_the_hub_as_idle_gpus(cluster):
    """The channel from the launcher to the home page, on the real Slurm: a batch job of researcher1 exits with
    the launcher's GPU_IDLE_EXIT; the hub's poller finds it FAILED with that exit code in accounting and the
    stop message says why (the message the home page and the not-running page show)."""
    from aifactory.slurm.runner import SlurmRunner
    from aifactory.spawners.poller import SlurmPoller
    from aifactory.spawners.progress import stop_message
    from aifactory.spawners.singleuser import GPU_IDLE_EXIT

    job_id = subprocess.run(
        ["sudo", "-u", USER, "sbatch", "--parsable", "-J", "wb-idle-exit", "-p", "standard", "-A", "project_465000001",
         "-c", "1", "--mem=100M", "-t", "1", "--chdir=/tmp", "--output=/dev/null", "--wrap", f"exit {GPU_IDLE_EXIT}"],
        capture_output=True, text=True, check=True).stdout.strip()

    async def until_gone():
        poller = SlurmPoller(interval=3600, startup_interval=0.1, runner=SlurmRunner())
        poller.watch(job_id)
        try:
            for _ in range(60):
                view = await poller.fresh_view(job_id)
                if view.kind == "gone":
                    return view
                await asyncio.sleep(1)
        finally:
            poller._task.cancel()
        pytest.fail(f"job {job_id} still not gone: {view}")

    try:
        view = asyncio.run(until_gone())
    finally:
        subprocess.run(["scancel", job_id])
    assert (view.state, view.exit_code) == ("FAILED", f"{GPU_IDLE_EXIT}:0")
    assert stop_message(view.state, job_id, "standard-1", view.exit_code, cluster.limits.gpu_idle_timeout) == (
        f"Your server (Slurm job {job_id} on node standard-1) stopped: its GPUs and kernels were idle for "
        "01:00:00 [GPU_IDLE]")
