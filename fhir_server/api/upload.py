"""An uploaded file streamed to disk under a size limit: a raw request body, or one file field of multipart/form-data (https://www.rfc-editor.org/rfc/rfc7578).

Nothing is held in memory or spooled elsewhere first, so a multi-gigabyte export goes straight to
its job's directory; the limit is enforced while reading. Other form fields (small) are returned
as strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import IO

from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from .. import input_limits
from ..errors import Invalid, TooLarge

MAX_FIELDS = 20
MAX_FIELD_BYTES = 64 * 1024


@dataclass
class Upload:
    """Where the file went, what the client called it and said it was, and the other form fields."""

    path: Path | None = None
    filename: str | None = None
    media_type: str | None = None
    size: int = 0
    fields: dict[str, str] = field(default_factory=dict)


def _too_large(limit: int) -> TooLarge:
    return TooLarge(f"The upload is larger than the limit of {limit} bytes")


def disposition_filename(header: str | None) -> str | None:
    """The ``filename`` of a ``Content-Disposition`` header (``filename*`` in RFC 5987 form too), if any."""
    if not header:
        return None
    msg = Message()
    msg["content-disposition"] = header
    name = msg.get_filename()
    return str(name) if name else None


async def save_body(request: Request, target: Path, limit: int) -> Upload:
    """Stream the raw body to ``target``; 413 past ``limit`` bytes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    with open(target, "wb") as f:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            f.write(chunk)
    return Upload(
        path=target,
        filename=disposition_filename(request.headers.get("content-disposition")),
        media_type=request.headers.get("content-type"),
        size=size,
    )


class _FormReader:
    """python-multipart callbacks: the file field goes to disk, the other fields to strings."""

    def __init__(self, target: Path, file_field: str, limit: int) -> None:
        self.target, self.file_field, self.limit = target, file_field, limit
        self.upload = Upload()
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[str, str] = {}
        self._name = ""
        self._file: IO[bytes] | None = None
        self._data = bytearray()

    def on_part_begin(self) -> None:
        self._headers, self._name, self._data = {}, "", bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_name.decode("latin-1").lower()] = self._header_value.decode(
            "utf-8", "replace"
        )
        self._header_name, self._header_value = b"", b""

    def on_headers_finished(self) -> None:
        disposition = self._headers.get("content-disposition", "")
        _, options = parse_options_header(disposition)
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        input_limits.check_text(self._name, "multipart field name", single_line=True)
        if self._name == self.file_field:
            if self.upload.path is not None:
                raise Invalid(f"Send one '{self.file_field}' field only", self.file_field)
            self.target.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.target, "wb")  # noqa: SIM115 - closed in on_part_end / close()
            self.upload.path = self.target
            self.upload.filename = disposition_filename(disposition)
            if self.upload.filename is not None:
                input_limits.check_text(self.upload.filename, f"{self.file_field} filename", single_line=True)
            self.upload.media_type = self._headers.get("content-type")
        elif len(self.upload.fields) >= MAX_FIELDS:
            raise Invalid(f"Too many form fields (at most {MAX_FIELDS})")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self.upload.size += end - start
            if self.upload.size > self.limit:
                raise _too_large(self.limit)
            self._file.write(data[start:end])
        else:
            self._data += data[start:end]
            if len(self._data) > MAX_FIELD_BYTES:
                raise Invalid(f"The form field '{self._name}' is too long", self._name)

    def on_part_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        elif self._name:
            value = self._data.decode("utf-8", "replace")
            input_limits.check_text(value, self._name)  # form fields follow the rules of query values
            self.upload.fields[self._name] = value

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


async def save_form(request: Request, target: Path, file_field: str, limit: int) -> Upload:
    """Stream a multipart/form-data body: the ``file_field`` part to ``target``, the rest as fields."""
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise Invalid("A multipart/form-data body needs a boundary", "Content-Type")
    reader = _FormReader(target, file_field, limit)
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": reader.on_part_begin,
            "on_part_data": reader.on_part_data,
            "on_part_end": reader.on_part_end,
            "on_header_field": reader.on_header_field,
            "on_header_value": reader.on_header_value,
            "on_header_end": reader.on_header_end,
            "on_headers_finished": reader.on_headers_finished,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise Invalid(f"The multipart/form-data body cannot be read: {exc}") from None
    finally:
        reader.close()
    return reader.upload
