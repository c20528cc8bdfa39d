"""User-facing errors: each message says what is wrong and what to do about it.

The CLI prints these without a traceback (exit status 2); anything else is a bug.
"""

from __future__ import annotations

from pathlib import Path


class ToolkitError(Exception):
    """Base class of errors caused by the user's input, configuration or files."""


class DataError(ToolkitError, ValueError):
    """A data file cannot be used; names the file and, where known, the line."""

    def __init__(self, path: str | Path, problem: str, line: int | None = None, hint: str = "") -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}" + (f" ({hint})" if hint else ""))


class ModelDirError(ToolkitError):
    """A model directory is missing, incomplete, corrupt or from a newer toolkit."""


class ConfigError(ToolkitError, ValueError):
    """A configuration value is invalid."""


class InputError(ToolkitError, ValueError):
    """An input to a model (e.g. an empty text) cannot be processed."""


class ExportError(ToolkitError, RuntimeError):
    """An export does not reproduce the model (e.g. ONNX Runtime disagrees with torch); nothing was written."""


class OutputError(ToolkitError):
    """An output cannot be written (disk full, read-only, no permission): names it and what to do.

    Whoever raises it has removed what it had half-written, so nothing incomplete is left to be trusted later.
    """
