"""Results of invariant operands remembered by the JSON they read (https://hl7.org/fhir/R4/fhirpath.html).

An operand such as `value.exists()` is evaluated on every resource of its type, and most of those
evaluations read the same JSON: wearable data repeat the same few `valueQuantity`s, a profile's
`component.empty()` meets the same components. When an operand reads nothing but members of its
focus (`pure_reads`: no variable but `%ucum`, no function without a focus such as `now()` or
`iif()`, no type name as a member), its result is a function of the expression, the resource
type, the focus type, the focus's own `resourceType`, and the JSON of the focus's members whose
names start with one it names (`value` reads `valueQuantity` and `_valueString`). That JSON is the
key (`key_of`); each operand keeps a bounded table of results (`Results`), never an error result.
"""

from __future__ import annotations

import weakref
from typing import Any

from fhir_server.element_memo import Table, key_text
from fhir_server.fhirpath.syntax import Binary, Call, EmptySet, Index, Literal, Member, Node, TypeOp, Var

MAX_ENTRIES = 1024  # per operand; when full the table starts again empty


def pure_reads(node: Node) -> frozenset[str] | None:
    """Every member name read from the focus, or a name below it (over-approximated: each name the
    expression uses without a base); None when the expression may read anything else."""
    match node:
        case Literal() | EmptySet() | Var(name="ucum"):
            return frozenset()
        case Member(base=None, name=name):
            return None if name[:1].isupper() else frozenset({name})
        case Member(base=base) if base is not None:
            return pure_reads(base)
        case Call(base=base, args=args) if base is not None:
            found = pure_reads(base)
            for arg in args:
                more = pure_reads(arg)
                if found is None or more is None:
                    return None
                found |= more
            return found
        case Index(base=base, index=index) | Binary(left=base, right=index):
            a, b = pure_reads(base), pure_reads(index)
            return None if a is None or b is None else a | b
        case TypeOp(operand=operand):
            return pure_reads(operand)
    return None


def members_read(names: tuple[str, ...], reads: frozenset[str]) -> tuple[str, ...]:
    """The JSON names of a focus (`names`, in order) an operand reading `reads` may look at."""
    return tuple(n for n in names if (n[1:] if n[:1] == "_" else n).startswith(tuple(reads)))


def key_of(
    item: dict[str, Any], members: tuple[str, ...], rtype: str, type_path: str
) -> tuple[Any, ...] | None:
    """The key of an operand's result on `item`, from the JSON of `members`; None: not kept."""
    own_type = item.get("resourceType")
    if own_type is not None and own_type.__class__ is not str:
        return None
    text = key_text([item[m] for m in members])
    return None if text is None else (rtype, type_path, own_type, members, text)


class Results:
    """One operand's (or a whole expression's) remembered results, bounded."""

    __slots__ = ("__weakref__", "reads", "shapes", "table")

    def __init__(self, reads: frozenset[str] = frozenset()) -> None:
        self.reads = reads  # what the expression reads (`pure_reads`), for `key`
        self.shapes: Table[tuple[str, ...], tuple[str, ...]] = Table(MAX_ENTRIES)  # names -> members_read
        self.table: Table[tuple[Any, ...], Any] = Table(MAX_ENTRIES)
        _every.add(self)

    def key(self, item: dict[str, Any], rtype: str, type_path: str) -> tuple[Any, ...] | None:
        """`key_of` the members of `item` the expression reads."""
        names = tuple(item)
        members = self.shapes.get(names)
        if members is None:
            members = self.shapes.put(names, members_read(names, self.reads))
        return key_of(item, members, rtype, type_path)

    def get(self, key: tuple[Any, ...], default: Any) -> Any:
        return self.table.get(key, default)

    def put(self, key: tuple[Any, ...], result: Any) -> None:
        self.table.put(key, result)


_every: weakref.WeakSet[Results] = weakref.WeakSet()


def forget_all() -> None:
    """Empty every operand's table (tests compare the walk with and without them)."""
    for results in list(_every):
        results.table.clear()
