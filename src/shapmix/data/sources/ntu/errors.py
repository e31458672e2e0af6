"""The error every stage of the NTU reader raises for an invalid ``.skeleton`` file."""

from __future__ import annotations

import os

from ...format import DatasetFormatError
from ..common import locate


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
