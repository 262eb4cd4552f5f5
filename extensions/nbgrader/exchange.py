"""nbgrader's exchange API on top of the platform's per-course exchange.

nbgrader's Assignments panel in JupyterLab (and `nbgrader list|fetch_assignment|submit`,
and the formgrader's release and collect buttons) go through the classes named in
``ExchangeFactory``; these classes move files with `aifactory.courses.exchange.transfer`,
so every transfer happens as the user, under the group permissions of
``/srv/aifactory/exchange/<course>`` (see `aifactory.courses.exchange.layout`).

A user's courses are those whose exchange directory the kernel lets them enter,
which is what membership of ``course-<id>`` gives: a student sees the courses
they are enrolled in and no other, without a list to keep in step. A student's
own submissions are read back from ``inbound/<student>/``, which only they and
the course's trainers can read; feedback comes from ``feedback/<student>/``.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from nbgrader.exchange import abc
from traitlets import Bool

from aifactory.courses.exchange import transfer
from aifactory.courses.exchange.layout import CoursePaths
from aifactory.site import load_site_cached


class Exchange(abc.Exchange):
    """What every transfer shares: where the exchange is, which courses are mine."""

    path_includes_course = Bool(
        True, help="Fetch into <assignment_dir>/<course>/<assignment>, as `aifactory exchange` does."
    ).tag(config=True)

    def course_paths(self, course_id: str) -> CoursePaths:
        """Where the site keeps the course (its course_storage), as `aifactory exchange` finds it."""
        return CoursePaths.of(load_site_cached(), course_id)

    def my_courses(self) -> list[str]:
        """Courses whose exchange this user may enter, sorted."""
        root = Path(load_site_cached().course_storage.exchange_root)
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and os.access(p, os.R_OK | os.X_OK))

    def course_id(self) -> str:
        course_id = self.coursedir.course_id
        if not course_id:
            self.fail("No course id given (CourseDirectory.course_id)")
        if course_id not in self.my_courses():
            self.fail(f"You are not in course {course_id!r} (your courses: {', '.join(self.my_courses()) or 'none'})")
        return course_id

    def local_root(self, course_id: str) -> Path:
        """Where this course's assignments are, on the user's side."""
        root = Path(self.assignment_dir)
        return root / course_id if self.path_includes_course else root

    def init_src(self):
        pass

    def init_dest(self):
        pass

    def copy_files(self):
        pass

    def _run(self, what):
        try:
            return what()
        except transfer.ExchangeError as exc:
            self.fail(str(exc))


class ExchangeFetchAssignment(abc.ExchangeFetchAssignment, Exchange):
    def copy_files(self):
        course_id = self.course_id()
        dest = self._run(lambda: transfer.fetch(self.course_paths(course_id), self.coursedir.assignment_id,
                                                self.local_root(course_id)))
        self.log.info("Fetched as: %s %s into %s", course_id, self.coursedir.assignment_id, dest)


class ExchangeSubmit(abc.ExchangeSubmit, Exchange):
    def copy_files(self):
        course_id = self.course_id()
        dest = self._run(lambda: transfer.submit(self.course_paths(course_id), self.coursedir.assignment_id,
                                                 self.local_root(course_id)))
        self.log.info("Submitted as: %s %s %s", course_id, self.coursedir.assignment_id, dest.name)


def _latest(submissions: list[Path]) -> Path | None:
    return max(submissions, key=lambda p: p.name) if submissions else None


def _my_submissions(paths: CoursePaths, assignment: str | None) -> list[Path]:
    mine = Path(paths.inbound_of(transfer.me()))
    if not os.access(mine, os.R_OK | os.X_OK):
        return []
    pattern = f"{assignment}+*" if assignment else "*+*"
    return sorted(p for p in mine.glob(pattern) if p.is_dir() and not p.name.startswith("."))


def _timestamp(submission: Path) -> str:
    stated = transfer.read_timestamp(submission)   # bounded, a regular file only: a FIFO cannot hang the list
    if stated is not None:
        return stated
    when = datetime.fromtimestamp(submission.lstat().st_mtime, timezone.utc)
    return transfer.format_timestamp(when)


class ExchangeFetchFeedback(abc.ExchangeFetchFeedback, Exchange):
    """Released feedback -> <assignment>/feedback/<timestamp of my latest submission>/, where
    nbgrader's Assignments panel looks for it."""

    def copy_files(self):
        course_id, assignment = self.course_id(), self.coursedir.assignment_id
        paths = self.course_paths(course_id)
        latest = _latest(_my_submissions(paths, assignment))
        dest = None
        if latest is not None:
            dest = transfer.copy_feedback(paths, assignment,
                                          self.local_root(course_id) / assignment / "feedback" / _timestamp(latest))
        if dest is None:
            self.log.warning("No feedback available for %s %s", course_id, assignment)
            return
        self.log.info("Fetched feedback: %s %s into %s", course_id, assignment, dest)


