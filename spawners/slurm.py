"""A batchspawner SlurmSpawner whose job is derived from the site file.

The foundation spawner: it starts the user's first allowed profile at its
defaults. Submission goes through an argv list (`sudo -u USER sbatch`), never
a shell string.
"""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import shlex

from batchspawner import SlurmSpawner
from traitlets import Unicode, default

from aifactory.hub.site import load_site

from .site_profile import JobRequest, default_request

BATCH_SCRIPT = """#!/bin/bash
#SBATCH --job-name=jupyter-{user}
#SBATCH --output={home}/.aifactory/jupyter-%j.log
#SBATCH --chdir={home}
#SBATCH --export={keepvars}
{options}
set -euo pipefail
{prologue}
exec {cmd}
"""


def batch_script(request: JobRequest, user: str, home: str, keepvars: str, cmd: list[str],
                 prologue: str = "") -> str:
    """The job script of one server; every value is quoted or validated upstream."""
    options = "\n".join(f"#SBATCH {option}" for option in request.sbatch_options())
    return BATCH_SCRIPT.format(user=user, home=home, keepvars=keepvars, options=options,
                               prologue=prologue, cmd=shlex.join(cmd))


def user_groups(name: str) -> set[str]:
    entry = pwd.getpwnam(name)
    return {grp.getgrgid(gid).gr_name for gid in os.getgrouplist(name, entry.pw_gid)}


class SiteSlurmSpawner(SlurmSpawner):
    """Starts a notebook server as a Slurm job sized by the site's profiles."""

    site_file = Unicode(
        "", config=True, help="Site configuration file; empty means $AIFACTORY_SITE or /etc/aifactory/site.yaml."
    )
    venv = Unicode(
        "/opt/aifactory/venv", config=True, help="Shared environment that holds jupyterhub-singleuser on the nodes."
    )

    @default("batchspawner_singleuser_cmd")
    def _singleuser_default(self) -> str:
        return f"{self.venv}/bin/batchspawner-singleuser"

    @default("cmd")
    def _cmd_default(self) -> list[str]:
        return [f"{self.venv}/bin/jupyterhub-singleuser"]

    def _request(self) -> JobRequest:
        site = load_site(self.site_file or None)
        accounts = [p.name for p in site.projects_of(self.user.name)]
        _, request = default_request(site, user_groups(self.user.name), accounts)
        return request

    async def submit_batch_script(self) -> str:
        home = pwd.getpwnam(self.user.name).pw_dir
        os.makedirs(os.path.join(home, ".aifactory"), exist_ok=True)
        entry = pwd.getpwnam(self.user.name)
        os.chown(os.path.join(home, ".aifactory"), entry.pw_uid, entry.pw_gid)
        env = self.get_env()
        script = batch_script(
            self._request(), self.user.name, home, ",".join(env.keys()),
            [self.batchspawner_singleuser_cmd, *self.cmd, *self.get_args()],
        )
        argv = ["sudo", "-E", "-u", self.user.name, "/usr/bin/sbatch", "--parsable"]
        self.log.info("Submitting server of %s: %s", self.user.name, " ".join(argv))
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(script.encode()), timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"Slurm refused the job: {err.decode().strip()}")
        self.job_id = self.parse_job_id(out.decode().strip())
        return self.job_id
