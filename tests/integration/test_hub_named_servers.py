"""Named servers: a researcher runs a CPU and a GPU session at once, within the site's per-user limit."""

from __future__ import annotations

import subprocess

import pytest
import requests

from .test_spawner_slurm import cleanup, jobs_of, wait_no_job

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

USER = "researcher1"


def test_a_cpu_and_a_gpu_session_run_side_by_side_and_a_third_is_refused(api, demo_site, server_url):
    assert demo_site.limits.servers_per_user == 2
    sessions = {"ns-cpu": {"profile": "cpu", "memory": "1G"},
                "ns-gpu": {"profile": "gpu", "gpus": "1", "cpus": "1", "memory": "2G"}}
    try:
        for name, options in sessions.items():
            assert api.spawn(USER, name, options).status_code in (201, 202)
        for name in sessions:
            assert api.wait_ready(USER, name, timeout=120)
        (cpu_job, cpu_state), = jobs_of(USER, "ns-cpu")
        (gpu_job, gpu_state), = jobs_of(USER, "ns-gpu")
        assert cpu_state == gpu_state == "RUNNING" and cpu_job != gpu_job
        placed = {job: subprocess.run(["squeue", "-h", "-j", job, "-o", "%P %b"], capture_output=True,
                                      text=True).stdout.split() for job in (cpu_job, gpu_job)}
        assert placed[cpu_job][0] == "standard"
        assert placed[gpu_job][0] == "small-g" and placed[gpu_job][1].endswith("gpu:mi250x:1")
        # Both answer through the hub, each at its own URL.
        for name in sessions:
            reach = requests.get(f"{server_url(USER, name)}api/status", headers=api.headers, timeout=30)
            assert reach.status_code == 200, (name, reach.status_code)
        third = api.spawn(USER, "ns-third", {"profile": "cpu"})
        assert third.status_code == 400
        assert "maximum of 2 named servers" in third.json()["message"]
        assert jobs_of(USER, "ns-third") == []
    finally:
        for name in (*sessions, "ns-third"):
            cleanup(api, USER, name)
    for name in sessions:
        wait_no_job(USER, name)
