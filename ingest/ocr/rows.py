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
_RANGE_BETWEEN = re.compile(rf"^[(\[]?(?P<low>{_NUM})\s*(?:-|–|—|to)\s*(?P<high>{_NUM})[)\]]?$")
_RANGE_BOUND = re.compile(rf"^[(\[]?(?P<cmp>{_CMP})\s*(?P<bound>{_NUM})[)\]]?$")
_CONFUSABLE = str.maketrans({"O": "0", "o": "0", "l": "1", "I": "1", "|": "1"})
_DASHES = str.maketrans({"–": "-", "—": "-", "−": "-"})
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
    """One parsed result row. ``flag`` is a v3 ObservationInterpretation code (H, L, HH, LL, A, AA, N)."""

    name: str
    value: Decimal
    value_text: str
    comparator: str | None
    unit: str
    range: ReferenceRange | None
    flag: str | None
    repaired: bool = False


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


def _merge_comparators(tokens: list[str]) -> list[str]:
    """Join a lone comparator token with the number after it (``< 5`` -> ``<5``)."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if re.fullmatch(_CMP, tok) and i + 1 < len(tokens):
            out.append(tok + tokens[i + 1])
            i += 2
            continue
        out.append(tok)
        i += 1
    return out


def _split_tail(tokens: list[str]) -> tuple[ReferenceRange | None, str | None, str] | None:
    """(range, flag, unit) for the tokens after the value; None when they do not form a row tail."""
    rng: ReferenceRange | None = None
    rng_at: tuple[int, int] | None = None
    # The range is one token (``3.5-5.0``, ``<5``) or three (``3.5 - 5.0``, ``3.5 to 5.0``).
    for width in (3, 1):
        for start in range(len(tokens) - width + 1):
            cand = parse_range(" ".join(tokens[start : start + width]))
            if cand is not None:
                rng, rng_at = cand, (start, start + width)
                break
        if rng is not None:
            break
    rest = tokens if rng_at is None else tokens[: rng_at[0]] + tokens[rng_at[1] :]
    flag: str | None = None
    unit_tokens: list[str] = []
    for tok in rest:
        code = parse_flag(tok)
        if code is not None and flag is None:
            flag = code
            continue
        if parse_number(tok.strip("()[]")) is not None or parse_range(tok) is not None:
            return None
        unit_tokens.append(tok)
    if len(unit_tokens) > 2:
        return None
    return rng, flag, " ".join(unit_tokens)


def parse_row(line: str) -> LabRow | None:
    """The result row on ``line``, or None when the line is not a result row (header, note, blank)."""
    tokens = _merge_comparators(line.translate(_DASHES).split())
    for i in range(1, len(tokens)):
        parsed = _parse_value(tokens[i])
        if parsed is None:
            continue
        name = " ".join(tokens[:i]).strip(" :.")
        if not re.search(r"[A-Za-z]{2,}", name) or any(parse_number(t) is not None for t in tokens[:i]):
            continue
        tail = _split_tail(tokens[i + 1 :])
        if tail is None:
            continue
        value, value_text, comparator, glued, repaired = parsed
        rng, flag, unit = tail
        if glued is not None:
            if flag is not None and flag != FLAGS[glued]:
                continue
            flag = FLAGS[glued]
        return LabRow(name, value, value_text, comparator, unit, rng, flag, repaired)
    return None
