"""Python environments the platform builds from PyPI: a site file's python environments with `packages`.

`python -m aifactory.site.pyenvs SITE --constraint LOCK` (`make envs`) builds each one, as root; a second
run does nothing: the spec an environment was built from is its stamp file, written last, and a build
starts only when the stamp differs (a new package pin, a new lock, another base).

A layered environment (`extends: <python environment>`, e.g. the platform's /opt/aifactory/venv) is a
venv of the base's interpreter whose .pth runs `site.addsitedir` on the base's site-packages (so the
base's own .pth files run too): it holds only what it adds, and the base's pip installs into it. pip
sees the base's packages as installed, and the lock as constraints keeps them at their versions (a
conflict fails the build; pip never uninstalls outside the environment it installs into). Jupyter's and
Dask's configuration and data stay the platform's: etc/jupyter, share/jupyter and etc/dask are links to
the base's, made after pip ran, so pip never writes through them. The base's console scripts
(jupyterhub-singleuser, jupyter, ...) are written again with this environment's interpreter, so a
server, its kernels and the grading sandbox run with the environment's packages. Root owns it all;
users only read it.

The plan (argv, file contents, the stamp) is pure; `build` is the I/O.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .schema import PythonEnvironment, Site

STAMP = ".aifactory-env.json"
PTH = "aifactory-extends.pth"
# Links to the base's folders: Jupyter's config, kernels and lab assets, Dask's config.
SHARED_FOLDERS = ("etc/jupyter", "share/jupyter", "etc/dask")
Argv = list[str]


@dataclass(frozen=True)
class Spec:
    """What one environment is built from; its JSON is the stamp."""

    name: str
    path: str
    packages: tuple[str, ...]
    base: str | None          # prefix of the environment it extends
    python: str               # the interpreter that makes the venv: the base's, else the platform's
    constraints: str | None   # pip's constraint file
    constraints_sha256: str   # its content, so that a new lock rebuilds

    def stamp(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"


def specs(site: Site, python: str, constraints: str | None = None, constraints_text: str = "") -> list[Spec]:
    """The site's python environments that have packages to build, in file order. Pure."""
    envs = {e.name: e for e in site.environments if isinstance(e, PythonEnvironment)}
    digest = hashlib.sha256(constraints_text.encode()).hexdigest()
    out = []
    for env in envs.values():
        if not env.packages:
            continue
        base = envs[env.extends].path if env.extends else None
        out.append(Spec(env.name, env.path, tuple(env.packages), base,
                        f"{base}/bin/python3" if base else python, constraints, digest))
    return out


def venv_argv(spec: Spec) -> Argv:
    """A fresh venv; a layered one gets no pip of its own (the base's installs into it)."""
    return [spec.python, "-m", "venv", "--clear", *(["--without-pip"] if spec.base else []), spec.path]


def pip_argv(spec: Spec) -> Argv:
    """Wheels only: pip runs as root, and a source distribution would run its build code as root."""
    return [f"{spec.path}/bin/python3", "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
            "--only-binary=:all:",
            *(["--constraint", spec.constraints] if spec.constraints else []), *spec.packages]


def purelib_argv(python: str) -> Argv:
    return [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]


def pth_text(base_purelib: str) -> str:
    """The .pth line that puts the base's packages (and runs its .pth files) after the environment's own."""
    return f"import site; site.addsitedir({base_purelib!r})\n"


def console_script(text: str, base: str, env: str) -> str | None:
    """A base console script with this environment's interpreter, or None if `text` is not one. Pure."""
    first, _, rest = text.partition("\n")
    if first not in (f"#!{base}/bin/python", f"#!{base}/bin/python3") or "import" not in rest:
        return None
    return f"#!{env}/bin/python3\n{rest}"


def up_to_date(spec: Spec, stamp: str | None) -> bool:
    return stamp == spec.stamp()


def read_stamp(spec: Spec) -> str | None:
    try:
        return (Path(spec.path) / STAMP).read_text()
    except OSError:
        return None


