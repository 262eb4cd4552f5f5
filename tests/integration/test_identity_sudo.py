"""The sudo rule of a hub account that is not root (`aifactory hub sudoers`), installed for
real and tried as that account: sbatch as a person of the site, never as root, a system
account or one of the platform's service accounts."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from aifactory.site.identity import hub_sudoers

pytestmark = [pytest.mark.slurm]

ACCOUNT = "aifhubtest"
RULE = Path("/etc/sudoers.d/aifactory-identity-test")


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=check)


@pytest.fixture
def hub_account(cluster):
    run("userdel", "--remove", ACCOUNT, check=False)
    run("useradd", "--system", "--shell", "/usr/sbin/nologin", ACCOUNT)
    try:
        with tempfile.TemporaryDirectory() as directory:
            draft = Path(directory) / "rule"
            draft.write_text(hub_sudoers(cluster, ACCOUNT, shutil.which("sbatch")))
            draft.chmod(0o440)
            run("visudo", "-c", "-q", "-f", str(draft))  # a broken rule would break sudo for everyone
            shutil.copy2(draft, RULE)
        yield ACCOUNT
    finally:
        RULE.unlink(missing_ok=True)
        run("userdel", "--remove", ACCOUNT, check=False)


def sbatch_as(target: str) -> subprocess.CompletedProcess:
    """What the hub does, as its account: sudo -E -u TARGET sbatch (here only --version)."""
    return run("runuser", "-u", ACCOUNT, "--", "sudo", "-n", "-E", "-u", target, shutil.which("sbatch"),
               "--version", check=False)


def test_the_hub_account_submits_as_a_person(hub_account):
    allowed = sbatch_as("student1")
    assert allowed.returncode == 0 and allowed.stdout.startswith("slurm"), allowed.stderr


@pytest.fixture
def misfiled(hub_account):
    """An operator's slip: root and a service account put into a people's group (students)."""
    misfiled = ["root", "aifactory-grader", "grader-intro-dl"]
    for name in misfiled:
        run("gpasswd", "-a", name, "students")
    try:
        yield
    finally:
        for name in misfiled:
            run("gpasswd", "-d", name, "students", check=False)


@pytest.mark.parametrize("target", ["root", "#0", "daemon", "aifactory-grader", "grader-intro-dl"])
def test_the_hub_account_never_submits_as_root_a_system_or_a_service_account(misfiled, target):
    refused = sbatch_as(target)
    assert refused.returncode != 0
    assert "slurm" not in refused.stdout


def test_the_hub_account_runs_nothing_but_sbatch(hub_account):
    assert run("runuser", "-u", ACCOUNT, "--", "sudo", "-n", "-u", "student1", "/bin/true", check=False).returncode != 0
