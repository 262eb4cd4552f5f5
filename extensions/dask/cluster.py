"""`SiteCluster`: a dask-jobqueue SLURMCluster configured from the site file, that watches its jobs.

    from aifactory.extensions.dask import SiteCluster
    cluster = SiteCluster("cpu", workers=2, cores=1, memory="1G")
    cluster.why_missing()   # sentences from squeue/sacct when workers are missing

Over a plain SLURMCluster it adds: defaults and limits from the profile, a check
that the user may use the profile and project, worker --lifetime before the
walltime, ended jobs replaced (at most a few failures in a row), a dashboard
link through JupyterHub, TLS with credentials made for this cluster only
(`tls`: no other user can connect), a watchdog that cancels the jobs if the
kernel or server dies, and a record of its Slurm job name (`job_registry`) from
which the server extension `server_cleanup` cancels the jobs when the user's
server stops.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import secrets
import socket
import subprocess
from typing import Any

from dask_jobqueue import SLURMCluster
from distributed.security import Security
from distributed.utils import get_ip

from aifactory.site import load_site
from aifactory.site.access import check_profile, project_to_charge
from aifactory.site.options import dask_spec
from aifactory.site.schema import Site
from aifactory.slurm.projects import user_projects_sync

from . import access, job_registry, tls
from .job_states import JobState, WorkerSummary, explain, query_job_states, summarize
from .jobqueue_config import cluster_kwargs, jobqueue_config
from .options import DaskOptions, choose_options
from .reaper import start_reaper

logger = logging.getLogger(__name__)

# How often the cluster asks Slurm about its jobs (one squeue for all of them).
WATCH_SECONDS = 5.0
# Stop replacing ended workers after this many jobs failed in a row.
MAX_FAILURES_IN_A_ROW = 3
# Adaptive waits this many intervals of low load before retiring workers (avoids thrashing).
ADAPTIVE_WAIT_COUNT = 10


def dashboard_url(service_prefix: str | None, port: int | None, fallback: str) -> str:
    """The dashboard through jupyter-server-proxy when inside JupyterHub, else dask's own link."""
    if not service_prefix or not port:
        return fallback
    return f"{service_prefix.rstrip('/')}/proxy/{port}/status"


def dashboard_address(service_prefix: str | None) -> str:
    """Inside the user's server the dashboard is reached through its proxy, so it listens on loopback only."""
    return "127.0.0.1:0" if service_prefix else ":0"


def scheduler_host(site: Site) -> str | None:
    """The address workers on other nodes reach the scheduler at: this node's own address towards the
    hub's API, which every compute node reaches (the site's `hub_api_ip`). Loopback only where the hub
    is on loopback, a one-machine site. None (Dask's choice) for an unspecified hub address."""
    target = ipaddress.ip_address(site.hub_api_ip())
    return None if target.is_unspecified else get_ip(str(target))


def ended_without_worker(jobs: dict[str, str], states: dict[str, JobState], connected: set[str]) -> list[str]:
    """Worker names whose job Slurm reports ended while no worker of that name is connected.

    `jobs` maps worker name -> Slurm job id. Pure.
    """
    return [
        name
        for name, job_id in jobs.items()
        if job_id in states and states[job_id].ended and name not in connected
    ]


