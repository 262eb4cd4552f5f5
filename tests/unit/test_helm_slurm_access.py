"""How the hub in Kubernetes reaches Slurm: every Slurm command over SSH to a login node."""

from __future__ import annotations

import shlex
import sys
from types import SimpleNamespace

import pytest

from aifactory.slurm.runner import LOCAL, NoAnswer, Refused, SlurmRunner, SshRoute
from aifactory.spawners.remote import RemoteSlurmSpawner
from aifactory.spawners.script import submit_argv

ACCESS = SshRoute(login_node="login1.example.org", user="jupyterhub", identity_file="/run/aifactory/ssh/id",
                  known_hosts_file="/etc/aifactory/known_hosts")
SSH_SETTINGS = {"slurm_access": "ssh", "ssh_login_node": "login1.example.org", "ssh_user": "jupyterhub",
                "ssh_identity_file": "/run/aifactory/ssh/id", "ssh_known_hosts_file": "/etc/aifactory/known_hosts"}


def test_sbatch_as_the_user_runs_on_the_login_node():
    assert ACCESS.argv(submit_argv("alice"), ["JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL"]) == [
        "ssh", "-T",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "UserKnownHostsFile=/etc/aifactory/known_hosts",
        "-o", "ConnectTimeout=10",
        "-o", "IdentitiesOnly=yes",
        "-o", "LogLevel=ERROR",
        "-i", "/run/aifactory/ssh/id",
        "-p", "22",
        "-o", "SendEnv=JUPYTERHUB_API_TOKEN",
        "-o", "SendEnv=JUPYTERHUB_API_URL",
        "-l", "jupyterhub",
        "login1.example.org",
        "--",
        "sudo -E -u alice sbatch --parsable",
    ]


def test_remote_command_is_quoted_for_the_login_nodes_shell():
    argv = ["squeue", "--format=%i %T %R", "--name=jupyter-a;b", "$(id)"]
    command = ACCESS.argv(argv)[-1]
    assert shlex.split(command) == argv


@pytest.mark.parametrize("field, value", [("login_node", "-oProxyCommand=sh"), ("user", ""), ("login_node", "a b"),
                                          ("identity_file", "")])
def test_access_refuses_values_ssh_would_read_as_options(field, value):
    settings = {"login_node": "login1", "user": "jupyterhub", "identity_file": "/k", "known_hosts_file": "/kh"}
    with pytest.raises(ValueError, match=field):
        SshRoute(**{**settings, field: value})


class ScriptedSsh:
    """ACCESS's argv with `ssh` replaced by `program`."""

    def __init__(self, program: str):
        self.program = program

    def argv(self, argv: list[str], env_names: list[str]) -> list[str]:
        return [self.program, *ACCESS.argv(argv, env_names)[1:]]

    def unreachable(self, returncode: int) -> bool:
        return ACCESS.unreachable(returncode)


@pytest.fixture
def fake_ssh(tmp_path):
    """A runner whose `ssh` runs the remote command with sh here, with the variables ssh would send."""
    script = tmp_path / "ssh"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, subprocess, sys\n"
        "args = sys.argv[1:]\n"
        "if os.environ.get('FAKE_SSH_DOWN'):\n"
        "    print('ssh: connect to host login1 port 22: No route to host', file=sys.stderr); sys.exit(255)\n"
        "command = args[args.index('--') + 1]\n"
        "sent = [a.split('=', 1)[1] for a in args if a.startswith('SendEnv=')]\n"
        "env = {k: v for k, v in os.environ.items() if k in sent or k == 'PATH'}\n"
        "sys.exit(subprocess.call(['sh', '-c', command], env=env))\n"
    )
    script.chmod(0o755)
    return SlurmRunner(route=ScriptedSsh(str(script)), timeout=10)


async def test_arguments_and_variables_arrive_intact_on_the_other_side(fake_ssh):
    out = await fake_ssh.run(["printf", "%s|", "a b", "it's", "$HOME;x"])
    assert out == "a b|it's|$HOME;x|"
    out = await fake_ssh.run(["sh", "-c", 'echo "$JUPYTERHUB_API_TOKEN"'],
                             env={"JUPYTERHUB_API_TOKEN": "t0k", "PATH": "/usr/bin:/bin"})
    assert out == "t0k\n"


async def test_a_refusal_on_the_login_node_is_a_refusal(fake_ssh):
    with pytest.raises(Refused) as failed:
        await fake_ssh.run(["sh", "-c", "echo 'sbatch: error: Invalid account' >&2; exit 1"])
    assert failed.value.stderr == "sbatch: error: Invalid account"


async def test_an_unreachable_login_node_means_unknown_not_gone(fake_ssh):
    with pytest.raises(NoAnswer, match="No route to host"):
        await fake_ssh.run(["squeue"], env={"FAKE_SSH_DOWN": "1"})


def test_the_trait_gives_the_spawner_its_route_and_no_other_spawner_is_touched():
    local = RemoteSlurmSpawner()
    assert local.slurm_runner == SlurmRunner(route=LOCAL, timeout=local.slurm_timeout)  # as SiteSlurmSpawner
    remote = RemoteSlurmSpawner(**SSH_SETTINGS, slurm_timeout=7)
    assert remote.slurm_runner == SlurmRunner(route=ACCESS, timeout=7)
    assert local.slurm_runner.route == LOCAL  # a route is the spawner's, not a module's


def test_ssh_settings_ssh_would_misread_are_refused():
    with pytest.raises(ValueError, match="login_node"):
        RemoteSlurmSpawner(**{**SSH_SETTINGS, "ssh_login_node": "-oProxyCommand=sh"}).slurm_runner


def test_over_ssh_the_hub_sends_the_job_no_home_of_its_own():
    """The user need not exist in the hub's user directory; HOME and SHELL come from the job's node."""
    spawner = RemoteSlurmSpawner(**SSH_SETTINGS)
    spawner.user = SimpleNamespace(name="no-such-user-here")
    assert spawner.user_env({"JUPYTERHUB_API_TOKEN": "t"}) == {"JUPYTERHUB_API_TOKEN": "t", "USER": "no-such-user-here"}
    spawner.slurm_access = "local"  # a hub on a login node: batchspawner's lookup, as before
    with pytest.raises(KeyError):
        spawner.user_env({})
