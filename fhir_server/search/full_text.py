"""Full text of a resource and the `_text` / `_content` query language (https://hl7.org/fhir/R4/search.html#text).

The indexed text is a list of WORDS, computed here in Python so that PostgreSQL (tsvector, `simple`
configuration) and SQLite (FTS5, `ascii` tokenizer) see exactly the same words: the text is NFKD
decomposed, combining marks are dropped, it is case-folded, and split at every character that is not
a letter or digit (Unicode categories L*, Nd, Nl; "other numbers" such as fractions split words).
No stemming and no stop words: `_text=fever` finds "Fever" and "fèver" but not "fevers" (use `fever*`).

- `_text`: the narrative, `text.div` with its tags removed and entities decoded.
- `_content`: every string and number a person reads in the resource (the narrative as for
  `_text`), which leaves out machine identifiers: ids, `reference`s, `system`, `url` and `profile`
  URIs (token, reference and uri parameters match those exactly), `meta.versionId`,
  `meta.lastUpdated`, `meta.source` and base64 attachment `data`. Left in, the uuids and URIs of a
  Synthea record were half of its words, each rare: they doubled the GIN index and the database
  CPU of a write (bench/rest.py, docs/clinical-operations.md).

A document keeps its first `MAX_WORDS` words of at most `MAX_WORD` characters (longer ones are left
out), within `MAX_BYTES`; PostgreSQL numbers word positions up to 16383 and a tsvector holds 1 MB.

The query language (one value; commas between values OR them, repeated parameters AND them):
words separated by spaces must all occur (AND); `OR` (upper case) between two terms makes either
do; a "quoted phrase" (or a term like `heart-attack` that splits into several words) needs its words
in a row; a `*` ending a term or phrase matches any word starting so (`hyperten*`).
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fhir_server.element_memo import Table, key_text
from fhir_server.errors import Invalid

MAX_WORDS = 16_383
MAX_WORD = 64
MAX_BYTES = 400_000
MAX_TERMS = 32  # phrases in one query value

_ASCII_WORD = re.compile(r"[a-z0-9]+")
_TAG = re.compile(r"<[^>]*>")
_SKIPPED_META = frozenset(("versionId", "lastUpdated", "source"))
_MACHINE_KEYS = frozenset(("id", "reference", "system", "url", "profile"))


def _is_word_char(c: str) -> bool:
    return c.isalnum() and unicodedata.category(c) != "No"


def words(text: str) -> list[str]:
    """The words of `text`, folded (see the module docstring), in order."""
    if text.isascii():
        return _ASCII_WORD.findall(text.lower())
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    folded = stripped.casefold().lower()  # lower(): casefold maps Cherokee to upper case
    return "".join(c if _is_word_char(c) else " " for c in folded).split()


def narrative_text(div: str) -> str:
    """The text of an XHTML narrative: tags become spaces, entities are decoded."""
    return html.unescape(_TAG.sub(" ", div))


def narrative(resource: dict[str, Any]) -> str:
    """The text of `resource.text.div` ("" when it has none)."""
    text = resource.get("text")
    div = text.get("div") if text.__class__ is dict else None
    return narrative_text(div) if div.__class__ is str else ""


def _strings(value: Any, key: str, parent: dict[str, Any] | None, out: list[str]) -> None:
    cls = value.__class__
    if cls is str:
        out.append(value)
    elif cls is dict:
        for k, v in value.items():
            if k == "div" and key == "text" and v.__class__ is str:
                out.append(narrative_text(v))
            elif k == "data" and "contentType" in value:
                continue  # Attachment.data: base64
            elif k in _MACHINE_KEYS or (key == "meta" and k in _SKIPPED_META):
                continue
            else:
                _strings(v, k, value, out)
    elif cls is list:
        for v in value:
            _strings(v, key, parent, out)
    elif cls is int or cls is float:
        out.append(str(value))


def content(resource: dict[str, Any]) -> str:
    """Every string and number of `resource`, one per line (see the module docstring)."""
    out: list[str] = []
    for k, v in resource.items():
        if k == "resourceType":
            continue
        if k == "data" and resource.get("resourceType") == "Binary":
            continue
        _strings({k: v}, "", None, out)
    return "\n".join(out)


def content_words(resource: dict[str, Any]) -> list[str]:
    """`words(content(resource))`, the words of each top-level element remembered by its JSON.

    The words of strings joined by line breaks are the words of each string in turn, so a
    resource's words are its elements' words in order. Ingested and wearable records repeat their
    `code`, `category` and `valueQuantity`: their words were three quarters of `_content`'s cost."""
    out: list[str] = []
    binary = resource.get("resourceType") == "Binary"
    for k, v in resource.items():
        if k == "resourceType" or (k == "data" and binary) or k in _MACHINE_KEYS:
            continue  # (a machine key's value is left out, as `_strings` leaves it out)
        if v.__class__ is str:  # status, effectiveDateTime...: its words, as `_element_words` finds them
            out.extend(words(v))
            continue
        if (v.__class__ is dict or v.__class__ is list) and k != "meta":  # meta: lastUpdated differs
            text = key_text(v)
            if text is not None:
                key = (k, text)
                found = _ELEMENT_WORDS.get(key)
                if found is None:
                    found = _ELEMENT_WORDS.put(key, tuple(_element_words(k, v)))
                out.extend(found)
                continue
        out.extend(_element_words(k, v))
    return out


