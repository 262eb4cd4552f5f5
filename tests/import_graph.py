"""Which layer imports which, counting every import (also those inside functions).

    python -m tests.import_graph                 # this checkout
    git worktree add /tmp/old <rev> && python -m tests.import_graph --tree /tmp/old

Prints one line per pair of layers with the number of importing lines, then each import that
goes upwards (against the layers of README "Architecture"). The contracts that fail the tests
are `[tool.importlinter]` in pyproject.toml (tests/unit/test_architecture.py); this is the picture
behind them.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import tomllib
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]


def layer_ranks() -> dict[str, int]:
    """{package: rank, top 0} from the layers contract in this checkout's pyproject.toml."""
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c["type"] == "layers"]
    return {package.strip(): rank for rank, layer in enumerate(layers) for package in layer.split("|")}


# A module belongs to the longest prefix that names it; aifactory.hub.site is where the base
# lived before it was packaged on its own.
GROUPS = {package: package.rsplit(".", 1)[1] for package in layer_ranks()} | {"aifactory.hub.site": "site"}
RANK = {GROUPS[package]: rank for package, rank in layer_ranks().items()}


def group(module: str) -> str | None:
    best = max((prefix for prefix in GROUPS if module == prefix or module.startswith(prefix + ".")),
               key=len, default=None)
    return GROUPS.get(best)


def package_root(tree: Path, root: Path) -> Path:
    """Fill `root` so that `import aifactory` there finds `tree`'s packages, mapped as its pyproject.toml says."""
    mapping = tomllib.loads((tree / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    folders = {(tree / folder).resolve() for folder in mapping.values()}
    for package, folder in sorted(mapping.items()):
        source, target = (tree / folder).resolve(), root.joinpath(*package.split("."))
        target.parent.mkdir(parents=True, exist_ok=True)
        if not any(source in other.parents for other in folders):
            target.symlink_to(source, target_is_directory=True)
            continue
        target.mkdir()  # hub/: everything but hub/site and hub/slurm, which are packages of their own
        for entry in source.iterdir():
            if entry.resolve() not in folders:
                (target / entry.name).symlink_to(entry.resolve())
    return root


def edges(graph) -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            pair = (group(importer), group(imported))
            if None not in pair and pair[0] != pair[1]:
                found[pair].append(f"{importer} -> {imported}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, help="another checkout (default: this one)")
    args = parser.parse_args(argv)
    # A plain tree of the packages: grimp does not see through an editable install's import hook.
    with tempfile.TemporaryDirectory(prefix="import-graph-") as root:
        sys.path.insert(0, str(package_root(args.tree or REPO, Path(root))))
        sys.modules.pop("aifactory", None)
        found = edges(grimp.build_graph("aifactory", cache_dir=None))
    upwards = 0
    for (source, target), imports in sorted(found.items(), key=lambda item: (RANK[item[0][0]], item[0])):
        wrong = RANK[target] <= RANK[source]
        upwards += len(imports) if wrong else 0
        print(f"{source:>10} -> {target:<10} {len(imports):3d} {'UPWARDS' if wrong else ''}")
        if wrong:
            print("".join(f"{'':14}{line}\n" for line in imports), end="")
    print(f"{upwards} imports against the layers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
