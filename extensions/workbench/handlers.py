"""Jupyter server extension of the workbench: what JupyterLab's extension (`lab/`) shows.

- GET `/aifactory/workbench/session`: the time left (Slurm's end of this job, asked at most every
  `END_CACHE_S`, since the hub's home page can extend the walltime; `AIFACTORY_JOB_END` when Slurm
  does not answer), the walltime warning and the idle-GPU warning, each as the sentence to show.
- GET `/aifactory/workbench/gpus`: this job's GPUs with their latest reading and a short history, or
  why there is none ("No GPU in this session", or the sampler's sentence).

For a job holding GPUs a loop samples them every `sample_seconds` (in a thread: the tools are
programs); with `AIFACTORY_GPU_IDLE_MINUTES` set, `idle.reclaim` decides on the series and the
kernels' idleness whether to warn or stop. A stop leaves a marker (`AIFACTORY_STOP_FILE`) and stops
the server; the launcher then exits with `GPU_IDLE_EXIT` and the hub tells the user why.

Enabled by `jupyter-config/aifactory-workbench.json` in PREFIX/etc/jupyter/jupyter_server_config.d/.
Both endpoints are the server's own: only its user's token (or cookie) passes `@web.authenticated`.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import deque
from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import Any, Callable, Mapping

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.application import ExtensionApp
from tornado import web
from traitlets import Float, Int

from aifactory.slurm.runner import SlurmError, SlurmRunner
from aifactory.slurm.timelimit import job_limit_argv, parse_job_limit
from aifactory.spawners.script import signal_seconds
from aifactory.spawners.singleuser import GPU_IDLE_REASON
from aifactory.spawners.walltime import ends_at

from .apps import own_ports_only

NO_GPU = "No GPU in this session"
# Slurm is asked for the job's end at most this often (the status bar asks every 30 s in every tab).
END_CACHE_S = 30.0
# The default of the hub's walltime_warning_minutes, when the hub does not say (AIFACTORY_WARN_SECONDS).
DEFAULT_WARN_MINUTES = 5
RESOURCE = "workbench"  # jupyter_server's authorization resource of both endpoints


# -- pure parts ---------------------------------------------------------------------------------
def format_left(seconds: float | None) -> str:
    """The status bar's 'h:mm' left ('1:23', '26:05'; '0:00' once over); '' when the job has no end."""
    if seconds is None:
        return ""
    minutes = max(0, int(seconds) // 60)
    return f"{minutes // 60}:{minutes % 60:02d}"


def minutes_words(seconds: float) -> str:
    """'1 minute', '4 minutes', '2 hours 5 minutes' (rounded up to whole minutes, at least one)."""
    minutes = max(1, -(-int(seconds) // 60))
    hours, minutes = divmod(minutes, 60)
    words = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in ((hours, "hour"), (minutes, "minute")) if n]
    return " ".join(words)


def warn_seconds(env: Mapping[str, str]) -> int:
    """How long before its end the job is warned: the hub's `AIFACTORY_WARN_SECONDS`, else what Slurm's
    signal uses with the hub's default (at most half the walltime, `script.signal_seconds`)."""
    if env.get("AIFACTORY_WARN_SECONDS", "").isdigit():
        return int(env["AIFACTORY_WARN_SECONDS"])
    walltime = int(env.get("AIFACTORY_WALLTIME_MINUTES", "0") or 0)
    return signal_seconds(walltime, DEFAULT_WARN_MINUTES) if walltime else DEFAULT_WARN_MINUTES * 60


def walltime_warning(end: float | None, now: float, warn_s: float, session: Mapping[str, Any],
                     tz: Any = None) -> str:
    """The walltime warning to show, or ''.

    Shown once the time left is at most `warn_s`, or once Slurm's SIGUSR1 was recorded (`warned_at`)
    for the end still in force: the launcher's `ends_at` is the end at the start, so an end later than
    it (the user extended the walltime since) makes an earlier signal stale.
    """
    if end is None:
        return ""
    left = end - now
    warned = bool(session.get("warned_at")) and end <= float(session.get("ends_at") or 0) + 60
    if left > warn_s and not warned:
        return ""
    at = datetime.fromtimestamp(end, tz).strftime("%H:%M")
    if left <= 0:
        return f"Your session has reached its end ({at}); the server stops now. Save your work."
    return (f"Your session ends in {minutes_words(left)} (at {at}). Save your work, or extend it on the hub's "
            "home page.")


def kernels_idle_since(kernels: list[tuple[str, float]], fallback: float) -> float | None:
    """Since when every kernel is idle, from (execution_state, last_activity epoch) pairs: None while one is
    busy (or starting); else the latest activity, `fallback` (the server's last kernel change) included, so a
    kernel shut down a minute ago is activity a minute ago."""
    if any(state in ("busy", "starting") for state, _ in kernels):
        return None
    return max([fallback, *(last for _, last in kernels)])


def idle_warning(action: str, seconds_left: float | None, timeout_s: float) -> str:
    """The idle-GPU warning for a `warn` (or `stop`) decision of `idle.reclaim`, or ''."""
    if action == "stop":
        return f"Your GPUs and kernels were idle for {minutes_words(timeout_s)}; this server is stopping."
    if action != "warn" or seconds_left is None:
        return ""
    return (f"Your GPUs have been idle for {minutes_words(max(0.0, timeout_s - seconds_left))}; this server stops "
            f"in {minutes_words(seconds_left)} unless they are used.")


def to_json(value: Any) -> Any:
    """Dataclasses (the GPU readings) as plain JSON."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


# -- the job's end, from Slurm ------------------------------------------------------------------
class JobEnd:
    """This job's end (epoch s): Slurm's, cached `cache_s`; the launcher's `AIFACTORY_JOB_END` when Slurm
    does not answer (or outside a job)."""

    def __init__(self, env: Mapping[str, str], runner: SlurmRunner | None = None, cache_s: float = END_CACHE_S,
                 clock: Callable[[], float] = time.monotonic):
        self.job_id = env.get("SLURM_JOB_ID", "")
        self.fallback = float(env["AIFACTORY_JOB_END"]) if env.get("AIFACTORY_JOB_END", "").isdigit() else None
        self.runner = runner or SlurmRunner(timeout=10)
        self.cache_s, self.clock = cache_s, clock
        self._value: float | None = None
        self._asked = -1e18
        self._lock = asyncio.Lock()

    async def get(self) -> tuple[float | None, str]:
        """(end, source) with source 'slurm' or 'launcher'."""
        async with self._lock:
            if self.clock() - self._asked >= self.cache_s:
                self._asked = self.clock()
                self._value = await self._ask()
        if self._value is not None:
            return self._value, "slurm"
        return self.fallback, "launcher"

    async def _ask(self) -> float | None:
        if not self.job_id:
            return None
        try:
            job = parse_job_limit(await self.runner.run(job_limit_argv(self.job_id)), self.job_id)
        except (SlurmError, ValueError):
            return None
        end = ends_at(job.start, job.limit_minutes or 0) if job and job.state == "RUNNING" else None
        return end.timestamp() if end else None


def read_session(path: str) -> dict:
    """The launcher's session file ({} when missing or half-written)."""
    try:
        with open(path) as text:
            data = json.load(text)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# -- the GPUs and their idleness ------------------------------------------------------------------
class GpuWatch:
    """Samples this job's GPUs (none: nothing runs), keeps their recent history for the panel and, for a
    server with an idle timeout, asks `idle.reclaim` after each sample whether to warn or stop.

    `sample`, `kernels`, `stop` and `clock` are injectable, so the loop's decisions are tested without
    GPUs, kernels or minutes of waiting.
    """

    def __init__(self, env: Mapping[str, str], *, sample_s: float, kernels: Callable[[], float | None],
                 stop: Callable[[str], None], clock: Callable[[], float] = time.time,
                 idle_timeout_s: float | None = None, idle_warn_s: float = 300.0, history_s: float = 600.0,
                 sample: Callable[[Mapping[str, str]], Any] | None = None):
        from . import gpus, sampler

        self.env = dict(env)
        self.devices = gpus.job_devices(self.env) or []
        self.sample_fn = sample or sampler.sample
        self.series = sampler.Series(horizon_s=max(idle_timeout_s or 0, history_s) + 600)
        self.history: deque[tuple[float, list]] = deque(maxlen=max(2, int(history_s / sample_s)))
        self.sample_s, self.kernels, self.stop, self.clock = sample_s, kernels, stop, clock
        self.idle_timeout_s, self.idle_warn_s = idle_timeout_s, idle_warn_s
        self.readings: list = []
        self.message = "" if self.devices else NO_GPU
        self.decision: Any = None
        self.stopping = False

    async def step(self) -> None:
        """One round: a sample (in a thread: the tools are programs), then the idle decision."""
        result = await asyncio.to_thread(self.sample_fn, self.env)
        now = self.clock()
        if isinstance(result, str):
            self.readings, self.message = [], result[:1].upper() + result[1:]
        else:
            self.readings, self.message = list(result), ""
            self.history.append((now, [[r.utilization_percent, r.memory_used_mib] for r in self.readings]))
        self.series.add(now, result)
        if self.idle_timeout_s is not None and not self.stopping:
            from .idle import reclaim

            self.decision = reclaim(self.series.samples(), self.kernels(), now, self.idle_timeout_s,
                                    self.idle_warn_s)
            if self.decision.action == "stop":
                self.stopping = True
                self.stop(self.decision.reason)

    async def run(self) -> None:
        while True:
            try:
                await self.step()
            except Exception as error:  # a tool that misbehaves once must not end the panel's data
                self.readings, self.message = [], f"GPU readings failed: {error}"
            await asyncio.sleep(self.sample_s)

    def idle_warning(self) -> str:
        """The idle warning to show, or ''."""
        if self.decision is None or self.idle_timeout_s is None:
            return ""
        return idle_warning(self.decision.action, self.decision.seconds_left, self.idle_timeout_s)

    def snapshot(self) -> dict:
        """What the GPU panel shows: the latest readings, each GPU's recent utilisation and memory
        ([time, [[util %, MiB used] per GPU]]), or the sentence instead."""
        return {
            "devices": self.devices,
            "gpus": to_json(self.readings),
            "history": [[t, values] for t, values in self.history],
            "message": self.message,
            "idle_warning": self.idle_warning(),
            "sample_seconds": self.sample_s,
        }


# -- jupyter-server-proxy's port routes ---------------------------------------------------------
def guard_port_routes(web_app: Any, allow: Callable[[Any, str], bool]) -> int:
    """Give jupyter-server-proxy's `/proxy/<port>/` routes the `allow` check (`apps.own_ports_only`).

    jupyter-server-proxy passes its `host_allowlist` only to `/proxy/<host>:<port>/`; the port routes
    keep the default list (localhost), so they would proxy any port on the node, also another user's:
    that user's page on this user's origin. Run once every extension is loaded; returns how many routes
    it guarded (2: /proxy/<port>/ and /proxy/absolute/<port>/).
    """
    from jupyter_server_proxy.handlers import LocalProxyHandler

    guarded = 0
    for host_rule in web_app.default_router.rules:
        for rule in getattr(host_rule.target, "rules", []):
            if rule.target is LocalProxyHandler:  # exactly: the apps' own handlers subclass it
                rule.target_kwargs["host_allowlist"] = allow
                guarded += 1
    return guarded


# -- handlers -----------------------------------------------------------------------------------
class _Handler(APIHandler):
    auth_resource = RESOURCE

    @property
    def workbench(self) -> "Workbench":
        return self.settings["aifactory_workbench"]

    def check_xsrf_cookie(self):  # read-only GETs; no state changes here
        return


class SessionHandler(_Handler):
    @web.authenticated
    @authorized
    async def get(self):
        self.finish(json.dumps(await self.workbench.session()))


class GpusHandler(_Handler):
    @web.authenticated
    @authorized
    async def get(self):
        self.finish(json.dumps(self.workbench.gpus()))


class Workbench(ExtensionApp):
    """The workbench's backend in the user's server."""

    name = "aifactory_workbench"
    sample_seconds = Float(5.0, config=True, help="Seconds between two samples of the job's GPUs.")
    idle_warn_seconds = Int(300, config=True, help="How long before stopping idle GPUs the user is warned.")

    def initialize_settings(self):
        env = os.environ
        self.end = JobEnd(env)
        self.warn_s = warn_seconds(env)
        self.session_file = env.get("AIFACTORY_SESSION_FILE", "")
        self.stop_file = env.get("AIFACTORY_STOP_FILE", "")
        idle = env.get("AIFACTORY_GPU_IDLE_MINUTES", "")
        self.watch = GpuWatch(
            env, sample_s=self.sample_seconds, kernels=self._kernels_idle_since, stop=self._stop_idle,
            idle_timeout_s=int(idle) * 60 if idle.isdigit() and int(idle) > 0 else None,
            idle_warn_s=self.idle_warn_seconds,
        )
        self._task: asyncio.Task | None = None
        self.settings["aifactory_workbench"] = self

    def initialize_handlers(self):
        base = "/aifactory/workbench"
        self.handlers.extend([(f"{base}/session", SessionHandler), (f"{base}/gpus", GpusHandler)])

    async def _start_jupyter_server_extension(self, serverapp):
        guard_port_routes(serverapp.web_app, own_ports_only)
        if self.watch.devices:
            self._task = asyncio.get_running_loop().create_task(self.watch.run())

    async def stop_extension(self):
        if self._task:
            self._task.cancel()

    async def session(self) -> dict:
        end, source = await self.end.get()
        now = time.time()
        left = None if end is None else end - now
        return {
            "ends_at": end, "source": source, "now": now, "left_seconds": left, "left": format_left(left),
            "warning": walltime_warning(end, now, self.warn_s, read_session(self.session_file)),
            "idle_warning": self.watch.idle_warning(),
        }

    def gpus(self) -> dict:
        return self.watch.snapshot()

    def _kernels_idle_since(self) -> float | None:
        manager = self.serverapp.kernel_manager
        kernels = [(manager.get_kernel(k).execution_state, manager.get_kernel(k).last_activity.timestamp())
                   for k in manager.list_kernel_ids()]
        return kernels_idle_since(kernels, manager.last_kernel_activity.timestamp())

    def _stop_idle(self, reason: str) -> None:
        """Leave the marker the launcher turns into its exit code, then stop the server as Ctrl-C would."""
        self.log.warning("Stopping this server: %s", reason)
        if self.stop_file:
            from aifactory.site.files import atomic_write

            atomic_write(self.stop_file, json.dumps({"reason": GPU_IDLE_REASON, "message": reason}), 0o600)
        self.serverapp.stop()


def _jupyter_server_extension_points():
    return [{"module": "aifactory.extensions.workbench.handlers", "app": Workbench}]
