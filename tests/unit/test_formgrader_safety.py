"""The formgrader's safety settings: what nbgrader renders of a student's and runs for a trainer."""

from __future__ import annotations

import json
import os
import sys

import nbformat
import pytest
from traitlets.config import Config

from aifactory.hub.formgrader_safety import (
    AUTOGRADE_MESSAGE,
    FILE_POLICY,
    config_files,
    nbgrader_settings,
    policy_for,
    submission_policy,
)

# A student's notebook that would run its script in the trainer's browser.
ATTACKS = [
    nbformat.v4.new_markdown_cell('Markdown text STUDENT-MD <img src=x onerror="document.title=\'pwned-md\'">'
                                  '<script>window.pwned = "md"</script>'),
    nbformat.v4.new_code_cell("show()", outputs=[
        nbformat.v4.new_output("display_data", data={
            "text/html": '<b>STUDENT-HTML</b><img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
                         '<a href="javascript:alert(1)">link</a><table><tr><th>STUDENT-TH</th></tr></table>',
            "text/plain": "plain"}),
        nbformat.v4.new_output("display_data", data={"application/javascript": "window.pwned = 3"}),
        nbformat.v4.new_output("stream", name="stdout", text="STUDENT-STDOUT <script>x</script>\n"),
    ]),
]


def formgrade_html(cells) -> str:
    """The submission page as nbgrader's formgrader renders it, with our settings (nbgrader's
    FormgradeExtension builds HTMLExporter(config=...) with template `formgrade` the same way)."""
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers

    config = Config(nbgrader_settings())
    config.HTMLExporter.template_name = "formgrade"
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    nb = nbformat.v4.new_notebook(cells=cells)
    resources = {"assignment_id": "a1", "notebook_id": "a1", "submission_id": "s1", "index": 0, "total": 1,
                 "base_url": "/services/formgrader-c", "student": "student1", "last_name": None,
                 "first_name": None, "notebook_path": "autograded/student1/a1/a1.ipynb"}
    html, _ = HTMLExporter(config=config).from_notebook_node(nb, resources=resources)
    return html


def notebook_part(html: str) -> str:
    return html.split('id="notebook"', 1)[1]


def test_a_students_scripts_are_not_rendered_into_the_submission_page():
    page = notebook_part(formgrade_html(ATTACKS))
    for alive in ("onerror", "<script", "javascript:", "window.pwned=1", "window.pwned = 3"):
        assert alive not in page, alive
    for shown in ("STUDENT-MD", "<b>STUDENT-HTML</b>", "STUDENT-STDOUT", "<th>STUDENT-TH</th>"):
        assert shown in page, shown


def test_without_the_settings_nbgraders_page_would_run_them():
    """The test above is not vacuous: nbgrader's own rendering keeps every script."""
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers

    config = Config()
    config.HTMLExporter.template_name = "formgrade"
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    html, _ = HTMLExporter(config=config).from_notebook_node(
        nbformat.v4.new_notebook(cells=ATTACKS),
        resources={"base_url": "", "index": 0, "total": 1, "submission_id": "s1"})
    assert "onerror" in notebook_part(html) and "window.pwned = 3" in notebook_part(html)


def test_the_submission_page_runs_its_template_scripts_and_none_of_the_notebook():
    html = formgrade_html(ATTACKS).encode()
    policy = submission_policy(html)
    assert policy.startswith("script-src 'self' 'sha256-")
    assert "'unsafe-inline'" not in policy.split(";")[0] and "'unsafe-eval'" not in policy
    assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
    # The template's inline scripts and its name toggle are allowed by hash ...
    import base64
    import hashlib

    def sha(text: bytes) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text).digest()).decode() + "'"

    assert sha(b"toggle_name(true);") in policy and "'unsafe-hashes'" in policy
    # ... and a script put inside the notebook, had the sanitiser missed it, is not.
    evil = html.replace(b'id="notebook-container">', b'id="notebook-container"><script>window.pwned=1</script>')
    assert evil != html
    assert submission_policy(evil) == policy
    assert sha(b"window.pwned=1") not in submission_policy(evil)


def test_anything_else_under_submissions_is_sandboxed():
    assert policy_for(200, "text/html; charset=UTF-8", b"<script>alert(1)</script>") == FILE_POLICY
    assert policy_for(404, "text/html", b'<div id="notebook">') == FILE_POLICY
    assert policy_for(200, "image/svg+xml", b"<svg onload=alert(1)>") == FILE_POLICY
    assert FILE_POLICY.startswith("sandbox;") and "script-src" not in FILE_POLICY


