"""`aifactory course|exchange|grade|feedback`: the course commands, wired into hub/cli.py.

The CLI is the hub's assembly: it may use every layer, so it lives in hub/, not in courses/.
What a command needs beyond the exchange (the hub's service, nbgrader, Slurm grading) is imported
when it runs, so that a student's `aifactory exchange` starts fast."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from aifactory.courses.exchange import transfer
from aifactory.courses.exchange.layout import CoursePaths, course_of
from aifactory.site import INSTALLED_SITE, load_site


def _site(args):
    return load_site(args.site) if args.site else load_site()


def _setup(args) -> int:
    from .course_setup import setup_course

    changes = setup_course(_site(args), args.course)
    for change in changes:
        print(f"  {change}")
    print(f"course {args.course}: set up ({len(changes)} change(s))")
    return 0


def _add(args) -> int:
    """Site file -> active site, the course's Unix side, then the hub: restarted only when it lacks the
    course's formgrader, otherwise its course groups are updated through its API."""
    from . import service
    from .course_sync import sync
    from .formgrader import hub_step, running_services, wait_until_served
    from .roles import groups_of_course
    from .site_install import site_install

    if args.site and site_install(args.site) != 0:
        return 1
    site = load_site(INSTALLED_SITE)
    course = course_of(site, args.course)
    if _setup(args) != 0:
        return 1
    token = service.operator_token_file().read_text().strip() if service.operator_token_file().exists() else ""
    step = hub_step(args.course, running_services(service.url(site), token))
    if step == "start":
        print("the hub is not running: `aifactory hub up` starts it with the course's formgrader")
        return 0
    if step == "restart":
        # JupyterHub 6.1 cannot add a managed service nor a role at runtime; servers are Slurm jobs
        # and are reattached after the restart.
        print("restarting the hub: it adds the course's formgrader and trainers' role only at start")
        service.down()
        service.up(site, site_file=str(INSTALLED_SITE))
    else:
        # Enrolment changes reach the running hub's groups through its API, without a restart.
        for method, path, body in sync(service.url(site), token, groups_of_course(course)):
            print(f"  hub: {method} {path} {' '.join(next(iter(body.values())))}")
    seconds = wait_until_served(service.url(site), args.course)
    print(f"course {args.course}: formgrader at {service.url(site)}/services/formgrader-{args.course}/formgrader"
          + (f" (served after {seconds:.1f}s)" if step == "restart" else ""))
    return 0


def _release(args) -> int:
    os.umask(0o007)  # co-trainers share the course directory through its group
    from aifactory.courses.grading import nbgrader_steps
    from aifactory.courses.material import release_source, shipped_assignments, shipped_source

    site = _site(args)
    course = course_of(site, args.course)
    paths = CoursePaths.of(site, course.id)
    course_dir = Path(paths.course_dir)
    dest = course_dir / "source" / args.assignment
    source = release_source(args.source, shipped_source(course.id, args.assignment), dest.exists())
    if source is None and not dest.exists():
        print(f"no source for {args.assignment!r}: not in the course's shipped material "
              f"({', '.join(shipped_assignments(course.id)) or 'none'}), and no --source given", file=sys.stderr)
        return 2
    if source is not None:
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(source, dest)
    nbgrader_steps.generate(course_dir, course.id, args.assignment)
    print(f"released {transfer.release(paths, args.assignment)}")
    return 0


def _report(args) -> int:
    from aifactory.courses.grading.report import write_report

    site = _site(args)
    course = course_of(site, args.course)
    course_dir = Path(CoursePaths.of(site, course.id).course_dir)
    if not os.access(course_dir / "gradebook.db", os.R_OK):
        raise RuntimeError(f"cannot read the gradebook of {course.id}: only its trainers can, once something is "
                           "released")
    csv_path, png_path, table = write_report(course_dir, course.id, Path(args.output))
    print(f"{len(table.rows)} student(s), {len(table.assignments)} assignment(s): {csv_path}, {png_path}")
    return 0


