"""The one Slurm runner: what no answer, a refusal and a failure are, with real processes standing in for Slurm."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from aifactory.site import parse_site
from aifactory.slurm.projects import user_projects, user_projects_sync
from aifactory.slurm.runner import LOCAL, Failed, NoAnswer, Refused, SlurmRunner, SshRoute, classify

from .sites import SMALL_SITE

DATA = Path(__file__).parent / "data" / "slurm"

ROUTE = SshRoute(login_node="login1", user="jupyterhub", identity_file="/k", known_hosts_file="/kh")


@pytest.mark.parametrize("returncode, stderr, route, error", [
    (0, "", LOCAL, None),
    (1, "squeue: error: Invalid job id specified", LOCAL, Refused),
    (1, "slurm_load_jobs error: Unable to contact slurm controller (connect failure)", LOCAL, NoAnswer),
    (1, "sacctmgr: error: Problem talking to the database: Connection refused", LOCAL, NoAnswer),
    (1, "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation", LOCAL, NoAnswer),
    (1, "sbatch: error: Batch job submission failed: Zero Bytes were transmitted or received", LOCAL, NoAnswer),
    (1, "sbatch: error: Batch job submission failed: Communication connection failure", LOCAL, NoAnswer),
    (1, "sbatch: error: Batch job submission failed: Message receive failure", LOCAL, NoAnswer),
    (1, "sbatch: error: Batch job submission failed: Transport endpoint is not connected", LOCAL, NoAnswer),
    (1, "sbatch: error: Batch job submission failed: Slurm backup controller in standby mode", LOCAL, NoAnswer),
    (1, "squeue: error: Controller is in standby mode, try a different controller", LOCAL, NoAnswer),
    (1, "sbatch: error: Slurm controller not responding, sleeping and retrying.", LOCAL, NoAnswer),
    (1, "scancel: error: Unable to contact slurm controller (send failure)", LOCAL, NoAnswer),
    (1, "sacct: error: Unable to connect to database", LOCAL, NoAnswer),
    (1, "sacct: error: slurmdbd: Connection refused", LOCAL, NoAnswer),
    (1, "sacctmgr: error: slurm_persist_conn_open: failed to open persistent connection: Connection timed out",
     LOCAL, NoAnswer),
    (1, "sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified",
     LOCAL, Refused),
    (-9, "", LOCAL, Failed),
    (255, "ssh: connect to host login1 port 22: Connection timed out", ROUTE, NoAnswer),
    (255, "", LOCAL, Refused),  # only ssh's own 255 is the route's failure
    (1, "sbatch: error: Invalid account", ROUTE, Refused),
])
def test_classify(returncode, stderr, route, error):
    result = classify(["squeue"], returncode, stderr, route)
    assert result is None if error is None else type(result) is error


def fake(tmp_path: Path, name: str, body: str) -> str:
    """A shell script standing in for a Slurm command."""
    script = tmp_path / name
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)
    return str(script)


def both(runner: SlurmRunner, argv: list[str], **kwargs):
    """Runs argv with the async and the sync form; returns both answers (or raises the same error twice)."""
    import asyncio

    outcomes = []
    for call in (lambda: asyncio.run(runner.run(argv, **kwargs)), lambda: runner.run_sync(argv, **kwargs)):
        try:
            outcomes.append(("ok", call()))
        except Exception as error:  # noqa: BLE001 -- compared below
            outcomes.append((type(error), str(error)))
    assert outcomes[0] == outcomes[1]
    return outcomes[0]


def test_an_answer_with_input_and_environment(tmp_path):
    squeue = fake(tmp_path, "squeue", 'read line; echo "$line|$SLURM_TEST|$1"')
    assert both(SlurmRunner(), [squeue, "a b"], input="702\n", env={"SLURM_TEST": "x"}) == ("ok", "702|x|a b\n")


def test_a_refusal_keeps_what_slurm_said(tmp_path):
    sacctmgr = fake(tmp_path, "sacctmgr", 'echo " Nothing new added."; echo "sacctmgr: oops" >&2; exit 1')
    with pytest.raises(Refused) as refused:
        SlurmRunner().run_sync([sacctmgr])
    assert (refused.value.returncode, refused.value.stderr, refused.value.stdout) == (
        1, "sacctmgr: oops", "Nothing new added.")
    assert both(SlurmRunner(), [sacctmgr])[0] is Refused


def test_no_answer_in_time_is_no_answer_and_the_command_is_killed(tmp_path):
    marker = tmp_path / "still-running"
    squeue = fake(tmp_path, "squeue", f"sleep 3; touch {marker}")
    started = time.monotonic()
    assert both(SlurmRunner(timeout=0.3), [squeue])[0] is NoAnswer
    assert time.monotonic() - started < 2.5
    time.sleep(3.2)
    assert not marker.exists()


def test_a_missing_command_is_no_answer(tmp_path):
    assert both(SlurmRunner(), [str(tmp_path / "sinfo")])[0] is NoAnswer


def test_a_controller_that_does_not_answer_is_no_answer(tmp_path):
    squeue = fake(tmp_path, "squeue", 'echo "slurm_load_jobs error: Unable to contact slurm controller" >&2; exit 1')
    assert both(SlurmRunner(), [squeue])[0] is NoAnswer


def test_a_command_killed_by_a_signal_is_failed(tmp_path):
    sinfo = fake(tmp_path, "sinfo", "kill -9 $$")
    assert both(SlurmRunner(), [sinfo])[0] is Failed


class Through:
    """A route that runs every command as `program` (a stand-in for sacctmgr) with the argv as arguments."""

    def __init__(self, program: str):
        self.program = program

    def argv(self, argv: list[str], env_names: list[str]) -> list[str]:
        return [self.program, *argv]

    def unreachable(self, returncode: int) -> bool:
        return False


async def test_a_users_projects_fall_back_to_the_site_file_only_when_slurm_does_not_answer(tmp_path):
    site = parse_site(SMALL_SITE)
    answers = SlurmRunner(route=Through(fake(tmp_path, "answers", 'echo "proj_b|proj_a"; echo "proj_b|proj_b"')))
    silent = SlurmRunner(route=Through(fake(tmp_path, "silent", "echo 'Connection refused' >&2; exit 1")))
    refuses = SlurmRunner(route=Through(fake(tmp_path, "refuses", "echo 'Unknown option' >&2; exit 1")))
    assert await user_projects("alice", site, answers) == ("proj_b", "proj_a")  # Slurm decides, default first
    assert user_projects_sync("alice", site, answers) == ("proj_b", "proj_a")
    assert await user_projects("alice", site, silent) == ("proj_a",)  # slurmdbd down: the site's members
    assert user_projects_sync("alice", site, silent) == ("proj_a",)
    with pytest.raises(Refused):
        await user_projects("alice", site, refuses)


async def test_each_fall_back_to_the_site_file_is_a_warning_naming_the_user_and_why(tmp_path, caplog):
    site = parse_site(SMALL_SITE)
    silent = SlurmRunner(route=Through(fake(tmp_path, "silent", "echo 'slurmdbd: Connection refused' >&2; exit 1")))
    with caplog.at_level(logging.WARNING, logger="aifactory.slurm.projects"):
        assert await user_projects("alice", site, silent) == ("proj_a",)
        assert user_projects_sync("alice", site, silent) == ("proj_a",)
    warnings = [r for r in caplog.records if r.name == "aifactory.slurm.projects" and r.levelno == logging.WARNING]
    assert len(warnings) == 2
    for record in warnings:
        message = record.getMessage()
        assert "alice" in message and "slurmdbd: Connection refused" in message and "proj_a" in message


async def test_a_class_logging_in_shares_one_sacctmgr_and_a_user_not_in_it_is_asked_alone(tmp_path, monkeypatch):
    """The first spawn page of each user reads the hub-wide table (one slurmdbd round trip for all of them);
    a user added since the table was read is asked for alone, so they are never shown no projects."""
    from aifactory.spawners import cluster_state, facts
    monkeypatch.setattr(cluster_state, "_CACHE", {})
    calls = tmp_path / "calls"
    sacctmgr = fake(tmp_path, "sacctmgr", f'echo "$@" >> {calls}\n'
                    'case "$*" in *User,Default*) cat ' + str(DATA / "sacctmgr-all.txt") + ';;\n'
                    '  *) echo "proj_new|proj_new";; esac')
    runner = SlurmRunner(route=Through(sacctmgr))
    site = parse_site(SMALL_SITE)
    assert [await facts.projects_of(u, site, None, runner) for u in ("student1", "trainer1", "admin1")] == [
        ("project_465000002",), ("project_465000001", "project_465000002"),
        ("project_465000001", "project_465000002")]
    assert await facts.projects_of("newcomer", site, None, runner) == ("proj_new",)
    asked = calls.read_text().splitlines()
    assert len(asked) == 2 and "newcomer" in asked[1] and "newcomer" not in asked[0]
