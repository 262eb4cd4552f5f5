"""The hub's services on the running hub: the idle culler runs with the site's limits,
Prometheus reads the platform's metrics with a token that may do nothing else."""

from __future__ import annotations

import pytest
import requests

pytestmark = [pytest.mark.slurm, pytest.mark.hub]


@pytest.fixture(scope="module")
def metrics_token(hub):
    from aifactory.hub.service import metrics_token_file

    return metrics_token_file().read_text().strip()


def test_the_idle_culler_runs_with_the_site_limits(hub, operator_token, demo_site):
    headers = {"Authorization": f"token {operator_token}"}
    culler = requests.get(f"{hub}/hub/api/services/idle-culler", headers=headers, timeout=10).json()
    assert culler["pid"] > 0
    assert f"--timeout={demo_site.limits.idle_timeout * 60}" in culler["command"]
    assert f"--max-age={demo_site.limits.max_session * 60}" in culler["command"]
    assert culler["roles"] == ["idle-culler"]


def test_prometheus_scrapes_hub_and_platform_metrics(hub, metrics_token):
    response = requests.get(f"{hub}/hub/metrics", headers={"Authorization": f"token {metrics_token}"}, timeout=10)
    assert response.status_code == 200
    text = response.text
    assert "jupyterhub_running_servers" in text
    for name in ("aifactory_servers", "aifactory_spawn_failures_total", "aifactory_queue_wait_seconds"):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name


def test_the_metrics_token_reads_nothing_else(hub, metrics_token):
    headers = {"Authorization": f"token {metrics_token}"}
    assert requests.get(f"{hub}/hub/api/users", headers=headers, timeout=10).status_code == 403
    assert requests.get(f"{hub}/hub/metrics", timeout=10).status_code == 403
