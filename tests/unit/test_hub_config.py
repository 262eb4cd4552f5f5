"""The hub configuration derived from a site, compared by equality."""

from __future__ import annotations

from aifactory.hub.config import (
    OPERATOR_SCOPES,
    TEMPLATES,
    TUNABLE_TRAITS,
    HubPaths,
    end_live_help,
    hub_config,
    live_help_servers,
    session_cards,
    subdomain_hook,
    trait_problems,
    tunable_classes,
)
from aifactory.hub.live_help import HelpHandler
from aifactory.hub.roles import CourseGroups, roles
from aifactory.hub.services import idle_culler_command, service_roles
from aifactory.site import SiteError, parse_site
from aifactory.site.load import read_yaml
from aifactory.spawners.port_api import PortHandler
from aifactory.spawners.walltime_api import WalltimeHandler

import pytest
import yaml

from .sites import SMALL_SITE


def test_hub_config_for_a_pam_site():
    site = parse_site(SMALL_SITE)
    assert hub_config(site, HubPaths(state="/s", prefix="/p"), "tok") == {
        "JupyterHub": {
            "template_paths": [TEMPLATES],
            "ip": "127.0.0.1",
            "port": 8000,
            "hub_ip": "10.77.0.1",  # the login node's address on local.network, where the nodes reach it
            "hub_port": 8081,
            "db_url": "sqlite:////s/jupyterhub.sqlite",
            "cookie_secret_file": "/s/jupyterhub_cookie_secret",
            "logging_config": {"loggers": {"JupyterHub": {"level": "INFO"}}},
            "spawner_class": "aifactory.spawners.slurm.SiteSlurmSpawner",
            "extra_handlers": [("/api/aifactory/port", PortHandler),
                               (r"/api/aifactory/users/([^/]+)/server/walltime", WalltimeHandler),
                               (r"/api/aifactory/users/([^/]+)/servers/([^/]+)/walltime", WalltimeHandler),
                               (r"/api/aifactory/users/([^/]+)/server/help", HelpHandler),
                               (r"/api/aifactory/users/([^/]+)/servers/([^/]+)/help", HelpHandler)],
            "template_vars": {"session_cards": session_cards, "live_help_servers": live_help_servers},
            "cleanup_servers": False,
            "allow_named_servers": True,
            "named_server_limit_per_user": 1,
            "load_groups": {
                "students": {"users": ["alice"]},
                "researchers": {"users": ["bob"]},
                "course-ml101-students": {"users": ["alice"]},
                "course-ml101-trainers": {"users": ["bob"]},
            },
            "services": [
                {"name": "aifactory-operator", "api_token": "tok"},
                {"name": "idle-culler", "command": idle_culler_command(site, "/p/venv/bin/python")},
                {
                    "name": "formgrader-ml101",
                    "url": "http://127.0.0.1:18100",
                    "command": ["/p/venv/bin/python", "-m", "aifactory.hub.formgrader", "ml101"],
                    "display": True,
                    "oauth_no_confirm": True,
                    "timeout": 120,
                },
            ],
            "load_roles": [
                {
                    "name": "aifactory-operator",
                    "description": "Operators' automation token",
                    "scopes": OPERATOR_SCOPES,
                    "services": ["aifactory-operator"],
                },
                *service_roles(),
                *roles(site),
            ],
            "authenticator_class": "aifactory.hub.pam_login.SitePAMAuthenticator",
        },
        "ConfigurableHTTPProxy": {
            "command": ["/p/node/node_modules/.bin/configurable-http-proxy"],
            "pid_file": "/s/proxy.pid",
        },
        "Spawner": {"default_url": "/lab", "start_timeout": 300, "http_timeout": 120, "post_stop_hook": end_live_help},
        "SiteSlurmSpawner": {"venv": "/p/venv", "slurm_poll_interval": 10.0, "poll_interval": 5},
        "PAMAuthenticator": {
            "service": "login",
            "admin_groups": {"researchers"},
            "allowed_groups": {"students", "researchers"},
            "blocked_users": {"root", "aifactory-grader", "grader-ml101"},
        },
    }