class ExchangeList(abc.ExchangeList, Exchange):
    """Released assignments of my courses, or (cached) my own submissions with their feedback."""

    def courses(self) -> list[str]:
        mine = self.my_courses()
        wanted = self.coursedir.course_id
        return [wanted] if wanted and wanted in mine else ([] if wanted else mine)

    def released(self) -> list[dict]:
        out = []
        for course_id in self.courses():
            outbound = Path(self.course_paths(course_id).outbound)
            wanted = self.coursedir.assignment_id
            for folder in sorted(outbound.iterdir()) if outbound.is_dir() else []:
                if folder.name.startswith(".") or not folder.is_dir() or (wanted and folder.name != wanted):
                    continue
                local = self.local_root(course_id) / folder.name
                where = local.resolve() if local.exists() else folder
                out.append({
                    "course_id": course_id,
                    "assignment_id": folder.name,
                    "status": "fetched" if local.exists() else "released",
                    "path": str(where),
                    "notebooks": [{"notebook_id": nb.stem, "path": str(nb)} for nb in sorted(where.glob("*.ipynb"))],
                })
        return out

    def submitted(self) -> list[dict]:
        out = []
        me = transfer.me()
        for course_id in self.courses():
            paths = self.course_paths(course_id)
            by_assignment: dict[str, list[Path]] = {}
            for sub in _my_submissions(paths, self.coursedir.assignment_id or None):
                by_assignment.setdefault(sub.name.split("+", 1)[0], []).append(sub)
            for assignment, subs in sorted(by_assignment.items()):
                released_feedback = Path(paths.feedback_of(me)) / assignment
                latest = _latest(subs)
                entries = [self._submission(course_id, me, assignment, sub, released_feedback if sub == latest else None)
                           for sub in subs]
                entries.sort(key=lambda e: e["timestamp"])
                out.append({"course_id": course_id, "student_id": me, "assignment_id": assignment,
                            "status": "submitted", "submissions": entries})
        return out

    def _submission(self, course_id, me, assignment, sub: Path, released_feedback: Path | None) -> dict:
        timestamp = _timestamp(sub)
        local_feedback = self.local_root(course_id) / assignment / "feedback" / timestamp
        notebooks = []
        for nb in sorted(sub.glob("*.ipynb")):
            local = local_feedback / f"{nb.stem}.html"
            exchange = released_feedback / f"{nb.stem}.html" if released_feedback else None
            has_local, has_exchange = local.is_file(), bool(exchange and exchange.is_file())
            notebooks.append({
                "notebook_id": nb.stem, "path": str(nb),
                "has_local_feedback": has_local, "has_exchange_feedback": has_exchange,
                "local_feedback_path": str(local) if has_local else None,
                "feedback_updated": has_local and has_exchange and local.read_bytes() != exchange.read_bytes(),
            })
        has_local = bool(notebooks) and all(n["has_local_feedback"] for n in notebooks)
        return {
            "course_id": course_id, "student_id": me, "assignment_id": assignment, "timestamp": timestamp,
            "status": "submitted", "path": str(sub), "notebooks": notebooks,
            "has_local_feedback": has_local,
            "has_exchange_feedback": bool(notebooks) and all(n["has_exchange_feedback"] for n in notebooks),
            "feedback_updated": any(n["feedback_updated"] for n in notebooks),
            "local_feedback_path": str(local_feedback) if has_local else None,
        }

    def list_files(self):
        if self.inbound:
            self.fail("Trainers list submissions with `aifactory grade` or the formgrader")
        if self.cached:
            found = self.submitted()
            self.log.info("Submitted assignments:")
            for a in found:
                for sub in a["submissions"]:
                    self.log.info("%s %s %s %s", a["course_id"], a["student_id"], a["assignment_id"], sub["timestamp"])
        else:
            found = self.released()
            self.log.info("Released assignments:")
            for a in found:
                self.log.info("%s %s%s", a["course_id"], a["assignment_id"],
                              " (already downloaded)" if a["status"] == "fetched" else "")
        return found

    def remove_files(self):
        self.fail("Releases are removed by the course's trainers, not through nbgrader list --remove")


# ---- the trainer's side: the formgrader's release, collect and feedback buttons ----------------

class ExchangeReleaseAssignment(abc.ExchangeReleaseAssignment, Exchange):
    def copy_files(self):
        course_id = self.coursedir.course_id
        dest = self._run(lambda: transfer.release(self.course_paths(course_id), self.coursedir.assignment_id))
        self.log.info("Released as: %s", dest)


class ExchangeCollect(abc.ExchangeCollect, Exchange):
    def copy_files(self):
        from aifactory.courses.grading import nbgrader_steps

        course_id, assignment = self.coursedir.course_id, self.coursedir.assignment_id
        paths = self.course_paths(course_id)
        due = nbgrader_steps.duedate(Path(paths.course_dir), course_id, assignment)
        for got in self._run(lambda: transfer.collect(paths, assignment, due)):
            if got.refused:
                self.log.warning("Refused from %s %s: %s", got.submission.student, assignment, got.refused)
            if got.accepted:
                self.log.info("Collected %s %s (%s)", got.submission.student, assignment,
                              f"{got.seconds_late:.0f} s late" if got.seconds_late else "on time")


class ExchangeReleaseFeedback(abc.ExchangeReleaseFeedback, Exchange):
    def copy_files(self):
        course_id = self.coursedir.course_id
        students = transfer.release_feedback(self.course_paths(course_id), self.coursedir.assignment_id)
        self.log.info("Released feedback to: %s", ", ".join(students) or "nobody")
