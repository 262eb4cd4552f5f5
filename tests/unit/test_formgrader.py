"""Per-course formgrader services derived from the site, by equality."""

from aifactory.hub.formgrader import formgrader_services, formgrader_url_path, service_name, singleuser_argv
from aifactory.hub.roles import trainer_scopes


def test_every_course_of_the_site_gets_its_formgrader(demo_site):
    assert formgrader_services(demo_site, "/v/bin/python") == [
        {
            "name": "formgrader-intro-dl",
            "url": "http://127.0.0.1:18100",
            "command": ["/v/bin/python", "-m", "aifactory.hub.formgrader", "intro-dl"],
            "display": True,
            "oauth_no_confirm": True,
            "timeout": 120,
        },
        {
            "name": "formgrader-dask-scaling",
            "url": "http://127.0.0.1:18101",
            "command": ["/v/bin/python", "-m", "aifactory.hub.formgrader", "dask-scaling"],
            "display": True,
            "oauth_no_confirm": True,
            "timeout": 120,
        },
        {
            "name": "formgrader-pytorch",
            "url": "http://127.0.0.1:18102",
            "command": ["/v/bin/python", "-m", "aifactory.hub.formgrader", "pytorch"],
            "display": True,
            "oauth_no_confirm": True,
            "timeout": 120,
        },
    ]


def test_only_the_course_trainers_may_open_its_formgrader(demo_site):
    intro, dask, _ = demo_site.courses
    assert "access:services!service=formgrader-intro-dl" in trainer_scopes(intro)
    assert "access:services!service=formgrader-intro-dl" not in trainer_scopes(dask)
    assert service_name(dask) == "formgrader-dask-scaling"
    assert formgrader_url_path("intro-dl") == "/services/formgrader-intro-dl/formgrader"


def test_the_formgrader_serves_the_course_directory():
    assert singleuser_argv("intro-dl", "/srv/aifactory/courses/intro-dl") == [
        "--ServerApp.root_dir=/srv/aifactory/courses/intro-dl",
        "--ServerApp.default_url=/formgrader",
        "--CourseDirectory.root=/srv/aifactory/courses/intro-dl",
        "--CourseDirectory.course_id=intro-dl",
    ]


def test_adding_a_course_restarts_the_hub_only_when_it_lacks_the_formgrader():
    from aifactory.hub.formgrader import hub_step

    assert hub_step("ml101", None) == "start"
    assert hub_step("ml101", {"idle-culler", "formgrader-intro-dl"}) == "restart"
    assert hub_step("ml101", {"idle-culler", "formgrader-ml101"}) == "ready"


def test_a_course_not_set_up_gets_a_formgrader_that_says_what_to_run():
    """The hub stops when a managed service never answers: this one answers, below 500."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}/"}
    proc = subprocess.Popen([sys.executable, "-m", "aifactory.hub.formgrader", "no-such-course"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/services/formgrader-no-such-course/", timeout=2)
            except urllib.error.HTTPError as exc:
                assert exc.code == 404
                assert "aifactory course setup no-such-course" in exc.read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline, "the placeholder never answered"
                time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()


def test_the_formgrader_dies_with_the_hub_that_started_it():
    """A killed hub must not leave its formgrader holding the port with a token the next hub lacks."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hub = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time\n"
         "p = subprocess.Popen([sys.executable, '-m', 'aifactory.hub.formgrader', 'no-such-course'],"
         " start_new_session=True)\n"
         "print(p.pid, flush=True)\n"
         "time.sleep(600)\n"],
        env={**os.environ, "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}/"},
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    formgrader = int(hub.stdout.readline())
    try:
        deadline = time.monotonic() + 30
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:   # serving
            assert time.monotonic() < deadline
            time.sleep(0.1)
        hub.send_signal(signal.SIGKILL)
        hub.wait()
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{formgrader}") and "Z" not in open(f"/proc/{formgrader}/stat").read().split()[2]:
            assert time.monotonic() < deadline, "the formgrader outlived its hub"
            time.sleep(0.1)
    finally:
        hub.kill()
        try:
            os.kill(formgrader, signal.SIGKILL)
        except ProcessLookupError:
            pass
