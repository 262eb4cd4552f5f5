"""`aifactory usage`: core-hours and GPU-hours per project and user, from Slurm accounting.

One `sacct` call (through the `SlurmRunner`) lists the allocations of every user in the
window; `aifactory.slurm` parses it and clips each job to the window (a job running across
`--since` counts only its part inside) and sums per (project, user), as the spawn page
does. A table goes to stdout, a PNG plot to `--output`. Formatting is pure; only `report`
and `plot` do I/O.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from aifactory.site.schema import Site
from aifactory.slurm.accounting import UsageRow, job_usage, summarize
from aifactory.slurm.runner import SlurmRunner
from aifactory.slurm.sacct import parse_sacct, sacct_argv


def parse_since(text: str, now: datetime) -> datetime:
    """'30d', '12h', '2026-01-31' or '2026-01-31T08:00:00' -> a datetime."""
    if text[:-1].isdigit() and text[-1] in "dh":
        return now - timedelta(**{"days" if text[-1] == "d" else "hours": int(text[:-1])})
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since {text!r}: give a date (2026-01-31), a time (2026-01-31T08:00) or 30d / 12h") from None


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


def report(site: Site | None, since: datetime, until: datetime, output: str | None,
           runner: SlurmRunner = SlurmRunner(timeout=60)) -> str:
    """Read Slurm accounting, return the table; write the plot if asked (raises SlurmError)."""
    text = runner.run_sync(sacct_argv(since=since, until=until, all_users=True))
    rows = summarize(job_usage(parse_sacct(text), since, until))
    if output:
        plot(rows, output, f"Usage {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M}")
    return format_table(rows, site)
