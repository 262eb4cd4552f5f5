"""The nbgrader exchange plugin (formgrader, assignment list) finds courses where the site keeps them."""

from aifactory.courses.exchange.layout import CoursePaths
from aifactory.extensions.nbgrader.exchange import Exchange
from aifactory.site import load_site


def test_the_plugin_finds_a_course_where_the_site_file_keeps_it_with_its_size_limit(monkeypatch):
    monkeypatch.setenv("AIFACTORY_SITE", "demo")
    paths = Exchange.course_paths(Exchange.__new__(Exchange), "intro-dl")
    assert paths == CoursePaths.of(load_site("demo"), "intro-dl")
    assert str(paths.exchange) == "/srv/aifactory/exchange/intro-dl"
    assert paths.max_submission_bytes == 100 * 2**20
