"""Every Python package under the top-level folders is shipped by a non-editable install."""

from __future__ import annotations

import tomllib

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
