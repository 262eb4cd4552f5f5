"""Every Python package under the top-level folders is shipped by a non-editable install."""

from __future__ import annotations

import tomllib

from tests.conftest import REPO


def test_pyproject_lists_every_package():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(project["packages"])
    found = set()
    for package, folder in project["package-dir"].items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([package, *rel.parts]))
    assert found <= listed, f"add to pyproject.toml packages: {sorted(found - listed)}"
