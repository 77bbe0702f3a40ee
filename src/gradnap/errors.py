"""The one exception type for user errors."""

from __future__ import annotations


class GradnapError(Exception):
    """A problem with the user's input (a file, an argument, a model).

    The message names the file or argument and says what is wrong. The CLI prints it
    without a traceback and exits with status 2.
    """
