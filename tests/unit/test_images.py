"""The container recipes and the two locks, without a container engine.

Each recipe parses; every image builds on the shared base (images/base), which installs the
runtime lock (images/requirements.lock) and then the project without dependencies, and `make
images` builds that base first; what an image's entrypoint runs exists in the tested
environment; build steps download only from package registries (apt, pip, npm). The runtime
lock holds what pyproject.toml's dependencies need and no test tool; the test lock
(tests/requirements.lock) adds the test extra's, with every runtime pin at the same version.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
RUNTIME_LOCK = IMAGES / "requirements.lock"
TEST_LOCK = REPO / "tests" / "requirements.lock"
NAMES = ["hub", "singleuser-cpu", "singleuser-rocm", "singleuser-cuda"]
DOCKERFILES = {name: IMAGES / name / "Dockerfile" for name in NAMES}
DEFINITIONS = {name: IMAGES / name / f"{name}.def" for name in NAMES}
BASE_DOCKERFILE, BASE_DEFINITION = IMAGES / "base" / "Dockerfile", IMAGES / "base" / "base.def"
BASE_TAG = "localhost/aifactory/base:0.1.0"  # what `make images` tags the base as, the images' default BASE
BASE_SIF = "build/images/aifactory-base.sif"  # where `make images` builds the Apptainer base
DOCKER_INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
                       "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}
APPTAINER_SECTIONS = {"setup", "files", "environment", "post", "runscript", "startscript", "test", "labels", "help",
                      "arguments"}
VENV_BIN = "/opt/aifactory/venv/bin/"


# -- parsers --------------------------------------------------------------------------
@dataclass
class Instruction:
    keyword: str
    args: str
    stage: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile (continuations joined, comments dropped); ValueError if malformed."""
    instructions, current, stage = [], "", -1
    for number, line in enumerate(text.splitlines(), 1):
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\") + " " if line.endswith("\\") else line
        if line.endswith("\\"):
            continue
        keyword, _, args = current.strip().partition(" ")
        if keyword.upper() not in DOCKER_INSTRUCTIONS or keyword != keyword.upper():
            raise ValueError(f"line {number}: unknown instruction {keyword!r}")
        if not args.strip():
            raise ValueError(f"line {number}: {keyword} without arguments")
        if keyword == "FROM":
            stage += 1
        elif stage < 0 and keyword != "ARG":
            raise ValueError(f"line {number}: {keyword} before FROM")
        if keyword in ("CMD", "ENTRYPOINT") and args.strip().startswith("["):
            value = json.loads(args)
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise ValueError(f"line {number}: {keyword} must be a JSON list of strings")
        instructions.append(Instruction(keyword, args.strip(), stage))
        current = ""
    if current:
        raise ValueError("a continuation line ends the file")
    return instructions


def parse_definition(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """(header, sections) of an Apptainer definition file; ValueError if malformed."""
    header, sections, section = {}, {}, None
    for number, line in enumerate(text.splitlines(), 1):
        if section is None and (not line.strip() or line.startswith("#")):
            continue
        match = re.match(r"^%(\w+)\s*$", line)
        if match:
            section = match.group(1)
            if section not in APPTAINER_SECTIONS or section in sections:
                raise ValueError(f"line {number}: unknown or repeated section %{section}")
            sections[section] = ""
        elif section is None:
            key, colon, value = line.partition(":")
            if not colon or not value.strip():
                raise ValueError(f"line {number}: header lines are 'Key: value', got {line!r}")
            header[key.strip()] = value.strip()
        else:
            sections[section] += line + "\n"
    if header.get("Bootstrap") not in ("docker", "library", "localimage") or "From" not in header:
        raise ValueError("the header needs Bootstrap and From")
    return header, sections


def run_steps(name: str) -> list[str]:
    """Shell commands a recipe runs at build time (RUN of every stage; %post), one per command."""
    if name.endswith("Dockerfile"):
        lines = [i.args for i in parse_dockerfile(Path(name).read_text()) if i.keyword == "RUN"]
    else:
        _, sections = parse_definition(Path(name).read_text())
        lines = [re.sub(r"\\\n\s*", " ", sections.get("post", "") + sections.get("setup", ""))]
    return [command.strip() for line in lines for command in re.split(r"&&|;|\n", line) if command.strip()]


def base_of(path: Path) -> Path | None:
    """The shared base recipe that `path` builds on (None for the base itself)."""
    if path.name == "Dockerfile":
        instructions = parse_dockerfile(path.read_text())
        args = dict(i.args.split("=", 1) for i in instructions if i.keyword == "ARG" and i.stage < 0 and "=" in i.args)
        first = next(i.args.split()[0] for i in instructions if i.keyword == "FROM")
        image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], first)
        return BASE_DOCKERFILE if image == BASE_TAG else None
    header, _ = parse_definition(path.read_text())
    return BASE_DEFINITION if header == {"Bootstrap": "localimage", "From": BASE_SIF} else None


