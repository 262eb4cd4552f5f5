"""A course's JupyterLab by role (issue #16, point 5): which plugins a student's pages leave out, which server
opens on the assignment list, and that JupyterLab's own page config reader keeps them out whatever the
user's labconfig says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from traitlets.config import Config

from aifactory.extensions.workbench import course_lab
from aifactory.site import load_site
from aifactory.site.identity import members_group, trainers_group
from aifactory.site.load import DEMO_SITE
from aifactory.spawners import singleuser
from aifactory.spawners.script import workbench_env

from tests.conftest import REPO

CONFIG_DIR = REPO / "extensions" / "workbench" / "jupyter-config"
STUDENT_PAGE = CONFIG_DIR / "student" / "labconfig" / "page_config.json"
NBGRADER_LAB = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "@jupyter" / "nbgrader"
STUDENT = ["student1", "students", members_group("intro-dl")]
TRAINER = ["trainer1", "trainers", members_group("intro-dl"), trainers_group("intro-dl")]
RESEARCHER = ["researcher1", "researchers"]


def off_for(groups: list[str]) -> list[str]:
    return singleuser.unused_extensions(groups, has_language_server=True)


def test_only_a_courses_student_gets_the_students_pages():
    assert course_lab.is_student_server(off_for(STUDENT))
    assert not course_lab.is_student_server(off_for(TRAINER))
    # Outside courses nbgrader is off whole (the no-nbgrader page config hides all of it).
    assert not course_lab.is_student_server(off_for(RESEARCHER))
    # A trainer of one course who takes another is a trainer.
    assert not course_lab.is_student_server(off_for([*STUDENT, members_group("x"), trainers_group("x")]))


def test_the_student_page_config_hides_the_instructors_plugins_and_keeps_the_students():
    assert json.loads(STUDENT_PAGE.read_text()) == course_lab.student_page_config()
    hidden = set(course_lab.student_page_config()["disabledExtensions"])
    assert hidden == {"@jupyter/nbgrader:create-assignment", "@jupyter/nbgrader:formgrader",
                      "@jupyter/nbgrader:course-list"}
    # The ids are nbgrader's own (its installed lab extension registers them); the student's stay on.
    bundle = "".join(path.read_text() for path in (NBGRADER_LAB / "static").glob("*.js"))
    for plugin in [*hidden, "@jupyter/nbgrader:assignment-list", "@jupyter/nbgrader:validate-assignment"]:
        assert f'"{plugin}"' in bundle, plugin


def test_a_students_config_path_starts_with_the_student_page_config(tmp_path):
    env = {"JUPYTER_CONFIG_PATH": "/somewhere"}
    course_lab.configure(Config(), off_for(STUDENT), env, tmp_path, groups=STUDENT)
    assert env["JUPYTER_CONFIG_PATH"].split(os.pathsep) == [str(tmp_path / "aifactory-student"), "/somewhere"]
    for groups in (TRAINER, RESEARCHER):
        env = {}
        course_lab.configure(Config(), off_for(groups), env, tmp_path, groups=groups)
        assert "JUPYTER_CONFIG_PATH" not in env


def test_a_course_server_of_a_member_carries_its_start_for_the_assignment_list(tmp_path):
    def start_option(groups, courses, job="812"):
        c = Config()
        env = {"AIFACTORY_COURSES": courses, "SLURM_JOB_ID": job}
        course_lab.configure(c, off_for(groups), env, tmp_path, groups=groups, now=1700000000)
        settings = c.ServerApp.get("tornado_settings")
        # A plain dict: JupyterHub's server extension tests `'log_function' in` it.
        assert settings is None or isinstance(settings, dict)
        return (settings or {}).get("page_config_data", {}).get(course_lab.START_OPTION)

    assert start_option(STUDENT, "dask-scaling,intro-dl") == "812-1700000000"
    assert start_option(TRAINER, "intro-dl") == "812-1700000000"
    assert start_option(STUDENT, "dask-scaling") is None  # a profile of other courses
    assert start_option(STUDENT, "") is None  # not a course's profile
    assert start_option(RESEARCHER, "intro-dl") is None


def test_the_hub_names_the_courses_of_the_profile_to_the_job():
    site = load_site(DEMO_SITE)
    for profile in site.profiles:
        courses = [c.id for c in site.courses if c.profile == profile.name]
        env = workbench_env([], 0, 60, 300, courses=courses)
        assert course_lab.profile_courses(env.get("AIFACTORY_COURSES")) == courses
    assert "AIFACTORY_COURSES" not in workbench_env([], 0, 60, 300)
    assert any(c.profile == "course" for c in site.courses)


def lab_page_config(env: dict[str, str], home: Path) -> dict:
    """The page config JupyterLab's server sends a page, read by jupyterlab_server from the config path."""
    code = (
        "import json, sys\n"
        "from jupyterlab_server.config import get_page_config\n"
        "print(json.dumps(get_page_config([sys.argv[1]])))\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "AIFACTORY_"))}
    out = subprocess.run([sys.executable, "-c", code, str(NBGRADER_LAB.parent.parent)],
                         env={**clean, **env, "HOME": str(home)}, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture
def installed_layout(tmp_path) -> Path:
    """The student page config where `make install` puts it, next to the server config."""
    etc = tmp_path / "etc"
    page = etc / "aifactory-student" / "labconfig" / "page_config.json"
    page.parent.mkdir(parents=True)
    page.write_text(STUDENT_PAGE.read_text())
    return etc


def test_jupyterlab_leaves_the_instructors_plugins_out_even_if_the_students_labconfig_asks(tmp_path, installed_layout):
    home = tmp_path / "home"
    own = home / ".jupyter" / "labconfig" / "page_config.json"
    own.parent.mkdir(parents=True)
    own.write_text(json.dumps({"disabledExtensions": dict.fromkeys(course_lab.INSTRUCTOR_PLUGINS, False)}))
    env: dict[str, str] = {}
    course_lab.configure(Config(), off_for(STUDENT), env, installed_layout, groups=STUDENT)
    disabled = lab_page_config(env, home)["disabledExtensions"]
    assert set(course_lab.INSTRUCTOR_PLUGINS) <= set(disabled)
    assert "@jupyter/nbgrader:assignment-list" not in disabled
    # A trainer's pages: the instructor's plugins are there.
    env = {}
    course_lab.configure(Config(), off_for(TRAINER), env, installed_layout, groups=TRAINER)
    disabled = lab_page_config(env, tmp_path / "trainer")["disabledExtensions"]
    assert not set(course_lab.INSTRUCTOR_PLUGINS) & set(disabled)


def test_the_installed_server_config_applies_it_under_the_launcher(tmp_path):
    """The shared environment's jupyter_server_config.py, as a student's server loads it."""
    code = (
        "import json, os\n"
        "from traitlets.config import PyFileConfigLoader\n"
        f"c = PyFileConfigLoader('jupyter_server_config.py', path={str(CONFIG_DIR)!r}).load_config()\n"
        "print(json.dumps(os.environ.get('JUPYTER_CONFIG_PATH')))\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIFACTORY_", "JUPYTER_CONFIG_PATH"))}
    off = ",".join(off_for(STUDENT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**clean, "AIFACTORY_SERVER_EXTENSIONS_OFF": off, "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout).split(os.pathsep) == [str(CONFIG_DIR / "aifactory-student")]
