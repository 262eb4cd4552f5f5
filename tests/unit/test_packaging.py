"""Every Python package under the top-level folders is shipped by a non-editable install."""

from __future__ import annotations

import tomllib
from pathlib import Path

import aifactory.site
from aifactory.site.load import DEMO_SITE

from tests.conftest import REPO


def test_pyproject_lists_every_package():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(project["packages"])
    found = set()
    folders = {REPO / folder for folder in project["package-dir"].values()}
    for package, folder in project["package-dir"].items():
        for init in (REPO / folder).rglob("__init__.py"):
            if any(other in init.parents and other != REPO / folder and REPO / folder in other.parents
                   for other in folders):
                continue  # a folder packaged on its own (hub/site is aifactory.site)
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([package, *rel.parts]))
    assert found <= listed, f"add to pyproject.toml packages: {sorted(found - listed)}"



def shipped_data() -> set[str]:
    """The data files a wheel holds, as setuptools maps them: package-data globs under each package's folder."""
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = tool["package-dir"]
    shipped = set()
    for package, globs in tool["package-data"].items():
        top = max((p for p in folders if package == p or package.startswith(p + ".")), key=len)
        folder = REPO / folders[top] / Path(*package[len(top) + 1:].split(".") if package != top else ())
        for pattern in globs:
            shipped |= {"/".join([*package.split("."), *f.relative_to(folder).parts]) for f in folder.glob(pattern)}
    return shipped


def test_the_package_ships_the_data_the_code_reads():
    """What a non-editable install (the images) gets: the demo site, the form and page templates."""
    shipped = shipped_data()
    for data in ("aifactory/site/demo.yaml", "aifactory/spawners/templates/options_form.html",
                 "aifactory/hub/templates/spawn.html", "aifactory/hub/templates/page.html"):
        assert data in shipped, f"{data} is not in the package data"
    # The code finds the demo next to aifactory.site's modules, where the wheel puts it.
    assert DEMO_SITE.parent == Path(aifactory.site.__file__).resolve().parent
