"""The Helm chart, without a cluster or a helm binary.

Rendered and linted with Helm's own Go SDK through `helm_python` (helm-python-sdk), every
rendered manifest validated strictly against a recent Kubernetes schema (kubernetes-validate).
The hub configuration the chart produces is computed by running the rendered
jupyterhub_config.py against the files and environment the rendered Deployment gives the
hub container, and compared with what the local hub builds for the same site file.
"""

from __future__ import annotations

import base64
import copy
import re
import stat
from pathlib import Path

import pytest
import yaml

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is in the test extra (pip install -e .[test])")
kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is in the test extra")

from traitlets.config.loader import PyFileConfigLoader  # noqa: E402

from aifactory.hub.config import HubPaths, hub_config  # noqa: E402
from aifactory.hub.services import IDLE_CULLER, METRICS_SERVICE, idle_culler_command  # noqa: E402
from aifactory.site import parse_site  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm"
# The demo site as a centre at ai.example.org would write it: users' servers on *.ai.example.org.
DEMO_SITE = re.sub(r"(?m)^  subdomain_host: .*\n", "", (REPO / "hub" / "site" / "demo.yaml").read_text()).replace(
    "\nhub:\n", "\nhub:\n  subdomain_host: https://ai.example.org\n", 1)
RELEASE, NAMESPACE = "af", "aifactory"
FULLNAME = "af-aifactory"
KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
KNOWN_HOSTS = "login1.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample\n"
# A recent Kubernetes that the manifests must be valid for.
KUBERNETES = "1.33.0"

VALUES = {
    "site": DEMO_SITE,
    "ingress": {"host": "ai.example.org", "tls": {"secretName": "ai-example-org-tls"}},
    "slurm": {"access": "ssh", "ssh": {"loginNode": "login1.example.org", "knownHosts": KNOWN_HOSTS, "privateKey": KEY}},
    "networkPolicy": {"computeNodeCidrs": ["10.10.0.0/16"], "loginNodeCidrs": ["10.20.0.5/32"]},
}


def merged(*overrides: dict) -> dict:
    def merge(base: dict, extra: dict) -> dict:
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merge(base[key], value)
            else:
                base[key] = value
        return base

    values = copy.deepcopy(VALUES)
    for override in overrides:
        merge(values, copy.deepcopy(override))
    return values


