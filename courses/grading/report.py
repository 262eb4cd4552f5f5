"""`aifactory course report <course>`: every student's score per assignment (CSV) and the
distribution of their totals (PNG). Rows and text are pure; reading the gradebook and
drawing are the edges."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Score:
    student: str
    assignment: str
    score: float
    max_score: float
    seconds_late: float = 0.0


@dataclass(frozen=True)
class Table:
    assignments: list[str]          # in the gradebook's order (due date, then name)
    max_scores: dict[str, float]    # assignment -> points available
    rows: list[dict]                # one per student: student, <assignment>..., total, max, percent, late


def table(students: list[str], assignments: list[tuple[str, float]], scores: list[Score]) -> Table:
    """Students x assignments; a missing submission counts 0 in the total and shows empty. Pure."""
    found = {(s.student, s.assignment): s for s in scores}
    names = [name for name, _ in assignments]
    available = dict(assignments)
    total_max = sum(available.values())
    rows = []
    for student in sorted(students):
        row: dict = {"student": student}
        total, late = 0.0, 0
        for name in names:
            got = found.get((student, name))
            row[name] = None if got is None else got.score
            total += got.score if got else 0.0
            late += bool(got and got.seconds_late > 0)
        row.update(total=total, max=total_max, percent=100.0 * total / total_max if total_max else 0.0, late=late)
        rows.append(row)
    return Table(names, available, rows)


def _number(x) -> str:
    return "" if x is None else f"{x:g}"


def csv_text(t: Table) -> str:
    """The table as CSV: one row per student, a last row with the points available. Pure."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["student", *t.assignments, "total", "max", "percent", "late_submissions"])
    for row in t.rows:
        writer.writerow([row["student"], *(_number(row[a]) for a in t.assignments), _number(row["total"]),
                         _number(row["max"]), f"{row['percent']:.1f}", row["late"]])
    writer.writerow(["(max)", *(_number(t.max_scores[a]) for a in t.assignments),
                     _number(sum(t.max_scores.values())), "", "", ""])
    return out.getvalue()


def read_gradebook(course_dir: Path, course_id: str) -> Table:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{course_dir}/gradebook.db", course_id) as gb:
        students = [s.id for s in gb.students]
        assignments = [(a.name, a.max_score) for a in gb.assignments]
        scores = []
        for name, _ in assignments:
            for student in students:
                try:
                    sub = gb.find_submission(name, student)
                except MissingEntry:
                    continue
                scores.append(Score(student, name, sub.score, sub.max_score, sub.total_seconds_late))
    return table(students, assignments, scores)


def plot(t: Table, course_id: str, path: Path) -> None:
    """Histogram of the students' total percentages, in 10-point bins, written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    percents = [row["percent"] for row in t.rows]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.hist(percents, bins=list(range(0, 101, 10)), color="#3b6ea8", edgecolor="white")
    mean = sum(percents) / len(percents) if percents else 0.0
    ax.set_title(f"{course_id}: {len(percents)} students, {len(t.assignments)} assignments, mean {mean:.0f}%")
    ax.set_xlabel("total score (% of the points available)")
    ax.set_ylabel("students")
    ax.set_xlim(0, 100)
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def write_report(course_dir: Path, course_id: str, out_dir: Path) -> tuple[Path, Path, Table]:
    t = read_gradebook(course_dir, course_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out_dir / f"{course_id}-grades.csv", out_dir / f"{course_id}-grades.png"
    csv_path.write_text(csv_text(t))
    plot(t, course_id, png_path)
    return csv_path, png_path, t
