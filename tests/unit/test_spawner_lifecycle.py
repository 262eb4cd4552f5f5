"""The spawner's lifecycle (start, poll, stop, resume after a hub restart, cancel while pending)
in an in-process JupyterHub, as JupyterHub's and kubespawner's own tests run it
(`jupyterhub.tests.mocking.MockHub`: a real hub application, its database, its User objects),
with Slurm played by `FakeSlurm`, a runner that answers sbatch, squeue, sacct and scancel
from a script of job states. Nothing here talks to a real Slurm.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

import pytest
from jupyterhub import orm
from jupyterhub.tests.mocking import MockHub
from jupyterhub.tests.utils import add_user
from sqlalchemy import event
from tornado import web
from traitlets.config import Config

from aifactory.slurm import sacct as sacct_format
from aifactory.slurm import squeue as squeue_format
from aifactory.slurm.runner import NoAnswer, Refused
from aifactory.slurm.states import FINAL_STATES
from aifactory.spawners import cluster_state, poller
from aifactory.spawners import slurm as slurm_spawner
from aifactory.spawners.job_state import ServerJob, from_state, to_state
from aifactory.spawners.jupyterhub_internals import UnsupportedJupyterHub, check_version
from aifactory.spawners.metrics import SPAWN_FAILURES
from aifactory.spawners.refused_forms import RefusedForms
from aifactory.spawners.script import job_name, submit_argv
from aifactory.spawners.slurm import SiteSlurmSpawner
from tests.unit.sites import SMALL_SITE

SLURM = {"sbatch", "squeue", "sacct", "scancel", "sinfo", "sacctmgr", "scontrol"}
# A person's account as the cluster sees it (the fake's `id`); the name is one every system's passwd
# knows, since batchspawner's user_env takes HOME and SHELL from the hub's passwd.
USER = "nobody"
USER_ID = f"uid=2001({USER}) gid=2001({USER}) groups=2001({USER}),3001(students)"


class FakeSlurm:
    """A SlurmRunner stand-in: `states[job_id]` is the script of states the job goes through,
    one per squeue answer (the last one stays); a final state (COMPLETED, CANCELLED, ...) means the
    job left the queue and sacct reports it. `down` makes Slurm's commands answer nothing;
    `errors[command]` is what that one command raises instead of answering."""

    def __init__(self, states: tuple[str, ...] = ("RUNNING",), node: str = "node1"):
        self.script, self.node = list(states), node
        self.states: dict[str, list[str]] = {}
        self.calls: list[tuple[list[str], str | None, dict | None]] = []
        self.down = False
        self.errors: dict[str, Exception] = {}
        self._next_id = 1234

    def __deepcopy__(self, memo) -> FakeSlurm:
        return self  # one cluster: traitlets copies config values, every spawner must reach this one

    def commands(self, name: str) -> list[list[str]]:
        return [argv for argv, _, _ in self.calls if name in argv[:5]]

    def set_state(self, job_id: str, *states: str) -> None:
        self.states[job_id] = list(states)

    async def run(self, argv, *, timeout=None, input=None, env=None) -> str:
        self.calls.append((list(argv), input, env))
        command = next((word for word in argv if word in SLURM), argv[0])
        if self.down and command in SLURM:
            raise NoAnswer("Unable to contact slurm controller (connect failure)")
        if command in self.errors:
            raise self.errors[command]
        if command == "id":
            return USER_ID + "\n"
        if command == "sacctmgr":
            return "proj_a|proj_a\n"
        if command == "sbatch":
            job_id, self._next_id = str(self._next_id), self._next_id + 1
            self.states[job_id] = list(self.script)
            return f"{job_id}\n"
        if command == "squeue":
            return "".join(self._squeue_line(job_id) for job_id in list(self.states))
        if command == "sacct":
            return "".join(self._sacct_line(job_id) for job_id, states in self.states.items()
                           if states[0] in FINAL_STATES)
        if command == "scancel":
            for job_id in argv[1:]:
                if job_id in self.states:
                    self.states[job_id] = ["CANCELLED"]
            return ""
        return ""  # sinfo, scontrol: nothing to report

    def _squeue_line(self, job_id: str) -> str:
        states = self.states[job_id]
        state = states.pop(0) if len(states) > 1 else states[0]
        if state in FINAL_STATES:
            self.states[job_id] = [state]
            return ""
        fields = {"%i": job_id, "%K": "N/A", "%T": state, "%r": "Resources" if state == "PENDING" else "None",
                  "%N": self.node if state == "RUNNING" else "", "%S": "N/A", "%P": "cpu", "%Q": "1000",
                  "%V": "2026-12-01T10:00:00", "%u": USER}
        return "|".join(fields[code] for code in squeue_format.FORMAT.split("|")) + "\n"

    def _sacct_line(self, job_id: str) -> str:
        fields = {"JobIDRaw": job_id, "JobID": job_id, "State": self.states[job_id][0], "ExitCode": "0:0",
                  "Account": "proj_a", "User": USER, "Start": "2026-12-01T10:00:00",
                  "End": "2026-12-01T10:05:00", "AllocTRES": "cpu=1,mem=2G,node=1"}
        return "|".join(fields[name] for name in sacct_format.FIELDS) + "\n"


@pytest.fixture
def slurm() -> FakeSlurm:
    return FakeSlurm()


@pytest.fixture
async def hub(tmp_path, monkeypatch, slurm):
    """An in-process JupyterHub whose spawner is SiteSlurmSpawner on a small site, Slurm played by `slurm`;
    fresh hub-wide caches."""
    site = tmp_path / "site.yaml"
    site.write_text(SMALL_SITE)
    monkeypatch.chdir(tmp_path)  # whatever the hub writes in its working directory stays out of the checkout
    monkeypatch.setattr(poller, "_shared", {})
    monkeypatch.setattr(cluster_state, "_CACHE", {})
    monkeypatch.setattr(cluster_state, "_LOCKS", {})
    monkeypatch.setattr(slurm_spawner, "REFUSED", RefusedForms())
    config = Config()
    config.JupyterHub.spawner_class = SiteSlurmSpawner
    config.JupyterHub.allow_named_servers = True
    config.JupyterHub.cleanup_servers = False
    config.JupyterHub.cleanup_proxy = False
    config.JupyterHub.cookie_secret = os.urandom(32)  # nothing written into the checkout
    config.SiteSlurmSpawner.site_file = str(site)
    config.SiteSlurmSpawner.slurm_runner = slurm
    config.SiteSlurmSpawner.slurm_poll_interval = 0.1
    config.SiteSlurmSpawner.startup_poll_interval = 0.05
    app = MockHub(config=config)
    await app.initialize([])
    yield app
    for shared in poller._shared.values():
        if shared._task is not None:
            shared._task.cancel()
    app.db.close()
    MockHub.clear_instance()


def spawner_of(app, server: str = "") -> SiteSlurmSpawner:
    """The spawner of USER's server `server` (named servers made as JupyterHub's API makes them)."""
    user = add_user(app.db, app, name=USER)
    if server not in user.orm_spawners:
        app.db.add(orm.Spawner(user=user.orm_user, name=server))
        app.db.commit()
    spawner = user.spawners[server]
    spawner.api_token = user.new_api_token()
    return spawner


def after_restart(app, spawner: SiteSlurmSpawner, monkeypatch, slurm: FakeSlurm) -> SiteSlurmSpawner:
    """The hub process restarts: a new shared poller, a new spawner loaded from the database (as
    JupyterHub's init_spawners makes it), Slurm reached through `slurm`."""
    monkeypatch.setattr(poller, "_shared", {})
    monkeypatch.setattr(app.config.SiteSlurmSpawner, "slurm_runner", slurm)
    app.db.expire_all()
    spawner.user.spawners.pop(spawner.name)
    return spawner.user.spawners[spawner.name]  # JupyterHub loads its saved state


async def eventually(check, seconds: float = 5.0):
    """The first true value of `check()` (awaited if need be) within `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


async def started(spawner: SiteSlurmSpawner, options: dict, port: int = 8888, save: bool = True):
    """Start as JupyterHub does (options hook, then start, then it saves the state), the server reporting
    `port` once submitted."""
    spawner.user_options = options
    await spawner.apply_user_options(spawner, options)
    start = asyncio.ensure_future(spawner.start())
    assert await eventually(lambda: spawner.report_port(port) or start.done())
    address = await asyncio.wait_for(start, 10)
    if save:  # as JupyterHub's User.spawn does once start returns
        spawner.orm_spawner.state = spawner.get_state()
        spawner.user.db.commit()
    return address


# -- the state object: pure, as JupyterHub stores it --------------------------------
def test_job_state_round_trips_through_jupyterhubs_state_dict():
    running = ServerJob().submitted("1234", "f00d", 1700000000.0).listening("node1", 8888)
    assert to_state(running) == {"job_id": "1234", "token_sha256": "f00d", "submitted_at": 1700000000.0,
                                 "ip": "node1", "port": 8888}
    assert from_state(to_state(running)) == running
    waiting = ServerJob().submitted("99", "beef", 1.0)
    assert to_state(waiting)["awaiting_port"] is True and from_state(to_state(waiting)) == waiting
    stopped = ServerJob(job_id="1", job_status="TIMEOUT", stop_reason="walltime").cleared()
    assert to_state(stopped) == {"stop_reason": "walltime"} and from_state({}) == ServerJob()


def test_jupyterhub_internals_refuse_a_version_they_were_not_written_for():
    check_version("6.1.1")
    with pytest.raises(UnsupportedJupyterHub, match="JupyterHub 7.0.0"):
        check_version("7.0.0")
    with pytest.raises(UnsupportedJupyterHub, match="4.1.5"):
        check_version("4.1.5")


# -- the lifecycle in an in-process hub -----------------------------------------------
async def test_start_submits_the_script_as_the_user_and_keeps_the_job_in_the_state(hub, slurm):
    slurm.script = ["PENDING", "PENDING", "RUNNING"]
    spawner = spawner_of(hub)
    assert await started(spawner, {"profile": "small", "cpus": "2"}) == ("node1", 8888)
    ((argv, script, env),) = [call for call in slurm.calls if "sbatch" in call[0]]
    assert argv == submit_argv(USER)
    assert "#SBATCH --partition=cpu" in script and "#SBATCH --account=proj_a" in script
    assert "#SBATCH --cpus-per-task=2" in script
    assert env["JUPYTERHUB_API_TOKEN"] == spawner.api_token  # by the environment, never argv
    hub.db.expire_all()
    saved = spawner.orm_spawner.state
    assert saved["job_id"] == "1234" and (saved["ip"], saved["port"]) == ("node1", 8888)
    assert "awaiting_port" not in saved
    assert spawner.owns_token(spawner.api_token) and not spawner.owns_token("another")
    steps = [message for message, _ in spawner.start_log.events]
    assert any(step.startswith("Pending: waiting for resources") for step in steps), steps
    assert steps[-1] == "Server starting on node1:8888"


async def test_poll_says_running_then_the_final_state_and_unknown_is_never_gone(hub, slurm):
    spawner = spawner_of(hub)
    await started(spawner, {"profile": "small"})
    assert await spawner.poll() is None
    slurm.down = True  # the controller does not answer: the server stays
    await asyncio.sleep(0.5)
    assert spawner.poller.view("1234").kind == "unknown"
    assert await spawner.poll() is None
    slurm.down = False
    slurm.set_state("1234", "TIMEOUT")
    assert await eventually(spawner.poll) == 1
    assert spawner.job.job_status == "TIMEOUT"
    assert "[TIMEOUT]" in spawner.job.stop_reason and "1234" in spawner.job.stop_reason


async def test_stop_cancels_the_job_and_clears_the_state(hub, slurm):
    spawner = spawner_of(hub)
    await started(spawner, {"profile": "small"})
    await spawner.user.stop("")  # JupyterHub's stop: poll, stop, clear_state, save
    assert slurm.commands("scancel") == [["scancel", "1234"]]
    assert spawner.job.job_id == "" and spawner.job_id == ""
    hub.db.expire_all()
    assert "job_id" not in spawner.orm_spawner.state


async def test_a_submission_without_an_answer_is_503_and_cancels_that_servers_job_by_name(hub, slurm):
    slurm.errors["sbatch"] = NoAnswer("sbatch did not answer within 60 s")
    spawner = spawner_of(hub, "gpu")
    failures = SPAWN_FAILURES.labels(reason="submit")._value.get()
    with pytest.raises(web.HTTPError) as error:
        await started(spawner, {"profile": "small"})
    assert error.value.status_code == 503 and "did not answer within 60 s" in error.value.log_message
    # The controller may have queued it: every job of this server goes, no other server's.
    assert slurm.commands("scancel") == [["scancel", f"--user={USER}", f"--name={job_name(USER, 'gpu')}"]]
    assert SPAWN_FAILURES.labels(reason="submit")._value.get() == failures + 1
    assert spawner.job.job_id == ""


async def test_a_refused_submission_is_400_with_slurms_reason_and_nothing_to_cancel(hub, slurm):
    reason = "sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified"
    slurm.errors["sbatch"] = Refused(submit_argv(USER), 1, reason)
    spawner = spawner_of(hub)
    with pytest.raises(web.HTTPError) as error:
        await started(spawner, {"profile": "small"})
    assert error.value.status_code == 400 and reason in error.value.log_message
    assert slurm.commands("scancel") == []
    assert spawner.job.job_id == ""


async def test_a_restarted_hub_follows_the_running_job_without_a_new_submission(hub, slurm, monkeypatch):
    spawner = spawner_of(hub)
    await started(spawner, {"profile": "small"})
    restarted = FakeSlurm()
    restarted.set_state("1234", "RUNNING")
    again = after_restart(hub, spawner, monkeypatch, restarted)
    assert again.job == spawner.job
    assert await again.poll() is None
    assert restarted.commands("sbatch") == [] and restarted.commands("squeue")
    assert await again.get_url() == "http://node1:8888"
    assert again.owns_token(spawner.api_token)


async def test_a_restarted_hub_resumes_a_start_still_queued_with_the_same_job(hub, slurm, monkeypatch):
    slurm.script = ["PENDING"]
    spawner = spawner_of(hub)
    spawner.user_options = {"profile": "small"}
    start = asyncio.ensure_future(spawner.start())
    assert await eventually(lambda: spawner.job.job_id)
    assert spawner.orm_spawner.state["awaiting_port"] is True
    # The hub process dies here: nothing of it runs on (its start would cancel the job).
    monkeypatch.setattr(spawner, "cancel", lambda job_id: asyncio.sleep(0))
    start.cancel()
    await asyncio.gather(start, return_exceptions=True)
    restarted = FakeSlurm()
    restarted.set_state("1234", "PENDING", "RUNNING")
    again = after_restart(hub, spawner, monkeypatch, restarted)
    check = asyncio.ensure_future(again.poll())  # JupyterHub's startup check
    assert await eventually(lambda: again.pending == "spawn")  # shown as a pending spawn meanwhile
    assert await eventually(lambda: again.report_port(9999))
    assert await asyncio.wait_for(check, 10) is None
    assert restarted.commands("sbatch") == []
    assert (again.job.job_id, again.job.port, again.job.awaiting_port) == ("1234", 9999, False)
    assert again.pending == "check"  # JupyterHub's check verifies the server next
    hub.db.expire_all()  # saved by the resumed start itself: JupyterHub's startup check does not save
    assert (again.orm_spawner.state["port"], "awaiting_port" in again.orm_spawner.state) == (9999, False)


async def test_a_start_commits_the_hubs_database_once(hub, slurm):
    """Every commit of the hub's SQLite database blocks its event loop until the disk answers; in a class
    start that was the hub's API latency. The spawner saves the job once, when sbatch answers; the rest
    JupyterHub saves after start."""
    spawner = spawner_of(hub)
    commits = []
    event.listen(hub.db, "after_commit", lambda session: commits.append(dict(spawner.orm_spawner.state)))
    await started(spawner, {"profile": "small"}, save=False)
    assert [(state["job_id"], state["awaiting_port"]) for state in commits] == [("1234", True)]


async def test_a_stop_while_the_job_is_pending_cancels_it_and_ends_the_start(hub, slurm, caplog):
    slurm.script = ["PENDING"]
    spawner = spawner_of(hub)
    spawner.user_options = {"profile": "small"}
    cancelled_before = SPAWN_FAILURES.labels(reason="cancelled")._value.get()
    start = asyncio.ensure_future(spawner.start())
    assert await eventually(lambda: spawner.job.job_id)
    # What JupyterHub's DELETE of a pending server does: cancel the spawn, then stop.
    start.cancel()
    with caplog.at_level(logging.WARNING):
        await spawner.user.stop("")
        with pytest.raises(asyncio.CancelledError):
            await start
    assert ["scancel", "1234"] in slurm.commands("scancel")
    assert slurm.states["1234"] == ["CANCELLED"]
    assert f"Start of {USER}'s job 1234 did not complete; cancelling it" in caplog.text
    assert SPAWN_FAILURES.labels(reason="cancelled")._value.get() == cancelled_before + 1
    assert spawner.job.job_id == ""


async def test_a_refused_form_comes_back_on_that_servers_form_only(hub):
    default, gpu, cpu = spawner_of(hub, ""), spawner_of(hub, "gpu"), spawner_of(hub, "cpu")
    wrong = {"profile": "small", "cpus": "99"}
    gpu.user_options = wrong
    with pytest.raises(web.HTTPError) as refused:
        await gpu.apply_user_options(gpu, wrong)
    assert refused.value.status_code == 400 and "'cpus'" in refused.value.log_message
    message = "99 is out of range; allowed 1 to 4"
    assert message in refused.value.log_message
    assert "99" not in await cpu.get_options_form()  # the user's other server: a clean form
    # The page answering the refused POST: JupyterHub renders it with the user's default spawner.
    again = await default.get_options_form()
    assert 'name="cpus" type="number" class="form-control" value="99"' in again
    assert f'<div class="aif-error" id="error-cpus" role="alert">{message}</div>' in again
    assert "99" not in await gpu.get_options_form()  # shown once


def test_a_refusal_reaches_only_the_page_that_answers_it():
    now = [0.0]
    forms = RefusedForms(clock=lambda: now[0])
    forms.remember("ada", "gpu", {"cpus": "99"}, (("cpus", "too many"),))
    forms.remember("bob", "gpu", {"cpus": "98"}, (("cpus", "too many"),))
    now[0] = 11.0  # later than the answer to the refused POST
    assert forms.take("ada", "") is None  # the default server's form opened later is clean
    assert forms.take("ada", "cpu") is None
    assert forms.take("ada", "gpu").values == {"cpus": "99"}  # the server's own form, within keep_seconds
    forms.remember("ada", "gpu", {"cpus": "97"}, (("cpus", "too many"),))
    assert forms.take("bob", "") is None  # another user's page, however fresh ada's refusal
    assert forms.take("ada", "").values == {"cpus": "97"}  # the answer to the POST, at once
    assert forms.take("ada", "gpu") is None  # shown once
    now[0] = 400.0
    assert forms.take("bob", "gpu") is None  # too old