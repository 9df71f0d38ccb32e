"""A griffe extension for the API reference: the house docstrings head their doctests ``Example:``.

griffe's Google parser knows only ``Examples:`` as the section whose ``>>>`` lines are code; under
``Example:`` it renders them as Markdown prose (and ``[(5, 1), (5, 2)]`` becomes a broken link). This
reads ``Example:`` as ``Examples:`` when the reference is built; the sources keep their spelling.
"""

from __future__ import annotations

import re

import griffe

_EXAMPLE_HEADING = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE_HEADING.sub(r"\1Examples:", obj.docstring.value)
