"""How each kind of site environment starts the single-user server: pure functions.

`setup_lines` are shell lines the batch script runs before the server (every
value quoted with `shlex.quote`); `server_argv` is the server's command line,
run by the launcher (`singleuser.py`) as its child.

- python: the environment's `bin` first on PATH, its `jupyterhub-singleuser`.
- lmod: `module use` + `module load` from the distribution's Lmod, then the
  `jupyterhub-singleuser` the modules put on PATH.
- container: `apptainer|singularity exec` with `--rocm` (AMD) or `--nv`
  (NVIDIA) when GPUs were requested, and the site's binds.
"""

from __future__ import annotations

import shlex

from aifactory.site.schema import ContainerEnvironment, LmodEnvironment, PythonEnvironment

LMOD_INIT = "/usr/share/lmod/lmod/init/bash"
SERVER = "jupyterhub-singleuser"

Environment = PythonEnvironment | LmodEnvironment | ContainerEnvironment


def setup_lines(env: Environment, lmod_init: str = LMOD_INIT) -> list[str]:
    """Shell lines that prepare the environment inside the job."""
    if isinstance(env, PythonEnvironment):
        return [f"export PATH={shlex.quote(env.path + '/bin')}:\"$PATH\"",
                f"export VIRTUAL_ENV={shlex.quote(env.path)}"]
    if isinstance(env, LmodEnvironment):
        lines = [f"source {shlex.quote(lmod_init)}"]
        lines += [f"module use {shlex.quote(path)}" for path in env.modulepath]
        lines += [f"module load {shlex.quote(module)}" for module in env.modules]
        return lines
    return []


def server_argv(env: Environment, args: list[str], gpus: int = 0, gpu_vendor: str | None = None) -> list[str]:
    """The single-user server's argv in this environment."""
    if isinstance(env, PythonEnvironment):
        return [f"{env.path}/bin/{SERVER}", *args]
    if isinstance(env, LmodEnvironment):
        return [SERVER, *args]
    gpu_flags = {"amd": ["--rocm"], "nvidia": ["--nv"]}.get(gpu_vendor or "", []) if gpus else []
    binds = [flag for bind in env.binds for flag in ("--bind", bind)]
    return [env.runtime, "exec", *gpu_flags, *binds, env.image, SERVER, *args]