def test_hub_config_for_an_oidc_site():
    data = read_yaml(SMALL_SITE)
    data["auth"] = {
        "kind": "oidc",
        "issuer": "https://login.example.eu",
        "authorize_url": "https://login.example.eu/auth",
        "token_url": "https://login.example.eu/token",
        "userdata_url": "https://login.example.eu/userinfo",
        "client_id": "hub",
        "client_secret_file": "/etc/aifactory/oidc-secret",
        "admin_groups": ["researchers"],
    }
    config = hub_config(parse_site(yaml.safe_dump(data)), HubPaths(), "tok", oidc_secret="shh")
    assert config["JupyterHub"]["authenticator_class"] == "generic-oauth"
    assert config["GenericOAuthenticator"]["client_secret"] == "shh"
    assert config["GenericOAuthenticator"]["token_url"] == "https://login.example.eu/token"
    assert config["GenericOAuthenticator"]["allowed_groups"] == {"students", "researchers"}
    # A username claim that names root or a service account never logs in.
    assert {"root", "aifactory-grader"} <= config["GenericOAuthenticator"]["blocked_users"]
    assert "PAMAuthenticator" not in config
    # JupyterHub refuses load_groups when the IdP manages groups; course groups come at login.
    assert config["JupyterHub"]["load_groups"] == {}
    assert config["GenericOAuthenticator"]["post_auth_hook"] == CourseGroups(parse_site(yaml.safe_dump(data)))


def test_a_metrics_token_adds_a_read_metrics_service():
    config = hub_config(parse_site(SMALL_SITE), HubPaths(), "tok", metrics_token="m")
    assert {"name": "aifactory-metrics", "api_token": "m"} in config["JupyterHub"]["services"]
    assert "read:metrics" in OPERATOR_SCOPES


def with_traits(traits: dict):
    data = read_yaml(SMALL_SITE)
    data["hub"] = {"traits": traits}
    return parse_site(yaml.safe_dump(data))


def test_an_operators_traits_in_the_site_file_tune_the_hub_over_what_is_derived():
    site = with_traits({"SiteSlurmSpawner": {"slurm_poll_interval": 60, "partition_state_seconds": 12.5,
                                             "poll_interval": 30},
                        "Spawner": {"start_timeout": 900}, "JupyterHub": {"concurrent_spawn_limit": 50}})
    assert trait_problems(site) == []
    config = hub_config(site, HubPaths(), "tok")
    plain = hub_config(parse_site(SMALL_SITE), HubPaths(), "tok")
    assert config["SiteSlurmSpawner"] == {**plain["SiteSlurmSpawner"], "slurm_poll_interval": 60,
                                          "partition_state_seconds": 12.5, "poll_interval": 30}
    assert config["Spawner"] == {**plain["Spawner"], "start_timeout": 900}
    assert config["JupyterHub"] == {**plain["JupyterHub"], "concurrent_spawn_limit": 50}


def test_every_knob_an_operator_may_set_is_a_configurable_trait_of_its_class():
    classes = tunable_classes()
    assert set(classes) == set(TUNABLE_TRAITS)
    for name, knobs in TUNABLE_TRAITS.items():
        assert knobs <= set(classes[name].class_traits(config=True)), name