class BuildError(RuntimeError):
    """An environment that cannot be built; the message says why and where the log is."""


def _run(argv: Argv, log) -> str:
    log.write(f"$ {' '.join(argv)}\n")
    log.flush()
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=log, text=True, stdin=subprocess.DEVNULL)
    log.write(done.stdout)
    if done.returncode != 0:
        raise BuildError(f"{argv[0]} {' '.join(argv[1:3])}... failed (exit {done.returncode})")
    return done.stdout


def build(spec: Spec, log_path: Path) -> bool:
    """Make the environment if its stamp differs from the spec; True if it was built."""
    root = Path(spec.path)
    if up_to_date(spec, read_stamp(spec)):
        return False
    if root.exists() and any(root.iterdir()) and not (root / "pyvenv.cfg").exists():
        raise BuildError(f"{root} holds files but no venv: not replacing it")
    os.umask(0o022)
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        try:
            (root / STAMP).unlink(missing_ok=True)
            _run(venv_argv(spec), log)
            purelib = Path(_run(purelib_argv(f"{spec.path}/bin/python3"), log).strip())
            if spec.base:
                base_purelib = _run(purelib_argv(spec.python), log).strip()
                (purelib / PTH).write_text(pth_text(base_purelib))
            _run(pip_argv(spec), log)
            if spec.base:
                _layer(spec, Path(spec.base), root)
        except BuildError as exc:
            raise BuildError(f"environment {spec.name}: {exc}; see {log_path}") from None
    _readable(root)
    (root / STAMP).write_text(spec.stamp())
    return True


def _layer(spec: Spec, base: Path, root: Path) -> None:
    for folder in SHARED_FOLDERS:
        if (root / folder).exists():
            raise BuildError(f"a package installed {root / folder}, which is the base's (a link to it)")
        if (base / folder).exists():
            (root / folder).parent.mkdir(parents=True, exist_ok=True)
            (root / folder).symlink_to(base / folder)
    for script in sorted((base / "bin").iterdir()):
        target = root / "bin" / script.name
        if target.exists() or target.is_symlink() or not script.is_file():
            continue   # the environment's own (python, pip's installs) win
        try:
            text = console_script(script.read_text(), str(base), spec.path)
        except UnicodeDecodeError:
            continue
        if text is not None:
            target.write_text(text)
            target.chmod(0o755)


def _readable(root: Path) -> None:
    """Everyone reads and runs it; only its owner (root) writes."""
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            if not path.is_symlink():
                mode = path.stat().st_mode
                path.chmod((mode | 0o444 | (0o111 if mode & 0o100 or path.is_dir() else 0)) & ~0o022)
    root.chmod(0o755)


def main(argv: list[str] | None = None) -> int:
    from .load import ConfigError, load_site

    parser = argparse.ArgumentParser(prog="python -m aifactory.site.pyenvs",
                                     description="Build the site's python environments that list packages.")
    parser.add_argument("site", nargs="?", help="site file (default: the installed one)")
    parser.add_argument("--constraint", help="pip constraint file: the shared environment's lock")
    args = parser.parse_args(argv)
    try:
        site = load_site(args.site)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    text = Path(args.constraint).read_text() if args.constraint else ""
    constraints = str(Path(args.constraint).resolve()) if args.constraint else None
    for spec in specs(site, sys.executable, constraints, text):
        log = Path(f"{spec.path}.log")
        started = time.monotonic()
        if up_to_date(spec, read_stamp(spec)):
            continue
        print(f"[install] environment {spec.name} at {spec.path} ({' '.join(spec.packages)}): log {log}",
              flush=True)
        try:
            build(spec, log)
        except BuildError as exc:
            print(exc, file=sys.stderr)
            print(log.read_text()[-3000:] if log.exists() else "", file=sys.stderr)
            return 1
        size = sum((Path(d) / f).lstat().st_size for d, _, files in os.walk(spec.path) for f in files)
        print(f"[install] environment {spec.name}: {time.monotonic() - started:.0f} s, {size / 2**30:.1f} GiB",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
