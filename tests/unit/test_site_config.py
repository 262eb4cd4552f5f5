"""The site file: the demo validates; each broken file names its problem by path."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from aifactory.site import SiteError, load_site_cached, parse_site
from aifactory.site.load import read_yaml
from aifactory.site.units import format_walltime, parse_memory_mib, parse_walltime_minutes

from .sites import SMALL_SITE

BASE = read_yaml(SMALL_SITE)


def test_demo_site_validates(demo_site):
    assert demo_site.cluster.name == "aifactory"
    kinds = {e.kind for e in demo_site.environments}
    assert kinds == {"python", "lmod", "container"}
    gpu_partitions = [p for p in demo_site.partitions if p.gpus]
    assert [(p.gpus.type, p.gpus.count) for p in gpu_partitions] == [("mi250x", 4)]
    assert len(demo_site.projects) == 2 and len(demo_site.courses) == 3


def test_walltimes_are_not_read_as_sexagesimal_numbers():
    site = parse_site(SMALL_SITE)
    assert site.profile("small").walltime.max == 8 * 60
    assert site.partition("cpu").max_walltime == 24 * 60


@pytest.mark.parametrize(
    "text, minutes",
    [("30", 30), ("1:30:00", 90), ("0:00:30", 1), ("2-00:00:00", 2880), ("1-12", 2160), (45, 45)],
)
def test_walltime_parsing(text, minutes):
    assert parse_walltime_minutes(text) == minutes


@pytest.mark.parametrize("text, mib", [("4G", 4096), ("512M", 512), ("2GiB", 2048), (100, 100), ("1T", 1048576)])
def test_memory_parsing(text, mib):
    assert parse_memory_mib(text) == mib


def test_walltime_formatting():
    assert [format_walltime(m) for m in (90, 1440, 1501)] == ["01:30:00", "1-00:00:00", "1-01:01:00"]


def _broken(change) -> list[str]:
    data = copy.deepcopy(BASE)
    change(data)
    with pytest.raises(SiteError) as err:
        parse_site(yaml.safe_dump(data))
    return [str(p) for p in err.value.problems]


def _set(path: str, value):
    def change(data):
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return change


BROKEN = [
    (_set("profiles.1.gpus.max", 8), "profiles[1].gpus.max: 8 exceeds partition gpu (2 GPUs per node)"),
    (_set("profiles.0.cpus.max", 16), "profiles[0].cpus.max: 16 exceeds partition cpu (4 CPUs per node)"),
    (_set("profiles.0.memory.max", "16G"), "profiles[0].memory.max: 16G exceeds partition cpu (8G per node)"),
    (_set("profiles.1.walltime.max", "1-00:00:00"),
     "profiles[1].walltime.max: 1-00:00:00 exceeds partition gpu (max walltime 12:00:00)"),
    (_set("profiles.0.partition", "huge"), "profiles[0].partition: unknown partition 'huge' (known: cpu, gpu)"),
    (_set("profiles.0.environment", "conda"), "profiles[0].environment: unknown environment 'conda' (known: base)"),
    (_set("courses.0.profile", "nope"), "courses[0].profile: unknown profile 'nope' (known: gpu, small)"),
    (_set("courses.0.project", "proj_z"), "courses[0].project: unknown project 'proj_z' (known: proj_a)"),
    (_set("courses.0.trainers", ["carol"]), "courses[0].trainers[0]: unknown user 'carol' (known: alice, bob)"),
    (_set("users.0.groups", ["wizards"]),
     "users[0].groups[0]: unknown group 'wizards' (known: researchers, students)"),
    (_set("profiles.0.cpus.default", 9), "profiles[0].cpus: needs min <= default <= max, got min=1 default=9 max=4"),
    (_set("profiles.0.colour", "red"), "profiles[0].colour: unknown field"),
    (_set("partitions.0.cpus_per_node", 0), "partitions[0].cpus_per_node: Input should be greater than or equal to 1"),
    (_set("partitions.1.name", "cpu"), "partitions[1].name: duplicate name 'cpu'"),
    (_set("partitions.0.memory_per_node", "lots"),
     "partitions[0].memory_per_node: memory must be like '4G' or '512M', not 'lots'"),
    (_set("partitions.0.max_walltime", "forever"),
     "partitions[0].max_walltime: walltime must be like '2:00:00' or '1-00:00:00', not 'forever'"),
    (_set("environments.0.kind", "conda"),
     "environments[0]: unknown kind 'conda'; expected one of 'python', 'lmod', 'container'"),
    (_set("environments.0.path", "relative/env"),
     "environments[0].path: 'relative/env' is not valid: expected an absolute path of letters, digits and . _ / + -"),
    (_set("projects.0.name", "Proj A; rm -rf /"),
     "projects[0].name: 'Proj A; rm -rf /' is not valid: expected a name of lower-case letters, digits, '-' and '_', "
     "starting with a letter (at most 32)"),
    (_set("local.cpus", 2), "local.cpus: the partitions' nodes declare 12 CPUs together, more than local.cpus = 2: "
                            "raise it, or give the partitions fewer nodes or CPUs"),
    (_set("local.memory", "8G"), "local.memory: the partitions' nodes declare 24G together, more than local.memory = "
                                 "8G: give the partitions fewer nodes or less memory"),
    (_set("local.network", "10.9.0.0/29"), "local.network: 10.9.0.0/29 has room for 0 nodes (from .11 on), the "
                                           "partitions have 3: use a larger network"),
    (_set("local.network", "10.9.0.1/24"), "local.network: Input is not a valid IPv4 network"),
    (lambda d: d.update(hub={"api_ip": "127.0.0.1"}), "hub.api_ip: 127.0.0.1 is not the login node's address on local.network "
                                      "(10.77.0.1), where the nodes reach the hub: leave it out or set it so"),
    (lambda d: d.pop("auth"), "auth: required field is missing"),
    (_set("profiles.0.apps", ["vscode", "jupyter-desktop"]),
     "profiles[0].apps[1]: Input should be 'vscode', 'tensorboard' or 'mlflow'"),
    (_set("profiles.0.apps", ["mlflow", "mlflow"]), "profiles[0].apps: each app may be named once"),
    (lambda d: d.update(limits={"gpu_idle_timeout": "soon"}),
     "limits.gpu_idle_timeout: walltime must be like '2:00:00' or '1-00:00:00', not 'soon'"),
]


@pytest.mark.parametrize("change, expected", BROKEN, ids=[b[1].split(":")[0] for b in BROKEN])
def test_broken_site_names_path_and_reason(change, expected):
    assert expected in _broken(change)


def test_every_problem_is_reported_not_just_the_first():
    def many(data):
        data["profiles"][1]["gpus"]["max"] = 8
        data["courses"][0]["profile"] = "nope"
        data["users"][0]["groups"] = ["wizards"]

    assert len(_broken(many)) == 3


def test_invalid_yaml_names_the_line():
    with pytest.raises(SiteError) as err:
        parse_site("cluster: {name: x\npartitions: [")
    assert "line" in str(err.value.problems[0]) and "not valid YAML" in str(err.value)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "aifactory.hub.cli", *args], capture_output=True, text=True)


def test_cli_validate_good_file_exits_zero():
    from tests.conftest import DEMO

    result = _cli("config", "validate", str(DEMO))
    assert result.returncode == 0, result.stderr
    assert "valid site 'aifactory'" in result.stdout


def _validate_changed(tmp_path, change) -> subprocess.CompletedProcess:
    """`aifactory config validate` of BASE with `change(data)` applied."""
    data = copy.deepcopy(BASE)
    change(data)
    bad = tmp_path / "site.yaml"
    bad.write_text(yaml.safe_dump(data))
    return _cli("config", "validate", str(bad))


def test_cli_validate_bad_file_names_each_problem(tmp_path):
    def change(data):
        data["profiles"][1]["gpus"]["max"] = 8
        data["profiles"][0]["partition"] = "huge"

    result = _validate_changed(tmp_path, change)
    assert result.returncode == 1
    assert "profiles[1].gpus.max: 8 exceeds partition gpu (2 GPUs per node)" in result.stderr
    assert "profiles[0].partition: unknown partition 'huge'" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_validate_names_a_trait_that_is_not_an_operators_knob(tmp_path):
    traits = {"SiteSlurmSpawner": {"slurm_poll_intervall": 60}, "JupyterHub": {"cookie_secret": "00ff"}}
    result = _validate_changed(tmp_path, lambda data: data.update(hub={"traits": traits}))
    assert result.returncode == 1
    assert "hub.traits.SiteSlurmSpawner.slurm_poll_intervall: not a knob an operator may set here" in result.stderr
    assert "hub.traits.JupyterHub.cookie_secret: not a knob an operator may set here" in result.stderr


def test_cli_validate_missing_file(tmp_path):
    result = _cli("config", "validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1 and "cannot read" in result.stderr


def test_the_hub_reads_the_site_again_only_when_the_file_changed(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(SMALL_SITE)
    first = load_site_cached(path)
    assert load_site_cached(path) is first  # not parsed again
    changed = yaml.safe_load(SMALL_SITE)
    changed["cluster"]["title"] = "Renamed"
    path.write_text(yaml.safe_dump(changed))
    assert load_site_cached(path).cluster.title == "Renamed"
    path.write_text("cluster: [")
    with pytest.raises(SiteError, match="not valid YAML"):
        load_site_cached(path)  # a broken edit is reported, not hidden behind the old copy
