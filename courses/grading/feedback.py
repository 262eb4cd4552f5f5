"""Feedback that does not reveal hidden tests (nbgrader #917).

nbgrader's feedback shows each grade cell as it was executed: the hidden
tests' source and, when one fails, a traceback quoting the failing line. This
preprocessor removes the hidden region from the source and replaces the
outputs of a cell that had hidden tests by a short verdict.
"""

from __future__ import annotations

import re

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

BEGIN, END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
_HIDDEN = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", re.DOTALL)
_UNCLOSED = re.compile(re.escape(BEGIN) + r".*", re.DOTALL)


def strip_hidden(source: str) -> tuple[str, bool]:
    """Source without hidden regions (an unclosed one hides the rest); whether any was there."""
    if BEGIN not in source:
        return source, False
    stripped = _UNCLOSED.sub("", _HIDDEN.sub("", source))
    return stripped.rstrip() + "\n# (hidden tests are not shown)", True


def verdict(outputs: list) -> list:
    failed = any(o.get("output_type") == "error" for o in outputs)
    text = "Some tests failed (details hidden).\n" if failed else "All tests passed.\n"
    return [{"output_type": "stream", "name": "stdout", "text": text}]


class HideHiddenTests(Preprocessor):
    enabled = Bool(True, help="nbconvert preprocessors are off by default; this one is the point of feedback").tag(
        config=True)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code":
            source, had = strip_hidden(cell.source)
            if had:
                cell.source = source
                cell.outputs = verdict(cell.get("outputs", []))
        return cell, resources


# What every path that writes feedback runs (by name, as nbgrader's config takes it): the
# formgrader's "generate feedback" button (hub/formgrader_safety.py) as `aifactory feedback`.
PREPROCESSORS = [
    "nbgrader.preprocessors.GetGrades",
    f"{__name__}.HideHiddenTests",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
