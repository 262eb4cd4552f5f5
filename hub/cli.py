"""`aifactory`: the operator's and trainer's command line.

Commands that need JupyterHub or Dask import them when they run, so that `aifactory exchange`
in a student's terminal starts in a fraction of a second."""

from __future__ import annotations

import argparse
import shutil
import sys
from datetime import datetime

from aifactory.site import INSTALLED_SITE, SiteError, load_site
from aifactory.site.identity import hub_sudoers

from .course_cli import add_commands as add_course_commands


def _validate(args: argparse.Namespace) -> int:
    from .site_install import validate_file

    return validate_file(args.file)


def _site_install(args: argparse.Namespace) -> int:
    from .site_install import site_install

    return site_install(args.file)


def _cluster(args: argparse.Namespace) -> int:
    from .localcluster import provision

    if args.action == "up":
        provision.up(load_site(args.site))
        return 0
    if args.action == "down":
        provision.down()
        return 0
    if args.action == "node":
        if args.node_action not in ("down", "up") or not args.node:
            print("usage: aifactory cluster node down|up NAME", file=sys.stderr)
            return 2
        provision.node_action(load_site(args.site), args.node_action, args.node)
        return 0
    return provision.main_status(load_site(args.site))


def _hub(args: argparse.Namespace) -> int:
    from . import service

    if args.action == "sudoers":  # for a hub or login-node account that is not root
        print(hub_sudoers(load_site(args.site), args.account, shutil.which("sbatch") or "/usr/bin/sbatch"), end="")
        return 0
    if args.action == "up":
        service.up(load_site(args.site), site_file=args.site)
        return 0
    if args.action == "down":
        service.down()
        return 0
    return service.main_status()


def _usage(args: argparse.Namespace) -> int:
    from . import usage

    now = datetime.now().replace(microsecond=0)
    try:
        since = usage.parse_since(args.since, now)
    except ValueError as exc:
        print(f"aifactory usage: {exc}", file=sys.stderr)
        return 2
    try:
        site = load_site(args.site)
    except (SiteError, OSError):
        site = None  # the table still works, without allocations
    print(usage.report(site, since, now, args.output))
    if args.output:
        print(f"plot written to {args.output}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="aifactory", description="Run an AI factory: JupyterHub on Slurm.")
    sub = top.add_subparsers(dest="command", required=True)

    config = sub.add_parser("config", help="check a site file").add_subparsers(dest="action", required=True)
    validate = config.add_parser("validate", help="validate a site file; names every problem")
    validate.add_argument("file")
    validate.set_defaults(func=_validate)

    site = sub.add_parser("site", help="the active site file").add_subparsers(dest="action", required=True)
    install = site.add_parser("install", help=f"validate FILE and make it the active site ({INSTALLED_SITE})")
    install.add_argument("file")
    install.set_defaults(func=_site_install)

    for name, func, what, actions in (
            ("cluster", _cluster, "the local multi-node Slurm cluster; `node down|up NAME` cuts a compute node "
                                  "off (a power cut) or brings it back", ["up", "down", "status", "node"]),
            ("hub", _hub, "the JupyterHub of this machine; `sudoers` prints the sudo rule of a hub account "
                          "that is not root", ["up", "down", "status", "sudoers"])):
        cmd = sub.add_parser(name, help=what)
        cmd.add_argument("action", choices=actions)
        cmd.add_argument("--site", help="site file (default: $AIFACTORY_SITE, then the installed one)")
        if name == "hub":
            cmd.add_argument("--account", default="jupyterhub", help="for sudoers: the hub's Unix account")
        if name == "cluster":
            cmd.add_argument("node_action", nargs="?", metavar="down|up", help="for node: what happens to it")
            cmd.add_argument("node", nargs="?", metavar="NAME", help="for node: the compute node, e.g. standard-1")
        cmd.set_defaults(func=func)

    usage = sub.add_parser("usage", help="core-hours and GPU-hours per project and user, from Slurm accounting")
    usage.add_argument("--since", default="30d", help="start of the period: 30d, 12h or a date (default: 30d)")
    usage.add_argument("--output", help="also write a PNG plot to this file")
    usage.add_argument("--site", help="site file, for the projects' allocations (default: the installed one)")
    usage.set_defaults(func=_usage)

    add_course_commands(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except SiteError as exc:
        print(exc, file=sys.stderr)
        return 1
    except RuntimeError as exc:  # ProvisionError and friends: a sentence, not a traceback
        print(f"aifactory: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