def chain(path: Path) -> list[Path]:
    """The recipes an image is built from, base first."""
    base = base_of(path)
    return [*chain(base), path] if base else [path]


IMAGE_RECIPES = [*DOCKERFILES.values(), *DEFINITIONS.values()]
ALL_RECIPES = [BASE_DOCKERFILE, BASE_DEFINITION, *IMAGE_RECIPES]
IDS = [str(path.relative_to(IMAGES)) for path in ALL_RECIPES]
IMAGE_IDS = IDS[2:]


# -- each recipe parses ---------------------------------------------------------------
def test_every_image_has_a_dockerfile_and_an_apptainer_definition():
    for name in NAMES:
        assert DOCKERFILES[name].is_file() and DEFINITIONS[name].is_file(), name


@pytest.mark.parametrize("name", NAMES)
def test_dockerfile_parses(name):
    instructions = parse_dockerfile(DOCKERFILES[name].read_text())
    final = [i for i in instructions if i.stage == max(i.stage for i in instructions)]
    assert [i.keyword for i in final].count("ENTRYPOINT") == 1 and [i.keyword for i in final].count("CMD") == 1
    # Debian 12: python3 3.11, the interpreter of the tested environment (Makefile: /usr/bin/python3 -m venv).
    assert final[0].args == "debian:12-slim"
    assert {i.args.split()[0] for i in parse_dockerfile(BASE_DOCKERFILE.read_text()) if i.keyword == "FROM"} == \
        {"debian:12-slim"}


@pytest.mark.parametrize("name", NAMES)
def test_apptainer_definition_parses(name):
    header, sections = parse_definition(DEFINITIONS[name].read_text())
    assert header == {"Bootstrap": "localimage", "From": BASE_SIF}
    assert {"environment", "runscript", "test", "labels"} <= set(sections)
    header, sections = parse_definition(BASE_DEFINITION.read_text())
    assert header == {"Bootstrap": "docker", "From": "debian:12-slim"}
    assert {"files", "post", "environment"} <= set(sections)


@pytest.mark.parametrize("path", IMAGE_RECIPES, ids=IMAGE_IDS)
def test_every_image_builds_on_the_shared_base_and_repeats_none_of_it(path):
    assert chain(path) == [BASE_DEFINITION if path.suffix == ".def" else BASE_DOCKERFILE, path]
    # The Python environment is built once, in the base; an image may only add a framework on top.
    assert all(framework_install(argv) for argv in pip_installs(path)), pip_installs(path)
    if path.name == "Dockerfile":
        instructions = parse_dockerfile(path.read_text())
        assert instructions[1].keyword == "FROM" and instructions[1].args == "${BASE} AS build"
        assert "--from=build /opt/aifactory /opt/aifactory" in [i.args for i in instructions if i.keyword == "COPY"]


def test_make_images_builds_the_base_first_and_hands_it_to_every_image():
    """Without docker or apptainer, `make images` prints its build order; the base comes first."""
    printed = subprocess.run(["make", "-s", "-C", str(REPO), "images", "DOCKER=", "APPTAINER="],
                             capture_output=True, text=True, check=True).stdout
    docker = [shlex.split(line) for line in printed.splitlines() if line.startswith("docker build")]
    apptainer = [shlex.split(line) for line in printed.splitlines() if line.startswith("apptainer build")]
    assert docker[0] == ["docker", "build", "-f", "images/base/Dockerfile", "-t", BASE_TAG, "."]
    assert [argv[argv.index("-f") + 1] for argv in docker[1:]] == [f"images/{name}/Dockerfile" for name in NAMES]
    assert all(argv[2:4] == ["--build-arg", f"BASE={BASE_TAG}"] for argv in docker[1:])
    assert apptainer[0][-2:] == [BASE_SIF, "images/base/base.def"]
    assert [argv[-1] for argv in apptainer[1:]] == [f"images/{name}/{name}.def" for name in NAMES]


