"""Reading a site file: YAML -> validated `Site`, or every problem with its path."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .checks import Problem, check_site
from .schema import PATTERN_HELP, Site

# Where `aifactory site install` puts the active site file; readable by every user.
INSTALLED_SITE = Path("/etc/aifactory/site.yaml")
# The packaged demo site, used only when asked for by its name (a path, $AIFACTORY_SITE, --site).
DEMO = "demo"
DEMO_SITE = Path(__file__).resolve().parent / "demo.yaml"  # package data of aifactory.site
NOT_INSTALLED = (
    "no site file is installed on this machine: install one with `aifactory site install FILE`, "
    f"or name one with AIFACTORY_SITE=FILE (AIFACTORY_SITE={DEMO} for the packaged demo site)"
)
# Tags of the discriminated unions: pydantic puts them in the error path.
_UNION_TAGS = {"python", "lmod", "container", "pam", "oidc"}


class _SiteLoader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1's base-60 numbers, so `4:00:00` stays a walltime string."""


_SiteLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SiteLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"), list("-+0123456789")
)
_SiteLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)?\.[0-9_]+(?:[eE][-+]?[0-9]+)?$"), list("-+0123456789.")
)


def read_yaml(text: str):
    """YAML text -> data, with durations like `1:30:00` kept as strings."""
    return yaml.load(text, Loader=_SiteLoader)


class ConfigError(Exception):
    """A configuration file that cannot be used; `problems` says what and where."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")


class SiteError(ConfigError):
    """A site file that cannot be used."""


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_TAGS or str(part).startswith("function-"):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _reason(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "string_pattern_mismatch":
        wanted = PATTERN_HELP.get(error["ctx"]["pattern"], f"text matching {error['ctx']['pattern']}")
        return f"{error['input']!r} is not valid: expected {wanted}"
    if kind == "union_tag_invalid":
        return f"unknown kind {error['input'].get('kind')!r}; expected one of {error['ctx']['expected_tags']}"
    if kind == "union_tag_not_found":
        return "needs a 'kind' field"
    message = error["msg"]
    return message.removeprefix("Value error, ")


def problems_of(data: Any) -> tuple[Site | None, list[Problem]]:
    """Validate already-parsed YAML data. Pure: no I/O."""
    if not isinstance(data, dict):
        return None, [Problem("", "the site file must be a YAML mapping")]
    try:
        site = Site.model_validate(data)
    except ValidationError as exc:
        return None, [Problem(_path(e["loc"]), _reason(e)) for e in exc.errors()]
    problems = check_site(site)
    return (None if problems else site), problems


def parse_site(text: str, source: str = "<site>") -> Site:
    """YAML text -> Site, or SiteError naming every problem."""
    try:
        data = read_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SiteError(source, [Problem(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    site, problems = problems_of(data)
    if problems:
        raise SiteError(source, problems)
    assert site is not None
    return site


def site_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The site file in use: the given path, else $AIFACTORY_SITE, else the installed one.

    `demo` names the packaged demo site. It is never a fallback: a node without a site file
    would run a centre's jobs with the demo's partitions and projects.
    """
    chosen = path or os.environ.get("AIFACTORY_SITE") or INSTALLED_SITE
    return DEMO_SITE if str(chosen) == DEMO else Path(chosen)


def load_site(path: str | os.PathLike[str] | None = None) -> Site:
    """Load a site file (see `site_path` for which); SiteError saying how to install one if there is none."""
    chosen = site_path(path)
    try:
        text = chosen.read_text()
    except OSError as exc:
        missing = isinstance(exc, FileNotFoundError) and chosen == INSTALLED_SITE
        raise SiteError(str(chosen), [Problem("", NOT_INSTALLED if missing else f"cannot read: {exc.strerror}")]) from None
    return parse_site(text, str(chosen))


_LOADED: dict[Path, tuple[tuple[int, int, int], Site]] = {}


def load_site_cached(path: str | os.PathLike[str] | None = None) -> Site:
    """`load_site`, read again only when the file changed (inode, size or mtime).

    For the hub's hot paths: every spawner asks for the site, and parsing it took
    a quarter of the hub's CPU while a class of 30 started.
    """
    chosen = site_path(path)
    try:
        status = chosen.stat()
    except OSError:
        return load_site(chosen)  # the usual error, naming the file
    key = (status.st_ino, status.st_size, status.st_mtime_ns)
    hit = _LOADED.get(chosen)
    if hit is None or hit[0] != key:
        hit = _LOADED[chosen] = (key, load_site(chosen))
    return hit[1]
