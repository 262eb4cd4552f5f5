"""Parallel autograding on Slurm with students' code run as an unprivileged identity.

Flow of `aifactory grade <course> <assignment>` (run by a trainer):

1. collect: the exchange's newest submission of each student -> nbgrader's
   ``submitted/`` (every submission is archived; lateness from trusted times);
2. pack: one input archive per Slurm array task (a chunk of students) with a
   gradebook that holds only the assignment's definition, no student data; as
   many tasks as graders can really run at once (`jobs.plan_tasks`), since each
   task pays nbgrader's start-up once for all its students;
3. submit one job array as the trainer, charged to the course's project (the
   trainer's association: the grader identity has none and can submit nothing);
4. each task pipes its archive into ``sudo -u aifactory-grader python -I -m
   aifactory.courses.grading.sandbox`` (the only command the sudo rule allows):
   the grader runs nbgrader, and every student's kernel starts in bubblewrap
   (`jobs.kernel_argv`): fresh namespaces (no network, no view of other
   processes), a read-only file system with its own /tmp, only its notebook's
   folder writable, under an address-space and CPU-time limit; the results go
   back on a descriptor no kernel holds;
5. as each task finishes, the trainer's process imports its executed notebooks
   into the course gradebook with nbgrader's own ``--no-execute`` autograde:
   one writer, serial, so there are no lost updates, and the scores come from
   the trusted gradebook's cells, not from the sandbox's.

Where the CPU goes (cProfile, 2-core machine): a kernel start per student (as in
stock nbgrader), nbgrader's SQL statements, which it recompiled for every
Gradebook it opened until `engines` shared one engine per database, and
jsonschema's optional rfc3987_syntax grammars at import (skipped below).

Modules: `jobs` (pure builders: chunks, sbatch argv, job script), `engines`, `sandbox`
(the grader side), `nbgrader_steps` (in-process nbgrader calls on the trainer
side), `feedback` (feedback without hidden tests), `run` (the orchestration).
"""

import sys as _sys

# jsonschema (imported by nbformat, hence by nbgrader) compiles some forty lark
# grammars at import time when the optional rfc3987_syntax package is installed:
# 2 to 4 CPU-seconds in every grading process, for IRI format checks nbformat
# never asks for. Without it, jsonschema skips those formats.
_sys.modules.setdefault("rfc3987_syntax", None)
