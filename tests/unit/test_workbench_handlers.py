"""The workbench's server extension, its pure parts and its loops with injected clocks: the time left, the
walltime warning, the job's end from Slurm, the GPU panel's data and the idle-GPU reclaim; the launcher's
exit code for an idle stop and the hub's sentence for it."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from aifactory.extensions.workbench import handlers
from aifactory.extensions.workbench.gpus import GpuReading
from aifactory.extensions.workbench.handlers import (
    GpuWatch, JobEnd, format_left, idle_warning, kernels_idle_since, walltime_warning, warn_seconds,
)
from aifactory.slurm.runner import NoAnswer
from aifactory.slurm.timelimit import job_limit_argv
from aifactory.spawners import singleuser
from aifactory.spawners.poller import SlurmPoller
from aifactory.spawners.progress import stop_message

TIMELIMIT = Path(__file__).parent / "data" / "slurm" / "timelimit"

UTC = timezone.utc
NOW = datetime(2026, 12, 1, 14, 28, tzinfo=UTC).timestamp()


@pytest.mark.parametrize("seconds, text", [
    (None, ""), (-5, "0:00"), (59, "0:00"), (60, "0:01"), (83 * 60 + 59, "1:23"), (26 * 3600 + 300, "26:05"),
])
def test_time_left_as_the_status_bar_shows_it(seconds, text):
    assert format_left(seconds) == text


def test_the_warning_comes_when_the_time_left_reaches_the_warning_time():
    end = NOW + 4 * 60
    assert walltime_warning(end, NOW, 5 * 60, {}, UTC) == (
        "Your session ends in 4 minutes (at 14:32). Save your work, or extend it on the hub's home page.")
    assert walltime_warning(end, NOW, 3 * 60, {}, UTC) == ""
    assert walltime_warning(NOW + 60, NOW, 120, {}, UTC).startswith("Your session ends in 1 minute (at 14:29)")
    assert walltime_warning(None, NOW, 300, {"warned_at": NOW}, UTC) == ""
    assert "reached its end" in walltime_warning(NOW - 1, NOW, 300, {}, UTC)


def test_slurms_signal_warns_until_the_walltime_is_extended_past_the_end_it_was_sent_for():
    end = NOW + 10 * 60
    session = {"ends_at": end, "warned_at": NOW - 5}
    assert walltime_warning(end, NOW, 5 * 60, session, UTC).startswith("Your session ends in 10 minutes (at 14:38)")
    # Extended by an hour on the home page: the old signal no longer counts, the time left rules again.
    assert walltime_warning(end + 3600, NOW, 5 * 60, session, UTC) == ""
    assert walltime_warning(end, NOW, 5 * 60, {"ends_at": end, "warned_at": None}, UTC) == ""


def test_the_warning_time_is_the_hubs_or_slurms_signal_rule():
    assert warn_seconds({"AIFACTORY_WARN_SECONDS": "90"}) == 90
    assert warn_seconds({"AIFACTORY_WALLTIME_MINUTES": "120"}) == 300
    assert warn_seconds({"AIFACTORY_WALLTIME_MINUTES": "4"}) == 120  # at most half the walltime
    assert warn_seconds({}) == 300


class FakeRunner:
    def __init__(self, answers):
        self.answers, self.calls = list(answers), []

    async def run(self, argv, **kwargs):
        self.calls.append(argv)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_the_jobs_end_is_slurms_start_plus_limit_cached_and_the_launchers_when_slurm_does_not_answer():
    """Real squeue captures (tests/unit/data/slurm/timelimit): job 1913 before and after a 30-minute extension."""
    clock = [0.0]
    runner = FakeRunner([(TIMELIMIT / "squeue-running-cpu.txt").read_text(),
                         (TIMELIMIT / "squeue-running-cpu-extended.txt").read_text(), NoAnswer("squeue did not answer")])
    end = JobEnd({"SLURM_JOB_ID": "1913", "AIFACTORY_JOB_END": "1000"}, runner, cache_s=30, clock=lambda: clock[0])

    async def scenario():
        first = await end.get()
        clock[0] = 29
        cached = await end.get()
        clock[0] = 31
        extended = await end.get()
        clock[0] = 62
        return first, cached, extended, await end.get()

    first, cached, extended, silent = asyncio.run(scenario())
    assert first == (datetime(2026, 12, 1, 23, 2, 49).timestamp(), "slurm") == cached  # 21:02:49 + 2:00:00
    assert extended == (datetime(2026, 12, 1, 23, 32, 49).timestamp(), "slurm")
    assert silent == (1000.0, "launcher")
    assert runner.calls == [job_limit_argv("1913")] * 3
    assert asyncio.run(JobEnd({}, FakeRunner([])).get()) == (None, "launcher")
    pending = JobEnd({"SLURM_JOB_ID": "1915", "AIFACTORY_JOB_END": "7"}, FakeRunner([(TIMELIMIT / "squeue-pending.txt").read_text()]))
    assert asyncio.run(pending.get()) == (7.0, "launcher")


def test_kernels_are_idle_since_their_last_activity_and_never_while_one_is_busy():
    assert kernels_idle_since([("idle", 100.0), ("idle", 250.0)], 50.0) == 250.0
    assert kernels_idle_since([], 50.0) == 50.0  # no kernel: since the last one went
    assert kernels_idle_since([("idle", 100.0), ("busy", 90.0)], 50.0) is None


def test_the_idle_warning_in_words():
    assert idle_warning("warn", 300, 3600) == (
        "Your GPUs have been idle for 55 minutes; this server stops in 5 minutes unless they are used.")
    assert idle_warning("keep", None, 3600) == ""
    assert "idle for 1 hour" in idle_warning("stop", 0, 3600)


def reading(index: int, util: float | None, used: int = 1024) -> GpuReading:
    return GpuReading(index, "AMD Instinct MI250X", f"0000:c{index}:00.0", util, used, 65520, "AMD")


def watch(env, samples, **kwargs):
    """A GpuWatch whose sampler answers `samples` in turn, on a clock the test moves."""
    clock = kwargs.pop("clock")
    answers = iter(samples)
    return GpuWatch(env, sample_s=60, clock=lambda: clock[0], sample=lambda _env: next(answers), **kwargs)


GPU_JOB = {"SLURM_JOB_ID": "812", "SLURM_JOB_GPUS": "2,3"}


def test_a_job_without_gpus_says_so_and_samples_nothing():
    gpus = GpuWatch({"SLURM_JOB_ID": "812"}, sample_s=5, kernels=lambda: 0.0, stop=lambda reason: None)
    assert gpus.devices == []
    assert gpus.snapshot()["message"] == "No GPU in this session" and gpus.snapshot()["gpus"] == []


def test_the_panel_gets_the_jobs_readings_and_their_history_or_the_samplers_sentence():
    clock = [NOW]
    gpus = watch(GPU_JOB, [[reading(2, 40.0), reading(3, 0.0, 0)], "GPU readings unavailable: rocm-smi failed"],
                 clock=clock, kernels=lambda: None, stop=lambda reason: None)
    asyncio.run(gpus.step())
    snapshot = gpus.snapshot()
    assert snapshot["devices"] == [2, 3] and snapshot["message"] == ""
    assert [(g["index"], g["utilization_percent"], g["memory_total_mib"]) for g in snapshot["gpus"]] == [
        (2, 40.0, 65520), (3, 0.0, 65520)]
    assert snapshot["history"] == [[NOW, [[40.0, 1024], [0.0, 0]]]]
    json.dumps(snapshot)  # what the endpoint sends
    clock[0] += 60
    asyncio.run(gpus.step())
    assert gpus.snapshot()["gpus"] == [] and gpus.snapshot()["message"] == "GPU readings unavailable: rocm-smi failed"


def test_idle_gpus_and_kernels_are_warned_then_the_server_stops_once():
    """One sample a minute on a 10-minute timeout, warned 3 minutes before: keep, warn, stop."""
    clock, stops = [NOW], []
    gpus = watch(GPU_JOB, [[reading(2, 1.0), reading(3, 0.0)]] * 20, clock=clock, kernels=lambda: NOW - 3600,
                 stop=stops.append, idle_timeout_s=600, idle_warn_s=180)
    actions = []
    for _ in range(12):
        asyncio.run(gpus.step())
        actions.append(gpus.decision.action)
        clock[0] += 60
    assert actions[:7] == ["keep"] * 7 and actions[7:10] == ["warn"] * 3 and actions[10] == "stop"
    assert stops == ["its GPUs and kernels were idle for 0:10:00"]  # once, however long the server takes
    assert gpus.idle_warning().startswith("Your GPUs and kernels were idle for 10 minutes")


def test_a_busy_gpu_or_a_busy_kernel_keeps_the_server():
    clock, stops = [NOW], []
    busy_gpu = watch(GPU_JOB, [[reading(2, 80.0), reading(3, 0.0)]] * 20, clock=clock, kernels=lambda: NOW - 3600,
                     stop=stops.append, idle_timeout_s=120, idle_warn_s=60)
    busy_kernel = watch(GPU_JOB, [[reading(2, 0.0), reading(3, 0.0)]] * 20, clock=clock, kernels=lambda: None,
                        stop=stops.append, idle_timeout_s=120, idle_warn_s=60)
    for _ in range(6):
        asyncio.run(busy_gpu.step())
        asyncio.run(busy_kernel.step())
        clock[0] += 60
    assert stops == [] and busy_gpu.decision.action == busy_kernel.decision.action == "keep"
    assert busy_gpu.idle_warning() == ""


def test_the_launcher_exits_with_the_idle_code_only_when_the_server_left_the_idle_reason(tmp_path: Path):
    marker = tmp_path / "stop-812.json"
    assert singleuser.stop_code(str(marker), 0) == 0
    marker.write_text(json.dumps({"reason": singleuser.GPU_IDLE_REASON, "message": "idle"}))
    assert singleuser.stop_code(str(marker), 0) == singleuser.GPU_IDLE_EXIT == 75
    marker.write_text(json.dumps({"reason": "something else"}))
    assert singleuser.stop_code(str(marker), 3) == 3
    marker.write_text("{half")
    assert singleuser.stop_code(str(marker), 0) == 0


def test_the_hub_says_a_server_stopped_for_its_idle_gpus():
    assert stop_message("FAILED", "812", "small-g-1", "75:0", 60) == (
        "Your server (Slurm job 812 on node small-g-1) stopped: its GPUs and kernels were idle for 01:00:00 "
        "[GPU_IDLE]")
    assert "see ~/.aifactory/jupyter-812.log" in stop_message("FAILED", "812", "small-g-1", "1:0", 60)
    assert "idle" not in stop_message("TIMEOUT", "812", "small-g-1", "75:0", 60)


def test_the_poller_reads_a_failed_jobs_exit_code_from_accounting_and_keeps_squeues_state_without_it():
    squeue = "812|N/A|FAILED|NonZeroExitCode|small-g-1|2026-12-01T14:00:00|small-g|1|2026-12-01T13:59:00|researcher1\n"
    sacct = "812|812|FAILED|75:0|project_465000001|researcher1|2026-12-01T14:00:00|2026-12-01T15:00:00|cpu=1\n"

    async def scenario(answers):
        poller = SlurmPoller(interval=3600, startup_interval=0.01, runner=FakeRunner(answers))
        poller.watch("812", submitted=False)
        view = await poller.fresh_view("812")
        poller._task.cancel()
        return view

    view = asyncio.run(scenario([squeue, sacct]))
    assert (view.kind, view.state, view.exit_code) == ("gone", "FAILED", "75:0")
    view = asyncio.run(scenario([squeue, ""]))  # not in accounting yet
    assert (view.kind, view.state, view.exit_code) == ("gone", "FAILED", "")
    view = asyncio.run(scenario([squeue, NoAnswer("sacct did not answer")]))
    assert (view.kind, view.state) == ("gone", "FAILED")


def test_the_extension_is_found_by_jupyter_server():
    (point,) = handlers._jupyter_server_extension_points()
    assert point["app"].name == "aifactory_workbench"
    config = json.loads((Path(handlers.__file__).parent / "jupyter-config" / "aifactory-workbench.json").read_text())
    assert config["ServerApp"]["jpserver_extensions"] == {"aifactory.extensions.workbench.handlers": True,
                                                          "aifactory.extensions.workbench.live_help": True}


def test_jupyter_server_proxys_port_routes_get_the_owner_check():
    """jupyter-server-proxy mounts /proxy/<port>/ without its host_allowlist (only /proxy/<host>:<port>/ has it);
    the workbench gives both port routes the check, and nothing else (the apps' own handlers keep theirs)."""
    from jupyter_server_proxy.config import ServerProxy
    from jupyter_server_proxy.handlers import LocalProxyHandler, setup_handlers
    from tornado.web import Application

    app = Application(base_url="/user/student1/")
    setup_handlers(app, ServerProxy())

    def allow(handler, host):
        return False

    assert handlers.guard_port_routes(app, allow) == 2
    routes = [rule for host in app.default_router.rules for rule in getattr(host.target, "rules", [])]
    local = [rule for rule in routes if rule.target is LocalProxyHandler]
    assert [rule.target_kwargs["host_allowlist"] for rule in local] == [allow, allow]
    assert all(rule.target_kwargs.get("host_allowlist") is not allow for rule in routes if rule not in local)