# -- each installs the runtime lock ---------------------------------------------------
def pip_installs(path: Path) -> list[list[str]]:
    return [shlex.split(c) for c in run_steps(str(path)) if re.search(r"(^|/)pip3? install ", c)]


def framework_install(argv: list[str]) -> bool:
    """A framework on top of the tested environment: a requirements file, the lock as constraints."""
    words = [a for a in argv[2:] if not a.startswith("--")]
    return argv[0] == f"{VENV_BIN}pip" and words[:2] == ["-c", "/opt/aifactory/requirements.lock"] \
        and words[2:3] == ["-r"] and len(words) == 4 and words[3] != "/opt/aifactory/requirements.lock"


@pytest.mark.parametrize("path", IMAGE_RECIPES, ids=IMAGE_IDS)
def test_image_installs_the_runtime_lock_then_the_project_without_dependencies(path):
    recipes = chain(path)
    text = "".join(recipe.read_text() for recipe in recipes)
    # The runtime lock travels into the image unchanged, from images/requirements.lock; the test lock never.
    copied = re.findall(r"^(?:COPY\s+|\s+)images/requirements\.lock\s+(\S+)$", text, flags=re.M)
    assert copied == ["/opt/aifactory/requirements.lock"]
    assert "tests/" not in text and not re.search(r"\[[^\]]*\btest\b[^\]]*\]", text), "test tools in an image"
    installs = [argv for recipe in recipes for argv in pip_installs(recipe)]
    assert len(installs) >= 2, installs
    lock_install, project_install, *frameworks = installs
    assert all(framework_install(argv) for argv in frameworks), frameworks
    assert lock_install[0] == f"{VENV_BIN}pip" and lock_install[-2:] == ["-r", "/opt/aifactory/requirements.lock"]
    assert [a for a in lock_install[2:] if not a.startswith("--")] == ["-r", "/opt/aifactory/requirements.lock"]
    assert "--no-deps" in project_install and project_install[-1] == "/src/aifactory"
    # The venv is made from Debian's python3, as the tested one.
    assert "python3 -m venv /opt/aifactory/venv" in [c for recipe in recipes for c in run_steps(str(recipe))]


def test_the_tested_environment_is_the_lock():
    """What the images install is what these tests run on, at the same versions."""
    from importlib.metadata import distributions

    pins = dict(line.split("==", 1) for line in RUNTIME_LOCK.read_text().splitlines() if "==" in line)
    installed = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in distributions()}
    for name in ("jupyterhub", "batchspawner", "jupyterlab", "nbgrader", "dask", "pydantic", "jupyterhub-idle-culler"):
        pinned = next(v for k, v in pins.items() if k.lower().replace("_", "-") == name)
        assert installed[name] == pinned, f"{name}: lock {pinned}, tested {installed[name]}"
    assert sys.version_info[:2] == (3, 11), "the images' python3 is Debian 12's 3.11"


# -- the entrypoint's commands exist in the tested environment -------------------------
def entry_commands(name: str) -> list[list[str]]:
    """argv of what each recipe's container runs by default, and of what the platform runs in it."""
    instructions = parse_dockerfile(DOCKERFILES[name].read_text())
    entry = json.loads(next(i.args for i in instructions if i.keyword == "ENTRYPOINT"))
    cmd = json.loads(next(i.args for i in instructions if i.keyword == "CMD"))
    _, sections = parse_definition(DEFINITIONS[name].read_text())
    runscript = shlex.split(sections["runscript"].strip().removeprefix("exec "))
    tests = [shlex.split(c) for c in re.split(r"&&", sections["test"]) if c.strip()]
    commands = [entry, cmd, [a for a in runscript if a != '"$@"' and a != "$@"], *tests]
    if name == "hub":
        # The chart's containers: the hub's args and the proxy's args (helm/templates).
        commands.append(["jupyterhub", "--config=/etc/aifactory/jupyterhub_config.py"])
        commands.append(["/opt/aifactory/node/node_modules/.bin/configurable-http-proxy"])
    else:
        # What the spawner runs in a container environment: `apptainer exec IMAGE jupyterhub-singleuser`.
        from aifactory.spawners.script import SERVER

        commands.append([SERVER])
    return commands


def apt_packages(path: Path) -> set[str]:
    packages = set()
    for command in run_steps(str(path)):
        words = shlex.split(command)
        if words[:2] == ["apt-get", "install"]:
            packages |= {w for w in words[2:] if not w.startswith("-")}
    return packages


