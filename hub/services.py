"""The hub's services and their roles, derived from the site by pure functions.

- `idle-culler`: jupyterhub-idle-culler run by the hub (through `culler.py`, so that it
  dies with a killed hub). It stops servers idle for
  `limits.idle_timeout` and servers older than `limits.max_session`. It asks for
  ready servers only (`GET /users?state=ready`, paginated) so that a hub with many
  users who have no server is not loaded by it (ANCHORS.md, JupyterHub deployments).
- `formgrader-<course>`: nbgrader's formgrader of each course (see `formgrader.py`).
- `aifactory-metrics`: a token that may read `/hub/metrics` and nothing else, for
  Prometheus; defined only when the hub was given its token.
"""

from __future__ import annotations

from .formgrader import formgrader_services
from aifactory.site.schema import Site

IDLE_CULLER = "idle-culler"
METRICS_SERVICE = "aifactory-metrics"

# What jupyterhub-idle-culler needs when it stops servers but never deletes users
# (jupyterhub-idle-culler README, "Permissions").
IDLE_CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
METRICS_SCOPES = ["read:metrics"]


def cull_every_seconds(site: Site) -> int:
    """How often the culler looks: a tenth of the idle timeout, between 1 and 10 minutes."""
    return max(60, min(600, site.limits.idle_timeout * 60 // 10))


def idle_culler_command(site: Site, python: str) -> list[str]:
    """argv of jupyterhub-idle-culler for the site's limits (minutes in the site, seconds here)."""
    return [
        python,
        "-m",
        "aifactory.hub.culler",
        f"--timeout={site.limits.idle_timeout * 60}",
        f"--max-age={site.limits.max_session * 60}",
        f"--cull-every={cull_every_seconds(site)}",
        # Named servers too: each is a Slurm job holding nodes.
        "--cull-named-servers=True",
        "--cull-admin-users=True",
        "--cull-users=False",
        "--remove-named-servers=False",
        # Few requests at a time and pages of users: a culler must not load the hub.
        "--concurrency=5",
        "--api-page-size=200",
    ]


def services(site: Site, python: str, metrics_token: str = "") -> list[dict]:
    """`JupyterHub.services` entries of the site's own services."""
    result = [{"name": IDLE_CULLER, "command": idle_culler_command(site, python)},
              *formgrader_services(site, python)]
    if metrics_token:
        result.append({"name": METRICS_SERVICE, "api_token": metrics_token})
    return result


def service_roles(metrics_token: str = "") -> list[dict]:
    """`load_roles` entries that give each service the few scopes it needs."""
    result = [
        {
            "name": IDLE_CULLER,
            "description": "Stop idle and overlong servers",
            "scopes": list(IDLE_CULLER_SCOPES),
            "services": [IDLE_CULLER],
        }
    ]
    if metrics_token:
        result.append(
            {
                "name": METRICS_SERVICE,
                "description": "Read the hub's Prometheus metrics",
                "scopes": list(METRICS_SCOPES),
                "services": [METRICS_SERVICE],
            }
        )
    return result
