"""Bulk Data output files (https://hl7.org/fhir/uv/bulkdata/STU2/export.html#bulk-data-output-file-request).

NDJSON parts that a resumed job continues exactly where it checkpointed.

A `PartWriter` writes one kind of line (one resource type, the deleted-resources Bundles, the
OperationOutcomes) into files `<stem>-<n>.ndjson` of at most `limit` lines each. Its state (part
number, lines and bytes in the open part) is saved in the job's checkpoint after `sync()`; a run that
resumes from that state truncates the open part to the saved size, so lines written after the
checkpoint by a killed worker are dropped and written again once: every line exactly once.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import IO, Any

NDJSON = "application/fhir+ndjson"
_NAME = re.compile(r"[A-Za-z]+(-[a-z]+)?-[0-9]{1,6}\.ndjson")


def job_dir(data_dir: Path, job_id: str) -> Path:
    """Where a job's files live."""
    return Path(data_dir) / "bulk" / job_id


def file_path(data_dir: Path, job_id: str, name: str) -> Path | None:
    """The file `name` of a job, or None when the name is not one this server writes."""
    if not _NAME.fullmatch(name) or not re.fullmatch(r"[0-9a-f]{32}", job_id):
        return None
    return job_dir(data_dir, job_id) / name


def remove(data_dir: Path, job_id: str) -> None:
    """Delete a job's files (a download under way keeps its open file until it ends)."""
    shutil.rmtree(job_dir(data_dir, job_id), ignore_errors=True)


class PartWriter:
    """Lines of one type into numbered parts; see the module docstring."""

    def __init__(
        self, directory: Path, stem: str, item_type: str, limit: int, state: dict[str, Any] | None = None
    ) -> None:
        self.directory = directory
        self.stem = stem
        self.item_type = item_type
        self.limit = max(1, limit)
        state = state or {}
        self.part: int = state.get("part", 1)
        self.count: int = state.get("count", 0)
        self.size: int = state.get("bytes", 0)
        self.finished: list[dict[str, Any]] = []  # parts closed since the writer was made
        self._file: IO[bytes] | None = None

    @property
    def name(self) -> str:
        return f"{self.stem}-{self.part}.ndjson"

    def state(self) -> dict[str, Any]:
        return {"part": self.part, "count": self.count, "bytes": self.size}

    def _open(self) -> IO[bytes]:
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / self.name
            if self.size:  # resuming: a missing file is an error (its lines would be lost)
                f: IO[bytes] = open(path, "r+b")  # noqa: SIM115 - kept open across calls, closed in close()
                f.truncate(self.size)
                f.seek(self.size)
            else:
                f = open(path, "wb")  # noqa: SIM115
                self.count = 0
            self._file = f
        return self._file

    def write(self, line: bytes) -> None:
        """Append one line (without its newline)."""
        if self.count >= self.limit:
            self._finish_part()
        f = self._open()
        f.write(line)
        f.write(b"\n")
        self.count += 1
        self.size += len(line) + 1

    def _finish_part(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.count:
            self.finished.append({"type": self.item_type, "file": self.name, "count": self.count})
            self.part += 1
            self.count = 0
            self.size = 0

    def sync(self) -> None:
        """Make everything written so far durable (before it is checkpointed)."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        """Finish the open part (if it has lines); the writer is done."""
        self.sync()
        self._finish_part()

    def abandon(self) -> None:
        """Close the file without finishing the part (the run stops; a resumed run continues it)."""
        if self._file is not None:
            self._file.close()
            self._file = None
