"""The layers of README "Architecture" hold: import-linter's contracts pass, and the README names them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.conftest import REPO
from tests.import_graph import package_root

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def contracts() -> list[dict]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_every_import_keeps_to_the_layers(tmp_path):
    # The checkout's packages as a plain tree (hub/site as aifactory.site, ...), so that grimp sees
    # every module, also those the editable install maps.
    env = {**os.environ, "PYTHONPATH": str(package_root(REPO, tmp_path))}
    done = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert f"Contracts: {len(contracts())} kept, 0 broken" in done.stdout


def test_the_readme_table_names_the_layers_of_the_contract():
    (layers,) = [c["layers"] for c in contracts() if c["type"] == "layers"]
    readme = (REPO / "README.md").read_text()
    rows = re.findall(r"^\| (?:assembly|features|base) \| (.+?) \| `", readme, flags=re.M)
    named = [" | ".join(re.findall(r"`(aifactory[.\w]*)`", row)) for row in rows]
    assert named == layers


def test_the_base_names_the_frameworks_it_keeps_out():
    (forbidden,) = [c for c in contracts() if c["type"] == "forbidden"]
    assert set(forbidden["source_modules"]) == {"aifactory.site", "aifactory.slurm"}
    readme = (REPO / "README.md").read_text()
    for framework in ("JupyterHub", "Jupyter server", "tornado", "traitlets", "Dask", "nbgrader"):
        assert framework in readme.split("## Architecture")[1].split("### What a user sees")[0]
