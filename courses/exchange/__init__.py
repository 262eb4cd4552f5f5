"""A per-course nbgrader exchange that relies on Unix users and groups.

nbgrader's default exchange is one world-writable ``inbound`` directory where
students can list and read each other's submissions (nbgrader #978, #1225).
Here every course gets two groups derived from the site file and a tree where
the kernel enforces who sees what (see `layout.py` for the table):

    course-<id>            everyone in the course (trainers and students)
    course-<id>-trainers   the course's trainers

A student can fetch releases, submit into ``inbound/<student>/`` and read
``feedback/<student>/``; nothing else. Trainers read every inbound directory
and write feedback. `aifactory course setup <course>` (root) creates it all,
idempotently; `transfer.py` moves files through it.
"""
