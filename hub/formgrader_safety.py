"""The formgrader is as safe as `aifactory grade`: what a course's formgrader adds to nbgrader's.

nbgrader's formgrader runs as the course's grader account on the hub's own origin, so
a student's notebook is dangerous twice over: its outputs and Markdown are rendered
into the trainer's page, and its code would run as ``grader-<course>`` if the
formgrader autograded it. What this module adds: the settings ``hub/formgrader.py``
writes into the grader account's Jupyter config directory at every start
(`config_files`), and the Jupyter server extension they enable (this module):

* **Sanitised rendering.** nbgrader renders a submission with nbconvert's
  ``HTMLExporter`` and its own ``formgrade`` template, which renders Markdown cells
  without nbconvert's ``clean_html`` (so ``HTMLExporter.sanitize_html`` alone leaves
  raw HTML in Markdown alive). nbconvert's ``SanitizeHTML`` preprocessor cleans the
  notebook itself before any template sees it: raw HTML in Markdown and raw cells,
  ``text/html`` and ``text/markdown`` outputs through bleach (no scripts, no event
  handlers, no ``javascript:`` links), and every output type it does not know, such
  as ``application/javascript`` and widget views, removed.
* **A strict Content-Security-Policy** on every response under
  ``formgrader/submissions/`` (`SubmissionPolicy`, a tornado output transform this
  module adds as a Jupyter server extension): the submission page may run only
  scripts from the server itself and the inline scripts nbgrader's template puts
  before the notebook, by hash; anything inside the notebook, were the sanitiser
  ever to miss it, is refused by the browser. A student's own files served from
  there (an ``.html`` or ``.svg`` of the submission) are sandboxed: no script, an
  origin of their own.
* **Feedback without hidden tests.** The formgrader's "generate feedback" buttons run
  nbgrader's ``GenerateFeedback`` with the preprocessors of `aifactory feedback`
  (``courses/grading/feedback.py``).
* **No configuration from elsewhere.** nbgrader's ``/formgrader?path=DIR`` makes the
  formgrader load ``DIR/nbgrader_config.py``, Python run as the grader account, from any
  folder, on a plain GET: a link in a submission would do. The formgrader serves its
  course and nothing else (`CourseOnly`, answers 400 to ``path``).
* **No kernels, no terminals.** Nothing a trainer opens from the formgrader ("open live
  notebook") runs as the grader account (`server_settings`).
* **No autograding as the grader account.** The formgrader's autograde button would run
  the student's code as ``grader-<course>``, outside the sandbox of `aifactory grade`;
  its exporter (`RefuseAutograde`) fails before nbgrader touches the submission or
  the autograded folder, with a message that points to ``aifactory grade``.

A course's own ``nbgrader_config.py`` (the trainers') is read after these and could
undo them: the trainers own their course's configuration.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re

from nbconvert.exporters import Exporter

from aifactory.courses.grading.feedback import PREPROCESSORS as FEEDBACK_PREPROCESSORS

AUTOGRADE_MESSAGE = (
    "Autograding in the formgrader is off: it would run the student's code as the course's "
    "grader account, outside the grading sandbox. Grade on the cluster instead, as a trainer: "
    "aifactory grade {course} {assignment}"
)


# What a trainer still sees of a student's HTML: text formatting, tables, images by
# relative URL (bleach allows http, https and mailto links only, never javascript:).
ALLOWED_TAGS = sorted({
    "a", "abbr", "acronym", "b", "blockquote", "br", "caption", "code", "dd", "del", "details", "div",
    "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "ol", "p", "pre",
    "s", "small", "span", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th",
    "thead", "tr", "u", "ul",
})
ALLOWED_ATTRIBUTES = {
    "*": ["class", "title"],
    "a": ["href", "title"],
    "img": ["src", "alt", "width", "height"],
    "td": ["colspan", "rowspan", "align"],
    "th": ["colspan", "rowspan", "align"],
}
# Output types shown as they are: none of them can carry a script (SVG is drawn
# through <img src="data:...">, where a browser runs none of its scripts).
SAFE_OUTPUT_KEYS = sorted({
    "metadata", "text/plain", "text/latex", "application/json", "image/png", "image/jpeg", "image/svg+xml",
})

SERVER_EXTENSION = "aifactory.hub.formgrader_safety"
PROGRESS_EXTENSION = "aifactory.hub.class_progress"


class RefuseAutograde(Exporter):
    """The exporter of the formgrader's Autograde: refuses before any file is touched.

    nbgrader's ``Autograde.start`` builds its exporter before it removes the old
    autograded folder or copies the submission, so failing here leaves both as they were.
    """

    def __init__(self, *args, **kwargs):
        parent = kwargs.get("parent")
        coursedir = getattr(parent, "coursedir", None)
        message = AUTOGRADE_MESSAGE.format(course=getattr(coursedir, "course_id", "") or "<course>",
                                           assignment=getattr(coursedir, "assignment_id", "") or "<assignment>")
        if parent is not None:   # the formgrader shows the log above the traceback
            parent.log.error(message)
        raise PermissionError(message)


def nbgrader_settings() -> dict:
    """nbgrader's configuration in a course's formgrader (nbgrader_config.json). Pure."""
    return {
        # Not HTMLExporter.sanitize_html: nbgrader's template ignores it for Markdown cells, and
        # for outputs it escapes tables' headers and images; SanitizeHTML covers both.
        "HTMLExporter": {"preprocessors": ["nbconvert.preprocessors.sanitize.SanitizeHTML"]},
        "SanitizeHTML": {
            "tags": ALLOWED_TAGS,
            "attributes": ALLOWED_ATTRIBUTES,
            "safe_output_keys": SAFE_OUTPUT_KEYS,
            "sanitized_output_types": ["text/html", "text/markdown"],
        },
        "GenerateFeedback": {"preprocessors": FEEDBACK_PREPROCESSORS},
        "Autograde": {"exporter_class": f"{SERVER_EXTENSION}.RefuseAutograde"},
    }


# No kernel spec has this name: the formgrader's server offers no kernel at all ...
NO_KERNELS = ["no-kernels-in-the-formgrader"]


@functools.cache
def _no_kernels_manager():
    from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
    from tornado import web

    class NoKernels(AsyncMappingKernelManager):
        """... and starts none, whatever name it is asked for (the native kernel is always known)."""

        async def start_kernel(self, *args, **kwargs):
            raise web.HTTPError(403, "The formgrader runs no kernels: open the notebook in your own server.")

    return NoKernels


def __getattr__(name: str):  # the class is built on first use: jupyter_server is imported only in the formgrader
    if name == "NoKernels":
        return _no_kernels_manager()
    raise AttributeError(name)


def server_settings() -> dict:
    """The Jupyter server's configuration in a course's formgrader (jupyter_server_config.json). Pure.

    No terminals and no kernels: its "open live notebook" link would otherwise let a trainer
    run a student's notebook, or anything else, as the grader account, outside the sandbox.
    Its extensions: this module and the class progress page (hub/class_progress.py)."""
    return {
        "ServerApp": {"jpserver_extensions": {SERVER_EXTENSION: True, PROGRESS_EXTENSION: True},
                      "terminals_enabled": False,
                      "kernel_manager_class": f"{SERVER_EXTENSION}.NoKernels"},
        "KernelSpecManager": {"allowed_kernelspecs": NO_KERNELS},
    }


def config_files() -> dict[str, str]:
    """File name -> content of the formgrader's Jupyter config directory. Pure."""
    return {
        "nbgrader_config.json": json.dumps(nbgrader_settings(), indent=2, sort_keys=True) + "\n",
        "jupyter_server_config.json": json.dumps(server_settings(), indent=2, sort_keys=True) + "\n",
    }


