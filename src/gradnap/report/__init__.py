"""The paper's report as a self-contained HTML page, and ``gradnap demo``."""

from gradnap.report.paper import Report, build_report

__all__ = ["Report", "build_report"]
