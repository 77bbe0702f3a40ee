"""The package version (one place; read by the result metadata and ``gradnap --version``)."""

__version__ = "0.2.0"
