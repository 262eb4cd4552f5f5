"""`aifactory course add` on the running hub: a course the hub already serves needs no restart."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN, DEMO

pytestmark = [pytest.mark.slurm, pytest.mark.hub]
PIDFILE = Path("/var/lib/aifactory/hub/jupyterhub.pid")


def test_adding_a_course_the_hub_serves_keeps_the_hub_running(hub):
    # `make hub` installed the demo site: installing it again changes nothing.
    pid = PIDFILE.read_text()
    out = subprocess.run([str(BIN / "aifactory"), "course", "add", "intro-dl", "--site", str(DEMO)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "formgrader at http://127.0.0.1:8000/services/formgrader-intro-dl/formgrader" in out.stdout
    assert "restarting" not in out.stdout
    assert PIDFILE.read_text() == pid
