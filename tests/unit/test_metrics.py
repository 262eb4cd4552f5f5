"""The platform's metrics: the services that read them and the counts they report."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client import CollectorRegistry, generate_latest

from aifactory.spawners import metrics
from aifactory.hub.services import idle_culler_command, service_roles, services
from aifactory.site import parse_site

from .sites import SMALL_SITE


def spawner(profile=None, ready=False, pending=None):
    return SimpleNamespace(user_options={"profile": profile} if profile else {}, ready=ready, pending=pending)


def test_servers_are_counted_per_profile_and_state():
    spawners = [spawner("cpu", ready=True), spawner("cpu", ready=True), spawner("gpu", pending="spawn"),
                spawner(None, ready=True), spawner("gpu"), spawner("cpu", pending="stop")]
    assert metrics.server_counts(spawners) == {("cpu", "running"): 2, ("gpu", "pending"): 1,
                                               ("unknown", "running"): 1}


def test_the_server_gauge_is_scraped_from_the_hub_state():
    registry = CollectorRegistry()
    registry.register(metrics.ServerCounts(lambda: [spawner("cpu", ready=True)]))
    text = generate_latest(registry).decode()
    assert 'aifactory_servers{profile="cpu",state="running"} 1.0' in text


def test_spawn_failures_have_bounded_reasons():
    before = metrics.SPAWN_FAILURES.labels(reason="other")._value.get()
    metrics.spawn_failed("submit")
    metrics.spawn_failed("anything the spawner made up")
    assert metrics.SPAWN_FAILURES.labels(reason="other")._value.get() == before + 1
    assert metrics.SPAWN_FAILURES.labels(reason="submit")._value.get() >= 1


def test_queue_wait_is_a_histogram_per_partition():
    metrics.observe_queue_wait("gpu", 42.0)
    text = generate_latest().decode()
    assert 'aifactory_queue_wait_seconds_bucket{le="60.0",partition="gpu"}' in text


def test_the_idle_culler_follows_the_site_limits():
    site = parse_site(SMALL_SITE)  # defaults: idle 60 min, session 12 h
    assert idle_culler_command(site, "/p/venv/bin/python") == [
        "/p/venv/bin/python", "-m", "aifactory.hub.culler",
        "--timeout=3600", "--max-age=43200", "--cull-every=360",
        "--cull-named-servers=True", "--cull-admin-users=True", "--cull-users=False",
        "--remove-named-servers=False", "--concurrency=5", "--api-page-size=200",
    ]


def test_services_get_only_the_scopes_they_need():
    site = parse_site(SMALL_SITE)
    assert [s["name"] for s in services(site, "/py")] == ["idle-culler", "formgrader-ml101"]
    assert services(site, "/py", "m")[-1] == {"name": "aifactory-metrics", "api_token": "m"}
    assert service_roles("m") == [
        {"name": "idle-culler", "description": "Stop idle and overlong servers",
         "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
         "services": ["idle-culler"]},
        {"name": "aifactory-metrics", "description": "Read the hub's Prometheus metrics",
         "scopes": ["read:metrics"], "services": ["aifactory-metrics"]},
    ]


def test_the_culler_dies_with_a_killed_hub(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    child = ("from aifactory.hub.culler import die_with_parent; die_with_parent(); import time; time.sleep(30)")
    hub = ("import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', %r]); print(p.pid, flush=True); "
           "import time; time.sleep(30)" % child)
    parent = subprocess.Popen([sys.executable, "-c", hub], stdout=subprocess.PIPE, text=True)
    culler = int(parent.stdout.readline())
    time.sleep(1)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(culler, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(culler, signal.SIGKILL)
    raise AssertionError("the culler outlived its hub")
