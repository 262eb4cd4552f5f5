"""The distributed-training notebook without a kernel: the cells that reach Slurm cannot run under the
grader, the submitit folder is made private, and the launch asks for what the assignment teaches.
(tests/integration/test_distributed_training.py runs it for real on two nodes and grades it.)"""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path

import nbformat
import pytest

from aifactory.courses.material import MATERIAL_ROOT

NOTEBOOK = MATERIAL_ROOT / "pytorch" / "source" / "distributed-training" / "distributed-training.ipynb"
SLURM_CALLS = {"run_on_slurm", "make_executor", "submit", "AutoExecutor", "private_folder"}


def cells() -> list:
    return nbformat.read(NOTEBOOK, as_version=4).cells


def cell(grade_id: str):
    return next(c for c in cells() if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def calls_at_top_level(tree: ast.Module) -> set[str]:
    """Names of the functions called by a cell's top-level statements (not inside a def or an if)."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.If, ast.ClassDef)):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call):
                func = sub.func
                names.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    return names


def test_every_cell_that_reaches_slurm_runs_only_outside_the_grader():
    """nbgrader sets NBGRADER_EXECUTION while it autogrades or validates: the Slurm cells check it."""
    setup = cell("slurm_setup").source
    assert 'not os.environ.get("NBGRADER_EXECUTION")' in setup and 'shutil.which("sbatch")' in setup
    guarded = 0
    for c in cells():
        if c.cell_type != "code":
            continue
        tree = ast.parse(c.source)
        assert not calls_at_top_level(tree) & SLURM_CALLS, c.source[:200]
        for node in tree.body:
            if isinstance(node, ast.If) and ast.unparse(node.test) == "ON_SLURM":
                guarded += bool({n.func.id for n in ast.walk(node) if isinstance(n, ast.Call)
                                 and isinstance(n.func, ast.Name)} & SLURM_CALLS)
            elif isinstance(node, ast.If):
                assert not {getattr(n.func, "id", "") for n in ast.walk(node)
                            if isinstance(n, ast.Call)} & SLURM_CALLS, ast.unparse(node)[:200]
    assert guarded >= 2   # the setup (private folder) and the runs


def test_the_launch_asks_for_two_nodes_one_rank_each_on_the_courses_account():
    source = cell("make_executor").source
    for words in ("AutoExecutor(folder=JOBS)", "nodes=nodes", "tasks_per_node=1", "slurm_account=ACCOUNT",
                  "slurm_partition=PARTITION", 'name="ddp-digits"'):
        assert words in source, words
    setup = cell("slurm_setup").source
    assert "TorchDistributedEnvironment()" in setup and 'init_process_group("gloo"' in setup
    assert 'JOBS = Path.home() / ".submitit" / "distributed-training"' in setup


def private_folder_function():
    """`private_folder` as the notebook defines it, run here without torch."""
    tree = ast.parse(cell("slurm_setup").source)
    func = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "private_folder")
    namespace = {"Path": Path, "os": os}
    exec(compile(ast.Module([func], []), str(NOTEBOOK), "exec"), namespace)
    return namespace["private_folder"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_private_folder_makes_each_level_0700(home):
    private_folder = private_folder_function()
    old_umask = os.umask(0o022)
    try:
        path = private_folder(home / ".submitit" / "distributed-training")
    finally:
        os.umask(old_umask)
    for folder in (home / ".submitit", path):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_private_folder_closes_a_folder_left_open(home):
    (home / ".submitit" / "distributed-training").mkdir(parents=True, mode=0o777)
    (home / ".submitit").chmod(0o755)
    private_folder_function()(home / ".submitit" / "distributed-training")
    assert stat.S_IMODE((home / ".submitit").stat().st_mode) == 0o700
    assert stat.S_IMODE((home / ".submitit" / "distributed-training").stat().st_mode) == 0o700


def test_private_folder_refuses_a_link_or_a_folder_of_someone_else(home, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    elsewhere.chmod(0o777)
    (home / ".submitit").symlink_to(elsewhere)
    with pytest.raises(RuntimeError, match="not a folder of yours"):
        private_folder_function()(home / ".submitit" / "distributed-training")
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o777 and not list(elsewhere.iterdir())
    if os.geteuid() == 0:
        (home / ".submitit").unlink()
        (home / ".submitit").mkdir(mode=0o700)
        os.chown(home / ".submitit", 65534, 65534)
        with pytest.raises(RuntimeError, match="not a folder of yours"):
            private_folder_function()(home / ".submitit" / "distributed-training")
