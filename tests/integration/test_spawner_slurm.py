"""The Slurm spawner on the real local cluster, driven through the hub's REST API.

Each test uses its own named servers (job names `jupyter-<user>-sp-...`) so it
does not meet other tests' servers, keeps jobs small, and cancels what it
started in `finally`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

pytestmark = [pytest.mark.slurm, pytest.mark.hub]


class Hub:
    def __init__(self, url: str, token: str):
        self.url, self.headers = url, {"Authorization": f"token {token}"}

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, f"{self.url}/hub/api{path}", headers=self.headers, timeout=120, **kwargs)

    def server(self, user: str, name: str) -> dict | None:
        return self.api("GET", f"/users/{user}?include_stopped_servers=1").json()["servers"].get(name)

    def spawn(self, user: str, name: str, options: dict | None = None) -> requests.Response:
        return self.api("POST", f"/users/{user}/servers/{name}", json=options or {})

    def wait_ready(self, user: str, name: str, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.server(user, name)
            if server and server["ready"]:
                return server
            if server and server["stopped"] and not server["pending"]:
                pytest.fail(f"{user}/{name} stopped while starting: {server.get('state')}")
            time.sleep(0.5)
        queue = subprocess.run(["squeue", "-h", "-o", "%i %u %j %T %r %C %m %b"], capture_output=True, text=True)
        pytest.fail(f"{user}/{name} not ready within {timeout}s; the queue:\n{queue.stdout}")

    def wait_stopped(self, user: str, name: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.server(user, name)
            if server is None or (server["stopped"] and not server["pending"]):
                return server or {}
            time.sleep(1)
        pytest.fail(f"{user}/{name} still running after {timeout}s")

    def stop(self, user: str, name: str, remove: bool = False) -> requests.Response:
        return self.api("DELETE", f"/users/{user}/servers/{name}", json={"remove": remove})


def jobs_of(user: str, name: str) -> list[tuple[str, str]]:
    """(job id, state) of the user's jobs named for this server, still in the queue."""
    out = subprocess.run(["squeue", "-h", "-u", user, "-n", f"jupyter-{user}-{name}", "-o", "%i %T"],
                         capture_output=True, text=True).stdout
    return [tuple(line.split()) for line in out.splitlines()]


