"""A course's JupyterLab by role: a student sees a student's tools, a trainer the instructor's too.

nbgrader's JupyterLab extension has six plugins. Three are the instructor's (`INSTRUCTOR_PLUGINS`):
the *Create Assignment* side panel, the *Formgrader* tab and the *Courses* list (the courses a user
grades). A student's pages leave them out; the *Assignments* list and *Validate* stay.

Who is a student: the launcher (`aifactory.spawners.singleuser.unused_extensions`) leaves nbgrader's
formgrader server extension off for a member of a course (Unix group `course-<id>`) who trains no course
(no group `course-<id>-trainers`). Those are the job's Unix groups, which Slurm sets from the system's
group database; no user changes them. The pages hide what the server does not serve.

Hiding is not the guard: the user owns the server and the browser, and could switch the plugins back on
(their own ~/.jupyter config). What a student would reach then refuses them: the course's formgrader is
the hub's service, which only the course's trainers may open (403 for a student, `hub/roles.py`), and the
course's folder (gradebook, source, submissions) belongs to the trainers' Unix group alone.

A course server (a profile some course uses, `AIFACTORY_COURSES` from the hub) of one of those courses'
members opens on nbgrader's assignment list: the page config carries this server's start
(`START_OPTION`), and the workbench's `course` plugin opens the list once for each start.

Standard library only: this runs in every server's start (`jupyter_server_config.py`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, MutableMapping
from pathlib import Path

INSTRUCTOR_PLUGINS = (
    "@jupyter/nbgrader:create-assignment",
    "@jupyter/nbgrader:formgrader",
    "@jupyter/nbgrader:course-list",
)
# The server extensions whose absence marks a student's server: no formgrader, the assignment list on.
FORMGRADER_EXTENSION = "nbgrader.server_extensions.formgrader"
ASSIGNMENTS_EXTENSION = "nbgrader.server_extensions.assignment_list"
# The page config option the lab extension reads (extensions/workbench/lab/src/course.ts).
START_OPTION = "aifactoryCourseStart"
MEMBERS_PREFIX = "course-"

# Next to the installed jupyter_server_config.py: the page config that hides the instructor's plugins.
STUDENT_CONFIG = "aifactory-student"


def is_student_server(off: Iterable[str]) -> bool:
    """Whether the launcher left the formgrader off while nbgrader serves this user (a course's student)."""
    off = set(off)
    return FORMGRADER_EXTENSION in off and ASSIGNMENTS_EXTENSION not in off


def student_page_config() -> dict:
    """JupyterLab's page config for a student (installed as <STUDENT_CONFIG>/labconfig/page_config.json)."""
    return {"disabledExtensions": dict.fromkeys(INSTRUCTOR_PLUGINS, True)}


def profile_courses(value: str | None) -> list[str]:
    """The course ids in `AIFACTORY_COURSES` (comma-separated; the hub names the courses of the profile)."""
    return [name for name in (value or "").split(",") if name]


def in_course_of_profile(groups: Iterable[str], courses: Iterable[str]) -> bool:
    """Whether the user belongs to one of the profile's courses (its Unix group `course-<id>`)."""
    return bool({MEMBERS_PREFIX + course for course in courses} & set(groups))


def configure(c, off: Iterable[str], env: MutableMapping[str, str], config_dir: Path,
              groups: Iterable[str] | None = None, now: float | None = None) -> None:
    """For a student, put the student's page config first in `env`'s JUPYTER_CONFIG_PATH (JupyterLab reads
    labconfig/ there at each page, before the user's own); on a course server, put this start's id into
    every page's config (`START_OPTION`) through the server's `c.ServerApp.tornado_settings`."""
    if is_student_server(off):
        env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(
            filter(None, [str(config_dir / STUDENT_CONFIG), env.get("JUPYTER_CONFIG_PATH")]))
    courses = profile_courses(env.get("AIFACTORY_COURSES"))
    if groups is None:
        from aifactory.spawners.singleuser import group_names  # the launcher's reading of the job's groups

        groups = group_names()
    if courses and in_course_of_profile(groups, courses):
        start = f"{env.get('SLURM_JOB_ID', 'local')}-{int(time.time() if now is None else now)}"
        # A plain dict: JupyterHub's server extension looks into it with `in` (a lazy `.update` would break it).
        current = c.ServerApp.get("tornado_settings")
        settings = dict(current) if isinstance(current, dict) else {}
        settings["page_config_data"] = {**settings.get("page_config_data", {}), START_OPTION: start}
        c.ServerApp.tornado_settings = settings
