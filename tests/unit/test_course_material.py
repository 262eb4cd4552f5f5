"""The shipped course material: course.yaml agrees with the site file, and each source
notebook is a well-formed nbgrader assignment (checked without running a kernel;
tests/integration/test_course_assignments.py grades them for real)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest

from aifactory.courses.material import (
    CourseInfo,
    CourseMaterial,
    MaterialError,
    check_against_site,
    check_material,
    find_course,
    list_courses,
    parse_course_info,
)
from aifactory.site.checks import Problem

COURSES = list_courses()
NOTEBOOKS = [(a, a.source / name) for c in COURSES for a in c.assignments for name in a.notebooks]
INFO = {
    "id": "intro-dl", "title": "Introduction to deep learning", "trainers_group": "course-intro-dl-trainers",
    "profile": "course", "reservation": None, "assignments": [{"id": "first", "title": "First steps"}],
}


def material(found=None, folder="intro-dl", **changes) -> CourseMaterial:
    return CourseMaterial(CourseInfo(**{**INFO, **changes}), Path("/material") / folder,
                          {"first": ("first.ipynb",)} if found is None else found)


def nbgrader_cells(path: Path):
    nb = nbformat.read(path, as_version=4)
    return nb, [(c, c.metadata.get("nbgrader", {})) for c in nb.cells]


# --- course.yaml and the site file -------------------------------------------------

def test_every_site_course_has_material_that_agrees(demo_site):
    assert sorted(c.id for c in COURSES) == sorted(c.id for c in demo_site.courses)
    for course in COURSES:
        assert check_against_site(course, demo_site) == []
        assert len(course.assignments) >= 2


def test_material_lists_assignments_in_release_order():
    course = find_course("intro-dl")
    assert [a.id for a in course.assignments] == ["tensors-and-gradients", "train-mlp"]
    first = course.assignments[0]
    assert first.notebooks == ("tensors-and-gradients.ipynb",)
    assert first.source == course.folder / "source" / "tensors-and-gradients"


def test_a_course_missing_from_the_material_is_refused():
    with pytest.raises(MaterialError, match="no course material for 'nope'.*dask-scaling, intro-dl"):
        find_course("nope")


def test_disagreement_with_the_site_names_the_field(demo_site):
    problems = check_against_site(material(title="Deep learning 101", reservation="course-week"), demo_site)
    assert problems == [
        Problem("intro-dl/course.yaml: title", "'Deep learning 101' but the site file says 'Introduction to deep learning'"),
        Problem("intro-dl/course.yaml: reservation", "'course-week' but the site file says None"),
    ]
    unknown = check_against_site(material(id="ml-ops", trainers_group="course-ml-ops-trainers"), demo_site)
    assert unknown == [Problem("intro-dl/course.yaml: id",
                               "course 'ml-ops' is not in the site file (its courses: dask-scaling, intro-dl, "
                               "pytorch)")]


def test_material_rules_within_a_course_folder():
    assert check_material(material()) == []
    bad = material(found={"first": (), "draft": ("draft.ipynb",)}, folder="intro",
                   trainers_group="trainers")
    assert [str(p) for p in check_material(bad)] == [
        "intro/course.yaml: id: 'intro-dl' differs from the folder name 'intro'",
        "intro/course.yaml: trainers_group: 'trainers' should be 'course-intro-dl-trainers'",
        "intro/course.yaml: assignments: 'first' has no notebook in source/first/",
        "intro/source/draft: not listed in course.yaml",
    ]


def test_course_yaml_errors_name_the_field():
    with pytest.raises(MaterialError) as err:
        parse_course_info({**INFO, "profile": "Course Notebook", "teacher": "x"}, "c.yaml")
    paths = [p.path for p in err.value.problems]
    assert paths == ["profile", "teacher"]
    with pytest.raises(MaterialError, match="must be a YAML mapping"):
        parse_course_info(["id"])


# --- the source notebooks ----------------------------------------------------------

@pytest.mark.parametrize("assignment,path", NOTEBOOKS, ids=[f"{a.course_id}/{p.name}" for a, p in NOTEBOOKS])
def test_source_notebook_is_an_nbgrader_assignment(assignment, path):
    nb, cells = nbgrader_cells(path)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert all(not c.get("outputs") for c, _ in cells), "commit source notebooks without outputs"
    ids = [m["grade_id"] for _, m in cells if m.get("grade_id")]
    assert len(ids) == len(set(ids)), "grade_id must be unique"
    assert all(re.fullmatch(r"[a-z0-9_]+", i) for i in ids), ids

    solutions = [c for c, m in cells if m.get("solution") and c.cell_type == "code"]
    tests = [(c, m) for c, m in cells if m.get("grade") and not m.get("solution")]
    assert solutions and tests
    for cell in solutions:
        assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source, cell.source
    for cell, meta in tests:
        assert cell.cell_type == "code" and meta["locked"] and meta["points"] > 0, meta["grade_id"]
        assert "assert" in cell.source, meta["grade_id"]
    assert any("### BEGIN HIDDEN TESTS" in c.source for c, _ in tests), "no hidden test"
    for cell, _ in tests:
        assert cell.source.count("### BEGIN HIDDEN TESTS") == cell.source.count("### END HIDDEN TESTS")


@pytest.mark.parametrize("course", COURSES, ids=[c.id for c in COURSES])
def test_each_course_has_a_written_answer_for_the_trainer(course):
    written = [m for a in course.assignments for name in a.notebooks
               for c, m in nbgrader_cells(a.source / name)[1]
               if c.cell_type == "markdown" and m.get("grade") and m.get("solution") and m.get("points", 0) > 0]
    assert written


# What each course's notebooks may import: the platform's courses NumPy and Dask; the PyTorch course, the
# standard library, the platform's environment's NumPy, scikit-learn and Matplotlib, and the packages its own
# environment adds in the site file (PyTorch, submitit).
PLATFORM = {"numpy", "dask", "time", "os"}
PYTORCH_ADDS = {"torch", "submitit"}
COURSE_IMPORTS = {"pytorch": set(sys.stdlib_module_names) | {"numpy", "sklearn", "matplotlib"} | PYTORCH_ADDS}


def test_imports_beyond_the_platform_are_in_the_course_environment(demo_site):
    course = next(c for c in demo_site.courses if c.id == "pytorch")
    packages = demo_site.environment(demo_site.profile(course.profile).environment).packages
    assert PYTORCH_ADDS == {p.split("==")[0] for p in packages}


@pytest.mark.parametrize("assignment,path", NOTEBOOKS, ids=[f"{a.course_id}/{p.name}" for a, p in NOTEBOOKS])
def test_notebooks_need_only_numpy_and_dask(assignment, path):
    """The courses run on any CPU node: no package their environment lacks, no GPU needed (a GPU
    framework only where the course's environment holds it, and the notebook runs without a GPU)."""
    allowed = COURSE_IMPORTS.get(assignment.course_id, PLATFORM)
    _, cells = nbgrader_cells(path)
    imported = set()
    for cell, _ in cells:
        if cell.cell_type == "code":
            imported |= set(re.findall(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", cell.source, re.M))
    assert imported <= allowed, imported - allowed


def test_a_non_editable_install_ships_the_material():
    import tomllib
    from fnmatch import fnmatchcase

    from tests.conftest import REPO

    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "aifactory.courses"]
    root = REPO / "courses"
    files = [c.folder / "course.yaml" for c in COURSES] + [p for _, p in NOTEBOOKS]
    for path in files:
        rel = path.relative_to(root).as_posix()
        assert any(fnmatchcase(rel, p) and rel.count("/") == p.count("/") for p in patterns), rel
