"""The hub's traitlets configuration, derived from the site by one pure function.

`jupyterhub_config.py` reads the secrets and the site file (I/O) and applies
what `hub_config` returns; tests compare that dict with `==`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jupyterhub.utils import subdomain_hook_idna
from traitlets import TraitError

from aifactory.site.identity import blocked_names
from aifactory.site.install import install_prefix
from aifactory.site.schema import OidcAuth, PamAuth, Site

from .loop_costs import logging_config
from .roles import CourseGroups, hub_groups, roles
from .services import service_roles, services

OPERATOR_SERVICE = "aifactory-operator"
TEMPLATES = str(Path(__file__).resolve().parent / "templates")
# What the operator's token may do: everything an admin does through the API.
OPERATOR_SCOPES = [
    "admin:users",
    "admin:servers",
    "access:servers",
    "admin:groups",
    "admin:services",
    "tokens",
    "read:hub",
    "read:metrics",
    "proxy",
    "shutdown",
]


@dataclass(frozen=True)
class HubPaths:
    """Where the hub keeps its state and finds its programs."""

    state: str = "/var/lib/aifactory/hub"
    prefix: str = str(install_prefix())

    @property
    def venv(self) -> str:
        return f"{self.prefix}/venv"

    @property
    def proxy(self) -> str:
        return f"{self.prefix}/node/node_modules/.bin/configurable-http-proxy"


def load_groups(site: Site) -> dict[str, dict]:
    """Groups of a PAM site come from the site file; an OIDC site's from the IdP's claims
    (JupyterHub refuses `load_groups` when the authenticator manages groups)."""
    if isinstance(site.auth, OidcAuth):
        return {}
    return {name: {"users": users} for name, users in hub_groups(site).items()}


def authenticator_config(site: Site, oidc_secret: str = "") -> dict[str, dict]:
    auth = site.auth
    if isinstance(auth, PamAuth):
        return {
            # JupyterHub's PAMAuthenticator whose failure delay holds no thread (hub/pam_login.py).
            "JupyterHub": {"authenticator_class": "aifactory.hub.pam_login.SitePAMAuthenticator"},
            "PAMAuthenticator": {
                "service": auth.service,
                "admin_groups": set(auth.admin_groups),
                # Only people of the site's groups, never system accounts.
                "allowed_groups": {g.name for g in site.groups},
                "blocked_users": blocked_names(site),
            },
        }
    assert isinstance(auth, OidcAuth)
    return {
        "JupyterHub": {"authenticator_class": "generic-oauth"},
        "GenericOAuthenticator": {
            "client_id": auth.client_id,
            "client_secret": oidc_secret,
            "authorize_url": auth.authorize_url,
            "token_url": auth.token_url,
            "userdata_url": auth.userdata_url,
            "scope": list(auth.scopes),
            "username_claim": auth.username_claim,
            "manage_groups": True,
            "auth_state_groups_key": f"oauth_user.{auth.groups_claim}",
            "admin_groups": set(auth.admin_groups),
            "allowed_groups": {g.name for g in site.groups},
            # Whatever the IdP's username claim says, never root or a service account.
            "blocked_users": blocked_names(site),
            "post_auth_hook": CourseGroups(site),
        },
    }


def subdomain_hook(name: str, domain: str, kind: str) -> str:
    """Each user's servers on their own origin; the site's services stay on the hub's.

    The services with pages are the course formgraders: the platform's own code, made
    safe for the hub's origin (`formgrader_safety`), that trainers, the CLI and the
    tests reach at `<hub>/services/<name>/`. JupyterHub's default would move each to
    `<name>--service.<domain>`, an address no resolver but a browser's knows locally.
    """
    if kind == "service":
        return domain
    return subdomain_hook_idna(name, domain, kind)


def origin_config(site: Site) -> dict:
    """Users' servers served from `<user>.<domain>` (JupyterHub adds CHP's --host-routing)."""
    if site.hub.subdomain_host is None:
        return {}
    return {"subdomain_host": site.hub.subdomain_host, "subdomain_hook": subdomain_hook}


def session_cards(user):
    """The templates' `session_cards(base_url)` for the page's user (JupyterHub calls this per page)."""
    from aifactory.hub.session_cards import cards_of

    return cards_of(user)


def port_handlers() -> list[tuple]:
    from aifactory.spawners.port_api import handlers

    return handlers


def walltime_handlers() -> list[tuple]:
    from aifactory.spawners.walltime_api import handlers

    return handlers


def live_help_handlers() -> list[tuple]:
    from aifactory.hub.live_help import handlers

    return handlers


def live_help_servers(user):
    """The templates' `live_help_servers`: the running servers shared with the page's user (hub/live_help.py)."""
    from aifactory.hub.live_help import shared_with

    return shared_with(user)


def end_live_help(spawner) -> None:
    """`Spawner.post_stop_hook`: JupyterHub keeps a server's shares across a stop; live help's end with it."""
    from aifactory.hub.live_help import end_shares

    end_shares(spawner)


# What an operator may tune in the site file's hub.traits: timing, caching and capacity, nothing else.
# The site file is world-readable and its traits apply last, so a trait that carries security (services,
# roles, handlers, the authenticator, the spawner class, secrets, what a job runs) is never one of them.
# The spawner's inherited poll_interval sits under SiteSlurmSpawner, where the derived value it overrides is.
TUNABLE_TRAITS: dict[str, set[str]] = {
    "JupyterHub": {"concurrent_spawn_limit", "active_server_limit", "last_activity_interval", "init_spawners_timeout"},
    "Spawner": {"start_timeout", "http_timeout"},
    "SiteSlurmSpawner": {
        "poll_interval", "startup_poll_interval", "slurm_poll_interval", "slurm_poll_jitter", "slurm_timeout",
        "walltime_warning_minutes", "facts_cache_seconds", "slurm_missing_rounds", "scancel_attempts",
        "partition_state_seconds", "allocation_use_seconds", "sbatch_timeout", "stop_wait_seconds",
    },
    "RemoteSlurmSpawner": {"ssh_connect_timeout"},
}


def tunable_classes() -> dict[str, type]:
    """The classes of TUNABLE_TRAITS, whose traits check an operator's values."""
    from jupyterhub.app import JupyterHub
    from jupyterhub.spawner import Spawner

    from aifactory.spawners.remote import RemoteSlurmSpawner
    from aifactory.spawners.slurm import SiteSlurmSpawner

    return {c.__name__: c for c in (JupyterHub, Spawner, SiteSlurmSpawner, RemoteSlurmSpawner)}


