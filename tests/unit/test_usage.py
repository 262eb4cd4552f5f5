"""Usage from Slurm accounting: clipping sacct records to the window, sums, the table and the plot."""

from __future__ import annotations

from datetime import datetime

import pytest

from aifactory.site import parse_site
from aifactory.hub.usage import format_table, parse_since, plot
from aifactory.slurm.accounting import JobUsage, UsageRow, job_usage, summarize
from aifactory.slurm.sacct import parse_sacct

from .sites import SMALL_SITE

SINCE = datetime(2026, 11, 24, 12, 0, 0)
UNTIL = datetime(2026, 11, 24, 18, 0, 0)
# sacct_argv's format (real output: tests/unit/data/slurm/), with the cases that need care.
SACCT = """\
3|3|COMPLETED|0:0|proj_a|bob|2026-11-24T15:00:00|2026-11-24T16:00:00|billing=1,cpu=4,gres/gpu=2,mem=1G,node=1
7|7|COMPLETED|0:0|proj_a|alice|2026-11-24T13:00:00|2026-11-24T13:30:00|billing=1,cpu=2,mem=1.50G,node=1
8|8|COMPLETED|0:0|proj_a|alice|2026-11-24T11:00:00|2026-11-24T13:00:00|billing=1,cpu=1,mem=1.50G,node=1
9|9|RUNNING|0:0|proj_a|alice|2026-11-24T17:00:00|Unknown|billing=1,cpu=1,mem=1.50G,node=1
11|11|CANCELLED by 0|0:0|proj_a|bob|2026-11-24T15:44:39|2026-11-24T15:44:39|
12|12|PENDING|0:0|proj_b|bob|Unknown|Unknown|billing=1,cpu=1,node=1
13|13|COMPLETED|0:0|proj_b|bob|2026-11-24T10:00:00|2026-11-24T11:00:00|billing=1,cpu=8,node=1
"""


def test_usage_clips_jobs_to_the_window_and_skips_jobs_that_never_ran():
    assert job_usage(parse_sacct(SACCT), SINCE, UNTIL) == [
        JobUsage("3", "proj_a", "bob", cpus=4, gpus=2, seconds=3600),
        JobUsage("7", "proj_a", "alice", cpus=2, gpus=0, seconds=1800),
        JobUsage("8", "proj_a", "alice", cpus=1, gpus=0, seconds=3600),  # the hour inside the window
        JobUsage("9", "proj_a", "alice", cpus=1, gpus=0, seconds=3600),  # still running: up to UNTIL
    ]


def test_summary_per_project_and_user():
    jobs = [JobUsage("1", "p", "u", 4, 2, 3600), JobUsage("2", "p", "u", 2, 0, 1800), JobUsage("3", "a", "v", 1, 0, 36)]
    assert summarize(jobs) == [UsageRow("a", "v", 0.01, 0.0), UsageRow("p", "u", 5.0, 2.0)]


def test_table_shows_totals_against_allocations():
    rows = [UsageRow("proj_a", "alice", 25.0, 0.0), UsageRow("proj_a", "bob", 5.0, 2.0)]
    assert format_table(rows, parse_site(SMALL_SITE)).splitlines() == [
        "project                user             core-hours   GPU-hours  of cpu alloc  of gpu alloc",
        "proj_a                 alice                 25.00        0.00",
        "proj_a                 bob                    5.00        2.00",
        "proj_a                 (total)               30.00        2.00         30.0%             -",
    ]


def test_an_empty_period_says_so():
    assert format_table([]).splitlines()[-1] == "(no jobs ran in this period)"


@pytest.mark.parametrize(("text", "expected"), [
    ("2d", datetime(2026, 11, 22, 18, 0)), ("6h", SINCE), ("2026-11-01", datetime(2026, 11, 1)),
    ("2026-11-24T12:00:00", SINCE),
])
def test_since(text, expected):
    assert parse_since(text, UNTIL) == expected


def test_a_bad_since_is_a_sentence():
    with pytest.raises(ValueError, match="give a date"):
        parse_since("last week", UNTIL)


def test_plot_is_a_png(tmp_path):
    path = tmp_path / "usage.png"
    plot([UsageRow("proj_a", "alice", 25.0, 0.0), UsageRow("proj_a", "bob", 5.0, 2.0)], str(path), "t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
