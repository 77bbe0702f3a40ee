"""The paper's report as a self-contained HTML page, and ``gradnap demo``.

- :mod:`~gradnap.report.page` — :class:`Report`, the HTML page writer (headings, text,
  tables, embedded PNG figures);
- :mod:`~gradnap.report.paper` — :func:`build_report`, the paper's report of a result,
  and the figures of a result that ``gradnap plot`` shares;
- :mod:`~gradnap.report.demo` — ``gradnap demo``: from nothing to a report.

Names are imported on first use, so ``import gradnap.report`` loads neither torch nor
matplotlib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradnap._lazy import lazy_names

if TYPE_CHECKING:  # pragma: no cover
    from gradnap.report.demo import run_demo
    from gradnap.report.page import Report
    from gradnap.report.paper import build_report

__all__ = ["Report", "build_report", "run_demo"]

_LAZY = {
    "Report": "gradnap.report.page",
    "build_report": "gradnap.report.paper",
    "run_demo": "gradnap.report.demo",
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())
