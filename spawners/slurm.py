"""The site's Slurm spawner: JupyterHub's Spawner hooks, wired to the steps in the modules beside it.

Built on batchspawner's SlurmSpawner (its traits and names), with its weak points replaced
(see ANCHORS.md, batchspawner):

- options: `options.validate` against the site and the user's real Slurm associations before
  anything is submitted; a refused form comes back on that server's next form (`refused_forms`);
- state: one `job_state.ServerJob`, saved as soon as sbatch answers, so a hub killed at any
  point reattaches the job; a start still pending (queued, or running without a reported port)
  is picked up again by the restarted hub's first `poll` and completes with the same job;
- Slurm: every command through the spawner's one `SlurmRunner` (`slurm_runner`, here or over
  ssh), sbatch and scancel in `job_control`, one shared `poller.SlurmPoller` per hub; no answer
  means unknown, never gone; a job that left the queue is stopped with its final state as reason;
- every stop path, a cancelled pending spawn included, runs scancel (retried by the poller
  until Slurm answers);
- the wait for a server (`start_wait`) and its steps in words (`start_log`);
- JupyterHub's private spawn state only through `jupyterhub_internals`;
- the port comes only through `port_api.PortHandler`.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from dataclasses import replace
from datetime import datetime

from batchspawner import SlurmSpawner
from jupyterhub.spawner import Spawner
from tornado import web
from traitlets import Any, Float, Integer, List, Unicode, default

from aifactory.site import identity, load_site_cached
from aifactory.site.install import shared_environment
from aifactory.site.schema import Site
from aifactory.slurm.runner import LOCAL, Refused, Route, SlurmError, SlurmRunner

from . import metrics
from .cluster_state import allocation_use, cached, partition_states
from .facts import gather_facts
from .form import options_form_html
from .job_control import cancel_by_name, cancel_job, submit
from .job_state import ServerJob, from_state, to_state
from .jupyterhub_internals import internals
from .options import OptionsError, ValidatedOptions, offers, payload_from_form, refusal_message, validate
from .poller import JobView, SlurmPoller, shared_poller
from .port_api import token_digest
from .progress import job_failure, stop_message
from .refused_forms import REFUSED
from .resume import resume_start
from .script import build_job, signal_seconds, workbench_env
from .start_log import StartLog
from .start_wait import JobEnded, until_port, until_running
from .walltime import ends_at as job_ends_at


class SiteSlurmSpawner(SlurmSpawner):
    """Starts a notebook server as a Slurm job sized by the site's profiles and the user's options."""

    site_file = Unicode(
        "", config=True, help="Site configuration file; empty means $AIFACTORY_SITE or /etc/aifactory/site.yaml."
    )
    venv = Unicode(
        str(shared_environment()), config=True,
        help="Shared environment on the nodes that holds the launcher (aifactory.spawners.singleuser); "
        "default: the one the hub runs from, mounted at the same path on every node.",
    )
    launcher = List(
        Unicode(), config=True,
        help="argv prefix of the launcher in the job; default: the venv's python -m aifactory.spawners.singleuser.",
    )
    slurm_poll_interval = Float(
        30.0, config=True, help="Seconds between the hub's shared squeue queries for running servers.",
    )
    slurm_poll_jitter = Float(0.1, config=True, help="Relative random spread of the shared poll interval.")
    slurm_timeout = Float(
        20.0, config=True, help="Seconds a Slurm command may take; no answer in time means 'unknown', never 'gone'.",
    )
    walltime_warning_minutes = Integer(
        5, config=True, help="Slurm sends the server SIGUSR1 this long before the walltime ends (at most half of it).",
    )
    facts_cache_seconds = Float(
        120.0, config=True,
        help="How long a user's Slurm accounts and reservations are reused before sacctmgr is asked again.",
    )
    slurm_missing_rounds = Integer(
        5, min=1, config=True,
        help="Polls in a row a server's job may be missing from both squeue and sacct (accounting lags behind "
        "the queue) before the hub counts the server as gone.",
    )
    sbatch_timeout = Float(
        60.0, min=1, config=True,
        help="Seconds sbatch may take to take a server's job (a busy controller answers slowly); no answer in "
        "time cancels whatever it may have queued, by the job's name.",
    )
    stop_wait_seconds = Float(
        15.0, min=0, config=True,
        help="Seconds a stop waits for Slurm to show the cancelled job gone before the server counts as stopped.",
    )
    scancel_attempts = Integer(
        3, min=1, config=True,
        help="Tries of scancel, with backoff, when a server stops; after that the shared poller retries it.",
    )
    partition_state_seconds = Float(
        5.0, min=0, config=True,
        help="How long one sinfo answer about the partitions' free capacity serves every spawn page of the hub.",
    )
    allocation_use_seconds = Float(
        60.0, min=0, config=True,
        help="How long one sacct answer about the projects' core- and GPU-hours serves the spawn pages.",
    )
    slurm_runner = Any(
        config=True,
        help="What runs this spawner's Slurm commands: an object with `async run(argv, timeout=, input=, env=)`; "
        "default: a SlurmRunner along `slurm_route()` with slurm_timeout. The hub's shared poller takes the "
        "first spawner's.",
    )

    job = ServerJob()  # this server's job; replaced (never mutated) as the start goes on
    start_log = None  # StartLog of this spawner, made on first use
    _port_event: asyncio.Event | None = None  # set when the server reports its port; None before any start
    _options: ValidatedOptions | None = None  # checked by apply_user_options, taken by start
    failure = ""  # metrics label of the current start's failure, where it is known
    _poller: SlurmPoller | None = None  # the hub's shared poller, once a running loop made it

    @default("launcher")
    def _launcher_default(self) -> list[str]:
        return [f"{self.venv}/bin/python", "-m", "aifactory.spawners.singleuser"]

    @default("batchspawner_singleuser_cmd")
    def _singleuser_default(self) -> str:
        return " ".join(self._launcher_default())

    @default("apply_user_options")
    def _apply_user_options_default(self):
        async def check(spawner, user_options):
            spawner._options = await spawner.validated_options()
        return check

    @default("options_form")
    def _options_form_default(self):
        return self._render_options_form

    @default("slurm_runner")
    def _slurm_runner_default(self) -> SlurmRunner:
        return SlurmRunner(route=self.slurm_route(), timeout=self.slurm_timeout)

    def slurm_route(self) -> Route:
        """Where Slurm's commands run: here (the hub is on a login node)."""
        return LOCAL

    @property
    def job_id(self) -> str:
        """batchspawner's name for the job's id (kept in `job`)."""
        return self.job.job_id

    @property
    def who(self) -> str:
        """'alice' or 'alice:gpu', for the hub's log."""
        return f"{self.user.name}:{self.name}" if self.name else self.user.name

    # -- site, facts, poller -------------------------------------------------
    def _site(self) -> Site:
        return load_site_cached(self.site_file or None)  # one parse per change of the file, for all spawners

    @property
    def poller(self) -> SlurmPoller:
        """The hub's shared poller, looked up once per spawner."""
        if self._poller is None:
            self._poller = shared_poller(interval=self.slurm_poll_interval, jitter=self.slurm_poll_jitter,
                                         timeout=self.slurm_timeout, startup_interval=self.startup_poll_interval,
                                         log=self.log, missing_rounds=self.slurm_missing_rounds,
                                         runner=self.slurm_runner)
        return self._poller

    async def _facts(self):
        """The user's uid, groups and Slurm facts; HTTP 403 for root, system and service accounts,
        so that nothing is ever submitted through sudo as them, whichever authenticator let them in."""
        try:  # hub-wide, like the partition state: one lookup per user per facts_cache_seconds
            facts = await cached(("facts", self.user.name), self.facts_cache_seconds,
                                 lambda: gather_facts(self.user.name, site=self._site(), runner=self.slurm_runner))
        except SlurmError as error:
            raise web.HTTPError(503, f"Could not look up your groups and Slurm projects ({error}); try again in a minute")
        why = identity.refusal(facts.name, facts.uid, self._site().hub.min_uid)
        if why:
            metrics.spawn_failed("identity")
            self.failure = "identity"
            raise web.HTTPError(403, f"No server for this account: {why}")
        return facts

    # -- options -------------------------------------------------------------
    async def _render_options_form(self, spawner=None) -> str:
        """Profile cards with live partition state and allocation use; a refused attempt comes back with its error."""
        site = self._site()
        user_offers = offers(site, await self._facts())
        accounts = user_offers[0]["account"].choices if user_offers else ()
        states, uses = await asyncio.gather(
            partition_states(max_age=self.partition_state_seconds, runner=self.slurm_runner),
            allocation_use(site, accounts, max_age=self.allocation_use_seconds, runner=self.slurm_runner),
            return_exceptions=True)
        refused = REFUSED.take(self.user.name, self.name)
        return options_form_html(user_offers, None if isinstance(states, BaseException) else states,
                                 None if isinstance(uses, BaseException) else uses,
                                 refused.values if refused else {}, refused.errors if refused else ())

    def _refuse(self, payload, error: OptionsError) -> web.HTTPError:
        """Remember the refused form for this server's next form; the HTTP error names the field."""
        metrics.spawn_failed("options")
        self.failure = "options"
        REFUSED.remember(self.user.name, self.name, payload, error.problems)
        return web.HTTPError(400, refusal_message(error))

    def options_from_form(self, formdata):
        """Form fields -> a flat payload; checked in full (with the user's Slurm facts) in `start`."""
        try:
            return payload_from_form(formdata)
        except OptionsError as error:
            raise self._refuse({}, error) from None

    def options_from_query(self, query_data):
        """A link never starts a server. JupyterHub starts one from options in a spawn URL's query on a GET,
        which needs no xsrf token: any page could make a user's browser start GPU servers on their project.
        JupyterHub shows the form with this sentence instead (a session card's link fills the form)."""
        raise web.HTTPError(400, "A link cannot start a server: choose the options below and press Start.")

    async def validated_options(self) -> ValidatedOptions:
        """The user's options checked against the site and their Slurm associations (HTTP 400 if not allowed)."""
        site = self._site()
        try:
            return validate(site, await self._facts(), self.user_options or {})
        except OptionsError as error:
            raise self._refuse(self.user_options, error) from None

    def _record_profile(self, profile: str) -> None:
        """Write the validated profile back into user_options (the servers-per-profile gauge reads it)."""
        if (self.user_options or {}).get("profile") != profile:
            self.user_options = {**(self.user_options or {}), "profile": profile}
            if self.orm_spawner is not None:  # written with the job's state once sbatch answers
                self.orm_spawner.user_options = self.user_options

    # -- state (batchspawner's job_id and job_status live in `job`) ----------
    def load_state(self, state):
        Spawner.load_state(self, state)
        self.job = from_state(state)
        if self.job.port:
            self.ip, self.port = self.job.node, self.job.port
        if self.job.job_id:
            try:
                self.poller.watch(self.job.job_id, submitted=False)
            except RuntimeError:  # no running loop yet; poll() watches
                pass

    def get_state(self):
        return {**Spawner.get_state(self), **to_state(self.job)}

    def clear_state(self):
        Spawner.clear_state(self)
        self.job = self.job.cleared()  # the stop reason survives: the user sees it
        self.port = 0

    # -- the port ------------------------------------------------------------
    def owns_token(self, token: str) -> bool:
        """Whether `token` is the API token of this spawner's job (also after a hub restart)."""
        digest = self.job.token_sha256 or (token_digest(self.api_token) if self.api_token else "")
        return bool(digest and token) and hmac.compare_digest(digest, token_digest(token))

    def report_port(self, port: int) -> bool:
        """Called by the port handler; only a spawner waiting for its port takes one (the same port again is fine)."""
        event = self._port_event
        if event is not None and event.is_set() and port == self.port:
            return True
        if event is None or event.is_set() or not self.job.job_id:
            return False
        self.port = port
        event.set()
        return True

    async def get_url(self):
        """The server's address from the saved state (JupyterHub asks after a restart)."""
        if self.ip and self.port:
            return f"http://{self.ip}:{self.port}"
        return await super().get_url()

    # -- start ---------------------------------------------------------------
    async def start(self):
        """Submit the server's job and wait for it; each failure is counted by reason in the hub's metrics."""
        began = time.monotonic()
        self.failure = ""
        try:
            return await self._start()
        except BaseException as error:
            reason = self.failure or interrupted_reason(error, time.monotonic() - began, self.start_timeout)
            if reason not in ("options", "identity"):  # counted where they were refused
                metrics.spawn_failed(reason)
            raise

    def begin_attempt(self, first_step: tuple[str, int]) -> StartLog:
        """A new attempt: a fresh port event and step log (the previous server's stop reason shown once)."""
        self._port_event = asyncio.Event()
        self.start_log = self.start_log or StartLog()
        self.start_log.begin(previous_stop=self.job.stop_reason)
        self.start_log.step(*first_step)
        return self.start_log

    async def _start(self):
        log = self.begin_attempt(("Checking your options", 5))
        self.port = 0
        self.job = replace(self.job, stop_reason="")
        # Checked by the apply_user_options hook before start (HTTP 400 there); again if called directly.
        options = self._options or await self.validated_options()
        self._options = None
        self._record_profile(options.profile)
        site = self._site()
        # The job finds the user's home and makes ~/.aifactory itself (script.HOME_LINES): no user lookup here.
        partition = site.partition(options.partition)
        env = {**self.get_env(), **workbench_env(
            site.profile(options.profile).apps, options.gpus, site.limits.gpu_idle_timeout,
            signal_seconds(options.walltime_minutes, self.walltime_warning_minutes),
            courses=[course.id for course in site.courses if course.profile == options.profile])}
        job = build_job(
            options, site.environment(options.environment), user=self.user.name,
            env_names=list(env), launcher=self.launcher, server_args=self.get_args(),
            gpu_vendor=partition.gpu_vendor, server_name=self.name,
            warn_minutes=self.walltime_warning_minutes,
        )
        log.step(f"Submitting {options.summary()}", 10)
        self.log.info("Submitting the server of %s: %s", self.user.name, " ".join(job.argv))
        submission = asyncio.ensure_future(
            submit(self.slurm_runner, job.argv, job.script, env, timeout=self.sbatch_timeout))
        try:
            job_id = await asyncio.shield(submission)
        except asyncio.CancelledError:
            await self._cancel_submission(submission)
            raise
        except Refused as error:
            self.failure = "submit"
            raise web.HTTPError(400, f"Slurm refused the job: {error.stderr}") from None
        except SlurmError as error:  # no answer, or one without a job id: a job may be queued
            self.failure = "submit"
            await cancel_by_name(self.slurm_runner, self.user.name, self.name, self.log)
            raise web.HTTPError(503, f"Slurm did not answer the submission ({error}); nothing is left queued")
        self.poller.watch(job_id)
        self.job = self.job.submitted(job_id, token_digest(self.api_token), time.time(), options.walltime_minutes)
        internals(self).save()  # a hub killed from here on finds the job and resumes this start
        try:
            return await self.wait_until_up()
        except BaseException:
            self.log.warning("Start of %s's job %s did not complete; cancelling it", self.user.name, job_id)
            await self.cancel(job_id)
            raise

    async def _cancel_submission(self, submission: asyncio.Future) -> None:
        """A spawn cancelled while sbatch ran: let sbatch finish, then cancel what it queued."""
        try:
            job_id = await asyncio.wait_for(submission, self.sbatch_timeout)
        except Exception:
            await cancel_by_name(self.slurm_runner, self.user.name, self.name, self.log)
            return
        await self.cancel(job_id)

    def _ended(self, state: str) -> str:
        """The job left the queue during the start: its reason kept for the user and the metrics."""
        self.job = replace(self.job, stop_reason=stop_message(state, self.job.job_id))
        self.failure = job_failure(state)
        return self.job.stop_reason

    async def wait_until_up(self):
        job_id, log = self.job.job_id, self.start_log
        try:
            view = await until_running(self.poller, job_id, self._port_event, self.startup_poll_interval, log)
        except JobEnded as ended:
            raise web.HTTPError(500, self._ended(ended.state)) from None
        if view.queue_seconds is not None:
            metrics.observe_queue_wait(view.partition, view.queue_seconds)
        self.ip = view.node
        log.step(f"Running on {view.node}; the server is starting", 60)
        try:
            await until_port(self.poller, job_id, self._port_event, self.startup_poll_interval)
        except JobEnded as ended:
            raise web.HTTPError(500, f"{self._ended(ended.state)} before it reported its port") from None
        log.step(f"Server starting on {self.ip}:{self.port}", 80)
        # Saved by JupyterHub as soon as start returns (a resumed start saves it itself): one commit less
        # per spawn, and a commit blocks the hub's event loop for as long as the disk takes.
        self.job = self.job.listening(self.ip, self.port)
        self.log.info("Server of %s: job %s on %s:%s", self.user.name, job_id, self.ip, self.port)
        return self.ip, self.port

    async def progress(self):
        """Pending reason, position and estimated start; then running on a node, server starting."""
        self.start_log = self.start_log or StartLog()
        async for event in self.start_log.follow():
            yield event

    @property
    def ends_at(self) -> datetime | None:
        """When the running server's job reaches its time limit (UTC; extensions included), for the home
        page; None while not running, before the poller saw it start, or for a job saved without its limit."""
        try:
            view = self.poller.view(self.job.job_id) if self.job.job_id else None
        except RuntimeError:  # no event loop: no poller
            return None
        return job_ends_at(view.started, self.job.time_limit_minutes) if view and view.kind == "running" else None

    # -- poll and stop -------------------------------------------------------
    @property
    def last_stop_reason(self) -> str:
        """Why the last server stopped, in words (the hub's "not running" page shows it)."""
        return self.job.stop_reason

    async def poll(self):
        """None while the job is queued, running or unknown; 1 (with a reason) once it has left the queue."""
        job_id = self.job.job_id
        if not job_id:
            return 0
        if self.job.awaiting_port and self._port_event is None:
            return await resume_start(self)  # JupyterHub's first check after a restart
        poller = self.poller
        poller.watch(job_id, submitted=False)
        view = poller.view(job_id)
        if view.kind == "unknown" and not poller.has_snapshot:
            view = await poller.fresh_view(job_id)  # first poll after a hub start: one shared query
        if view.kind != "gone":
            return None
        stopped = stop_message(view.state, job_id, self.job.node, view.exit_code, self._site().limits.gpu_idle_timeout)
        self.job = replace(self.job, stop_reason=stopped, job_status=view.state)
        self.log.warning("%s: %s", self.who, self.job.stop_reason)
        return 1

    async def cancel(self, job_id: str) -> None:
        """scancel, retried; if Slurm does not answer, the poller keeps retrying."""
        await cancel_job(self.slurm_runner, job_id, self.poller, self.log, attempts=self.scancel_attempts)

    async def stop(self, now=False):
        job_id = self.job.job_id
        if not job_id:
            return
        view = self.poller.view(job_id)
        if view.kind != "gone":
            self.log.info("Stopping %s: scancel %s", self.who, job_id)
            await self.cancel(job_id)
            if not now:
                deadline = time.monotonic() + self.stop_wait_seconds
                while time.monotonic() < deadline:
                    view = await self.poller.fresh_view(job_id)
                    if view.kind == "gone":
                        break
        if view.kind == "gone":  # the home page's card says how the job ended (CANCELLED, or what came first)
            self.job = replace(self.job, stop_reason=stop_message(view.state, job_id, self.job.node),
                               job_status=view.state)
        self.poller.unwatch(job_id)


def interrupted_reason(error: BaseException, elapsed: float, start_timeout: float) -> str:
    """The metrics label of a start that ended without a recorded cause."""
    if isinstance(error, asyncio.CancelledError):
        return "timeout" if elapsed >= start_timeout - 1 else "cancelled"
    return "other"


__all__ = ["SiteSlurmSpawner", "JobView", "interrupted_reason"]