class SiteCluster(SLURMCluster):
    """A Dask cluster of Slurm jobs under one of the site's profiles.

    Parameters: `profile` (name; default the user's first usable one), then the
    options `workers`, `cores`, `memory`, `gpus`, `walltime`, `adaptive_min`,
    `adaptive_max`, `project` of the site's options spec (`dask_spec`), each checked
    against the profile. Raises `OptionsError` or `AccessRefused` with sentences.

    `interface` (network interface of scheduler and workers) and
    `local_directory` (workers' spill directory) override the site's defaults;
    `registry_dir` is where the cluster records its job name for the server
    extension that cancels it when the server stops (default ~/.aifactory/dask-jobs);
    `credentials_dir` the parent of its TLS credentials (default ~/.aifactory/dask-tls).
    """

    def __init__(
        self,
        profile: str | None = None,
        *,
        site: Site | None = None,
        asynchronous: bool = False,
        loop=None,
        interface: str | None = None,
        local_directory: str | None = None,
        registry_dir: str | None = None,
        credentials_dir: str | None = None,
        **requested: Any,
    ):
        site = site or load_site()
        user = access.current_user()
        chosen = check_profile(site, profile, user, access.unix_groups(user))
        self.options_spec = dask_spec(site, chosen)
        options = choose_options(self.options_spec, requested)
        project = project_to_charge(user, user_projects_sync(user, site), options.project)
        self.site_profile = chosen
        self.options: DaskOptions = options
        self.user = user
        self.project = project
        self.slurm_job_name = f"dask-{chosen.name}-{secrets.token_hex(4)}"
        self.job_states: dict[str, JobState] | None = {}
        self.summary = WorkerSummary(0, 0, 0, 0, ())
        self.failures_in_a_row = 0
        self.replacing_stopped: str | None = None
        # Worker name -> why its last job ended, kept until its replacement connects (a sentence for people).
        self.replaced: dict[str, str] = {}
        self._watch_task: asyncio.Task | None = None
        self.credentials = None  # set once written; removed at close, or by the watchdog if this process dies
        config = jobqueue_config(
            site,
            chosen,
            user,
            options,
            project=project,
            home=access.home_of(user),
            job_name=self.slurm_job_name,
            interface=interface,
            local_directory=local_directory,
            dashboard_address=dashboard_address(os.environ.get("JUPYTERHUB_SERVICE_PREFIX")),
            scheduler_host=scheduler_host(site),  # jobqueue_config uses it only without an interface
        )
        self.config = config
        # Recorded before any job exists, so the server extension can cancel them when the server stops.
        self._registry = job_registry.registry_dir(registry_dir)
        job_registry.register(
            self._registry,
            job_registry.record(
                self.slurm_job_name, user, job_registry.current_server_job(), os.getpid(), socket.gethostname()
            ),
        )
        credentials = tls.credentials_dir(self.slurm_job_name, credentials_dir)
        # Armed before any job exists, so no job (and no credentials) can outlive this process.
        try:
            self._reaper: subprocess.Popen | None = start_reaper(user, self.slurm_job_name, credentials)
        except BaseException:
            job_registry.unregister(self._registry, self.slurm_job_name)
            raise
        try:
            # Before the scheduler exists, so it never listens without TLS.
            tls.write_credentials(credentials, tls.pem_files(Security.temporary()))
            self.credentials = credentials
            kwargs = cluster_kwargs(config)
            # "", not None: dask-jobqueue would take None as "read the interface from the dask config".
            kwargs["interface"] = kwargs["interface"] or ""
            super().__init__(
                asynchronous=asynchronous,
                loop=loop,
                security=tls.cluster_security(self.credentials),
                **kwargs,
            )
        except BaseException:
            self._reaper.terminate()
            job_registry.unregister(self._registry, self.slurm_job_name)
            if self.credentials is not None:
                tls.remove_credentials(self.credentials)
            raise
        if options.adaptive:
            self.adapt(minimum=options.adaptive_min, maximum=options.adaptive_max)
        elif options.workers:
            self.scale(options.workers)

    # ---- what the widget and users see ----

    @property
    def dashboard_link(self) -> str:
        fallback = super().dashboard_link
        try:
            port = self.scheduler_info["services"]["dashboard"]
        except (KeyError, AttributeError, TypeError):
            port = None
        return dashboard_url(os.environ.get("JUPYTERHUB_SERVICE_PREFIX"), port, fallback)

    @property
    def target(self) -> int:
        return len(self.worker_spec)

    def job_ids(self) -> dict[str, str]:
        """Worker name -> Slurm job id, for jobs submitted so far."""
        return {name: str(job.job_id) for name, job in self.workers.items() if getattr(job, "job_id", None)}

    def connected_names(self) -> set[str]:
        return {w.get("name") for w in self.scheduler_info.get("workers", {}).values()}

    def worker_status(self) -> WorkerSummary:
        """Pending, running, connected and the target, with a sentence per missing worker (fresh from Slurm)."""
        return self.sync(self._refresh)

    def why_missing(self) -> list[str]:
        """Why fewer workers are connected than asked for, in sentences; empty when none is missing."""
        summary = self.worker_status()
        return [*summary.explanations, *self.notes()]

    def notes(self) -> list[str]:
        """Why workers were replaced (until the replacement connects), and why replacing stopped."""
        return [*self.replaced.values(), *([self.replacing_stopped] if self.replacing_stopped else [])]

    def adapt(self, minimum: int = 0, maximum: int = 1, **kwargs):
        """Adaptive scaling between `minimum` and `maximum` workers, checked against the profile."""
        choose_options(self.options_spec, {"cores": self.options.cores, "adaptive_min": minimum, "adaptive_max": maximum})
        kwargs.setdefault("wait_count", ADAPTIVE_WAIT_COUNT)
        return super().adapt(minimum=minimum, maximum=maximum, **kwargs)

    def scale(self, n=None, jobs=0, memory=None, cores=None):
        """Scale to `n` workers, checked against the profile.

        After repeated job failures no new jobs start (see `why_missing`) until `resume()`.
        """
        if n is not None:
            choose_options(self.options_spec, {"cores": self.options.cores, "workers": n})
            if self.replacing_stopped:
                n = min(n, len(self.workers))
        return super().scale(n, jobs=jobs, memory=memory, cores=cores)

    def resume(self) -> None:
        """Start new jobs again after `why_missing` said that starting them was stopped."""
        self.failures_in_a_row = 0
        self.replacing_stopped = None

    # ---- the watch loop: job states and replacing ended workers ----

    async def _refresh(self) -> WorkerSummary:
        ids = self.job_ids()
        states = await query_job_states(self.user, list(ids.values()))
        connected = self.connected_names()
        for name in connected & set(self.replaced):
            del self.replaced[name]
        self.job_states = states
        self.summary = summarize(states, list(ids.values()), len(connected), self.target)
        return self.summary

    async def _replace_ended(self) -> None:
        if self.job_states is None or self.replacing_stopped:
            return
        ended = ended_without_worker(self.job_ids(), self.job_states, self.connected_names())
        job_ids = self.job_ids()
        for name in ended:
            state = self.job_states[job_ids[name]]
            self.workers.pop(name, None)
            if state.state == "CANCELLED":
                # Someone cancelled it on purpose (the user, an operator, the watchdog): do not undo that.
                self.worker_spec.pop(name, None)
                continue
            if state.state != "COMPLETED":  # a worker retiring at its --lifetime needs no words
                self.replaced[name] = f"{explain(state)[:-1]}; a new job replaces worker {name}."
            if state.state in ("FAILED", "NODE_FAIL", "BOOT_FAIL", "OUT_OF_MEMORY"):
                self.failures_in_a_row += 1
            else:
                self.failures_in_a_row = 0
            if self.failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                self.replacing_stopped = (
                    f"Stopped starting new workers after {self.failures_in_a_row} jobs failed in a row; "
                    f"the last: {explain(state)}"
                )
                for spec_name in [n for n in self.worker_spec if n not in self.workers]:
                    del self.worker_spec[spec_name]
                    self.replaced.pop(spec_name, None)  # no new job replaces it after all
                return
        # Workers that retired at their --lifetime, or whose jobs ended, get new jobs.
        if name_missing(self.worker_spec, self.workers):
            await self._correct_state()

    async def _watch(self) -> None:
        while self.status.name in ("created", "starting", "running"):
            try:
                await self._refresh()
                await self._replace_ended()
            except asyncio.CancelledError:
                raise
            except Exception:  # a watcher must never take the cluster down
                logger.exception("watching the Slurm jobs of %s failed", self.slurm_job_name)
            await asyncio.sleep(WATCH_SECONDS)

    async def _start(self):
        await super()._start()
        tls.record_address(self.credentials, self.scheduler_address)
        self._watch_task = asyncio.ensure_future(self._watch())

    async def _close(self):
        if self._watch_task is not None:
            self._watch_task.cancel()
            try:
                await self._watch_task  # let its squeue/sacct finish before the loop goes
            except (asyncio.CancelledError, Exception):
                pass
        try:
            await super()._close()
        finally:
            reaper = getattr(self, "_reaper", None)
            if reaper is not None and reaper.poll() is None:
                reaper.terminate()  # it cancels by name once more (idempotent), then exits
            registry = getattr(self, "_registry", None)
            if registry is not None:
                job_registry.unregister(registry, self.slurm_job_name)
            credentials = getattr(self, "credentials", None)
            if credentials is not None:
                tls.remove_credentials(credentials)


def name_missing(spec: dict, workers: dict) -> bool:
    return bool(set(spec) - set(workers))