def test_the_formgrader_config_files():
    files = config_files()
    assert sorted(files) == ["jupyter_server_config.json", "nbgrader_config.json"]
    assert json.loads(files["jupyter_server_config.json"]) == {
        "ServerApp": {"jpserver_extensions": {"aifactory.hub.formgrader_safety": True,
                                              "aifactory.hub.class_progress": True}, "terminals_enabled": False,
                      "kernel_manager_class": "aifactory.hub.formgrader_safety.NoKernels"},
        "KernelSpecManager": {"allowed_kernelspecs": ["no-kernels-in-the-formgrader"]},
    }
    nbgrader = json.loads(files["nbgrader_config.json"])
    assert nbgrader["GenerateFeedback"] == {"preprocessors": [
        "nbgrader.preprocessors.GetGrades",
        "aifactory.courses.grading.feedback.HideHiddenTests",
        "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    ]}
    assert nbgrader["Autograde"] == {"exporter_class": "aifactory.hub.formgrader_safety.RefuseAutograde"}
    assert nbgrader["HTMLExporter"]["preprocessors"] == ["nbconvert.preprocessors.sanitize.SanitizeHTML"]


def test_the_formgrader_writes_them_into_its_config_directory(tmp_path):
    from aifactory.hub.formgrader import write_jupyter_config

    write_jupyter_config(str(tmp_path / ".jupyter"))
    write_jupyter_config(str(tmp_path / ".jupyter"))   # every start: the same files again
    assert {p.name: p.read_text() for p in (tmp_path / ".jupyter").iterdir()} == config_files()


@pytest.fixture
def course(tmp_path, monkeypatch):
    """A course directory with one assignment (a hidden test), submitted and autograded by
    student1; the formgrader's nbgrader API on it, configured as in the formgrader."""
    from nbgrader.api import Gradebook
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    from tests.integration.test_exchange_permissions import tiny_assignment

    # nbgrader creates the gradebook through the `alembic` command of its environment.
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    tiny_assignment(tmp_path, "a1")
    config = Config(nbgrader_settings())
    config.Exchange.root = str(tmp_path / "exchange")
    config.CourseDirectory.root = str(tmp_path)
    config.CourseDirectory.course_id = "c"
    coursedir = CourseDirectory(config=config)
    api = NbGraderAPI(coursedir=coursedir, config=config)
    with Gradebook(coursedir.db_url, "c") as gb:
        gb.add_student("student1")
    return tmp_path, api


def test_the_formgrader_never_autogrades(course):
    root, api = course
    assert api.generate_assignment("a1")["success"]
    release = nbformat.read(root / "release" / "a1" / "a1.ipynb", 4)
    release.cells[0].source = ("def square(x):\n    return x * x\nimport pathlib\n"
                               f"pathlib.Path({str(root / 'RAN')!r}).write_text('ran')")
    submitted = root / "submitted" / "student1" / "a1"
    submitted.mkdir(parents=True)
    nbformat.write(release, submitted / "a1.ipynb")
    (root / "autograded" / "student1" / "a1").mkdir(parents=True)
    (root / "autograded" / "student1" / "a1" / "kept").write_text("graded by aifactory grade\n")

    result = api.autograde("a1", "student1")
    assert not result["success"]
    assert AUTOGRADE_MESSAGE.format(course="c", assignment="a1") in result["error"]
    assert "aifactory grade c a1" in result["log"]     # shown first in the formgrader's error dialog
    assert not (root / "RAN").exists()
    # What `aifactory grade` wrote is left as it was.
    assert (root / "autograded" / "student1" / "a1" / "kept").exists()


def test_feedback_from_the_formgrader_hides_the_hidden_tests(course):
    from nbgrader.converters import Autograde

    root, api = course
    assert api.generate_assignment("a1")["success"]
    submitted = root / "submitted" / "student1" / "a1"
    submitted.mkdir(parents=True)
    nbformat.write(nbformat.read(root / "release" / "a1" / "a1.ipynb", 4), submitted / "a1.ipynb")
    # Autograded as `aifactory grade` imports its sandbox's results: nbgrader's steps without running.
    plain = Config()
    plain.CourseDirectory.root = str(root)
    plain.CourseDirectory.course_id = "c"
    plain.Execute.enabled = False
    api.coursedir.assignment_id, api.coursedir.student_id = "a1", "student1"
    Autograde(coursedir=api.coursedir, config=plain).start()

    result = api.generate_feedback("a1", "student1")
    assert result["success"], result
    html = (root / "feedback" / "student1" / "a1" / "a1.html").read_text()
    assert "hidden tests are not shown" in html   # HideHiddenTests ran
    assert "HIDDEN-MARKER" not in html            # the hidden one is not
