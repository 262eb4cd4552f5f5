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
    ]


def test_only_the_course_trainers_may_open_its_formgrader(demo_site):
    intro, dask = demo_site.courses
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
