"""One nbgrader formgrader per course, as a JupyterHub service derived from the site.

Each course of the site file gets a service ``formgrader-<id>`` at
``/services/formgrader-<id>/formgrader``: a Jupyter server with nbgrader's formgrader,
run by the hub as root through this module, which becomes the course's grader
account (``grader-<id>``, member of the course's Unix groups, made by
``aifactory course setup``) and serves the course directory. Only the course's
trainers (their role's ``access:services!service=formgrader-<id>``) and admins get in.

The formgrader is a page of its own, never an iframe: JupyterHub >= 4.1 forbids
framing single-user servers (``frame-ancestors 'none'``), which is why nbgrader's
formgrader tab inside JupyterLab stays blank (nbgrader #1870, #1947).

What it shows and runs of a student's is made as safe as `aifactory grade`
(sanitised submissions, a strict Content-Security-Policy, feedback without hidden
tests, no autograding as the grader account): see ``formgrader_safety.py``, whose
settings `main` writes into the grader account's Jupyter config directory.

The formgrader dies with the hub (Linux's parent-death signal, as the idle culler):
a killed hub leaves no formgrader holding the port with a token the next hub
does not know.

A course whose grader account does not exist yet still gets a service: it answers
every request (404, as the hub takes a 5xx for "not up yet") with what to run, so
the hub, which stops when a managed service fails to start, never depends on a
course's setup.

JupyterHub 6.1 adds services at runtime (``POST /hub/api/services/<name>``) only
when they are not managed (no ``command``), and has no API for roles; so a new
course's formgrader and its trainers' role take a hub restart
(`aifactory course add` does it; servers are Slurm jobs and are reattached).
"""

from __future__ import annotations

import os
import sys

from aifactory.site import load_site
from aifactory.site.files import atomic_write
from aifactory.site.schema import Course, Site

SERVICE_PREFIX = "formgrader-"


def service_name(course: Course | str) -> str:
    return SERVICE_PREFIX + (course if isinstance(course, str) else course.id)


def formgrader_url_path(course_id: str) -> str:
    """Where a trainer opens the formgrader, below the hub's base URL."""
    return f"/services/{service_name(course_id)}/formgrader"


def formgrader_services(site: Site, python: str) -> list[dict]:
    """`JupyterHub.services` entries: one managed formgrader per course, in site order."""
    return [
        {
            "name": service_name(course),
            "url": f"http://127.0.0.1:{site.hub.formgrader_port_base + index}",
            "command": [python, "-m", "aifactory.hub.formgrader", course.id],
            "display": True,
            "oauth_no_confirm": True,
            "timeout": site.hub.formgrader_start_timeout,
        }
        for index, course in enumerate(site.courses)
    ]


def hub_step(course_id: str, running: set[str] | None) -> str:
    """What the hub needs once a course is set up, from the services it runs (None: hub down).

    "start": the hub is down and reads the site when it starts; "ready": it already
    serves the course's formgrader; "restart": it must restart to add the managed
    service and the trainers' role (JupyterHub 6.1 adds neither at runtime). Pure.
    """
    if running is None:
        return "start"
    return "ready" if service_name(course_id) in running else "restart"


def running_services(hub_url: str, token: str) -> set[str] | None:
    """Names of the services the running hub knows; None when it does not answer."""
    from .course_sync import hub_api

    try:
        return set(hub_api(hub_url, token, "GET", "/services") or ())
    except (OSError, ValueError):  # urllib's errors are OSErrors
        return None


def wait_until_served(hub_url: str, course_id: str, timeout_s: float = 180) -> float:
    """Seconds until the proxy reaches the course's formgrader (any answer but a 5xx)."""
    import time
    import urllib.error
    import urllib.request

    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            urllib.request.urlopen(f"{hub_url}/services/{service_name(course_id)}/api", timeout=10).close()
            return time.monotonic() - started
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the formgrader of {course_id} does not answer after {timeout_s:.0f}s: "
                       "see /var/log/aifactory/jupyterhub.log")


def singleuser_argv(course_id: str, course_dir: str) -> list[str]:
    """Arguments of jupyterhub-singleuser serving one course's formgrader. Pure."""
    return [
        f"--ServerApp.root_dir={course_dir}",
        "--ServerApp.default_url=/formgrader",
        f"--CourseDirectory.root={course_dir}",
        f"--CourseDirectory.course_id={course_id}",
    ]


def _become(user: str) -> None:
    import pwd

    entry = pwd.getpwnam(user)
    os.initgroups(user, entry.pw_gid)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ.update(HOME=entry.pw_dir, USER=user, LOGNAME=user)


def _explain(message: str) -> None:
    """Serve `message` on the service's port until the hub stops us. 404, not 503: the hub
    waits for any answer but a 5xx, and exits when a managed service never gives one."""
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from urllib.parse import urlparse

    class Explain(BaseHTTPRequestHandler):
        def do_GET(self):
            body = message.encode()
            self.send_response(404)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    print(message, file=sys.stderr, flush=True)
    HTTPServer((url.hostname or "127.0.0.1", url.port), Explain).serve_forever()


def write_jupyter_config(directory: str) -> None:
    """Write the formgrader's safety settings (`formgrader_safety.config_files`) into the grader
    account's Jupyter config directory, read by the server and by nbgrader at every request."""
    from .formgrader_safety import config_files

    os.makedirs(directory, mode=0o700, exist_ok=True)
    for name, text in config_files().items():
        atomic_write(os.path.join(directory, name), text, 0o600)


def main(argv: list[str] | None = None) -> None:
    """Run by the hub (as root): become the grader account and serve the formgrader."""
    import pwd

    from aifactory.courses.exchange.layout import CoursePaths
    from aifactory.site.identity import formgrader_user

    from .culler import die_with_parent

    die_with_parent()
    (course_id,) = argv if argv is not None else sys.argv[1:]
    course_dir = str(CoursePaths.of(load_site(), course_id).course_dir)
    user = formgrader_user(course_id)
    try:
        pwd.getpwnam(user)
    except KeyError:
        _explain(f"course {course_id} is not set up: run `aifactory course setup {course_id}` as root")
        return
    if os.geteuid() == 0:
        _become(user)
        # Again: a change of user clears the parent-death signal.
        die_with_parent()
    if not os.access(course_dir, os.R_OK | os.W_OK | os.X_OK):
        _explain(f"{user} cannot use {course_dir}: run `aifactory course setup {course_id}` as root")
        return
    os.umask(0o007)   # the course's trainers share what the formgrader writes, through its group
    os.chdir(course_dir)
    from jupyter_core.paths import jupyter_config_dir

    write_jupyter_config(jupyter_config_dir())
    from jupyterhub.singleuser import main as singleuser

    sys.argv = ["jupyterhub-singleuser", *singleuser_argv(course_id, course_dir)]
    singleuser()


if __name__ == "__main__":
    main()