@pytest.mark.parametrize("name", NAMES)
def test_what_the_entrypoint_runs_exists_in_the_tested_environment(name):
    venv_bin = Path(sys.prefix) / "bin"
    for argv in entry_commands(name):
        program = argv[0]
        if program.startswith("/usr/bin/"):  # from Debian: installed by the recipe itself
            package = {"tini": "tini"}[Path(program).name]
            assert package in apt_packages(DOCKERFILES[name]), f"{program} is not installed by {name}"
        elif program.startswith("/opt/aifactory/node/"):
            # configurable-http-proxy from hub/proxy/package.json, as `make install` puts it.
            assert "configurable-http-proxy" in json.loads((REPO / "hub/proxy/package.json").read_text())["dependencies"]
            assert "npm install --prefix /opt/aifactory/node" in " ".join(run_steps(str(DOCKERFILES[name])))
            if Path(program).exists():
                assert shutil.which(program)
        else:
            # On PATH in the image from the venv (ENV PATH, %environment): must be in the tested venv.
            assert (venv_bin / program).exists(), f"{name} runs {program}, which the tested environment lacks"
        if (program == "python" or program.endswith("/python")) and "-m" in argv:
            module = argv[argv.index("-m") + 1]
            assert importlib.util.find_spec(module), f"{name} runs python -m {module}"
    if name == "hub":
        assert "openssh-client" in apt_packages(DOCKERFILES[name]) and "openssh-client" in apt_packages(DEFINITIONS[name])


@pytest.mark.parametrize("name", NAMES)
def test_the_venv_is_first_on_path(name):
    env = [i.args for i in parse_dockerfile(DOCKERFILES[name].read_text()) if i.keyword == "ENV" and "PATH=" in i.args]
    assert env and env[-1].startswith("PATH=/opt/aifactory/venv/bin:")
    _, sections = parse_definition(DEFINITIONS[name].read_text())
    assert "export PATH=/opt/aifactory/venv/bin:$PATH" in sections["environment"]


def test_gpu_images_carry_their_vendor_runtime():
    for path in (DOCKERFILES["singleuser-rocm"], DEFINITIONS["singleuser-rocm"]):
        assert {"rocminfo", "rocm-smi", "libamdhip64-5"} <= apt_packages(path)
    cuda = DOCKERFILES["singleuser-cuda"].read_text()
    assert "NVIDIA_VISIBLE_DEVICES=all" in cuda and "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in cuda


# -- deep-learning frameworks ---------------------------------------------------------
TORCH_CUDA = IMAGES / "singleuser-cuda" / "requirements-torch.txt"


def pins(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert all(re.match(r"^[A-Za-z0-9._-]+==[^\s=]+$", line) for line in lines), lines
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in (line.split("==") for line in lines)}


def test_the_cuda_image_ships_pytorch_pinned_from_pypi_without_touching_the_tested_environment():
    torch = pins(TORCH_CUDA)
    assert "torch" in torch and any(name.startswith("nvidia-") for name in torch)
    # The test environment stays light, and the lock wins for what both would install.
    assert "torch" not in pins(RUNTIME_LOCK) and not set(torch) & set(pins(TEST_LOCK))
    for path in (DOCKERFILES["singleuser-cuda"], DEFINITIONS["singleuser-cuda"]):
        assert [argv[-1] for argv in pip_installs(path)] == ["/opt/aifactory/requirements-torch.txt"]
        copied = re.findall(r"^(?:COPY\s+|\s+)images/singleuser-cuda/requirements-torch\.txt\s+(\S+)$", path.read_text(),
                            flags=re.M)
        assert copied == ["/opt/aifactory/requirements-torch.txt"]
    # ROCm's PyTorch wheels are not on PyPI: the ROCm image installs none (images/README.md says why).
    assert not any(pip_installs(path) for path in (DOCKERFILES["singleuser-rocm"], DEFINITIONS["singleuser-rocm"]))