VARIANTS = {
    "ssh-sqlite": {},
    "postgresql": {"database": {"type": "postgresql", "postgresql": {"host": "db.example.org", "password": "pw"}},
                   "networkPolicy": {"databaseCidrs": ["10.30.0.0/24"]}},
    "postgresql-existing-secrets": {
        "database": {"type": "postgresql", "postgresql": {"host": "db.example.org", "existingSecret": "hub-db"}},
        "slurm": {"ssh": {"privateKey": "", "existingSecret": "hub-ssh"}},
    },
    "metrics": {"metrics": {"enabled": True, "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}},
    "no-ingress-no-policies": {"ingress": {"enabled": False}, "networkPolicy": {"enabled": False},
                               "proxy": {"service": {"type": "LoadBalancer"}}, "hub": {"urlForJobs": "http://10.0.0.9"}},
}


@pytest.fixture(scope="module")
def chart():
    return helm.Chart.load(str(CHART))


def render(chart, values: dict) -> list[dict]:
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return [doc for path, text in sorted(manifests.items()) if path.endswith(".yaml")
            for doc in yaml.safe_load_all(text) if doc]


def find(docs: list[dict], kind: str, name: str) -> dict:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, got {[d['metadata']['name'] for d in docs if d['kind'] == kind]}"
    return matches[0]


# -- render, lint, validate ---------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_chart_lints_clean(variant):
    report = helm.lint(str(CHART), merged(VARIANTS[variant]), strict=True, namespace=NAMESPACE,
                       kube_version=f"v{KUBERNETES}")
    assert report["errors"] == []
    # Severity 1 is information (Helm recommends an icon); warnings and errors fail.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_manifest_is_valid_kubernetes(chart, variant):
    docs = render(chart, merged(VARIANTS[variant]))
    assert docs
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: no schema in Kubernetes; checked in test_service_monitor_scrapes_with_the_metrics_token
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_the_chart_deploys_what_the_issue_lists(chart):
    docs = render(chart, merged(VARIANTS["metrics"]))
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert kinds == {
        ("ServiceAccount", f"{FULLNAME}-hub"),
        ("PersistentVolumeClaim", f"{FULLNAME}-hub-state"),
        ("Deployment", f"{FULLNAME}-hub"),
        ("Deployment", f"{FULLNAME}-proxy"),
        ("Service", f"{FULLNAME}-hub"),
        ("Service", f"{FULLNAME}-proxy-public"),
        ("Service", f"{FULLNAME}-proxy-api"),
        ("Ingress", FULLNAME),
        ("ConfigMap", f"{FULLNAME}-site"),
        ("Secret", FULLNAME),
        ("Secret", f"{FULLNAME}-slurm-ssh"),
        ("NetworkPolicy", f"{FULLNAME}-hub"),
        ("NetworkPolicy", f"{FULLNAME}-proxy"),
        ("ServiceMonitor", f"{FULLNAME}-hub"),
    }


def test_ingress_serves_the_hub_and_the_users_subdomains_to_the_proxy_over_tls(chart):
    assert parse_site(DEMO_SITE).hub.subdomain_host == "https://ai.example.org"
    docs = render(chart, VALUES)
    ingress = find(docs, "Ingress", FULLNAME)
    assert ingress["spec"]["tls"] == [{"hosts": ["ai.example.org", "*.ai.example.org"], "secretName": "ai-example-org-tls"}]
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == ["ai.example.org", "*.ai.example.org"]
    for rule in ingress["spec"]["rules"]:
        assert rule["http"]["paths"][0]["backend"]["service"] == {"name": f"{FULLNAME}-proxy-public",
                                                                   "port": {"name": "http"}}
    # The proxy runs in its own pod: the chart gives it the host routing JupyterHub would.
    proxy = find(docs, "Deployment", f"{FULLNAME}-proxy")["spec"]["template"]["spec"]["containers"][0]
    assert "--host-routing" in proxy["args"]


def test_without_subdomains_one_host_and_path_routing(chart):
    site = DEMO_SITE.replace("  subdomain_host: https://ai.example.org\n", "")
    assert parse_site(site).hub.subdomain_host is None
    docs = render(chart, merged({"site": site}))
    ingress = find(docs, "Ingress", FULLNAME)
    assert ingress["spec"]["tls"] == [{"hosts": ["ai.example.org"], "secretName": "ai-example-org-tls"}]
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == ["ai.example.org"]
    proxy = find(docs, "Deployment", f"{FULLNAME}-proxy")["spec"]["template"]["spec"]["containers"][0]
    assert "--host-routing" not in proxy["args"]


def test_subdomains_of_another_host_than_the_ingress_are_refused(chart):
    site = DEMO_SITE.replace("https://ai.example.org", "https://jupyter.example.org")
    with pytest.raises(Exception, match="hub.subdomain_host https://jupyter.example.org is not on ingress.host ai.example.org"):
        render(chart, merged({"site": site}))


def test_secrets_hold_generated_tokens_and_the_slurm_credential(chart):
    docs = render(chart, VALUES)
    data = {k: base64.b64decode(v).decode() for k, v in find(docs, "Secret", FULLNAME)["data"].items()}
    assert set(data) == {"cookie-secret", "proxy-token", "operator-token"}
    assert len(data["cookie-secret"]) == 64 and int(data["cookie-secret"], 16) >= 0  # 32 bytes, hex
    assert len(set(data.values())) == 3  # three different secrets
    ssh = find(docs, "Secret", f"{FULLNAME}-slurm-ssh")
    assert ssh["type"] == "kubernetes.io/ssh-auth"
    assert base64.b64decode(ssh["data"]["ssh-privatekey"]).decode() == KEY
    given = render(chart, merged({"secrets": {"cookieSecret": "ab" * 32, "proxyToken": "p" * 40}}))
    data = {k: base64.b64decode(v).decode() for k, v in find(given, "Secret", FULLNAME)["data"].items()}
    assert (data["cookie-secret"], data["proxy-token"]) == ("ab" * 32, "p" * 40)


def test_sqlite_lives_on_a_volume_and_postgresql_needs_none(chart):
    hub = find(render(chart, VALUES), "Deployment", f"{FULLNAME}-hub")["spec"]["template"]["spec"]
    state = next(v for v in hub["volumes"] if v["name"] == "state")
    assert state["persistentVolumeClaim"] == {"claimName": f"{FULLNAME}-hub-state"}
    docs = render(chart, merged(VARIANTS["postgresql-existing-secrets"]))
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    hub = find(docs, "Deployment", f"{FULLNAME}-hub")["spec"]["template"]["spec"]
    env = {e["name"]: e for e in hub["containers"][0]["env"]}
    assert env["AIFACTORY_DB_PASSWORD"]["valueFrom"] == {"secretKeyRef": {"name": "hub-db", "key": "password"}}
    assert next(v for v in hub["volumes"] if v["name"] == "ssh-key")["secret"]["secretName"] == "hub-ssh"
    assert not [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] != FULLNAME]


def test_network_policies_let_through_only_what_the_platform_uses(chart):
    docs = render(chart, VALUES)
    hub = find(docs, "NetworkPolicy", f"{FULLNAME}-hub")["spec"]
    assert hub["policyTypes"] == ["Ingress", "Egress"]
    assert hub["ingress"] == [{
        "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "aifactory",
                                                  "app.kubernetes.io/instance": RELEASE,
                                                  "app.kubernetes.io/component": "proxy"}}}],
        "ports": [{"port": 8081, "protocol": "TCP"}],
    }]
    egress_to = [rule.get("to") for rule in hub["egress"]]
    assert [{"ipBlock": {"cidr": "10.20.0.5/32"}}] in egress_to  # the login node (ssh)
    assert [{"ipBlock": {"cidr": "10.10.0.0/16"}}] in egress_to  # the servers on compute nodes
    ssh_rule = next(r for r in hub["egress"] if r.get("to") == [{"ipBlock": {"cidr": "10.20.0.5/32"}}])
    assert ssh_rule["ports"] == [{"port": 22, "protocol": "TCP"}]
    proxy = find(docs, "NetworkPolicy", f"{FULLNAME}-proxy")["spec"]
    assert proxy["ingress"][0]["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]
    assert proxy["ingress"][0]["ports"] == [{"port": 8000, "protocol": "TCP"}]


def test_service_monitor_scrapes_with_the_metrics_token(chart):
    docs = render(chart, merged(VARIANTS["metrics"]))
    monitor = find(docs, "ServiceMonitor", f"{FULLNAME}-hub")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"] == [{
        "port": "hub", "path": "/hub/metrics", "interval": "30s",
        "bearerTokenSecret": {"name": FULLNAME, "key": "metrics-token"},
    }]
    service = find(docs, "Service", f"{FULLNAME}-hub")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert [p["name"] for p in service["spec"]["ports"]] == ["hub"]
    secret = find(docs, "Secret", FULLNAME)
    assert "metrics-token" in secret["data"]


