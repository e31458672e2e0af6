"""The staging area of a directory conversion: every finished file's rows and a journal, next
to the output, so that an interrupted :func:`~.convert.convert_ntu` resumes where it stopped.

Results are appended to ``OUT.partial/rows.f32`` with a journal line per finished file (flushed
every :data:`JOURNAL_FLUSH_EVERY` files or :data:`JOURNAL_FLUSH_SECONDS`); the output is
written from here once every file is done, and the folder deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .constants import ROW_COLUMNS

STAGING_SUFFIX = ".partial"
STAGING_ROWS = "rows.f32"
STAGING_JOURNAL = "journal.tsv"
STAGING_SETTINGS = "settings.json"
STAGING_VERSION = 1
JOURNAL_FLUSH_EVERY = 64
"""Results between journal flushes (also flushed every JOURNAL_FLUSH_SECONDS)."""
JOURNAL_FLUSH_SECONDS = 2.0
ROW_BYTES = ROW_COLUMNS * np.dtype(np.float32).itemsize
STATUS_OK = "ok"
STATUS_FAILED = "failed"


@dataclass
class StagedResult:
    """What a worker made of one file: its candidate ``index``, ``status`` (:data:`STATUS_OK` or
    :data:`STATUS_FAILED`), the ``(T, 150)`` float32 ``rows`` when ok, and ``detail`` (the failure
    reason; for pyskl's convention, the number of persons of a finished sample)."""

    index: int
    status: str
    rows: np.ndarray | None
    detail: str


class Staging:
    """Append-only results of a conversion, next to its output, so a run can resume.

    ``rows.f32`` holds the valid rows of every finished sample back to back; ``journal.tsv``
    has one line ``index, status, offset (rows), frames, detail`` per finished file (detail: the
    failure reason; for pyskl's convention, the number of persons of a finished sample) and is
    only written after the rows it points to have been flushed.
    """

    def __init__(self, root: Path, settings: dict) -> None:
        self.root = root
        self.rows_path = root / STAGING_ROWS
        self.journal_path = root / STAGING_JOURNAL
        self.settings_path = root / STAGING_SETTINGS
        self.entries: dict[int, tuple[str, int, int, str]] = {}
        if root.is_dir() and self._settings_match(settings):
            self._load()
        else:
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            self.settings_path.write_text(json.dumps(settings, indent=1), encoding="utf-8")
        self.resumed = len(self.entries)
        # kept open for the whole run; closed by close() (convert_ntu's finally)
        self._rows = open(self.rows_path, "ab")  # noqa: SIM115
        self._journal = open(self.journal_path, "a", encoding="utf-8")  # noqa: SIM115
        self._next_row = self._rows.tell() // ROW_BYTES
        self._pending: list[str] = []
        self._last_flush = time.monotonic()

    def _settings_match(self, settings: dict) -> bool:
        try:
            return json.loads(self.settings_path.read_text(encoding="utf-8")) == settings
        except (OSError, ValueError):
            return False

    def _load(self) -> None:
        """Read the journal's complete lines; cut the rows file after the last recorded row."""
        end_row = 0
        rows_size = self.rows_path.stat().st_size if self.rows_path.exists() else 0
        good = []
        if self.journal_path.exists():
            text = self.journal_path.read_text(encoding="utf-8")
            for line in text.split("\n")[:-1]:  # an unterminated last line is unfinished
                parts = line.split("\t", 4)
                try:
                    index, status = int(parts[0]), parts[1]
                    offset, frames, detail = int(parts[2]), int(parts[3]), parts[4]
                except (ValueError, IndexError):
                    break  # a damaged line: it and everything after it is redone
                if status == STATUS_OK and (offset + frames) * ROW_BYTES > rows_size:
                    break
                self.entries[index] = (status, offset, frames, detail)
                end_row = max(end_row, offset + frames)
                good.append(line + "\n")
        with open(self.journal_path, "w", encoding="utf-8") as handle:
            handle.write("".join(good))
        with open(self.rows_path, "ab") as handle:
            handle.truncate(end_row * ROW_BYTES)

    def add(self, result: StagedResult) -> None:
        frames = 0
        offset = self._next_row
        if result.status == STATUS_OK:
            rows = np.ascontiguousarray(result.rows, dtype=np.float32)
            frames = rows.shape[0]
            self._rows.write(rows.tobytes())
            self._next_row += frames
        detail = result.detail.replace("\t", " ").replace("\n", " ")
        self.entries[result.index] = (result.status, offset, frames, detail)
        self._pending.append(f"{result.index}\t{result.status}\t{offset}\t{frames}\t{detail}\n")
        if (
            len(self._pending) >= JOURNAL_FLUSH_EVERY
            or time.monotonic() - self._last_flush >= JOURNAL_FLUSH_SECONDS
        ):
            self.flush()

    def flush(self) -> None:
        self._rows.flush()
        if self._pending:
            self._journal.write("".join(self._pending))
            self._journal.flush()
            self._pending.clear()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        self.flush()
        os.fsync(self._rows.fileno())
        os.fsync(self._journal.fileno())
        self._rows.close()
        self._journal.close()

    def read_rows(self, handle, index: int) -> np.ndarray:
        """The ``(T, 150)`` rows of a finished sample (plain reads, no mapping)."""
        _, offset, frames, _ = self.entries[index]
        handle.seek(offset * ROW_BYTES)
        data = handle.read(frames * ROW_BYTES)
        return np.frombuffer(data, dtype=np.float32).reshape(frames, ROW_COLUMNS)
