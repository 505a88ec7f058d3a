"""Input limits: the rules every request value must meet before it reaches parsing, SQL or validation.

Hostile input must answer 400, never 500 (https://hl7.org/fhir/R4/http.html#2.21.0.3): no control
characters (PostgreSQL refuses NUL), integers within 64 bits, bounded header sizes, bounded JSON
nesting (checked on the bytes before anything recurses) and RFC 6901 JSON Pointers
(https://www.rfc-editor.org/rfc/rfc6901#section-3). `api/input_limits_middleware.py` applies the
request-wide rules; the parsing points call the others.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any

import orjson

from .errors import Invalid

MAX_INT = 2**63 - 1  # a 64-bit signed column (version ids, transaction numbers, pks)
MAX_JSON_DEPTH = 100  # arrays and objects; FHIR resources nest ~15 deep, Questionnaire items a little more
MAX_HEADER_BYTES = 16 * 1024  # any one header (431 territory)
HEADER_LIMITS = {  # headers the server parses: tighter limits
    "if-match": 256,
    "if-none-match": 1024,
    "if-modified-since": 256,
    "if-none-exist": 4096,
    "prefer": 1024,
    "authorization": 8192,
}
INTEGER_PARAMETERS = frozenset({"_count", "_page_before"})  # query parameters whose value is an integer

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # tab, CR and LF allowed (text, forms)
_CONTROL_IN_LINE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # tab only (paths, headers)
_JSON_POINTER = re.compile(r"(/([^~/]|~[01])*)*")


def check_text(value: str, where: str, *, single_line: bool = False) -> None:
    """400 when `value` holds a control character (tab, CR, LF allowed unless `single_line`)."""
    found = (_CONTROL_IN_LINE if single_line else _CONTROL).search(value)
    if found:
        raise Invalid(f"{where} contains the control character U+{ord(found.group()):04X}", where)


def check_header(name: str, value: str) -> None:
    """400 when a header value is too long or holds a control character."""
    limit = HEADER_LIMITS.get(name, MAX_HEADER_BYTES)
    if len(value) > limit:
        raise Invalid(f"The {name} header is longer than {limit} characters", name)
    check_text(value, name, single_line=True)


def integer(text: str, where: str, *, minimum: int = 0, maximum: int = MAX_INT) -> int:
    """An ASCII decimal integer within [minimum, maximum], else 400 naming `where`."""
    digits = text[1:] if text[:1] == "-" else text
    if not (digits.isascii() and digits.isdigit()) or len(digits) > len(str(MAX_INT)):
        raise Invalid(f"{where} must be an integer between {minimum} and {maximum}, got '{text[:40]}'", where)
    number = int(text)
    if not minimum <= number <= maximum:
        raise Invalid(f"{where} must be an integer between {minimum} and {maximum}, got '{text[:40]}'", where)
    return number


def check_json_pointer(pointer: Any, where: str) -> None:
    """400 unless `pointer` is an RFC 6901 JSON Pointer (`~` only as `~0` or `~1`)."""
    if not isinstance(pointer, str) or not _JSON_POINTER.fullmatch(pointer):
        raise Invalid(f"'{str(pointer)[:80]}' is not a JSON Pointer (RFC 6901)", where)


_KEEP = b'[]{}"'
_DELETE = bytes(b for b in range(256) if b not in _KEEP)
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_STEPS = bytes.maketrans(b"[]", b"\x01\xff")


def json_depth(raw: bytes) -> int:
    """Nesting depth of the arrays and objects in a JSON text, from its bytes (nothing is parsed).

    Everything but brackets and quotes is dropped (C-speed `translate`; escaped characters first),
    then the strings; the depth is the highest running count of the remaining brackets. For invalid
    JSON the answer is approximate: the parser rejects it next.
    """
    marks = _marks(raw).replace(b'""', b"")  # an empty string, or two adjacent ones (merged)
    if b'"' in marks:  # strings holding brackets: keep what lies between them
        marks = b"".join(marks.split(b'"')[0::2])
    depth = 0
    while marks and depth < 8:  # peel innermost pairs: a few C-speed passes settle ordinary documents
        peeled = marks.replace(b"[]", b"")
        if len(peeled) == len(marks):
            break
        marks, depth = peeled, depth + 1
    if not marks:
        return depth
    steps = memoryview(marks.translate(_STEPS)).cast("b")  # +1 / -1 per bracket
    return depth + max(accumulate(steps, initial=0))


def _marks(raw: bytes) -> bytes:
    """The brackets and quotes of `raw`, without escaped characters (an escaped quote ends no string)."""
    if b"\\" not in raw:
        return raw.translate(_BRACKETS, _DELETE)
    parts = raw.split(b"\\")
    kept = [parts[0].translate(_BRACKETS, _DELETE)]
    i = 1
    while i < len(parts):
        if not parts[i] and i + 1 < len(parts):  # an escaped backslash: the next part is plain text
            kept.append(parts[i + 1].translate(_BRACKETS, _DELETE))
            i += 2
        else:  # drop the escaped character
            kept.append(parts[i][1:].translate(_BRACKETS, _DELETE))
            i += 1
    return b"".join(kept)


def check_json_depth(raw: bytes, where: str = "$this") -> None:
    """400 when the JSON text nests arrays and objects deeper than MAX_JSON_DEPTH."""
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise Invalid(f"The JSON nests deeper than {MAX_JSON_DEPTH} levels", where)


def loads_json(raw: bytes, where: str = "$this") -> Any:
    """Parse a JSON body after the depth check; 400 when it is not JSON."""
    check_json_depth(raw, where)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"The body is not valid JSON: {exc}", where) from None