def wait_no_job(user: str, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while jobs_of(user, name):
        assert time.monotonic() < deadline, f"job of {user}/{name} left behind: {jobs_of(user, name)}"
        time.sleep(1)


def cleanup(hub: Hub, user: str, name: str) -> None:
    """Stop and forget the named server (named servers count against the user's limit)."""
    hub.stop(user, name, remove=True)
    for job_id, _ in jobs_of(user, name):
        subprocess.run(["scancel", job_id])


def progress_messages(api: Hub, user: str, name: str, until: str, timeout: float = 60) -> list[str]:
    """Messages of the spawn's event stream until one contains `until`."""
    messages = []
    with requests.get(f"{api.url}/hub/api/users/{user}/servers/{name}/progress", headers=api.headers,
                      stream=True, timeout=timeout) as response:
        deadline = time.monotonic() + timeout
        for line in response.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                messages.append(json.loads(line[5:])["message"])
                if until in messages[-1]:
                    break
            assert time.monotonic() < deadline, messages
    return messages


def server_token(user: str, port: int) -> str:
    """The API token in the environment of the user's launcher that reported `port` (read as root)."""
    pids = subprocess.run(["pgrep", "-u", user, "-f", "aifactory.spawners.singleuser"], capture_output=True,
                          text=True).stdout.split()
    for pid in pids:
        env = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
        session = Path(env.get("HOME", "/nonexistent"), ".aifactory", f"session-{env.get('SLURM_JOB_ID')}.json")
        if session.exists() and json.loads(session.read_text())["port"] == port:
            return env["JUPYTERHUB_API_TOKEN"]
    pytest.fail(f"no launcher of {user} on port {port}")


@pytest.mark.parametrize("user, name, options, expect_env", [
    ("student1", "sp-py", {"profile": "cpu", "memory": "1G"}, "aifactory"),
    ("student1", "sp-lmod", {"profile": "course"}, "aifactory-module"),
])
def test_spawn_in_each_environment_and_reach_the_server(api, server_url, user, name, options, expect_env):
    try:
        assert api.spawn(user, name, options).status_code in (201, 202)
        server = api.wait_ready(user, name)
        assert server["user_options"] == options
        ((job_id, state),) = jobs_of(user, name)
        assert state == "RUNNING"
        script = subprocess.run(["scontrol", "write", "batch_script", job_id, "-"], capture_output=True,
                                text=True).stdout
        assert ("module load aifactory/1.0" in script) == (expect_env == "aifactory-module")
        reach = requests.get(f"{server_url(user, name)}api/status", headers=api.headers, timeout=10)
        assert reach.status_code == 200
        session = json.loads(Path(f"/home/{user}/.aifactory/session-{job_id}.json").read_text())
        assert session["ends_at"] > time.time() + 30 * 60
        # The server's own token may report a port only, and only while its spawner waits for one.
        token = server_token(user, session["port"])
        port_api = f"{api.url}/hub/api/aifactory/port"
        own = {"Authorization": f"token {token}"}
        assert requests.post(port_api, json={"port": 1, "ip": "10.0.0.1"}, headers=own, timeout=10).status_code == 400
        assert requests.post(port_api, json={"port": 1}, headers=own, timeout=10).status_code == 409
        assert api.server(user, name)["ready"]
    finally:
        cleanup(api, user, name)
    wait_no_job(user, name)


@pytest.mark.parametrize("options, words", [
    ({"cpus": 99}, "'cpus': 99 is out of range; allowed 1 to 8"),
    ({"profile": "gpu"}, "'profile': 'gpu' is not allowed; choose one of: cpu, course"),
    ({"walltime": "5-00:00:00"}, "allowed 00:01:00 to 12:00:00"),
    ({"command": "rm -rf /"}, "'command': unknown option"),
])
def test_invalid_options_are_refused_with_the_field_and_nothing_is_submitted(api, options, words):
    try:
        response = api.spawn("student3", "sp-bad", options)
        assert response.status_code == 400
        assert words in response.json()["message"]
        assert jobs_of("student3", "sp-bad") == []
    finally:
        cleanup(api, "student3", "sp-bad")


def test_the_port_endpoint_takes_no_token_but_a_servers_own(api):
    # The operator (a service) and a user's own API token own no waiting server.
    assert api.api("POST", "/aifactory/port", json={"port": 8888}).status_code == 403
    token = api.api("POST", "/users/student3/tokens", json={"expires_in": 120}).json()["token"]
    response = requests.post(f"{api.url}/hub/api/aifactory/port", json={"port": 8888}, timeout=10,
                             headers={"Authorization": f"token {token}"})
    assert response.status_code == 403
    # batchspawner's set-any-attribute handler is gone.
    assert api.api("POST", "/batchspawner", json={"port": 1, "cmd": ["sh"]}).status_code == 404


def test_gpu_profile_reserves_the_gres(api):
    try:
        assert api.spawn("admin1", "sp-gpu", {"profile": "gpu", "gpus": "2", "memory": "2G", "cpus": "1"}
                         ).status_code in (201, 202)
        api.wait_ready("admin1", "sp-gpu")
        ((job_id, _),) = jobs_of("admin1", "sp-gpu")
        tres = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%b"], capture_output=True, text=True).stdout
        assert "gpu:mi250x:2" in tres
    finally:
        cleanup(api, "admin1", "sp-gpu")
    wait_no_job("admin1", "sp-gpu")


def test_pending_spawn_shows_reason_and_position_and_cancel_leaves_no_job(api):
    # Fill both standard nodes' memory so a 5G server cannot start: Slurm says "Resources".
    blockers = [subprocess.run(
        ["sudo", "-u", "student3", "sbatch", "--parsable", "-J", "sp-blocker", "-p", "standard",
         "-A", "project_465000002", "--mem=5G", "-c", "1", "-t", "5", "--chdir=/tmp", "--output=/dev/null",
         "--wrap", "sleep 120"],
        capture_output=True, text=True, check=True).stdout.strip() for _node in range(2)]
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(["squeue", "-h", "-j", ",".join(blockers), "-o", "%T"], capture_output=True,
                             text=True).stdout.split() != ["RUNNING", "RUNNING"]:
            assert time.monotonic() < deadline, "the blocking jobs did not start"
            time.sleep(1)
        assert api.spawn("student3", "sp-wait", {"profile": "cpu", "memory": "5G"}).status_code in (201, 202)
        # Slurm's first word on a new job is "None" until its scheduler has looked at it.
        messages = progress_messages(api, "student3", "sp-wait", until="Pending: waiting for resources", timeout=90)
        assert "waiting in partition standard" in messages[-1]
        assert "number 1 of" in messages[-1]
        assert [s for _, s in jobs_of("student3", "sp-wait")] == ["PENDING"]
        api.stop("student3", "sp-wait")
        wait_no_job("student3", "sp-wait", timeout=30)
        assert api.wait_stopped("student3", "sp-wait", 30) is not None
    finally:
        cleanup(api, "student3", "sp-wait")
        subprocess.run(["scancel", *blockers])


@pytest.mark.slow
def test_scancel_of_a_running_server_stops_it_with_reason_cancelled(api):
    try:
        api.spawn("trainer1", "sp-cancel", {"profile": "cpu", "memory": "1G"})
        api.wait_ready("trainer1", "sp-cancel")
        ((job_id, _),) = jobs_of("trainer1", "sp-cancel")
        subprocess.run(["scancel", job_id], check=True)
        server = api.wait_stopped("trainer1", "sp-cancel", timeout=45)
        assert "[CANCELLED]" in server["state"]["stop_reason"]
        assert job_id in server["state"]["stop_reason"]
    finally:
        cleanup(api, "trainer1", "sp-cancel")


@pytest.mark.slow
def test_walltime_expiry_stops_the_server_with_reason_timeout_after_a_warning(api):
    try:
        api.spawn("trainer1", "sp-wall", {"profile": "cpu", "memory": "1G", "walltime": "1"})
        api.wait_ready("trainer1", "sp-wall")
        ((job_id, _),) = jobs_of("trainer1", "sp-wall")
        server = api.wait_stopped("trainer1", "sp-wall", timeout=150)
        assert "[TIMEOUT]" in server["state"]["stop_reason"]
        session = json.loads(Path(f"/home/trainer1/.aifactory/session-{job_id}.json").read_text())
        assert session["warned_at"] is not None  # SIGUSR1 before the end was recorded
        log = Path(f"/home/trainer1/.aifactory/jupyter-{job_id}.log").read_text()
        assert "walltime ends in" in log and "stopping the server" in log
    finally:
        cleanup(api, "trainer1", "sp-wall")


def hub_pid() -> int:
    return int(Path("/var/lib/aifactory/hub/jupyterhub.pid").read_text().split()[0])


def aifactory(*args: str) -> None:
    subprocess.run([str(Path(os.environ.get("AIFACTORY_PREFIX", "/opt/aifactory")) / "venv/bin/aifactory"), *args],
                   check=True, capture_output=True)


@pytest.mark.slow
def test_hub_killed_and_restarted_reattaches_every_server(api, server_url):
    names = ["sp-r1", "sp-r2"]
    try:
        for name in names:
            api.spawn("student1", name, {"profile": "cpu", "memory": "1G"})
        for name in names:
            api.wait_ready("student1", name)
        before = {name: jobs_of("student1", name) for name in names}
        restart_hub_with_kill9()
        for name in names:
            assert api.wait_ready("student1", name, timeout=60)
            assert jobs_of("student1", name) == before[name]
            reach = requests.get(f"{server_url('student1', name)}api/status", headers=api.headers, timeout=10)
            assert reach.status_code == 200
    finally:
        for name in names:
            cleanup(api, "student1", name)
    for name in names:
        wait_no_job("student1", name)


def hold_jobs_of(user: str, account: str, hold: bool) -> None:
    """Keep the user's new jobs in this account queued (AssocMaxJobsLimit) or let them run: touches nobody else."""
    subprocess.run(["sacctmgr", "-i", "modify", "user", user, "where", f"account={account}", "set",
                    f"MaxJobs={0 if hold else -1}"], check=True, capture_output=True)


def wait_job(user: str, name: str, state: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        jobs = jobs_of(user, name)
        if len(jobs) == 1 and jobs[0][1] == state:
            return jobs[0][0]
        assert time.monotonic() < deadline, f"{user}/{name}: {jobs}, expected one {state} job"
        time.sleep(0.5)


def start_queued(api: Hub, user: str, name: str, account: str) -> str:
    """Request a server that stays queued (see hold_jobs_of); its job id once the hub has saved it."""
    assert api.spawn(user, name, {"profile": "cpu", "memory": "1G", "account": account}).status_code == 202
    job_id = wait_job(user, name, "PENDING")
    deadline = time.monotonic() + 30
    while api.server(user, name)["state"].get("job_id") != job_id:
        assert time.monotonic() < deadline, "the hub did not save the job id"
        time.sleep(0.5)
    return job_id


def restart_hub_with_kill9() -> None:
    os.kill(hub_pid(), signal.SIGKILL)
    time.sleep(1)
    aifactory("hub", "up")


@pytest.mark.slow
def test_a_start_still_queued_when_the_hub_is_killed_completes_after_restart_with_the_same_job(api, server_url):
    user, name, account = "admin1", "sp-resume", "project_465000001"
    hold_jobs_of(user, account, True)
    try:
        job_id = start_queued(api, user, name, account)
        restart_hub_with_kill9()
        server = api.server(user, name)
        assert server["pending"] == "spawn" and not server["ready"]  # picked up again, not stopped
        messages = progress_messages(api, user, name, until="your project's limit is reached", timeout=90)
        assert f"The hub restarted; following your Slurm job {job_id} again" in messages
        assert "Pending: waiting: your project's limit is reached (AssocMaxJobsLimit)" in messages[-1]
        assert "waiting in partition standard" in messages[-1]
        assert jobs_of(user, name) == [(job_id, "PENDING")]
        hold_jobs_of(user, account, False)  # the queue frees up
        api.wait_ready(user, name, timeout=240)  # Slurm may take a backfill round or two on a shared node
        assert jobs_of(user, name) == [(job_id, "RUNNING")]
        reach = requests.get(f"{server_url(user, name)}api/status", headers=api.headers, timeout=10)
        assert reach.status_code == 200
    finally:
        hold_jobs_of(user, account, False)
        cleanup(api, user, name)
    wait_no_job(user, name)


@pytest.mark.slow
def test_a_resumed_start_cancelled_by_the_user_leaves_no_job(api):
    user, name, account = "admin1", "sp-resume-stop", "project_465000001"
    hold_jobs_of(user, account, True)
    try:
        job_id = start_queued(api, user, name, account)
        restart_hub_with_kill9()
        assert api.server(user, name)["pending"] == "spawn"
        assert api.stop(user, name).status_code in (202, 204)  # the stop button works on the resumed start
        wait_no_job(user, name, timeout=30)
        assert api.wait_stopped(user, name, 30) is not None
    finally:
        hold_jobs_of(user, account, False)
        cleanup(api, user, name)


def scrape(hub_url: str) -> dict[tuple, float]:
    """/hub/metrics as {(name, sorted label items): value}, read with the metrics service's token."""
    from prometheus_client.parser import text_string_to_metric_families

    from aifactory.hub.service import metrics_token_file

    text = requests.get(f"{hub_url}/hub/metrics", timeout=10,
                        headers={"Authorization": f"token {metrics_token_file().read_text().strip()}"}).text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


@pytest.mark.slow
def test_metrics_count_failed_spawns_by_reason_and_the_queue_wait_of_a_real_spawn(api):
    user, account = "admin1", "project_465000001"
    failures = "aifactory_spawn_failures_total"
    before = scrape(api.url)
    try:
        assert api.spawn(user, "sp-m-bad", {"cpus": 99}).status_code == 400
        cleanup(api, user, "sp-m-bad")  # named servers count against the user's limit of 2
        hold_jobs_of(user, account, True)
        assert api.spawn(user, "sp-m-gone", {"profile": "cpu", "memory": "1G", "account": account}
                         ).status_code == 202
        subprocess.run(["scancel", wait_job(user, "sp-m-gone", "PENDING")], check=True)
        assert "[CANCELLED]" in api.wait_stopped(user, "sp-m-gone", 45)["state"]["stop_reason"]
        cleanup(api, user, "sp-m-gone")
        assert api.spawn(user, "sp-m-ok", {"profile": "cpu", "memory": "1G", "account": account}
                         ).status_code == 202
        wait_job(user, "sp-m-ok", "PENDING")
        time.sleep(4)
        hold_jobs_of(user, account, False)
        api.wait_ready(user, "sp-m-ok", timeout=240)
        after = scrape(api.url)
    finally:
        hold_jobs_of(user, account, False)
        for name in ("sp-m-bad", "sp-m-gone", "sp-m-ok"):
            cleanup(api, user, name)

    def grew(name: str, **labels) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew(failures, reason="options") >= 1
    assert grew(failures, reason="job_cancelled") >= 1
    assert grew("aifactory_queue_wait_seconds_count", partition="standard") >= 1
    assert grew("aifactory_queue_wait_seconds_sum", partition="standard") >= 3
    assert after[("aifactory_servers", (("profile", "cpu"), ("state", "running")))] >= 1
    wait_no_job(user, "sp-m-ok")


@pytest.mark.slow
@pytest.mark.restarts_cluster
def test_slurmctld_down_for_a_minute_removes_no_server(api, server_url):
    names = ["sp-c1", "sp-c2"]
    try:
        for name in names:
            api.spawn("student3", name, {"profile": "cpu", "memory": "1G"})
        for name in names:
            api.wait_ready("student3", name)
        pid = int(Path("/run/aifactory/slurmctld.pid").read_text().split()[0])
        os.kill(pid, signal.SIGTERM)
        try:
            time.sleep(60)
            for name in names:
                server = api.server("student3", name)
                assert server["ready"], f"{name} removed while slurmctld was down"
        finally:
            subprocess.run(["/usr/sbin/slurmctld"], check=True)
        time.sleep(15)  # two shared polls with the controller back
        for name in names:
            assert api.server("student3", name)["ready"]
            reach = requests.get(f"{server_url('student3', name)}api/status", headers=api.headers, timeout=10)
            assert reach.status_code == 200
    finally:
        for name in names:
            cleanup(api, "student3", name)
    for name in names:
        wait_no_job("student3", name)
