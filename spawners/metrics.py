"""The platform's own Prometheus metrics, served with JupyterHub's at `/hub/metrics`.

JupyterHub serves prometheus_client's default registry, so whatever is registered
here in the hub process appears there (scope `read:metrics`). The spawner reports
through three calls, and never needs prometheus_client itself:

    from aifactory.spawners import metrics
    metrics.spawn_failed("submit")                    # one of SPAWN_FAILURE_REASONS
    metrics.spawn_failed("job_out_of_memory")         # the job ended first: job_ + Slurm's final state
    metrics.observe_queue_wait("small-g", 42.0)       # seconds from sbatch to RUNNING

Servers per profile and state are counted from the hub's own state when scraped
(`register_server_counts`, done by `jupyterhub_config.py`): a spawner's profile is
`user_options["profile"]`, so a spawner that fills in a default profile should
write it back there.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from aifactory.slurm.states import FINAL_STATES

# Slurm's final states of a job (aifactory.slurm.states); a job that ends before its server is up is
# counted by its state, UNKNOWN when accounting never said.
SLURM_FINAL_STATES = (*sorted(FINAL_STATES), "UNKNOWN")
# Label values are bounded: anything else is counted as "other".
SPAWN_FAILURE_REASONS = (
    "options",  # the user's options were refused (profile, resources, account)
    "identity",  # root, a system or a service account (aifactory.site.identity)
    "submit",  # sbatch refused the job or did not answer
    # the job ended before the server was up, by Slurm's final state: job_failed, job_node_fail, ...
    *(f"job_{state.lower()}" for state in SLURM_FINAL_STATES),
    "timeout",  # the server did not start within start_timeout (queue or startup)
    "cancelled",  # the user cancelled a pending spawn
    "other",
)
QUEUE_WAIT_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, float("inf"))

SPAWN_FAILURES = Counter(
    "aifactory_spawn_failures",
    "Spawns that did not give the user a server, by reason",
    ["reason"],
)
QUEUE_WAIT = Histogram(
    "aifactory_queue_wait_seconds",
    "Seconds a server's Slurm job waited in the queue before it ran, by partition",
    ["partition"],
    buckets=QUEUE_WAIT_BUCKETS,
)


def spawn_failed(reason: str) -> None:
    """Count a spawn that failed; `reason` is one of SPAWN_FAILURE_REASONS."""
    SPAWN_FAILURES.labels(reason=reason if reason in SPAWN_FAILURE_REASONS else "other").inc()


def observe_queue_wait(partition: str, seconds: float) -> None:
    """Record how long a server's job waited in `partition` before it started."""
    QUEUE_WAIT.labels(partition=partition).observe(max(0.0, seconds))


def profile_of(spawner) -> str:
    options = getattr(spawner, "user_options", None) or {}
    return str(options.get("profile") or "unknown")


def server_counts(spawners: Iterable) -> dict[tuple[str, str], int]:
    """(profile, state) -> number of servers; state is 'running' (ready) or 'pending' (starting)."""
    counts: Tally = Tally()
    for spawner in spawners:
        if spawner.ready:
            counts[profile_of(spawner), "running"] += 1
        elif spawner.pending == "spawn":
            counts[profile_of(spawner), "pending"] += 1
    return dict(counts)


class ServerCounts:
    """A collector that counts servers per profile when Prometheus scrapes."""

    def __init__(self, spawners: Callable[[], Iterable]):
        self._spawners = spawners

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "aifactory_servers", "Servers per profile and state (running or pending)", labels=["profile", "state"]
        )

    def describe(self):
        """What the registry asks for at registration; must not touch the hub, which is not up yet."""
        yield self._family()

    def collect(self):
        family = self._family()
        for (profile, state), n in sorted(server_counts(self._spawners()).items()):
            family.add_metric([profile, state], n)
        yield family


def hub_spawners() -> list:
    """Every spawner the running hub holds in memory (all users with a server are loaded)."""
    from jupyterhub.app import JupyterHub

    if not JupyterHub.initialized() or not JupyterHub.instance().tornado_settings:
        return []  # the hub is still starting: no users loaded yet
    return [s for user in list(JupyterHub.instance().users.values()) for s in list(user.spawners.values())]


_registered: list[ServerCounts] = []


def register_server_counts(spawners: Callable[[], Iterable] = hub_spawners) -> None:
    """Add the servers-per-profile gauge to the default registry (once per process)."""
    if not _registered:
        _registered.append(ServerCounts(spawners))
        REGISTRY.register(_registered[0])
