"""Reclaiming idle GPUs: the decision on utilisation series shaped like real sessions, and its rules as properties.

The series are what `sampler.Series` records every 30 s (the max utilisation over the job's GPUs). No GPU is
here, so their shapes are built, not captured: a training run that ends, a bursty inference notebook, a
sampler that stalls.
"""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from aifactory.extensions.workbench.idle import MAX_GAP_S, Decision, duration, reclaim

HOUR = 3600.0
TIMEOUT = HOUR  # demo.yaml's gpu_idle_timeout 1:00:00
WARN = 600.0
START = 1_780_000_000.0
PERIOD = 30.0


def series(*stretches: tuple[float, callable]) -> list[tuple[float, float]]:
    """Samples every 30 s from START: each stretch lasts its seconds, its function gives the utilisation at step i."""
    samples, t, step = [], START, 0
    for seconds, utilization in stretches:
        end = t + seconds
        while t < end:
            samples.append((t, float(utilization(step))))
            t, step = t + PERIOD, step + 1
    return samples


def training(step: int) -> float:
    return 93 + step % 7  # 93..99 %: a data-loader-bound training loop


def idle(step: int) -> float:
    return step % 3  # 0..2 %: the driver's own housekeeping


# A two-hour training run, then the notebook is left open for 90 minutes.
TRAINING_THEN_IDLE = series((2 * HOUR, training), (90 * 60, idle))
TRAINING_END = START + 2 * HOUR
KERNELS_IDLE = TRAINING_END + 60  # the cell finished a minute after the last step


def decide(samples, now, kernels_idle_since=KERNELS_IDLE, **kwargs):
    return reclaim([s for s in samples if s[0] <= now], kernels_idle_since, now, TIMEOUT, WARN, **kwargs)


def test_a_finished_training_run_is_kept_then_warned_then_stopped():
    assert decide(TRAINING_THEN_IDLE, TRAINING_END - 60).action == "keep"  # still training
    assert decide(TRAINING_THEN_IDLE, TRAINING_END + 30 * 60).action == "keep"
    warned = decide(TRAINING_THEN_IDLE, KERNELS_IDLE + 55 * 60)
    assert (warned.action, warned.seconds_left) == ("warn", 300.0)
    assert "stops in 0:05:00" in warned.reason
    stopped = decide(TRAINING_THEN_IDLE, KERNELS_IDLE + HOUR)
    assert stopped == Decision("stop", 0.0, "its GPUs and kernels were idle for 1:00:00")


def test_busy_kernels_keep_idle_gpus():
    assert decide(TRAINING_THEN_IDLE, TRAINING_END + 69 * 60, kernels_idle_since=None).action == "keep"


def test_the_later_of_gpus_and_kernels_counts():
    # The GPUs went idle at the end of training, but the user ran CPU cells until 20 minutes later.
    later = TRAINING_END + 20 * 60
    assert decide(TRAINING_THEN_IDLE, TRAINING_END + 65 * 60, kernels_idle_since=later).action == "keep"
    assert decide(TRAINING_THEN_IDLE, later + HOUR - 1, kernels_idle_since=later).action == "warn"


def test_a_bursty_inference_notebook_is_never_warned():
    # Every 10 minutes somebody sends a batch: a minute at 40-70 %, the rest of the time 0-2 %.
    bursty = series(*[(60.0, lambda i: 40 + 10 * (i % 4)) if k % 2 == 0 else (9 * 60.0, idle) for k in range(40)])
    for now in range(int(START + HOUR), int(bursty[-1][0]), 97):
        assert decide(bursty, float(now), kernels_idle_since=START).action == "keep"


def test_a_sampler_gap_is_not_evidence_of_idleness():
    # Idle for two hours, but the sampler stalled for 20 minutes (node under load, tool hanging) 40 minutes ago.
    before, after = series((80 * 60, idle)), series((2 * HOUR, idle))
    gap_end = START + 80 * 60 + 20 * 60
    samples = before + [(t + gap_end - START, u) for t, u in after]
    now = START + 2 * HOUR
    assert decide(samples, now, kernels_idle_since=START).action == "keep"
    # An hour of unbroken readings after the gap is evidence again.
    assert decide(samples, gap_end + HOUR, kernels_idle_since=START).action == "stop"


