"""The error types every layer raises, in one leaf module (it imports nothing of the package).

The ``shapmix`` command prints these without a traceback and exits with status 2:

* :class:`ConfigError`: a bad configuration key or value, or a bad command-line option; the
  message names the key (or option) and what is allowed.
* :class:`DatasetFormatError`: a file does not hold what the project's dataset format requires.
* :class:`SourceFormatError`: a source file (a format a reader of :mod:`shapmix.data.sources`
  converts) does not hold what its format requires; the message says where.
* :class:`NTUFormatError`: a raw NTU RGB+D ``.skeleton`` file is invalid.
* :class:`CheckpointError`: a checkpoint file cannot be read (truncated, corrupt, not a
  checkpoint); the message names the file.

:class:`SourceFormatError` and :class:`NTUFormatError` are :class:`DatasetFormatError`\\ s, and
all of them are :class:`ValueError`\\ s.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CheckpointError", "ConfigError", "DatasetFormatError", "NTUFormatError", "SourceFormatError", "locate"]


class ConfigError(ValueError):
    """A configuration problem; the message names the key and what is allowed."""


class DatasetFormatError(ValueError):
    """A file does not hold what the format requires; the message names the file."""


class CheckpointError(ValueError):
    """A checkpoint file cannot be read; the message names the file and says why."""


def locate(path: str | os.PathLike, line: int | None = None, where: str | None = None) -> str:
    """Where a problem is, as every reader's error message begins: ``FILE``, ``FILE:LINE``,
    ``FILE at WHERE`` (a json path, an array name) or ``FILE:LINE at WHERE``."""
    location = str(path)
    if line is not None:
        location += f":{line}"
    if where is not None:
        location += f" at {where}"
    return location


class SourceFormatError(DatasetFormatError):
    """A source file does not hold what its format requires.

    The message reads ``FILE:LINE: what`` (text formats), ``FILE at JSON.PATH: what`` (json) or
    ``FILE: what``; the parts are also available as attributes.
    """

    def __init__(
        self, path: str | os.PathLike, what: str, line: int | None = None, where: str | None = None
    ) -> None:
        self.path = Path(path)
        self.line = line
        self.where = where
        self.what = what
        super().__init__(f"{locate(self.path, line, where)}: {what}")


class NTUFormatError(DatasetFormatError):
    """A ``.skeleton`` file (or its processing) is invalid.

    The message reads ``FILE:LINE: what was expected, what was found`` (``FILE: ...`` when the
    problem is not on one line, e.g. no body survives denoising).

    Attributes:
        path: the file (or the name given to the parser).
        line: 1-based line number, or ``None``.
        reason: the message without the location.
    """

    def __init__(self, path: str | os.PathLike, line: int | None, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        super().__init__(f"{locate(self.path, line)}: {reason}")

    def __reduce__(self):  # picklable across worker processes
        return (type(self), (self.path, self.line, self.reason))
