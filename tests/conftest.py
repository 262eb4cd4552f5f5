"""Shared fixtures. Integration tests need the real local cluster and hub that
`make test` starts; outside `make test` they skip with the reason, under it
(AIFACTORY_INTEGRATION=1) a missing service is a failure."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from aifactory.site import load_site
from aifactory.site.schema import Site

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "hub" / "site" / "demo.yaml"
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


def user_server_url(site: Site, user: str, name: str = "") -> str:
    """A user's server through the proxy: `http://<user>.localhost:8000/user/<user>/[<name>/]` where the
    site gives users subdomains (JupyterHub's name for plain user names), else under the hub's URL."""
    path = f"/user/{user}/" + (f"{name}/" if name else "")
    if site.hub.subdomain_host is None:
        return f"http://{site.hub.ip}:{site.hub.port}{path}"
    parts = urlsplit(site.hub.subdomain_host)
    return f"{parts.scheme}://{user}.{parts.netloc}{path}"


def _loopback_for_localhost_subdomains(real_getaddrinfo):
    """Resolve `*.localhost` to loopback as browsers do (RFC 6761); the system resolver does not."""

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".localhost"):
            host = "127.0.0.1"
        return real_getaddrinfo(host, *args, **kwargs)

    return getaddrinfo


@pytest.fixture(scope="session")
def server_url(hub, cluster):
    """`server_url(user, name="")`: where tests reach a user's server, requests resolving its host."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", _loopback_for_localhost_subdomains(socket.getaddrinfo))
        yield lambda user, name="": user_server_url(cluster, user, name)


def pytest_collection_modifyitems(items):
    """Tests that restart the cluster run last, so they disturb no other test."""
    items.sort(key=lambda item: item.get_closest_marker("restarts_cluster") is not None)
