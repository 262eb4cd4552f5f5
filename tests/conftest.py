"""Shared fixtures. Integration tests need the real local cluster and hub that
`make test` starts; outside `make test` they skip with the reason, under it
(AIFACTORY_INTEGRATION=1) a missing service is a failure."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from aifactory.hub.site import load_site

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "hub" / "sites" / "demo.yaml"
BIN = Path(os.environ.get("AIFACTORY_PREFIX", "/opt/aifactory")) / "venv" / "bin"


def _require(what: str, ok: bool) -> None:
    if ok:
        return
    message = f"{what} is not running (start it with `make hub`)"
    if os.environ.get("AIFACTORY_INTEGRATION"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def demo_site():
    return load_site(DEMO)


@pytest.fixture(scope="session")
def cluster(demo_site):
    """The local Slurm cluster, up and in line with the demo site."""
    status = subprocess.run([str(BIN / "aifactory"), "cluster", "status"], capture_output=True, text=True)
    _require("the local Slurm cluster", os.geteuid() == 0 and status.returncode == 0)
    return demo_site


@pytest.fixture(scope="session")
def hub(cluster):
    from aifactory.hub import service

    _require("JupyterHub", service.answers(cluster))
    return service.url(cluster)


@pytest.fixture(scope="session")
def operator_token(hub):
    from aifactory.hub.service import operator_token_file

    return operator_token_file().read_text().strip()


@pytest.fixture(scope="session")
def passwords(cluster):
    from aifactory.hub.localcluster.provision import passwords_file

    return dict(line.split(" ", 1) for line in passwords_file().read_text().splitlines())


def pytest_collection_modifyitems(items):
    """Tests that restart the cluster run last, so they disturb no other test."""
    items.sort(key=lambda item: item.get_closest_marker("restarts_cluster") is not None)
