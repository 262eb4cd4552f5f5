"""Course environments from the site file (aifactory.site.pyenvs): the schema's pinned packages and
`extends`, the build plan, the stamp that makes a second `make` do nothing. A real build:
tests/integration/test_pytorch_course.py."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from aifactory.site import SiteError, parse_site
from aifactory.site.load import read_yaml
from aifactory.site.pyenvs import (
    Spec,
    console_script,
    pip_argv,
    pth_text,
    specs,
    up_to_date,
    venv_argv,
)

from .sites import SMALL_SITE

LAYERED = {"name": "torch", "kind": "python", "path": "/opt/aifactory/envs/torch", "extends": "base",
           "packages": ["torch==2.15.0", "submitit==1.5.4"]}


def site_with(*environments):
    data = read_yaml(SMALL_SITE)
    data["environments"] += [copy.deepcopy(e) for e in environments]
    return parse_site(yaml.safe_dump(data))


def problems(*environments) -> list[str]:
    with pytest.raises(SiteError) as err:
        site_with(*environments)
    return [str(p) for p in err.value.problems]


def test_demo_site_builds_pytorch_on_the_platforms_environment(demo_site):
    (spec,) = specs(demo_site, "/usr/bin/python3", "/x/requirements.lock", "numpy==2.4.6\n")
    assert spec.name == "pytorch" and spec.path == "/opt/aifactory/envs/pytorch"
    assert spec.packages == ("torch==2.15.0", "submitit==1.5.4")
    # Layered on the hub's environment, made by its interpreter: same Python, its packages seen.
    assert spec.base == "/opt/aifactory/venv" and spec.python == "/opt/aifactory/venv/bin/python3"
    assert demo_site.environment("aifactory").packages == []   # PyTorch stays out of the hub's environment
    course = next(c for c in demo_site.courses if c.id == "pytorch")
    assert demo_site.profile(course.profile).environment == "pytorch"


@pytest.mark.parametrize("bad", ["torch", "torch>=2.15", "torch==", "torch == 2.15.0", "torch==2.15.0; rm -rf /",
                                 "-e git+https://x/y", "--index-url=http://evil/simple"])
def test_a_package_must_be_pinned_and_the_error_names_the_entry(bad):
    assert problems({**LAYERED, "packages": ["submitit==1.5.4", bad]}) == [
        f"environments[1].packages[1]: {bad!r} is not a pinned requirement: expected name==version, "
        "e.g. 'torch==2.15.0'"]


def test_local_versions_and_extras_free_names_are_accepted():
    site = site_with({**LAYERED, "packages": ["torch==2.13.0+cpu", "typing_extensions==4.16.0"]})
    assert site.environment("torch").packages == ["torch==2.13.0+cpu", "typing_extensions==4.16.0"]


@pytest.mark.parametrize("change, problem", [
    ({"extends": "conda"}, "environments[1].extends: unknown python environment 'conda' (known: base, torch)"),
    ({"extends": "torch"}, "environments[1].extends: 'torch' must be another python environment that extends none"),
    ({"path": "/opt/aifactory/venv"}, "environments[1].path: is the path of 'base', which it extends"),
    ({"packages": ["torch==2.15.0", "Torch==2.14.0"]}, "environments[1].packages[1]: 'torch' is pinned twice"),
])
def test_extends_names_another_python_environment(change, problem):
    assert problems({**LAYERED, **change}) == [problem]


def test_no_layer_on_a_layer():
    other = {**LAYERED, "name": "more", "path": "/opt/aifactory/envs/more", "extends": "torch"}
    assert problems(LAYERED, other) == [
        "environments[2].extends: 'torch' must be another python environment that extends none"]


def test_environments_without_packages_are_not_built():
    site = site_with({"name": "made-elsewhere", "kind": "python", "path": "/appl/pytorch"})
    assert specs(site, "/usr/bin/python3") == []


def test_the_plan_layers_on_the_base_and_never_moves_it():
    spec = specs(site_with(LAYERED), "/usr/bin/python3", "/src/tests/requirements.lock", "")[0]
    assert venv_argv(spec) == ["/opt/aifactory/venv/bin/python3", "-m", "venv", "--clear", "--without-pip",
                               "/opt/aifactory/envs/torch"]
    # The environment's interpreter runs pip (the base's, through the .pth), the lock as constraints.
    assert pip_argv(spec) == ["/opt/aifactory/envs/torch/bin/python3", "-m", "pip", "install",
                              "--disable-pip-version-check", "--no-input", "--only-binary=:all:",
                              "--constraint", "/src/tests/requirements.lock", "torch==2.15.0", "submitit==1.5.4"]
    assert pth_text("/opt/aifactory/venv/lib/python3.11/site-packages") == \
        "import site; site.addsitedir('/opt/aifactory/venv/lib/python3.11/site-packages')\n"


def test_an_environment_of_its_own_gets_pip_and_the_platforms_python():
    own = {"name": "solo", "kind": "python", "path": "/opt/aifactory/envs/solo", "packages": ["numpy==2.4.6"]}
    spec = specs(site_with(own), "/opt/aifactory/venv/bin/python3")[0]
    assert spec.base is None
    assert venv_argv(spec) == ["/opt/aifactory/venv/bin/python3", "-m", "venv", "--clear", "/opt/aifactory/envs/solo"]
    assert "--constraint" not in pip_argv(spec)


def test_console_scripts_are_rewritten_for_the_environment():
    script = ("#!/opt/aifactory/venv/bin/python3\n# -*- coding: utf-8 -*-\nimport re\nimport sys\n"
              "from jupyterhub.singleuser import main\n")
    mine = console_script(script, "/opt/aifactory/venv", "/opt/aifactory/envs/torch")
    assert mine == script.replace("/opt/aifactory/venv/bin/python3", "/opt/aifactory/envs/torch/bin/python3")
    # Not a console script of the base: shell scripts, another interpreter, a look-alike prefix.
    assert console_script("#!/bin/sh\nexec x\n", "/opt/aifactory/venv", "/e") is None
    assert console_script("#!/opt/aifactory/venv2/bin/python3\nimport x\n", "/opt/aifactory/venv", "/e") is None
    assert console_script("#!/opt/aifactory/venv/bin/python3\n", "/opt/aifactory/venv", "/e") is None


def test_a_second_make_does_nothing_until_the_spec_changes():
    site = site_with(LAYERED)
    spec = specs(site, "/usr/bin/python3", "/src/lock", "numpy==2.4.6\n")[0]
    stamp = spec.stamp()
    assert json.loads(stamp)["packages"] == ["torch==2.15.0", "submitit==1.5.4"]
    assert up_to_date(specs(site, "/usr/bin/python3", "/src/lock", "numpy==2.4.6\n")[0], stamp)
    assert not up_to_date(spec, None)
    # A new pin, a new lock: built again.
    newer = specs(site_with({**LAYERED, "packages": ["torch==2.16.0"]}), "/usr/bin/python3", "/src/lock",
                  "numpy==2.4.6\n")[0]
    assert not up_to_date(newer, stamp)
    assert not up_to_date(specs(site, "/usr/bin/python3", "/src/lock", "numpy==2.5.0\n")[0], stamp)


def test_spec_is_frozen():
    spec = Spec("a", "/p", ("x==1",), None, "/usr/bin/python3", None, "")
    with pytest.raises(AttributeError):
        spec.path = "/q"  # type: ignore[misc]


def test_a_course_on_a_layered_environment_is_graded_with_its_interpreter(demo_site):
    from aifactory.courses.grading.jobs import course_python, job_script
    from aifactory.courses.exchange.layout import sudoers_file

    courses = {c.id: c for c in demo_site.courses}
    python = course_python(demo_site, courses["pytorch"], "/opt/aifactory/venv/bin/python3")
    assert python == "/opt/aifactory/envs/pytorch/bin/python3"
    # The job runs the sandbox with it, and the sudo rule allows exactly that command.
    rule = sudoers_file(courses["pytorch"], python)[1].splitlines()[-1]
    assert rule.endswith(f"NOPASSWD: {python} -I -m aifactory.courses.grading.sandbox")
    assert f"{python} -I -m aifactory.courses.grading.sandbox" in job_script(spool="/s", python=python)
    # Courses on the platform's environment (here its Lmod module) keep the platform's interpreter.
    for course in ("intro-dl", "dask-scaling"):
        assert course_python(demo_site, courses[course], "/opt/aifactory/venv/bin/python3") == \
            "/opt/aifactory/venv/bin/python3"


def test_a_kernel_is_graded_with_the_memory_the_courses_servers_get(demo_site):
    from aifactory.courses.grading.jobs import Limits, course_memory_mib, sbatch_argv

    courses = {c.id: c for c in demo_site.courses}
    assert course_memory_mib(demo_site, courses["pytorch"]) == 2048      # course-pytorch: 2G by default
    assert course_memory_mib(demo_site, courses["intro-dl"]) == 1024     # course: 1G, as before
    # PyTorch's kernel and nbgrader still fit an interactive node (3G).
    argv = sbatch_argv(script="s", spool="/s", tasks=1, minutes=7, limits=Limits(memory_mib=2048),
                       account="a", partition="interactive", job_name="j")
    assert "--mem=2560M" in argv and 2560 <= demo_site.partition("interactive").memory_per_node
