"""The site's Slurm spawner: validated profiles, one poll for all, no lost servers, honest progress.

Built on batchspawner's SlurmSpawner (its traits and names), with its weak
points replaced (see ANCHORS.md, batchspawner):

- options: `options.validate` against the site and the user's real Slurm
  associations before anything is submitted; the script is `script.build_job`;
- state: one `poller.SlurmPoller` per hub; no answer means unknown, never gone;
  a job that left the queue is stopped with its final state (sacct) as reason;
- restarts: the job id is saved as soon as sbatch answers, so a hub killed at any
  point reattaches the job; a start that was still pending (queued, or running
  without a reported port) is picked up again by the restarted hub's first `poll`
  and completes with the same job (`_resume_start`);
- every stop path, a cancelled pending spawn included, runs scancel (retried by
  the poller until Slurm answers);
- the port comes only through `port_api.PortHandler`.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from datetime import datetime

from batchspawner import SlurmSpawner
from tornado import web
from traitlets import Bool, Float, Integer, List, Unicode, default

from . import metrics
from aifactory.site import identity, load_site_cached
from aifactory.site.schema import Site

from . import slurmcli
from .environments import LMOD_INIT
from .cluster_state import allocation_use, cached, partition_states
from .facts import gather_facts
from .form import options_form_html
from .options import OptionsError, ValidatedOptions, offers, payload_from_form, validate
from .poller import JobView, SlurmPoller, shared_poller
from .port_api import token_digest
from .progress import job_failure, pending_message, stop_message
from .script import build_job, job_name


# {user: (monotonic time, payload, (field, message))}: the last refused form, shown again with the error.
_REFUSED: dict = {}


class SiteSlurmSpawner(SlurmSpawner):
    """Starts a notebook server as a Slurm job sized by the site's profiles and the user's options."""

    site_file = Unicode(
        "", config=True, help="Site configuration file; empty means $AIFACTORY_SITE or /etc/aifactory/site.yaml."
    )
    venv = Unicode(
        "/opt/aifactory/venv", config=True,
        help="Shared environment on the nodes that holds the launcher (aifactory.spawners.singleuser).",
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
    lmod_init = Unicode(LMOD_INIT, config=True, help="Lmod's bash init script on the nodes (for lmod environments).")
    facts_cache_seconds = Float(
        120.0, config=True,
        help="How long a user's Slurm accounts and reservations are reused before sacctmgr is asked again.",
    )
    stop_reason = Unicode("", help="Why the last server of this spawner stopped, in words (kept in the state).")
    token_sha256 = Unicode("", help="SHA-256 of the running job's API token: the port handler's proof of ownership.")
    submitted_at = Float(0.0, help="Epoch seconds of the job's submission (start_timeout counts from it).")
    awaiting_port = Bool(False, help="The job is submitted but its server has not reported its port yet.")

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

    # -- site, facts, poller -------------------------------------------------
    def _site(self) -> Site:
        return load_site_cached(self.site_file or None)  # one parse per change of the file, for all spawners

    @property
    def poller(self) -> SlurmPoller:
        return shared_poller(interval=self.slurm_poll_interval, jitter=self.slurm_poll_jitter,
                             timeout=self.slurm_timeout, startup_interval=self.startup_poll_interval,
                             partitions=tuple(p.name for p in self._site().partitions), log=self.log)

    async def _facts(self):
        """The user's uid, groups and Slurm facts; HTTP 403 for root, system and service accounts,
        so that nothing is ever submitted through sudo as them, whichever authenticator let them in."""
        try:  # hub-wide, like the partition state: one lookup per user per facts_cache_seconds
            facts = await cached(("facts", self.user.name), self.facts_cache_seconds,
                                 lambda: gather_facts(self.user.name, self.slurm_timeout))
        except (slurmcli.SchedulerUnavailable, slurmcli.CommandFailed) as error:
            raise web.HTTPError(503, f"Could not look up your groups and Slurm projects ({error}); try again in a minute")
        why = identity.refusal(facts.name, facts.uid, self._site().hub.min_uid)
        if why:
            metrics.spawn_failed("identity")
            self._failure = "identity"
            raise web.HTTPError(403, f"No server for this account: {why}")
        return facts

    async def _render_options_form(self, spawner=None) -> str:
        """Profile cards with live partition state and allocation use; a refused attempt comes back with its error."""
        site = self._site()
        user_offers = offers(site, await self._facts())
        accounts = user_offers[0].accounts if user_offers else ()
        states, uses = await asyncio.gather(partition_states(self.slurm_timeout),
                                            allocation_use(site, accounts, self.slurm_timeout), return_exceptions=True)
        refused = _REFUSED.pop(self.user.name, None)
        values, error = (refused[1], refused[2]) if refused and time.monotonic() - refused[0] < 300 else ({}, None)
        return options_form_html(user_offers, None if isinstance(states, BaseException) else states,
                                 None if isinstance(uses, BaseException) else uses, values, error)

    def _refuse(self, payload, error: OptionsError) -> web.HTTPError:
        """Remember the refused form for the page shown next; the HTTP error names the field."""
        metrics.spawn_failed("options")
        self._failure = "options"
        if isinstance(payload, dict):
            kept = {k: v for k, v in payload.items() if isinstance(k, str) and isinstance(v, str) and len(v) <= 64}
            _REFUSED[self.user.name] = (time.monotonic(), kept, (error.field, error.message))
        return web.HTTPError(400, f"Invalid option '{error.field}': {error.message}")

    def options_from_form(self, formdata):
        """Form fields -> a flat payload; checked in full (with the user's Slurm facts) in `start`."""
        try:
            return payload_from_form(formdata)
        except OptionsError as error:
            raise self._refuse({}, error) from None

    async def validated_options(self) -> ValidatedOptions:
        """The user's options checked against the site and their Slurm associations (HTTP 400 if not allowed)."""
        site = self._site()
        try:
            return validate(site, await self._facts(), self.user_options or {})
        except OptionsError as error:
            raise self._refuse(self.user_options, error) from None

    # -- state ---------------------------------------------------------------
    def load_state(self, state):
        super().load_state(state)
        self.stop_reason = state.get("stop_reason", "")
        self.token_sha256 = state.get("token_sha256", "")
        self.submitted_at = float(state.get("submitted_at", 0.0))
        self.awaiting_port = bool(state.get("awaiting_port", False))
        if state.get("port"):
            self.ip, self.port = state.get("ip", ""), int(state["port"])
        if self.job_id:
            try:
                self.poller.watch(self.job_id, submitted=False)
            except RuntimeError:  # no running loop yet; poll() watches
                pass

    def get_state(self):
        state = super().get_state()
        if self.stop_reason:
            state["stop_reason"] = self.stop_reason
        if self.job_id:
            state.update(token_sha256=self.token_sha256, submitted_at=self.submitted_at)
            if self.awaiting_port:
                state["awaiting_port"] = True
            elif self.port:
                state.update(ip=self.ip, port=self.port)
        return state

    def clear_state(self):
        super().clear_state()  # stop_reason survives: the user sees it
        self.port = 0
        self.token_sha256, self.submitted_at, self.awaiting_port = "", 0.0, False

    def _record_profile(self, profile: str) -> None:
        """Write the validated profile back into user_options (the servers-per-profile gauge reads it)."""
        if (self.user_options or {}).get("profile") != profile:
            self.user_options = {**(self.user_options or {}), "profile": profile}
            if self.orm_spawner is not None:
                self.orm_spawner.user_options = self.user_options

    def _save_state(self) -> None:
        if self.orm_spawner is not None:
            self.orm_spawner.state = self.get_state()
            self.db.commit()

    # -- start ---------------------------------------------------------------
    def owns_token(self, token: str) -> bool:
        """Whether `token` is the API token of this spawner's job (also after a hub restart)."""
        digest = self.token_sha256 or (token_digest(self.api_token) if self.api_token else "")
        return bool(digest and token) and hmac.compare_digest(digest, token_digest(token))

    def report_port(self, port: int) -> bool:
        """Called by the port handler; only a spawner waiting for its port takes one (the same port again is fine)."""
        event = getattr(self, "_port_event", None)
        if event is not None and event.is_set() and port == self.port:
            return True
        if event is None or event.is_set() or not self.job_id:
            return False
        self.port = port
        event.set()
        return True

    async def get_url(self):
        """The server's address from the saved state (JupyterHub asks after a restart)."""
        if self.ip and self.port:
            return f"http://{self.ip}:{self.port}"
        return await super().get_url()

    async def _submit(self, job) -> str:
        env = self.get_env()
        self.log.info("Submitting the server of %s: %s", self.user.name, " ".join(job.argv))
        out = await slurmcli.run(job.argv, max(self.slurm_timeout, 60), input=job.script, env=env)
        return self.parse_job_id(out.strip())

    async def start(self):
        """Submit the server's job and wait for it; each failure is counted by reason in the hub's metrics."""
        began = time.monotonic()
        self._failure = ""
        try:
            return await self._start()
        except BaseException as error:
            reason = self._failure or interrupted_reason(error, time.monotonic() - began, self.start_timeout)
            if reason not in ("options", "identity"):  # counted where they were refused
                metrics.spawn_failed(reason)
            raise

    async def _start(self):
        self._port_event = asyncio.Event()
        self._events = []
        self._phase = ("Checking your options", 5)
        self._view = None
        self.port = 0
        if self.stop_reason:
            self._previous_stop = self.stop_reason
        self.stop_reason = ""
        # Checked by the apply_user_options hook before start (HTTP 400 there); again if called directly.
        options = getattr(self, "_options", None) or await self.validated_options()
        self._options = None
        self._record_profile(options.profile)
        site = self._site()
        # The job finds the user's home and makes ~/.aifactory itself (script.HOME_LINES): no user lookup here.
        partition = site.partition(options.partition)
        job = build_job(
            options, site.environment(options.environment), user=self.user.name,
            env_names=list(self.get_env()), launcher=self.launcher, server_args=self.get_args(),
            gpu_vendor=partition.gpus.vendor if partition.gpus else None, server_name=self.name,
            warn_minutes=self.walltime_warning_minutes, lmod_init=self.lmod_init,
        )
        self._phase = (f"Submitting {options.summary()}", 10)
        submission = asyncio.ensure_future(self._submit(job))
        try:
            self.job_id = await asyncio.shield(submission)
        except asyncio.CancelledError:
            await self._cancel_submission(submission)
            raise
        except slurmcli.CommandFailed as error:
            self._failure = "submit"
            raise web.HTTPError(400, f"Slurm refused the job: {error.stderr}") from None
        except slurmcli.SchedulerUnavailable as error:
            self._failure = "submit"
            await self._cancel_by_name()
            raise web.HTTPError(503, f"Slurm did not answer the submission ({error}); nothing is left queued")
        self.poller.watch(self.job_id)
        self.token_sha256, self.submitted_at, self.awaiting_port = token_digest(self.api_token), time.time(), True
        self._save_state()  # a hub killed from here on finds the job and resumes this start
        try:
            return await self._wait_until_up()
        except BaseException:
            self.log.warning("Start of %s's job %s did not complete; cancelling it", self.user.name, self.job_id)
            await self._cancel_job(self.job_id)
            raise

    async def _cancel_submission(self, submission: asyncio.Future) -> None:
        """A spawn cancelled while sbatch ran: let sbatch finish, then cancel what it queued."""
        try:
            job_id = await asyncio.wait_for(submission, max(self.slurm_timeout, 60))
        except Exception:
            await self._cancel_by_name()
            return
        await self._cancel_job(job_id)

    async def _cancel_by_name(self) -> None:
        """After a submission without answer: cancel any job of this server (none can be legitimately running)."""
        argv = ["scancel", f"--user={self.user.name}", f"--name={job_name(self.user.name, self.name)}"]
        try:
            await slurmcli.run(argv, self.slurm_timeout)
        except (slurmcli.SchedulerUnavailable, slurmcli.CommandFailed) as error:
            self.log.error("Could not cancel jobs of %s after a failed submission: %s", self._log_name, error)

    async def _wait_until_up(self):
        job_id = self.job_id
        while True:
            view = await self.poller.fresh_view(job_id)
            self._view = view
            if view.kind == "running":
                if view.queue_seconds is not None:
                    metrics.observe_queue_wait(view.partition, view.queue_seconds)
                break
            if view.kind == "gone":
                self.stop_reason, self._failure = stop_message(view.state, job_id), job_failure(view.state)
                raise web.HTTPError(500, self.stop_reason)
            if view.kind == "pending":
                self._phase = (pending_message(view.reason, view.position, view.pending_total, view.partition,
                                               view.start_estimate, datetime.now()), 30)
            else:
                self._phase = ("Waiting for Slurm to answer (the controller is busy or restarting)", 30)
            # Sleep until the next shared snapshot, or until the server reports its port (it runs then).
            try:
                await asyncio.wait_for(self._port_event.wait(), self.startup_poll_interval)
            except asyncio.TimeoutError:
                pass
        self.ip = view.node
        self._phase = (f"Running on {view.node}; the server is starting", 60)
        while not self._port_event.is_set():
            try:
                await asyncio.wait_for(self._port_event.wait(), max(2.0, self.startup_poll_interval))
            except asyncio.TimeoutError:
                view = await self.poller.fresh_view(job_id)
                if view.kind == "gone":
                    self.stop_reason, self._failure = stop_message(view.state, job_id), job_failure(view.state)
                    raise web.HTTPError(500, f"{self.stop_reason} before it reported its port") from None
        self._phase = (f"Server starting on {self.ip}:{self.port}", 80)
        self.awaiting_port = False
        self._save_state()
        self.log.info("Server of %s: job %s on %s:%s", self.user.name, job_id, self.ip, self.port)
        return self.ip, self.port

    async def progress(self):
        """Pending reason, position and estimated start; then running on a node, server starting."""
        previous = getattr(self, "_previous_stop", "")
        if previous:
            yield {"progress": 1, "message": f"Previous server: {previous}"}
            self._previous_stop = ""
        seen = 0
        while True:
            events = getattr(self, "_events", [])
            for message, percent in events[seen:]:  # every step, also those before the page connected
                seen += 1
                yield {"progress": percent, "message": message}
                if percent >= 80:
                    return
            await asyncio.sleep(0.5)

    @property
    def _phase(self) -> tuple[str, int] | None:
        """The latest step of this start, as (message, percent)."""
        events = getattr(self, "_events", None)
        return events[-1] if events else None

    @_phase.setter
    def _phase(self, phase: tuple[str, int]) -> None:
        events = self.__dict__.setdefault("_events", [])
        if not events or events[-1] != phase:
            events.append(phase)

    # -- poll and stop -------------------------------------------------------
    async def poll(self):
        """None while the job is queued, running or unknown; 1 (with a reason) once it has left the queue."""
        if not self.job_id:
            return 0
        if self.awaiting_port and getattr(self, "_port_event", None) is None:
            return await self._resume_start()  # JupyterHub's first check after a restart
        poller = self.poller
        poller.watch(self.job_id, submitted=False)
        view = poller.view(self.job_id)
        if view.kind == "unknown" and not poller.has_snapshot:
            view = await poller.fresh_view(self.job_id)  # first poll after a hub start: one shared query
        if view.kind != "gone":
            return None
        self.stop_reason = stop_message(view.state, self.job_id)
        self.log.warning("%s: %s", self._log_name, self.stop_reason)
        self.job_status = view.state
        return 1

    async def _resume_start(self):
        """Finish a start the previous hub process left pending: same job, same token, same deadline.

        Called as JupyterHub's startup check polls this server. While the job waits, the
        server shows as a pending spawn (JupyterHub's `_spawn_pending`/`_spawn_future`), so
        the progress page follows it and a stop cancels it; once the port is reported the
        check resumes and takes the address from `get_url`.
        None: the server runs; 1: the job ended, timed out or was stopped meanwhile.
        """
        self._port_event, self._events, self._failure = asyncio.Event(), [], ""
        self.log.info("%s: resuming the start of Slurm job %s after a hub restart", self._log_name, self.job_id)
        self._phase = (f"The hub restarted; following your Slurm job {self.job_id} again", 20)
        up = asyncio.ensure_future(self._resumed_wait())
        resumed = asyncio.ensure_future(self._resumed_ready(up))
        resumed.add_done_callback(self._resumed_done)
        self._check_pending, self._spawn_pending, self._spawn_future = False, True, resumed
        await asyncio.wait([up])
        if not up.cancelled() and up.exception() is None:
            self._spawn_pending, self._check_pending = False, True  # JupyterHub's check verifies the server
            return None
        metrics.spawn_failed("cancelled" if up.cancelled() else self._failure or "other")
        self.log.warning("%s: %s", self._log_name, "start cancelled" if up.cancelled() else self.stop_reason)
        deadline = time.monotonic() + 5  # the stop that cancelled it runs first, so the check finds no server
        while self.server is not None and (self._stop_pending or time.monotonic() < deadline):
            await asyncio.sleep(0.2)
        return 1

    async def _resumed_wait(self):
        job_id, left = self.job_id, self.submitted_at + self.start_timeout - time.time()
        try:
            return await asyncio.wait_for(self._wait_until_up(), max(left, 1.0) if self.submitted_at else None)
        except asyncio.TimeoutError:
            self.stop_reason, self._failure = f"Your server (Slurm job {job_id}) did not start in time", "timeout"
            await self._cancel_job(job_id)
            raise web.HTTPError(500, self.stop_reason) from None

    async def _resumed_ready(self, up: asyncio.Future) -> None:
        """The resumed start as JupyterHub's spawn future: done when the server is ready and routed."""
        await up
        deadline = time.monotonic() + self.http_timeout + 60
        while not self.ready:
            if self.server is None or time.monotonic() > deadline:
                raise web.HTTPError(500, "the resumed server did not answer")
            await asyncio.sleep(0.5)
        # JupyterHub routes a server when its spawn finishes, not after its startup check.
        await self.user.settings["proxy"].add_user(self.user, self.name)
        self.log.info("%s: resumed server ready and routed at %s", self._log_name, self.proxy_spec)

    def _resumed_done(self, future: asyncio.Future) -> None:
        """As JupyterHub does when a spawn future ends: a failure stays readable for the progress page."""
        if future.cancelled() or future.exception() is None:
            self._spawn_future = None
        self._spawn_pending = False

    async def _cancel_job(self, job_id: str) -> None:
        """scancel, retried; if Slurm does not answer, the poller keeps retrying."""
        if not job_id:
            return
        for attempt in range(3):
            try:
                await slurmcli.run(["scancel", job_id], self.slurm_timeout)
                return
            except slurmcli.CommandFailed as error:
                if "already completed" in error.stderr or "Invalid job id" in error.stderr:
                    return
                self.log.warning("scancel %s: %s", job_id, error)
            except slurmcli.SchedulerUnavailable as error:
                self.log.warning("scancel %s: no answer (%s)", job_id, error)
            await asyncio.sleep(2 ** attempt)
        self.poller.cancel_later(job_id)

    async def stop(self, now=False):
        job_id = self.job_id
        if not job_id:
            return
        view = self.poller.view(job_id)
        if view.kind != "gone":
            self.log.info("Stopping %s: scancel %s", self._log_name, job_id)
            await self._cancel_job(job_id)
            if not now:
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    view = await self.poller.fresh_view(job_id)
                    if view.kind == "gone":
                        break
        self.poller.unwatch(job_id)


def interrupted_reason(error: BaseException, elapsed: float, start_timeout: float) -> str:
    """The metrics label of a start that ended without a recorded cause."""
    if isinstance(error, asyncio.CancelledError):
        return "timeout" if elapsed >= start_timeout - 1 else "cancelled"
    return "other"


__all__ = ["SiteSlurmSpawner", "JobView", "interrupted_reason"]