def test_hub_and_proxy_ports_come_from_the_site_file(chart):
    site = DEMO_SITE.replace("  port: 8000\n", "  port: 8443\n  hub_port: 8181\n")
    assert parse_site(site).hub.hub_port == 8181
    docs = render(chart, merged({"site": site}))
    assert find(docs, "Service", f"{FULLNAME}-hub")["spec"]["ports"][0]["port"] == 8181
    proxy = find(docs, "Deployment", f"{FULLNAME}-proxy")["spec"]["template"]["spec"]["containers"][0]
    assert f"--default-target=http://{FULLNAME}-hub:8181" in proxy["args"]
    assert "--port=8443" in proxy["args"]
    hub = find(docs, "Deployment", f"{FULLNAME}-hub")["spec"]["template"]["spec"]["containers"][0]
    assert hub["ports"] == [{"name": "hub", "containerPort": 8181, "protocol": "TCP"}]


# -- bad values ---------------------------------------------------------------------
BAD_VALUES = [
    ({"site": ""}, "/site"),
    ({"site": "partitions: []\n"}, "/site"),
    ({"slurm": {"access": "slurmrestd"}}, "/slurm/access"),
    ({"slurm": {"ssh": {"loginNode": ""}}}, "/slurm/ssh/loginNode"),
    ({"slurm": {"ssh": {"loginNode": "-oProxyCommand=sh"}}}, "/slurm/ssh/loginNode"),
    ({"slurm": {"ssh": {"knownHosts": ""}}}, "/slurm/ssh/knownHosts"),
    ({"slurm": {"ssh": {"privateKey": ""}}}, "/slurm/ssh/privateKey"),
    ({"slurm": {"ssh": {"port": 70000}}}, "/slurm/ssh/port"),
    ({"ingress": {"host": ""}}, "/ingress/host"),
    ({"ingress": {"tls": {"secretName": ""}}}, "/ingress/tls/secretName"),
    ({"database": {"type": "mysql"}}, "/database/type"),
    ({"database": {"type": "postgresql"}}, "/database/postgresql/host"),
    ({"secrets": {"cookieSecret": "not-hex"}}, "/secrets/cookieSecret"),
    ({"metrics": {"serviceMonitor": {"enabled": True}}}, "/metrics/enabled"),
    ({"networkPolicy": {"computeNodeCidrs": ["10.0.0.0"]}}, "/networkPolicy/computeNodeCidrs/0"),
    ({"hub": {"urlForJob": "https://x"}}, "'urlForJob' not allowed"),
    ({"image": {"tag": ""}}, "/image/tag"),
]


