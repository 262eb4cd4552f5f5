"""The hub's endpoint that gives a running server more walltime, and the Slurm I/O around `walltime.extension`.

    POST /hub/api/aifactory/users/{name}/server/walltime                (the default server)
    POST /hub/api/aifactory/users/{name}/servers/{server}/walltime      (a named one)
    body: exactly {"minutes": <whole number, 1..>}, the time to ADD

Allowed to whoever holds scope `servers` on that server (the user, admins), through JupyterHub's API
auth (a token, or the browser's cookie with its _xsrf); anyone else gets 404, as JupyterHub answers.
200 {"time_limit_minutes", "ends_at" (ISO, UTC), "added_minutes"}; a refusal is 409 (400 for a bad
body) {"message": a sentence, "reason": profile_maximum | allocation | partition_limit | not_running
| slurm_refused | bad_request}; 503 when Slurm did not answer.

The job is read from Slurm (state, limit, start, CPUs, GPUs, account, partition), never taken from
the request; the hub, a Slurm operator, sets the new limit with `scontrol update`. Slurm moves the
job's end and its `--signal` warning with it. One extension at a time per server.
"""

from __future__ import annotations

import asyncio
import json
import math
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from jupyterhub.apihandlers import APIHandler
from jupyterhub.scopes import needs_scope
from tornado import web

from aifactory.slurm.runner import Refused as SlurmRefused
from aifactory.slurm.runner import SlurmError
from aifactory.slurm.states import state_name
from aifactory.slurm.timelimit import (
    job_limit_argv, parse_job_limit, parse_max_time, partition_argv, update_argv, update_refusal,
)

from .cluster_state import hours_left
from .job_state import ServerJob
from .jupyterhub_internals import internals
from .walltime import Allowed, Refused, ends_at, extension, parse_body

WALLTIME_PATHS = (r"/api/aifactory/users/([^/]+)/server/walltime",
                  r"/api/aifactory/users/([^/]+)/servers/([^/]+)/walltime")


@dataclass(frozen=True)
class Extended:
    time_limit_minutes: int
    ends_at: datetime | None
    added_minutes: int


class SlurmSilent(RuntimeError):
    """Slurm did not answer (or not usably): whether the limit changed is unknown."""


_LOCKS: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()


def _not_running(job_id: str, state: str) -> Refused:
    if state == "PENDING":
        now = "still queued"
    else:
        now = f"{state_name(state).lower()}, not running" if state else "no longer in Slurm's queue"
    return Refused("not_running", f"Only a running server can be extended; this server's job {job_id} is {now}.")


def _slurm_refusal(job_id: str, stderr: str) -> Refused:
    kind = update_refusal(stderr)
    if kind == "not_running":
        return Refused("not_running", f"Slurm no longer runs this server's job {job_id}: {stderr}")
    if kind == "partition_limit":
        return Refused("partition_limit", f"Slurm refused the new time limit: {stderr}")
    if kind == "not_operator":
        return Refused("slurm_refused", f"Slurm refused the new time limit: {stderr} (the hub is not a Slurm "
                                        "operator here; tell the centre)")
    return Refused("slurm_refused", f"Slurm refused the new time limit: {stderr}")


async def extend(spawner: Any, minutes: int) -> Extended | Refused:
    """Give `spawner`'s running job `minutes` more, if the profile, partition and allocation allow it."""
    lock = _LOCKS.setdefault(spawner, asyncio.Lock())
    async with lock:  # two clicks never both read the same limit
        try:
            return await _extend(spawner, minutes)
        except SlurmRefused as error:  # squeue or scontrol show refused: the job is not Slurm's to show
            return _not_running(spawner.job.job_id, "") if "Invalid job id" in error.stderr else \
                Refused("slurm_refused", f"Slurm refused to say: {error.stderr}")
        except SlurmError as error:
            raise SlurmSilent(str(error)) from None


async def _extend(spawner: Any, minutes: int) -> Extended | Refused:
    job_id = spawner.job.job_id
    if not job_id:
        return Refused("not_running", "Only a running server can be extended; this server is not running.")
    runner, timeout = spawner.slurm_runner, spawner.slurm_timeout
    job = parse_job_limit(await runner.run(job_limit_argv(job_id), timeout=timeout), job_id)
    if job is None or job.state != "RUNNING":
        return _not_running(job_id, job.state if job else "")
    site = spawner._site()
    profile = next((p for p in site.profiles if p.name == (spawner.user_options or {}).get("profile")), None)
    if profile is None or job.limit_minutes is None:
        return Refused("profile_maximum", "This server's profile is no longer offered (or its job has no time "
                                          "limit), so it cannot be extended.")
    partition_max = parse_max_time(await runner.run(partition_argv(job.partition), timeout=timeout))
    cpu_left, gpu_left = await hours_left(site, job.account, timeout=timeout,
                                          max_age=spawner.allocation_use_seconds, runner=runner)
    end = ends_at(job.start, job.limit_minutes)
    still = (max(0, math.ceil((end - datetime.now(timezone.utc)).total_seconds() / 60)) if end
             else job.limit_minutes)
    decision = extension(job.limit_minutes, minutes, profile.walltime.max, partition_max, job.cpus, job.gpus,
                         cpu_left, gpu_left, profile=profile.name, partition=job.partition, project=job.account,
                         session_max_min=site.limits.max_session, still_to_run_min=still)
    if not isinstance(decision, Allowed):
        return decision
    try:
        await runner.run(update_argv(job_id, decision.new_limit_minutes), timeout=timeout)
    except SlurmRefused as error:
        return _slurm_refusal(job_id, error.stderr)
    if spawner.job.job_id == job_id:  # still this job (a stop meanwhile cleared it)
        spawner.job = spawner.job.extended(decision.new_limit_minutes)
        internals(spawner).save()
    spawner.log.info("Walltime of %s: job %s now %d min (+%d)", getattr(spawner, "who", ""), job_id,
                     decision.new_limit_minutes, minutes)
    return Extended(decision.new_limit_minutes, ends_at(job.start, decision.new_limit_minutes), minutes)


class WalltimeHandler(APIHandler):
    """POST {"minutes": N}: N more minutes for the user's running server."""

    def _answer(self, status: int, body: dict) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    @needs_scope("servers")
    async def post(self, user_name: str, server_name: str = "") -> None:
        user = self.find_user(user_name)
        if user is None or server_name not in user.orm_spawners:
            raise web.HTTPError(404)
        spawner = user.spawners[server_name]
        try:
            body = json.loads(self.request.body or b"null")
        except ValueError:
            body = None  # not JSON: parse_body says what it must be
        try:
            minutes = parse_body(body)
        except ValueError as error:
            return self._answer(400, {"message": str(error), "reason": "bad_request"})
        if not isinstance(getattr(spawner, "job", None), ServerJob):
            return self._answer(409, {"message": "This server is not a Slurm job; it cannot be extended.",
                                      "reason": "not_running"})
        try:
            result = await extend(spawner, minutes)
        except SlurmSilent as error:
            raise web.HTTPError(503, f"Slurm did not answer ({error}); the time limit may not have changed: "
                                     "look again in a minute.") from None
        if isinstance(result, Refused):
            return self._answer(409, {"message": result.message, "reason": result.reason})
        self._answer(200, {"time_limit_minutes": result.time_limit_minutes, "added_minutes": result.added_minutes,
                           "ends_at": result.ends_at.isoformat() if result.ends_at else None})


handlers = [(path, WalltimeHandler) for path in WALLTIME_PATHS]
