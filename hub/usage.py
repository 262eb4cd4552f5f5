"""`aifactory usage`: core-hours and GPU-hours per project and user, from Slurm accounting.

One `sacct` call (argv list) lists the allocations of every user in the window;
`parse_sacct` turns its text into per-job usage, clipped to the window so that a
job running across `--since` counts only its part inside; `summarize` sums per
(project, user). A table goes to stdout, a PNG plot to `--output`.
Parsing, summing and formatting are pure; only `read_sacct` and `plot` do I/O.
"""

from __future__ import annotations

import subprocess
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from aifactory.site.schema import Site

SACCT_FIELDS = ["JobIDRaw", "Account", "User", "Start", "End", "AllocTRES"]
SACCT_TIME = "%Y-%m-%dT%H:%M:%S"
GPU_TRES = "gres/gpu"


@dataclass(frozen=True)
class JobUsage:
    job_id: str
    project: str
    user: str
    cpus: int
    gpus: int
    seconds: float

    @property
    def core_hours(self) -> float:
        return self.cpus * self.seconds / 3600

    @property
    def gpu_hours(self) -> float:
        return self.gpus * self.seconds / 3600


@dataclass(frozen=True)
class UsageRow:
    project: str
    user: str
    core_hours: float
    gpu_hours: float


def sacct_argv(since: datetime, until: datetime, accounts: tuple[str, ...] = ()) -> list[str]:
    """Every user's allocations (not steps) that overlap [since, until], parsable; only `accounts` if given."""
    return [
        "sacct", "--allusers", "--allocations", "--noheader", "--parsable2",
        f"--starttime={since.strftime(SACCT_TIME)}", f"--endtime={until.strftime(SACCT_TIME)}",
        f"--format={','.join(SACCT_FIELDS)}",
        *([f"--accounts={','.join(accounts)}"] if accounts else []),
    ]


def parse_since(text: str, now: datetime) -> datetime:
    """'30d', '12h', '2026-01-31' or '2026-01-31T08:00:00' -> a datetime."""
    if text[:-1].isdigit() and text[-1] in "dh":
        return now - timedelta(**{"days" if text[-1] == "d" else "hours": int(text[:-1])})
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since {text!r}: give a date (2026-01-31), a time (2026-01-31T08:00) or 30d / 12h") from None


def _tres(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split(",") if "=" in item)


def _time(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, SACCT_TIME)
    except ValueError:  # Unknown, None: not started or still running
        return None


def parse_sacct(text: str, since: datetime, until: datetime) -> list[JobUsage]:
    """`sacct_argv`'s output -> the usage of each job inside [since, until]."""
    jobs = []
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) != len(SACCT_FIELDS):
            continue
        job_id, account, user, start_text, end_text, alloc = fields
        start = _time(start_text)
        if start is None or not alloc:
            continue  # never ran: nothing allocated
        end = _time(end_text) or until
        seconds = (min(end, until) - max(start, since)).total_seconds()
        if seconds <= 0:
            continue
        tres = _tres(alloc)
        jobs.append(JobUsage(job_id, account, user, int(tres.get("cpu", 0)), int(tres.get(GPU_TRES, 0)), seconds))
    return jobs


def summarize(jobs: list[JobUsage]) -> list[UsageRow]:
    """Sum per (project, user), sorted by project then user."""
    sums: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for job in jobs:
        total = sums[job.project, job.user]
        total[0] += job.core_hours
        total[1] += job.gpu_hours
    return [UsageRow(p, u, c, g) for (p, u), (c, g) in sorted(sums.items())]


def _share(used: float, allocation: int | None) -> str:
    return f"{100 * used / allocation:.1f}%" if allocation else "-"


def format_table(rows: list[UsageRow], site: Site | None = None) -> str:
    """A text table: users under their project, the project's total against its allocation."""
    allocations = {p.name: p for p in site.projects} if site else {}
    lines = [f"{'project':<22} {'user':<14} {'core-hours':>12} {'GPU-hours':>11} {'of cpu alloc':>13} {'of gpu alloc':>13}"]
    projects = sorted({r.project for r in rows})
    for project in projects:
        mine = [r for r in rows if r.project == project]
        for r in mine:
            lines.append(f"{project:<22} {r.user:<14} {r.core_hours:>12.2f} {r.gpu_hours:>11.2f}")
        cores, gpus = sum(r.core_hours for r in mine), sum(r.gpu_hours for r in mine)
        alloc = allocations.get(project)
        lines.append(
            f"{project:<22} {'(total)':<14} {cores:>12.2f} {gpus:>11.2f} "
            f"{_share(cores, alloc.cpu_hours if alloc else None):>13} {_share(gpus, alloc.gpu_hours if alloc else None):>13}"
        )
    if not rows:
        lines.append("(no jobs ran in this period)")
    return "\n".join(lines)


def read_sacct(since: datetime, until: datetime, timeout: float = 60) -> str:
    result = subprocess.run(sacct_argv(since, until), capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"sacct failed: {result.stderr.strip() or result.returncode}")
    return result.stdout


def plot(rows: list[UsageRow], path: str, title: str) -> None:
    """Two bar charts (core-hours, GPU-hours) per project, each bar stacked by user."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    projects = sorted({r.project for r in rows}) or ["(none)"]
    users = sorted({r.user for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), constrained_layout=True)
    for ax, attr, label in ((axes[0], "core_hours", "core-hours"), (axes[1], "gpu_hours", "GPU-hours")):
        bottom = [0.0] * len(projects)
        for user in users:
            values = [sum(getattr(r, attr) for r in rows if r.project == p and r.user == user) for p in projects]
            ax.bar(projects, values, bottom=bottom, label=user)
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_ylabel(label)
        ax.set_title(label)
        ax.tick_params(axis="x", labelrotation=20)
    if users:
        axes[1].legend(title="user", loc="upper right")
    fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(site: Site | None, since: datetime, until: datetime, output: str | None) -> str:
    """Read Slurm accounting, return the table; write the plot if asked."""
    rows = summarize(parse_sacct(read_sacct(since, until), since, until))
    if output:
        plot(rows, output, f"Usage {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M}")
    return format_table(rows, site)