def _exchange(args) -> int:
    site = _site(args)
    course_of(site, args.course)
    paths = CoursePaths.of(site, args.course)
    where = Path(args.dir) if args.dir else Path.home() / args.course
    if args.action == "fetch":
        print(f"fetched into {transfer.fetch(paths, args.assignment, where)}")
    elif args.action == "submit":
        print(f"submitted {transfer.submit(paths, args.assignment, where)}")
    else:
        got = transfer.fetch_feedback(paths, args.assignment, where)
        print(f"feedback in {got}" if got else "no feedback released yet")
    return 0


def _grade(args) -> int:
    os.umask(0o007)
    from aifactory.courses.grading.jobs import Limits, course_memory_mib
    from aifactory.courses.grading.run import grade

    site = _site(args)
    memory = args.mem or course_memory_mib(site, course_of(site, args.course))
    limits = Limits(cell_timeout_s=args.cell_timeout, memory_mib=memory)
    report = grade(site, args.course, args.assignment, force=args.force, tasks=args.tasks, limits=limits)
    print(report.table())
    failures = report.failures()
    print(f"{len(report.outcomes)} submission(s), {len(failures)} problem(s), {report.seconds:.1f}s"
          + (f", job {report.job_id}" if report.job_id else ""))
    return 0


def _feedback(args) -> int:
    os.umask(0o007)
    from aifactory.courses.grading import nbgrader_steps

    site = _site(args)
    course = course_of(site, args.course)
    paths = CoursePaths.of(site, course.id)
    nbgrader_steps.generate_feedback(Path(paths.course_dir), course.id, args.assignment)
    students = transfer.release_feedback(paths, args.assignment)
    print(f"feedback released to {len(students)} student(s): {', '.join(students)}")
    return 0


def add_commands(sub) -> None:
    def common(p):
        p.add_argument("--site", help="site file (default: $AIFACTORY_SITE, then the installed one)")
        p.add_argument("course")
        return p

    course = sub.add_parser("course", help="set up and release courses").add_subparsers(dest="action", required=True)
    common(course.add_parser("setup", help="create the course's groups, directories and exchange (root)")) \
        .set_defaults(func=_setup)
    common(course.add_parser("add", help="after adding the course to the site file: install the site, set the "
                             "course up and give it its formgrader (restarts the hub only if needed; root)")) \
        .set_defaults(func=_add)
    rel = common(course.add_parser("release", help="generate an assignment and publish it to the students"))
    rel.add_argument("assignment")
    rel.add_argument("--source", help="copy this nbgrader source folder in first (default: the course's "
                     "shipped material, courses/<id>/source/<assignment>, when the course has no copy yet)")
    rel.set_defaults(func=_release)

    report = common(course.add_parser("report", help="grades table (CSV) and their distribution (PNG) from "
                                      "the gradebook"))
    report.add_argument("--output", default=".", help="folder for <course>-grades.csv and .png (default: here)")
    report.set_defaults(func=_report)

    exchange = sub.add_parser("exchange", help="students: fetch, submit, fetch feedback")
    exchange.add_argument("action", choices=["fetch", "submit", "feedback"])
    common(exchange).add_argument("assignment")
    exchange.add_argument("--dir", help="the course folder (default ~/COURSE)")
    exchange.set_defaults(func=_exchange)

    grade = common(sub.add_parser("grade", help="collect and autograde all submissions as Slurm jobs"))
    grade.add_argument("assignment")
    grade.add_argument("--force", action="store_true", help="grade again submissions already graded")
    grade.add_argument("--tasks", type=int, default=None,
                       help="Slurm array tasks (parallel graders); default: the partition's CPUs "
                            "(the machine's cores on the local cluster), at least 4 students per task")
    grade.add_argument("--cell-timeout", type=int, default=60, help="seconds a cell may run (default 60)")
    grade.add_argument("--mem", type=int, default=None, help="MiB a student's kernel may use (default: the "
                       "course profile's default memory, 1024 for a profile of 1G)")
    grade.set_defaults(func=_grade)

    feedback = common(sub.add_parser("feedback", help="generate feedback (hidden tests removed) and release it"))
    feedback.add_argument("assignment")
    feedback.set_defaults(func=_feedback)
