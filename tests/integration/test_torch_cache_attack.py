"""Attacks on the PyTorch course environment by a second real Unix user (issue #16 review).

A compute node's /tmp is shared by every job on it (node-local scratch). PyTorch's compiler
(`torch.compile`, TorchInductor) keeps its cache of generated Python modules and shared objects in
`/tmp/torchinductor_<user>` unless `TORCHINDUCTOR_CACHE_DIR` says otherwise, and adopts that folder
if it exists, whoever owns it. A classmate who makes it first on a course node owns it: they can
swap what the victim compiled for modules of their own, which the victim's next process imports
(code execution as the victim).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from aifactory.hub.localcluster.slurmconf import Layout

pytestmark = pytest.mark.skipif(not Path("/opt/aifactory/envs/pytorch/bin/python3").exists(),
                                reason="the PyTorch course environment is not built")

NODE = "interactive-2"             # a course server's partition (course-pytorch)
ATTACKER, VICTIM = "student2", "student3"
ACCOUNT = "project_465000002"
PYTHON = "/opt/aifactory/envs/pytorch/bin/python3"
CACHE = f"/tmp/torchinductor_{VICTIM}"   # PyTorch's default for the victim, in the node's /tmp
MARK = "PWNED-BY-" + ATTACKER.upper()

# The victim: what a student of the course runs in a notebook, in a new process each time.
VICTIM_CODE = ("import torch\n"
               "f = torch.compile(lambda x: torch.sin(x) * 2 + 1)\n"
               "print('RESULT', f(torch.ones(4)).tolist(), flush=True)\n")
# The attacker, once the victim has compiled: every top-level folder of the cache (theirs: the
# attacker owns the parent) is replaced by a copy whose generated modules end with a payload.
SWAP = f"""
cd {CACHE} || exit 1
for d in */; do d=${{d%/}}; cp -r "$d" "$d.x"; chmod -R a+rwX "$d.x"
  find "$d.x" -name '*.py' -exec sh -c 'printf "\\nimport os\\nprint(\\"{MARK}\\", os.getuid(), flush=True)\\n" >> "$1"' _ {{}} \\;
  mv "$d" ".$d.old"; mv "$d.x" "$d"; done
"""


def srun(user: str, argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["sudo", "-u", user, "-H", "srun", "--partition=interactive", f"--nodelist={NODE}",
                           f"--account={ACCOUNT}", "--ntasks=1", "--cpus-per-task=1", "--mem=1G", "--time=10",
                           "--job-name=aifactory-test-inductor-attack", "--quiet", *argv],
                          capture_output=True, text=True, timeout=timeout)


def test_a_classmate_cannot_plant_code_in_a_students_torch_compile_cache_on_a_shared_node():
    node_tmp = Path(Layout().state) / "nodes" / NODE / "tmp"
    planted = node_tmp / CACHE.removeprefix("/tmp/")
    if planted.exists():
        pytest.skip(f"{planted} exists already (the victim's own cache): nothing to plant")
    try:
        made = srun(ATTACKER, ["mkdir", "-m", "0777", CACHE])
        assert made.returncode == 0, made.stderr
        first = srun(VICTIM, [PYTHON, "-c", VICTIM_CODE])
        assert "RESULT" in first.stdout, first.stdout + first.stderr[-2000:]
        swapped = srun(ATTACKER, ["bash", "-c", SWAP])
        assert swapped.returncode == 0, swapped.stderr
        second = srun(VICTIM, [PYTHON, "-c", VICTIM_CODE])
        # The victim's process must never run the classmate's code.
        assert MARK not in second.stdout, (f"{ATTACKER}'s code ran as {VICTIM} from {CACHE} on {NODE}: "
                                           + second.stdout)
    finally:
        shutil.rmtree(planted, ignore_errors=True)