_ELEMENT_WORDS: Table[tuple[str, str], tuple[str, ...]] = Table(5_000)  # ~10 MB of elements of <= 2 KB


def _element_words(key: str, value: Any) -> list[str]:
    strings: list[str] = []
    _strings({key: value}, "", None, strings)
    return words("\n".join(strings)) if strings else []


def document(text: str) -> str:
    """The indexed form of `text`: its words (capped, see the module docstring) joined by spaces."""
    return document_words(words(text))


def document_words(found: list[str]) -> str:
    """The indexed form of a text whose words are `found` (see `document`)."""
    if len(found) <= MAX_WORDS:
        kept = [w for w in found if len(w) <= MAX_WORD]
        body = " ".join(kept)
        if len(body) * 4 <= MAX_BYTES:  # at most 4 bytes a character: within the byte cap
            return body
    kept = []
    size = 0
    for w in found:
        if len(w) > MAX_WORD:
            continue
        size += len(w.encode()) + 1
        if size > MAX_BYTES:
            break
        kept.append(w)
        if len(kept) == MAX_WORDS:
            break
    return " ".join(kept)


# ---------------------------------------------------------------- queries


@dataclass(frozen=True, slots=True)
class Phrase:
    """Words that must occur in a row; with `prefix`, the last one may be the start of a word."""

    words: tuple[str, ...]
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class TextQuery:
    """AND of clauses, each an OR of phrases."""

    clauses: tuple[tuple[Phrase, ...], ...]
    source: str = ""

    def phrases(self) -> Iterator[Phrase]:
        for clause in self.clauses:
            yield from clause


_TERM = re.compile(r'"([^"]*)("|$)(\*?)|(\S+)')


def parse(text: str, name: str) -> TextQuery:
    """A query value (already unescaped) -> TextQuery; 400 when it holds no word or too many terms."""
    clauses: list[list[Phrase]] = []
    pending_or = False
    for m in _TERM.finditer(text):
        quoted, _, star, bare = m.groups()
        if bare == "OR":
            pending_or = bool(clauses)
            continue
        if bare is not None:
            prefix = bare.endswith("*")
            found = words(bare)
        else:
            prefix = star == "*"
            found = words(quoted)
        found = [w[:MAX_WORD] for w in found]
        if not found:
            continue
        phrase = Phrase(tuple(found), prefix)
        if pending_or:
            clauses[-1].append(phrase)
        else:
            clauses.append([phrase])
        pending_or = False
    if not clauses:
        raise Invalid(f"Search parameter '{name}': {text!r} holds no word to search for", expression=name)
    if sum(len(c) for c in clauses) > MAX_TERMS:
        raise Invalid(f"Search parameter '{name}': more than {MAX_TERMS} terms", expression=name)
    return TextQuery(tuple(tuple(c) for c in clauses), text)


def tsquery(q: TextQuery) -> str:
    """The query as PostgreSQL `to_tsquery` text (words are letters and digits: no quoting issues)."""

    def phrase(p: Phrase) -> str:
        parts = [f"'{w}'" for w in p.words]
        if p.prefix:
            parts[-1] += ":*"
        return "(" + " <-> ".join(parts) + ")"

    return " & ".join("(" + " | ".join(phrase(p) for p in clause) + ")" for clause in q.clauses)


def fts5(q: TextQuery) -> str:
    """The query as an SQLite FTS5 MATCH expression."""

    def phrase(p: Phrase) -> str:
        return '"' + " ".join(p.words) + '"' + (" *" if p.prefix else "")

    return " AND ".join("(" + " OR ".join(phrase(p) for p in clause) + ")" for clause in q.clauses)


def matches(q: TextQuery, doc: str) -> bool:
    """`doc` (a `document`) satisfies `q`: the plain-Python meaning the SQL must agree with."""
    found = doc.split()

    def has(p: Phrase) -> bool:
        n = len(p.words)
        for i in range(len(found) - n + 1):
            window = found[i : i + n]
            if window[:-1] != list(p.words[:-1]):
                continue
            last = window[-1]
            if last == p.words[-1] or (p.prefix and last.startswith(p.words[-1])):
                return True
        return False

    return all(any(has(p) for p in clause) for clause in q.clauses)