def test_traits_outside_the_operators_knobs_are_named_and_values_are_checked():
    site = with_traits({"Nope": {"x": 1}, "SiteSlurmSpawner": {"cache": 1, "slurm_missing_rounds": 0,
                                                               "slurm_poll_interval": "often"}})
    assert trait_problems(site) == [
        "hub.traits.Nope: not a class an operator may tune here (one of JupyterHub, RemoteSlurmSpawner, "
        "SiteSlurmSpawner, Spawner)",
        "hub.traits.SiteSlurmSpawner.cache: not a knob an operator may set here (one of allocation_use_seconds, "
        "facts_cache_seconds, partition_state_seconds, poll_interval, sbatch_timeout, scancel_attempts, "
        "slurm_missing_rounds, slurm_poll_interval, slurm_poll_jitter, slurm_timeout, startup_poll_interval, "
        "stop_wait_seconds, walltime_warning_minutes)",
        "hub.traits.SiteSlurmSpawner.slurm_missing_rounds: The value of the 'slurm_missing_rounds' trait should "
        "not be less than 1, but a value of 0 was specified",
        "hub.traits.SiteSlurmSpawner.slurm_poll_interval: The 'slurm_poll_interval' trait expected a float, "
        "not the str 'often'.",
    ]


@pytest.mark.parametrize("class_name, trait, value", [
    ("JupyterHub", "cookie_secret", "00ff"),
    ("JupyterHub", "services", []),
    ("JupyterHub", "load_roles", []),
    ("JupyterHub", "extra_handlers", []),
    ("JupyterHub", "spawner_class", "simple"),
    ("JupyterHub", "authenticator_class", "dummy"),
    ("JupyterHub", "db_url", "sqlite:///tmp/x.sqlite"),
    ("SiteSlurmSpawner", "launcher", ["/bin/sh", "-c"]),
    ("SiteSlurmSpawner", "slurm_runner", "x"),
    ("Spawner", "cmd", ["/bin/sh"]),
    ("RemoteSlurmSpawner", "ssh_login_node", "elsewhere"),
])
def test_a_trait_that_carries_security_is_refused_by_name(class_name, trait, value):
    problems = trait_problems(with_traits({class_name: {trait: value}}))
    assert len(problems) == 1
    assert problems[0].startswith(f"hub.traits.{class_name}.{trait}: not a knob an operator may set here (one of ")


@pytest.mark.parametrize("class_name", ["PAMAuthenticator", "Authenticator", "GenericOAuthenticator",
                                        "ConfigurableHTTPProxy"])
def test_the_authenticators_and_the_proxy_are_not_tunable_here(class_name):
    assert trait_problems(with_traits({class_name: {"blocked_users": []}})) == [
        f"hub.traits.{class_name}: not a class an operator may tune here "
        "(one of JupyterHub, RemoteSlurmSpawner, SiteSlurmSpawner, Spawner)"
    ]


def test_users_servers_get_their_own_origins_and_services_stay_on_the_hubs():
    data = read_yaml(SMALL_SITE)
    data["hub"] = {"subdomain_host": "https://ai.example.org"}
    config = hub_config(parse_site(yaml.safe_dump(data)), HubPaths(), "tok")["JupyterHub"]
    plain = hub_config(parse_site(SMALL_SITE), HubPaths(), "tok")["JupyterHub"]
    assert config == {**plain, "subdomain_host": "https://ai.example.org", "subdomain_hook": subdomain_hook}
    assert subdomain_hook("alice", "ai.example.org", "user") == "alice.ai.example.org"
    assert subdomain_hook("formgrader-ml101", "ai.example.org", "service") == "ai.example.org"


@pytest.mark.parametrize("value", ["ai.example.org", "ftp://ai.example.org", "https://ai.example.org/hub",
                                   "https://ai.example.org:http", "https://me@ai.example.org", "https://ai_x.org"])
def test_a_bad_subdomain_host_is_refused_naming_the_field(value):
    data = read_yaml(SMALL_SITE)
    data["hub"] = {"subdomain_host": value}
    with pytest.raises(SiteError) as err:
        parse_site(yaml.safe_dump(data))
    assert [str(p) for p in err.value.problems] == [
        f"hub.subdomain_host: must be like 'https://ai.example.org' or 'http://localhost:8000', not {value!r}"]