def trait_problems(site: Site) -> list[str]:
    """What is wrong in the site's hub.traits: a class or trait outside TUNABLE_TRAITS, a bad value."""
    classes, problems = tunable_classes(), []
    for class_name, values in site.hub.traits.items():
        if class_name not in TUNABLE_TRAITS:
            problems.append(f"hub.traits.{class_name}: not a class an operator may tune here "
                            f"(one of {', '.join(sorted(TUNABLE_TRAITS))})")
            continue
        traits = classes[class_name].class_traits(config=True)
        for name, value in values.items():
            where = f"hub.traits.{class_name}.{name}"
            if name not in TUNABLE_TRAITS[class_name]:
                problems.append(f"{where}: not a knob an operator may set here "
                                f"(one of {', '.join(sorted(TUNABLE_TRAITS[class_name]))})")
                continue
            try:
                traits[name].validate(None, value)
            except TraitError as error:
                problems.append(f"{where}: {str(error).replace(' of a NoneType instance', '')}")
    return problems


def hub_config(
    site: Site, paths: HubPaths, operator_token: str, oidc_secret: str = "", metrics_token: str = ""
) -> dict[str, dict]:
    """Site -> {traitlets class name: {trait: value}} for JupyterHub; the site's hub.traits last."""
    config: dict[str, dict] = {
        "JupyterHub": {
            # The spawn and progress pages; JupyterHub's own stay reachable as templates/<name>.
            "template_paths": [TEMPLATES],
            "ip": site.hub.ip,
            "port": site.hub.port,
            # Where the compute nodes reach the hub's API (the login node's address on their network).
            "hub_ip": site.hub_api_ip(),
            "hub_port": site.hub.hub_port,
            "db_url": f"sqlite:///{paths.state}/jupyterhub.sqlite",
            "cookie_secret_file": f"{paths.state}/jupyterhub_cookie_secret",
            # JupyterHub's logger at the log level: no debug record built per request (hub/loop_costs.py).
            "logging_config": logging_config(),
            "spawner_class": "aifactory.spawners.slurm.SiteSlurmSpawner",
            # The only way a starting server reports its port (replaces batchspawner's handler).
            # ... and the home page's "Extend" (a running server's walltime, spawners/walltime_api.py).
            # ... and live help (a student shares a server with their course's trainers, hub/live_help.py).
            "extra_handlers": [*port_handlers(), *walltime_handlers(), *live_help_handlers()],
            # The home page's session cards (hub/session_cards.py), built only when home.html asks.
            "template_vars": {"session_cards": session_cards, "live_help_servers": live_help_servers},
            # Servers are Slurm jobs: they outlive a hub restart and are reattached.
            "cleanup_servers": False,
            "allow_named_servers": True,
            "named_server_limit_per_user": site.limits.servers_per_user,
            "load_groups": load_groups(site),
            "services": [
                {"name": OPERATOR_SERVICE, "api_token": operator_token},
                *services(site, f"{paths.venv}/bin/python", metrics_token),
            ],
            "load_roles": [
                {
                    "name": OPERATOR_SERVICE,
                    "description": "Operators' automation token",
                    "scopes": list(OPERATOR_SCOPES),
                    "services": [OPERATOR_SERVICE],
                },
                *service_roles(metrics_token),
                *roles(site),
            ],
            **origin_config(site),
        },
        "ConfigurableHTTPProxy": {
            "command": [paths.proxy],
            "pid_file": f"{paths.state}/proxy.pid",
        },
        "Spawner": {
            "default_url": "/lab",
            "start_timeout": 300,
            "http_timeout": 120,
            "post_stop_hook": end_live_help,
        },
        # JupyterHub's per-server poll only reads the spawner's shared snapshot (cheap);
        # the one squeue for all servers runs every slurm_poll_interval seconds.
        "SiteSlurmSpawner": {"venv": paths.venv, "slurm_poll_interval": 10.0, "poll_interval": 5},
    }
    for section, values in authenticator_config(site, oidc_secret).items():
        config.setdefault(section, {}).update(values)
    for section, values in site.hub.traits.items():
        config.setdefault(section, {}).update(values)
    return config