# -- only package registries ----------------------------------------------------------
FORBIDDEN = [
    (r"\b(curl|wget|git|svn|hg|scp|rsync|ftp)\b", "a download tool"),
    (r"https?://|ftp://|git\+|\bgit@", "a URL"),
    (r"--(extra-)?index-url|--find-links|(^|\s)-[fi](\s|$)|--trusted-host", "another package index"),
    (r"add-apt-repository|sources\.list|apt-key|gpg\b", "another apt repository"),
    (r"--registry\b", "another npm registry"),
    (r"\b(conda|mamba|micromamba|spack|easy_install)\b", "another package manager"),
]
ALLOWED_STEPS = [r"^apt-get (update|install|purge|autoremove)\b", r"^/opt/aifactory/venv/bin/pip install\b",
                 r"^python3 -m venv /opt/aifactory/venv$", r"^npm install --prefix /opt/aifactory/node\b",
                 r"^rm -rf /", r"^chmod -R a\+rX /opt/aifactory$", r"^export DEBIAN_FRONTEND=noninteractive$",
                 r"^groupadd\b", r"^useradd\b"]


@pytest.mark.parametrize("path", ALL_RECIPES, ids=IDS)
def test_recipe_downloads_only_from_package_registries(path):
    text = path.read_text()
    assert not re.search(r"^ADD\s", text, flags=re.M), "ADD may fetch URLs; recipes COPY"
    for command in run_steps(str(path)):
        for pattern, what in FORBIDDEN:
            assert not re.search(pattern, command), f"{path.name}: {what} in {command!r}"
        assert any(re.match(p, command) for p in ALLOWED_STEPS), f"{path.name}: unexpected build step {command!r}"


# -- the runtime lock and the test lock ------------------------------------------------
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
# The test extra's tools; `requests` is in the extra and also the runtime's (JupyterHub needs it).
TEST_TOOLS = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["optional-dependencies"]["test"]} - {"requests"}


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, TEST_LOCK], ids=["runtime", "test"])
def test_the_lock_pins_every_requirement(lock):
    lines = [line for line in lock.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert lines and all(re.match(r"^[A-Za-z0-9._-]+(\[[^\]]+\])?==[^\s=]+$", line) for line in lines), \
        [line for line in lines if "==" not in line]


def requirement_closure(requirements: list[str]) -> set[str]:
    """Names of the distributions that `requirements` pull in, read from this environment's metadata
    (the test lock's, so the same versions); pip, setuptools and wheel are the venv's, not locked."""
    from importlib.metadata import distribution

    found, todo = set(), [(Requirement(r), "") for r in requirements]
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        for wanted in ("", *requirement.extras):
            if (name, wanted) not in found:
                found.add((name, wanted))
                todo += [(Requirement(r), wanted) for r in distribution(name).requires or []]
    return {name for name, _ in found} - {"pip", "setuptools", "wheel"}


@pytest.mark.parametrize("lock, extras", [(RUNTIME_LOCK, ["postgresql"]), (TEST_LOCK, ["postgresql", "test"])],
                         ids=["runtime", "test"])
def test_each_lock_holds_exactly_what_its_requirements_need(lock, extras):
    """The runtime lock: the dependencies and the hub image's database driver; the test lock adds the test extra."""
    wanted = PYPROJECT["dependencies"] + [r for extra in extras for r in PYPROJECT["optional-dependencies"][extra]]
    assert set(pins(lock)) == requirement_closure(wanted)


def test_the_runtime_lock_holds_no_test_tool():
    assert {"pytest", "selenium", "hypothesis", "oidc-provider-mock", "kubernetes-validate", "helm-python-sdk"} \
        <= TEST_TOOLS
    assert not TEST_TOOLS & set(pins(RUNTIME_LOCK)), TEST_TOOLS & set(pins(RUNTIME_LOCK))
    assert TEST_TOOLS <= set(pins(TEST_LOCK))


def test_every_runtime_pin_is_in_the_test_lock_at_the_same_version():
    runtime, test = pins(RUNTIME_LOCK), pins(TEST_LOCK)
    assert {name: version for name, version in runtime.items() if test.get(name) != version} == {}


def make_installs(target: str) -> list[str]:
    """The requirement files `make TARGET` installs into the shared environment (from `make -n`)."""
    printed = subprocess.run(["make", "-n", "-s", "-C", str(REPO), target, "PREFIX=/nonexistent"],
                             capture_output=True, text=True, check=True).stdout
    return re.findall(r"^/nonexistent/venv/bin/pip install .*-r (\S+)", printed, flags=re.M)


def test_make_demo_installs_the_runtime_lock_and_make_test_adds_the_test_lock():
    assert make_installs("demo") == ["images/requirements.lock"]
    assert make_installs("test") == ["images/requirements.lock", "tests/requirements.lock"]