@pytest.mark.parametrize("override, where", BAD_VALUES, ids=[w for _, w in BAD_VALUES])
def test_bad_values_are_refused_naming_the_value(chart, override, where):
    with pytest.raises(helm.HelmValuesError) as refused:
        chart.render(merged(override), name=RELEASE, namespace=NAMESPACE)
    assert where in str(refused.value)


# -- the hub configuration ----------------------------------------------------------
def pod_files(docs: list[dict]) -> tuple[dict[str, str], dict[str, str], dict[str, int]]:
    """What the hub container sees: {path: text} of its ConfigMap/Secret mounts, its env and file modes."""
    by_name = {d["metadata"]["name"]: d for d in docs if d["kind"] in ("ConfigMap", "Secret")}
    spec = find(docs, "Deployment", f"{FULLNAME}-hub")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    volumes = {v["name"]: v for v in spec["volumes"]}

    def items(volume: dict) -> tuple[dict[str, str], int]:
        if "configMap" in volume:
            return by_name[volume["configMap"]["name"]]["data"], volume["configMap"].get("defaultMode", 0o644)
        if "secret" in volume:  # a Secret the operator made (existingSecret) is not in the release
            data = by_name.get(volume["secret"]["secretName"], {"data": {}})["data"]
            return {k: base64.b64decode(v).decode() for k, v in data.items()}, volume["secret"]["defaultMode"]
        return {}, 0

    files, modes = {}, {}
    for mount in container["volumeMounts"]:
        content, mode = items(volumes[mount["name"]])
        if "subPath" in mount:
            files[mount["mountPath"]], modes[mount["mountPath"]] = content[mount["subPath"]], mode
        else:
            for key, text in content.items():
                files[f"{mount['mountPath']}/{key}"], modes[f"{mount['mountPath']}/{key}"] = text, mode
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    env = {}
    for entry in container["env"]:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            data = secrets.get(ref["name"], {"data": {ref["key"]: base64.b64encode(b"operator-made").decode()}})["data"]
            env[entry["name"]] = base64.b64decode(data[ref["key"]]).decode()
    assert container["args"] == ["jupyterhub", "--config=/etc/aifactory/jupyterhub_config.py"]
    return files, env, modes


def run_rendered_config(docs: list[dict], root: Path, monkeypatch) -> tuple[dict, dict[str, str]]:
    """Run the rendered jupyterhub_config.py with the pod's files under `root` and the pod's env."""
    files, env, modes = pod_files(docs)
    for path, text in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(modes[path])
    (root / "srv/aifactory/hub").mkdir(parents=True, exist_ok=True)
    # Paths in the environment are the container's: the same ones under `root` here.
    local_env = {k: str(root / v.lstrip("/")) if v.startswith("/") else v for k, v in env.items()}
    for name, value in local_env.items():
        monkeypatch.setenv(name, value)
    config = PyFileConfigLoader("jupyterhub_config.py", path=str(root / "etc/aifactory")).load_config()
    return {section: dict(values) for section, values in config.items()}, local_env


def test_the_site_in_the_configmap_is_the_site_file(chart):
    configmap = find(render(chart, VALUES), "ConfigMap", f"{FULLNAME}-site")
    assert configmap["data"]["site.yaml"] == DEMO_SITE
    assert configmap["data"]["jupyterhub_config.py"] == (CHART / "files" / "jupyterhub_config.py").read_text()