def test_readings_that_stopped_keep_the_server():
    samples = series((2 * HOUR, idle))
    last = samples[-1][0]
    assert decide(samples, last + MAX_GAP_S, kernels_idle_since=START).action == "stop"
    assert decide(samples, last + MAX_GAP_S + 1, kernels_idle_since=START).action == "keep"


def test_the_threshold_itself_is_busy():
    at_threshold = series((2 * HOUR, lambda i: 5.0 if i == 200 else 1.0))
    now = START + 2 * HOUR
    assert decide(at_threshold, now, kernels_idle_since=START).action == "keep"
    assert decide(at_threshold, now, kernels_idle_since=START, threshold_percent=5.5).action == "stop"


def test_no_samples_no_stop():
    assert reclaim([], START, START + 10 * HOUR, TIMEOUT, WARN) == Decision("keep", reason=(
        "the GPUs are busy or their readings stopped"))


def test_duration():
    assert [duration(s) for s in (0, 59, 3600, 5400.7, 90061)] == ["0:00:00", "0:00:59", "1:00:00", "1:30:00",
                                                                   "25:01:01"]


# --- the rules, for any series ----------------------------------------------------------------------------

utilizations = st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=200)
gaps = st.lists(st.floats(1, 400), min_size=1, max_size=200)


@st.composite
def sessions(draw):
    """A series of samples at irregular intervals ending near `now`, and when the kernels went idle."""
    steps, values = draw(gaps), draw(utilizations)
    times, t = [], START
    for step in steps[: len(values)]:
        t += step
        times.append(t)
    now = times[-1] + draw(st.floats(0, 400))
    kernels = draw(st.one_of(st.none(), st.floats(START - HOUR, now)))
    return list(zip(times, values)), now, kernels


@given(sessions(), st.floats(60, 2 * HOUR), st.floats(0, HOUR))
def test_a_busy_sample_in_the_window_never_stops(session, timeout, warn):
    samples, now, kernels = session
    assume(any(u >= 5.0 and now - timeout < t <= now for t, u in samples))
    assert reclaim(samples, kernels, now, timeout, warn).action != "stop"


@given(sessions(), st.floats(60, 2 * HOUR), st.floats(0, HOUR))
def test_a_busy_sample_before_the_warning_window_keeps(session, timeout, warn):
    samples, now, kernels = session
    assume(warn < timeout and any(u >= 5.0 and now - (timeout - warn) < t <= now for t, u in samples))
    assert reclaim(samples, kernels, now, timeout, warn).action == "keep"


@given(sessions(), st.floats(60, 2 * HOUR), st.floats(0, HOUR))
def test_busy_kernels_always_keep(session, timeout, warn):
    samples, now, _ = session
    assert reclaim(samples, None, now, timeout, warn).action == "keep"


@given(sessions(), st.floats(60, 2 * HOUR), st.floats(0, HOUR))
def test_a_stop_stands_on_an_unbroken_idle_window(session, timeout, warn):
    samples, now, kernels = session
    decision = reclaim(samples, kernels, now, timeout, warn)
    if decision.action != "stop":
        return
    window = [(t, u) for t, u in samples if now - timeout <= t <= now]
    assert all(u < 5.0 for _, u in window)
    assert kernels is not None and now - kernels >= timeout
    covered = [t for t, _ in samples if t <= now - timeout]  # a sample at or before the window's start ...
    assert covered
    times = [covered[-1]] + [t for t, _ in window] + [now]  # ... and no gap over the bound up to now
    assert all(b - a <= MAX_GAP_S for a, b in zip(times, times[1:]))


@given(sessions(), st.floats(60, 2 * HOUR), st.floats(0, HOUR))
def test_a_warning_counts_down_within_the_warning_window(session, timeout, warn):
    samples, now, kernels = session
    decision = reclaim(samples, kernels, now, timeout, warn)
    if decision.action == "warn":
        assert 0 < decision.seconds_left <= warn


@given(st.floats(60, 2 * HOUR), st.floats(0, HOUR), st.floats(0, 4.99))
def test_steady_idleness_for_the_timeout_stops(timeout, warn, level):
    samples = [(START + PERIOD * i, level) for i in range(int(timeout // PERIOD) + 2)]
    now = samples[-1][0]
    assert reclaim(samples, START, now, timeout, warn).action == "stop"