# --- Content-Security-Policy of the submission pages -------------------------------------------

# Where nbgrader's formgrade template opens the notebook (nbconvert re-serialises the page, so
# attributes may come in any order): everything before its first match is the template's.
NOTEBOOK_MARKER = re.compile(rb"""<div\b[^>]*\sid=["']?notebook["'\s>]""", re.IGNORECASE)
_INLINE_SCRIPT = re.compile(rb"<script(?P<attrs>(?:\s[^>]*)?)>(?P<body>.*?)</script>", re.DOTALL | re.IGNORECASE)
_EVENT_HANDLER = re.compile(rb"""\son[a-z]+\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)

_COMMON = [
    "default-src 'none'",
    "style-src 'self' 'unsafe-inline'",   # nbconvert inlines its CSS; a style runs no script
    "img-src 'self' data:",
    "font-src 'self' data:",
    "connect-src 'self'",                 # the grade and comment API
    "base-uri 'none'",
    "form-action 'self'",
    "object-src 'none'",
    "frame-ancestors 'none'",             # as JupyterHub's own policy for single-user servers
]
FILE_POLICY = "; ".join(["sandbox", "default-src 'none'", "img-src 'self' data:", "style-src 'unsafe-inline'",
                         "frame-ancestors 'none'"])


def _sha256(source: bytes) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source).digest()).decode() + "'"


def submission_policy(page: bytes) -> str:
    """The policy of one rendered submission page: its template's own inline scripts and
    inline handlers (those before the notebook), by hash; nothing of the notebook. Pure."""
    marker = NOTEBOOK_MARKER.search(page)
    template = page[:marker.start()] if marker else b""
    hashes = sorted({_sha256(m["body"]) for m in _INLINE_SCRIPT.finditer(template)
                     if b"src=" not in m["attrs"].lower()})
    handlers = sorted({_sha256(a or b) for a, b in _EVENT_HANDLER.findall(template)})
    script_src = ["'self'", *hashes] + (["'unsafe-hashes'", *handlers] if handlers else [])
    return "; ".join(["script-src " + " ".join(script_src), *_COMMON])


def policy_for(status: int, content_type: str, body: bytes) -> str:
    """The policy of a response under formgrader/submissions/: a submission page gets
    `submission_policy`; anything else (a student's file, an error page) is sandboxed. Pure."""
    if status == 200 and content_type.startswith("text/html") and NOTEBOOK_MARKER.search(body):
        return submission_policy(body)
    return FILE_POLICY


def _submission_transform(prefix: str):
    from tornado.web import OutputTransform

    class SubmissionPolicy(OutputTransform):
        """Sets `policy_for` on every response whose path starts with `prefix`."""

        def __init__(self, request):
            super().__init__(request)
            self._ours = request.path.startswith(prefix)

        def transform_first_chunk(self, status_code, headers, chunk, finishing):
            if self._ours:
                # A page written in several chunks would be judged on its first: not a
                # submission page (nbgrader writes those at once), hence sandboxed.
                headers["Content-Security-Policy"] = policy_for(
                    status_code, headers.get("Content-Type", ""), chunk if finishing else b"")
            return status_code, headers, chunk

    return SubmissionPolicy


def _course_only_handler():
    from nbgrader.server_extensions.formgrader.handlers import FormgraderHandler
    from tornado import web

    class CourseOnly(FormgraderHandler):
        """nbgrader's entry page without its ``path`` argument (another folder's config)."""

        @web.authenticated
        def get(self):
            if self.get_argument("path", ""):
                raise web.HTTPError(400, "this formgrader serves its course's directory only")
            return super().get()

    return CourseOnly


def _jupyter_server_extension_points():
    return [{"module": SERVER_EXTENSION}]


def _load_jupyter_server_extension(serverapp) -> None:
    from jupyter_server.utils import url_path_join

    base_url = serverapp.web_app.settings["base_url"]
    # Jupyter server loads its extensions in alphabetical order, this one before nbgrader's, and
    # tornado gives a path to the first rule added for it: this handler, not nbgrader's.
    serverapp.web_app.add_handlers(".*$", [(url_path_join(base_url, "formgrader/?"), _course_only_handler())])
    prefix = url_path_join(base_url, "formgrader/submissions/")
    # First of the transforms: it must see the page as written, before any compression.
    serverapp.web_app.transforms.insert(0, _submission_transform(prefix))
    serverapp.log.info("aifactory: Content-Security-Policy on %s*", prefix)
