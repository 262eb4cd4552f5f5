"""How a program starts inside a site environment: the one place that writes an environment's launch lines.

`launch(environment, program, ...)` gives the shell lines a batch script runs
first (every value quoted with `shlex.quote`) and the argv prefix that runs
`program` in the environment. The notebook server's batch script
(`jupyterhub-singleuser`) and Dask's worker jobs (`python3`) both use it.

- python: the environment's `bin` first on PATH, its own `program`.
- lmod: the environment's Lmod init script, `module use` + `module load`, then the `program`
  the modules put on PATH.
- container: `apptainer|singularity exec`, `--rocm` (AMD) or `--nv` (NVIDIA)
  when GPUs were asked for, the site's binds, the image, then `program`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from .schema import ContainerEnvironment, LmodEnvironment, PythonEnvironment

Environment = PythonEnvironment | LmodEnvironment | ContainerEnvironment


@dataclass(frozen=True)
class Launch:
    """Shell lines to run first, and the argv prefix of the program in the environment."""

    setup: tuple[str, ...]
    argv: tuple[str, ...]


def launch(
    environment: Environment, program: str, *, gpus: int = 0, gpu_vendor: str | None = None,
) -> Launch:
    """The launch lines of `program` in `environment` for a job with `gpus` GPUs of `gpu_vendor`."""
    if isinstance(environment, PythonEnvironment):
        return Launch(
            (f"export PATH={shlex.quote(environment.path + '/bin')}:\"$PATH\"",
             f"export VIRTUAL_ENV={shlex.quote(environment.path)}"),
            (f"{environment.path}/bin/{program}",),
        )
    if isinstance(environment, LmodEnvironment):
        return Launch(
            (f"source {shlex.quote(environment.init)}",
             *(f"module use {shlex.quote(path)}" for path in environment.modulepath),
             *(f"module load {shlex.quote(module)}" for module in environment.modules)),
            (program,),
        )
    if isinstance(environment, ContainerEnvironment):
        gpu_flags = {"amd": ("--rocm",), "nvidia": ("--nv",)}.get(gpu_vendor or "", ()) if gpus else ()
        binds = tuple(flag for bind in environment.binds for flag in ("--bind", bind))
        return Launch((), (environment.runtime, "exec", *gpu_flags, *binds, environment.image, program))
    raise TypeError(f"unknown environment {environment!r}")