@pytest.mark.parametrize("variant", ["ssh-sqlite", "metrics"])
def test_hub_config_rendered_by_the_chart_is_the_local_hub_config_plus_kubernetes(chart, variant, tmp_path, monkeypatch):
    values = merged(VARIANTS[variant])
    docs = render(chart, values)
    config, env = run_rendered_config(docs, tmp_path, monkeypatch)
    secret = {k: base64.b64decode(v).decode() for k, v in find(docs, "Secret", FULLNAME)["data"].items()}

    # What the local hub builds for the same site file, with the pod's state directory.
    expected = hub_config(parse_site(DEMO_SITE), HubPaths(state=env["AIFACTORY_HUB_STATE"]),
                          secret["operator-token"], "", secret.get("metrics-token", ""))
    # ... and only these differences, which are Kubernetes'.
    kubernetes = {
        "JupyterHub": {"hub_ip": "0.0.0.0", "hub_connect_ip": f"{FULLNAME}-hub",
                       "spawner_class": "aifactory.spawners.remote.RemoteSlurmSpawner"},
        "ConfigurableHTTPProxy": {"should_start": False, "api_url": f"http://{FULLNAME}-proxy-api:8001"},
        "Spawner": {"hub_connect_url": "https://ai.example.org"},
        "RemoteSlurmSpawner": {
            "slurm_access": "ssh", "ssh_login_node": "login1.example.org", "ssh_port": 22, "ssh_user": "jupyterhub",
            "ssh_identity_file": env["AIFACTORY_SSH_KEY"], "ssh_known_hosts_file": env["AIFACTORY_SSH_KNOWN_HOSTS"],
            "ssh_connect_timeout": 10,
        },
    }
    for section, traits in kubernetes.items():
        expected.setdefault(section, {}).update(traits)
    assert config == expected

    # The idle culler runs in the hub pod with the site's limits; the metrics token only when asked for.
    services = {s["name"]: s for s in config["JupyterHub"]["services"]}
    assert services[IDLE_CULLER]["command"] == idle_culler_command(parse_site(DEMO_SITE), "/opt/aifactory/venv/bin/python")
    assert (METRICS_SERVICE in services) == (variant == "metrics")
    # JupyterHub refuses a cookie secret others can read; ssh refuses a key others can read.
    cookie = Path(config["JupyterHub"]["cookie_secret_file"])
    assert cookie.read_text() == secret["cookie-secret"] and not cookie.stat().st_mode & 0o077
    key = Path(env["AIFACTORY_SSH_KEY"])
    assert key.read_text() == KEY and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert Path(env["AIFACTORY_SSH_KNOWN_HOSTS"]).read_text() == KNOWN_HOSTS


def test_postgresql_url_is_built_from_the_values_and_its_secret(chart, tmp_path, monkeypatch):
    values = merged({"database": {"type": "postgresql",
                                  "postgresql": {"host": "db.example.org", "password": "p@ss/word", "user": "hub"}}})
    config, _ = run_rendered_config(render(chart, values), tmp_path, monkeypatch)
    assert config["JupyterHub"]["db_url"] == \
        "postgresql+psycopg2://hub:p%40ss%2Fword@db.example.org:5432/jupyterhub?sslmode=require"
    # The shipped lock carries the driver: the hub can open that URL (no server needed to build an engine).
    import sqlalchemy

    engine = sqlalchemy.create_engine(config["JupyterHub"]["db_url"])
    assert engine.dialect.driver == "psycopg2" and engine.url.password == "p@ss/word"


def test_chart_environment_is_what_the_kubernetes_layer_reads(chart):
    """Every AIFACTORY_* variable the config layer reads is set by the chart, and none is set for nothing."""
    readers = "".join(path.read_text() for path in (
        CHART / "files" / "jupyterhub_config.py", REPO / "hub" / "jupyterhub_config.py", REPO / "hub" / "site" / "load.py"))
    for variant in VARIANTS.values():
        values = merged(variant)
        _, env, _ = pod_files(render(chart, values))
        for name in env:
            if name.startswith("AIFACTORY_"):
                assert f'"{name}"' in readers, f"{name} is set by the chart but read by nothing"
