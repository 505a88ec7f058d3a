"""Lab result row parser: test name, value, unit, reference range, flag (https://hl7.org/fhir/R4/observation.html#valuex).

One printed line such as ``Potassium  5.6  H  mmol/L  3.5-5.0`` becomes a :class:`LabRow`. Columns
may come in either order after the value (flag, unit, range); the range may be ``low-high``,
``low - high``, ``low to high``, ``<high``, ``<=high``, ``>low``, ``>=low`` and may sit in brackets;
the flag may be glued to the value (``5.6H``) or wrapped (``(H)``, ``*H``). OCR's usual digit
confusions in the value (``O``->0, ``l``/``I``->1, decimal comma) are repaired and the row marked
``repaired`` so that a caller never treats it as certain.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

# Flag as printed (upper-cased, wrapping stripped) -> v3 ObservationInterpretation code.
FLAGS: dict[str, str] = {
    "H": "H",
    "HI": "H",
    "HIGH": "H",
    "L": "L",
    "LO": "L",
    "LOW": "L",
    "HH": "HH",
    "LL": "LL",
    "A": "A",
    "ABN": "A",
    "ABNORMAL": "A",
    "AA": "AA",
    "N": "N",
    "NORMAL": "N",
}

_NUM = r"\d+(?:\.\d+)?|\.\d+"
_CMP = r"<=|>=|≤|≥|<|>"
_NUMBER = re.compile(rf"(?P<cmp>{_CMP})?(?P<num>\d{{1,3}}(?:,\d{{3}})+(?:\.\d+)?|{_NUM})")
_VALUE_FLAG = re.compile(rf"(?P<val>(?:{_CMP})?(?:{_NUM}))(?P<flag>HH|LL|H|L)")
_RANGE_BETWEEN = re.compile(rf"^[(\[]?(?P<low>{_NUM})\s*(?:-|to)\s*(?P<high>{_NUM})[)\]]?$")
_RANGE_BOUND = re.compile(rf"^[(\[]?(?P<cmp>{_CMP})\s*(?P<bound>{_NUM})[)\]]?$")
_CONFUSABLE = str.maketrans({"O": "0", "o": "0", "l": "1", "I": "1", "|": "1"})
_DASHES = str.maketrans({"\u2013": "-", "\u2014": "-", "\u2212": "-"})  # en/em dash, minus sign
_COMPARATORS = {"≤": "<=", "≥": ">="}


@dataclass(frozen=True, slots=True)
class ReferenceRange:
    """A printed reference interval; ``low``/``high`` are None when the side is open."""

    low: Decimal | None
    high: Decimal | None
    text: str

    def contains(self, value: Decimal) -> bool:
        """True when ``value`` lies inside the interval (bounds included)."""
        if self.low is not None and value < self.low:
            return False
        return not (self.high is not None and value > self.high)


@dataclass(frozen=True, slots=True)
class LabRow:
    """One parsed result row. ``flag`` is a v3 ObservationInterpretation code (H, L, HH, LL, A, AA, N).

    The ``*_at`` fields are the indices of the source words each part was read from, so that a
    caller can look up the recogniser's confidence for exactly the value, the range or the flag.
    """

    name: str
    value: Decimal
    value_text: str
    comparator: str | None
    unit: str
    range: ReferenceRange | None
    flag: str | None
    repaired: bool = False
    name_at: tuple[int, ...] = ()
    value_at: tuple[int, ...] = ()
    unit_at: tuple[int, ...] = ()
    range_at: tuple[int, ...] = ()
    flag_at: tuple[int, ...] = ()


def parse_number(text: str) -> Decimal | None:
    """A plain decimal (``1,250`` and ``.5`` allowed), or None."""
    if not re.fullmatch(rf"\d{{1,3}}(?:,\d{{3}})+(?:\.\d+)?|{_NUM}", text):
        return None
    try:
        return Decimal(text.replace(",", ""))
    except InvalidOperation:  # pragma: no cover - the pattern guards this
        return None


def parse_range(text: str) -> ReferenceRange | None:
    """A reference interval from its printed form, or None when ``text`` is not one."""
    compact = text.translate(_DASHES).strip()
    m = _RANGE_BETWEEN.match(compact)
    if m:
        low, high = Decimal(m["low"]), Decimal(m["high"])
        if low > high:
            return None
        return ReferenceRange(low, high, f"{m['low']}-{m['high']}")
    m = _RANGE_BOUND.match(compact)
    if m:
        cmp = _COMPARATORS.get(m["cmp"], m["cmp"])
        bound = Decimal(m["bound"])
        if cmp.startswith("<"):
            return ReferenceRange(None, bound, f"{cmp}{m['bound']}")
        return ReferenceRange(bound, None, f"{cmp}{m['bound']}")
    return None


def parse_flag(token: str) -> str | None:
    """The interpretation code of a printed flag token (``H``, ``(L)``, ``*HH``, ``High``), or None."""
    core = token.strip("()[]*!").upper()
    return FLAGS.get(core)


def _parse_value(token: str) -> tuple[Decimal, str, str | None, str | None, bool] | None:
    """(value, value text, comparator, glued flag, repaired) for a value token, or None."""
    glued: str | None = None
    m = _VALUE_FLAG.fullmatch(token)
    if m:
        token, glued = m["val"], m["flag"]
    repaired = False
    m2 = _NUMBER.fullmatch(token)
    if m2 is None and any(ch.isdigit() for ch in token):
        fixed = token.translate(_CONFUSABLE)
        if re.fullmatch(r"\d+,\d{1,2}", fixed):
            fixed = fixed.replace(",", ".")
        m2 = _NUMBER.fullmatch(fixed)
        repaired = m2 is not None
    if m2 is None:
        return None
    value = parse_number(m2["num"])
    if value is None:  # pragma: no cover - _NUMBER only matches parseable numbers
        return None
    cmp = m2["cmp"]
    return value, m2.group(0), _COMPARATORS.get(cmp, cmp) if cmp else None, glued, repaired


@dataclass(frozen=True, slots=True)
class _Token:
    text: str
    at: tuple[int, ...]  # indices of the source tokens it was made from


def _merge_comparators(tokens: Sequence[str]) -> list[_Token]:
    """Join a lone comparator token with the number after it (``< 5`` -> ``<5``)."""
    out: list[_Token] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i].translate(_DASHES)
        if re.fullmatch(_CMP, tok) and i + 1 < len(tokens):
            out.append(_Token(tok + tokens[i + 1].translate(_DASHES), (i, i + 1)))
            i += 2
            continue
        out.append(_Token(tok, (i,)))
        i += 1
    return out


def _indices(tokens: Sequence[_Token]) -> tuple[int, ...]:
    return tuple(i for t in tokens for i in t.at)


@dataclass(frozen=True, slots=True)
class _Tail:
    range: ReferenceRange | None
    flag: str | None
    unit: str
    range_at: tuple[int, ...]
    flag_at: tuple[int, ...]
    unit_at: tuple[int, ...]


def _split_tail(tokens: list[_Token]) -> _Tail | None:
    """Range, flag and unit from the tokens after the value; None when they do not form a row tail."""
    rng: ReferenceRange | None = None
    span: tuple[int, int] | None = None
    # The range is one token (``3.5-5.0``, ``<5``) or three (``3.5 - 5.0``, ``3.5 to 5.0``).
    for width in (3, 1):
        for start in range(len(tokens) - width + 1):
            cand = parse_range(" ".join(t.text for t in tokens[start : start + width]))
            if cand is not None:
                rng, span = cand, (start, start + width)
                break
        if rng is not None:
            break
    range_tokens = [] if span is None else tokens[span[0] : span[1]]
    rest = tokens if span is None else tokens[: span[0]] + tokens[span[1] :]
    flag: str | None = None
    flag_tokens: list[_Token] = []
    unit_tokens: list[_Token] = []
    for tok in rest:
        code = parse_flag(tok.text)
        if code is not None and flag is None:
            flag, flag_tokens = code, [tok]
            continue
        if parse_number(tok.text.strip("()[]")) is not None or parse_range(tok.text) is not None:
            return None
        unit_tokens.append(tok)
    if len(unit_tokens) > 2:
        return None
    return _Tail(
        rng,
        flag,
        " ".join(t.text for t in unit_tokens),
        _indices(range_tokens),
        _indices(flag_tokens),
        _indices(unit_tokens),
    )


def parse_tokens(words: Sequence[str]) -> LabRow | None:
    """The result row made of these words, or None when they are not a result row (header, note)."""
    tokens = _merge_comparators(words)
    for i in range(1, len(tokens)):
        parsed = _parse_value(tokens[i].text)
        if parsed is None:
            continue
        name = " ".join(t.text for t in tokens[:i]).strip(" :.")
        if not re.search(r"[A-Za-z]{2,}", name) or any(parse_number(t.text) is not None for t in tokens[:i]):
            continue
        tail = _split_tail(tokens[i + 1 :])
        if tail is None:
            continue
        value, value_text, comparator, glued, repaired = parsed
        flag, flag_at = tail.flag, tail.flag_at
        if glued is not None:
            if flag is not None and flag != FLAGS[glued]:
                continue
            flag, flag_at = FLAGS[glued], tokens[i].at
        return LabRow(
            name=name,
            value=value,
            value_text=value_text,
            comparator=comparator,
            unit=tail.unit,
            range=tail.range,
            flag=flag,
            repaired=repaired,
            name_at=_indices(tokens[:i]),
            value_at=tokens[i].at,
            unit_at=tail.unit_at,
            range_at=tail.range_at,
            flag_at=flag_at,
        )
    return None


def parse_row(line: str) -> LabRow | None:
    """The result row on a printed line, or None when the line is not a result row."""
    return parse_tokens(line.split())
