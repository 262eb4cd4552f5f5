"""The course material shipped with the platform.

Each course is a folder ``courses/<id>/`` holding

* ``course.yaml``: id, title, trainers' Unix group, spawn profile, optional Slurm
  reservation and the assignments in the order they are released;
* ``source/<assignment>/*.ipynb``: nbgrader source notebooks (solutions, tests and
  hidden tests), which ``nbgrader generate_assignment`` turns into the student version.

The site file stays the source of truth for who teaches and takes a course;
``check_against_site`` says where the material disagrees with it. Parsing and checks
are pure; only ``load_course``/``list_courses`` read files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from aifactory.site.checks import Problem
from aifactory.site.identity import trainers_group
from aifactory.site.load import ConfigError, read_yaml
from aifactory.site.schema import Model, Name, Site


MATERIAL_ROOT = Path(__file__).resolve().parent
COURSE_FILE = "course.yaml"
SOURCE = "source"


class AssignmentInfo(Model):
    id: Name = Field(description="nbgrader assignment id; also the folder under source/.")
    title: str = Field(min_length=1)


class CourseInfo(Model):
    """The contents of ``course.yaml``."""

    id: Name
    title: str = Field(min_length=1)
    trainers_group: str = Field(description="Unix group of the course's trainers: course-<id>-trainers.")
    profile: Name = Field(description="Spawn profile the course's servers use.")
    reservation: Name | None = Field(None, description="Slurm reservation of the course's jobs, if any.")
    assignments: list[AssignmentInfo] = Field(min_length=1)


@dataclass(frozen=True)
class Assignment:
    course_id: str
    id: str
    title: str
    source: Path                # the nbgrader source folder
    notebooks: tuple[str, ...]  # file names, sorted


@dataclass(frozen=True)
class CourseMaterial:
    info: CourseInfo
    folder: Path
    # What is on disk: assignment folder -> its notebooks (may disagree with info).
    found: dict[str, tuple[str, ...]]

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def assignments(self) -> list[Assignment]:
        """The declared assignments, in release order."""
        return [Assignment(self.id, a.id, a.title, self.folder / SOURCE / a.id, self.found.get(a.id, ()))
                for a in self.info.assignments]


class MaterialError(ConfigError):
    """Course material that cannot be used; `problems` says what and where."""


def parse_course_info(data: Any, source: str = COURSE_FILE) -> CourseInfo:
    """Parsed YAML -> CourseInfo, or MaterialError naming each bad field. Pure."""
    if not isinstance(data, dict):
        raise MaterialError(source, [Problem("", "course.yaml must be a YAML mapping")])
    try:
        return CourseInfo.model_validate(data)
    except ValidationError as exc:
        problems = [Problem(".".join(str(part) for part in e["loc"]), e["msg"].removeprefix("Value error, "))
                    for e in exc.errors()]
        raise MaterialError(source, problems) from None


def check_material(material: CourseMaterial) -> list[Problem]:
    """Rules within one course folder. Pure."""
    info, where = material.info, f"{material.folder.name}/{COURSE_FILE}"
    problems = []
    if info.id != material.folder.name:
        problems.append(Problem(f"{where}: id", f"{info.id!r} differs from the folder name {material.folder.name!r}"))
    if info.trainers_group != trainers_group(info.id):
        problems.append(Problem(f"{where}: trainers_group",
                                f"{info.trainers_group!r} should be {trainers_group(info.id)!r}"))
    declared = [a.id for a in info.assignments]
    for twice in sorted({a for a in declared if declared.count(a) > 1}):
        problems.append(Problem(f"{where}: assignments", f"{twice!r} is listed twice"))
    for assignment in declared:
        if not material.found.get(assignment):
            problems.append(Problem(f"{where}: assignments",
                                    f"{assignment!r} has no notebook in {SOURCE}/{assignment}/"))
    for extra in sorted(set(material.found) - set(declared)):
        problems.append(Problem(f"{material.folder.name}/{SOURCE}/{extra}", f"not listed in {COURSE_FILE}"))
    return problems


def check_against_site(material: CourseMaterial, site: Site) -> list[Problem]:
    """Where course.yaml disagrees with the course's entry in the site file. Pure."""
    where = f"{material.folder.name}/{COURSE_FILE}"
    courses = {c.id: c for c in site.courses}
    course = courses.get(material.id)
    if course is None:
        known = ", ".join(sorted(courses)) or "none"
        return [Problem(f"{where}: id", f"course {material.id!r} is not in the site file (its courses: {known})")]
    problems = []
    for field in ("title", "profile", "reservation"):
        mine, theirs = getattr(material.info, field), getattr(course, field)
        if mine != theirs:
            problems.append(Problem(f"{where}: {field}", f"{mine!r} but the site file says {theirs!r}"))
    return problems


def _scan_sources(folder: Path) -> dict[str, tuple[str, ...]]:
    source = folder / SOURCE
    if not source.is_dir():
        return {}
    return {sub.name: tuple(sorted(nb.name for nb in sub.glob("*.ipynb")))
            for sub in sorted(source.iterdir()) if sub.is_dir() and not sub.name.startswith(".")}


def load_course(folder: Path) -> CourseMaterial:
    """Read one course folder; MaterialError if course.yaml is unreadable or breaks a rule."""
    folder = Path(folder)
    path = folder / COURSE_FILE
    try:
        data = read_yaml(path.read_text())
    except OSError as exc:
        raise MaterialError(str(path), [Problem("", f"cannot read: {exc.strerror}")]) from None
    material = CourseMaterial(parse_course_info(data, str(path)), folder, _scan_sources(folder))
    problems = check_material(material)
    if problems:
        raise MaterialError(str(path), problems)
    return material


def list_courses(root: Path = MATERIAL_ROOT) -> list[CourseMaterial]:
    """Every course folder under root (those holding a course.yaml), sorted by id."""
    return [load_course(p.parent) for p in sorted(Path(root).glob(f"*/{COURSE_FILE}"))]


def find_course(course_id: str, root: Path = MATERIAL_ROOT) -> CourseMaterial:
    folder = Path(root) / course_id
    if not (folder / COURSE_FILE).is_file():
        known = ", ".join(c.id for c in list_courses(root)) or "none"
        raise MaterialError(course_id, [Problem("", f"no course material for {course_id!r} (available: {known})")])
    return load_course(folder)


def shipped_assignments(course_id: str) -> list[str]:
    """The assignments in the platform's material for this course (courses/<id>/source), in release order."""
    try:
        return [a.id for a in find_course(course_id).assignments]
    except MaterialError:
        return []


def shipped_source(course_id: str, assignment: str) -> Path | None:
    try:
        material = find_course(course_id)
    except MaterialError:
        return None
    return next((a.source for a in material.assignments if a.id == assignment), None)


def release_source(explicit: str | None, shipped: Path | None, in_course_dir: bool) -> Path | None:
    """Which folder to copy into the course's source/ before generating, or None to use it as is.

    An explicit --source wins; otherwise the shipped material, but only when the
    course directory has no source of that assignment yet, so a trainer's edits
    to their copy are never overwritten. Pure.
    """
    if explicit:
        return Path(explicit)
    if shipped is not None and not in_course_dir:
        return shipped
    return None
