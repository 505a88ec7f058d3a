"""The change-event listener that matches each committed version against the active Subscriptions (https://hl7.org/fhir/R4/subscription.html#2.46.7.1).

For a batch of events (docs/events.md: every write path, in commit order), in the delivery's own
transaction, so each match is queued exactly once:

1. one query finds whether any active Subscription has a criteria on the batch's types (none: done);
2. the Subscriptions that can match are looked up by type and index keys (a criteria's single
   `code` and patient against every code and Patient reference in the written resources);
3. each candidate's criteria, AND-ed with its owner's search grants (`auth/enforce.search_restriction`),
   is run as ONE search condition, so a criteria matches exactly what the same search finds, on each
   event's OWN version: the versions that are their resource's current row together over those rows
   (`store/conditions.pks_meeting`); a version no longer current (the listener lagged behind a later
   update or delete of its resource) put back with its own index rows under a SAVEPOINT, the same
   conditions run, and rolled back (`store/conditions.met_by_version`);
   a topic's Subscription (one row per type of its topic) also needs the trigger's test of the
   version's content (`topics.Trigger.accepts`) and the interaction among the trigger's;
4. every match is queued in `subscription_delivery` with the Subscription's next event number, and
   remembered in `subscription_match`; a delete is queued for the Subscriptions the resource was in.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, delete, insert, or_, select, update

from ..auth import enforce
from ..errors import FhirError
from ..events import ChangeEvent, register
from ..instant import now_us
from ..search.index import index_tuples
from ..store import conditions, outbox
from ..store.sql import Stored, Tx
from . import criteria as criteria_
from . import tables, topics
from .owner import Owner

NAME = "subscriptions"  # the consumer's durable position in change_consumer: keep it stable
# an erroring Subscription keeps queueing (delivery retries it); a requested one queues behind its handshake
LIVE = ("requested", "active", "error")
_S, _D, _M = tables.subscription, tables.subscription_delivery, tables.subscription_match
Version = tuple[str, str, int]  # (type, id, version) of a written version
# Set when a batch queued notifications (read after its commit, to wake the deliverers only then).
QUEUED = threading.Event()


def match(events: list[ChangeEvent], tx: Tx) -> None:
    """Queue a notification for every (event, Subscription) that matches."""
    if no_live_subscription(tx.conn):
        return  # one probe, not one per written type
    types = {e.res_type for e in events}
    subscribed = {  # one index probe per type (a DISTINCT would read every Subscription of it)
        t
        for t in sorted(types)
        if tx.conn.execute(
            select(_S.c.id).where(_S.c.criteria_type == t, _S.c.status.in_(LIVE)).limit(1)
        ).first()
    }
    if not subscribed:
        return
    events = [e for e in events if e.res_type in subscribed]
    versions, older = _versions(tx, events)
    keys = {v: criteria_.keys_of(stored.resource()) for v, stored in versions.items()}
    candidates = _candidates(tx, subscribed, keys)
    members = None
    if not any(candidates.values()) and all(e.interaction != "delete" for e in events):
        members = _members(tx, {(e.res_type, e.res_id) for e in events})
        if not members:
            return  # nothing can match, and no resource can leave a Subscription it was in
    matched = _matched(tx, candidates, versions, older, keys)
    _queue(tx, events, candidates, matched, members)


def _versions(tx: Tx, events: list[ChangeEvent]) -> tuple[dict[Version, Stored], list[Version]]:
    """The version each event (but a delete) is matched on: its own. Usually the current row; an
    older version (the batch holds a newer one of the same resource, or it was deleted since) is
    read from the history, with the current row's pk; those are listed second, in commit order."""
    current: dict[tuple[str, str], Stored | None] = {}
    out: dict[Version, Stored] = {}
    older: list[tuple[ChangeEvent, Stored]] = []
    for e in events:
        if e.interaction == "delete":
            continue
        key = (e.res_type, e.res_id)
        if key not in current:
            current[key] = tx.current(e.res_type, e.res_id)
        now = current[key]
        if now is None:
            continue  # no row any more
        if not now.deleted and now.version == e.version:
            out[(e.res_type, e.res_id, e.version)] = now
        else:
            older.append((e, now))
    contents = outbox.contents(tx.conn, [e.position[1] for e, _ in older]) if older else {}
    for e, now in older:  # each version's content, one query for them all
        content = contents.get(e.position[1])
        if content:
            out[(e.res_type, e.res_id, e.version)] = Stored(
                e.res_type, e.res_id, e.version, e.last_updated, False, content, now.pk
            )
    return out, [
        (e.res_type, e.res_id, e.version) for e, _ in older if (e.res_type, e.res_id, e.version) in out
    ]


def _candidates(
    tx: Tx, types: set[str], keys: dict[Version, tuple[set[str], set[str]]]
) -> dict[str, list[Any]]:
    """The live Subscriptions per type that may match one of the written versions (by their keys)."""
    out: dict[str, list[Any]] = defaultdict(list)
    for res_type in sorted(types):
        codes: set[str] = set()
        patients: set[str] = set()
        for (t, _, _), (c, p) in keys.items():
            if t == res_type:
                codes |= c
                patients |= p
        live = (_S.c.criteria_type == res_type, _S.c.status.in_(LIVE))
        code = or_(_S.c.key_code.is_(None), _S.c.key_code.in_(sorted(codes)))
        # two index look-ups, (type, patient) and (type, code): a ward of patient-keyed
        # Subscriptions is never scanned for a write about one patient
        keyed = select(_S).where(*live, _S.c.key_patient.in_(sorted(patients)), code)
        unkeyed = select(_S).where(*live, _S.c.key_patient.is_(None), code)
        rows = (
            [*tx.conn.execute(keyed), *tx.conn.execute(unkeyed)] if patients else [*tx.conn.execute(unkeyed)]
        )
        out[res_type] = sorted(rows, key=lambda row: str(row.id))
    return out


def _matched(
    tx: Tx,
    candidates: dict[str, list[Any]],
    versions: dict[Version, Stored],
    older: list[Version],
    keys: dict[Version, tuple[set[str], set[str]]],
) -> dict[tuple[str, str], set[tuple[str, int]]]:
    """Per (Subscription id, type), the (id, version) of the written versions its criteria (within
    its owner's grants) finds, each on its own content. The current versions are checked together
    on their rows (one query per Subscription); each other version (the dispatcher lagged behind
    later writes of its resource) on its own content put back under a savepoint
    (`conditions.met_by_version`): the same conditions, so a criteria still means what the search means."""
    out: dict[tuple[str, str], set[tuple[str, int]]] = {}
    historical = set(older)
    latest = {v: s for v, s in versions.items() if v not in historical}
    queried = False
    conditions_of: dict[tuple[str, str], ColumnElement[bool] | None] = {}

    def condition_of(sub: Any, res_type: str) -> ColumnElement[bool] | None:
        key = (str(sub.id), res_type)
        if key not in conditions_of:
            conditions_of[key] = _condition(sub, tx.base)
        return conditions_of[key]

    for res_type, subs in candidates.items():
        for sub in subs:
            out[(sub.id, res_type)] = set()  # a topic's Subscription has a row per type
            pks = {
                stored.pk: (rid, version)
                for (t, rid, version), stored in latest.items()
                if t == res_type and _keys_allow(sub, *keys[(t, rid, version)])
            }
            if not pks:
                continue
            condition = condition_of(sub, res_type)
            if condition is None:
                continue
            found = {pks[pk] for pk in conditions.pks_meeting(tx, pks, condition)}
            out[(sub.id, res_type)] |= _accepted(sub, res_type, found, versions)
            queried = True
    if queried:
        # A write that committed since a row was read (READ COMMITTED: each statement sees the
        # latest commits) may have been what a query above saw: its versions take the path below.
        now = conditions.live_versions(tx, [s.pk for s in latest.values()])
        moved = [v for v, s in latest.items() if now.get(s.pk) != s.version]
        for v in moved:
            for (_, res_type), found_versions in out.items():
                if res_type == v[0]:
                    found_versions.discard((v[1], v[2]))
        older = [*older, *moved]
    for v in older:
        res_type = v[0]
        tests: dict[str, ColumnElement[bool]] = {}
        for sub in candidates.get(res_type, []):
            if not _keys_allow(sub, *keys[v]):
                continue
            condition = condition_of(sub, res_type)
            if condition is not None:
                tests[sub.id] = condition
        if not tests:
            continue
        stored = versions[v]
        met = conditions.met_by_version(tx, stored, index_tuples(stored.resource()), tests)
        for sub in candidates[res_type]:
            if sub.id in met:
                out[(sub.id, res_type)] |= _accepted(sub, res_type, {(v[1], v[2])}, versions)
    return out


def _accepted(
    sub: Any, res_type: str, found: set[tuple[str, int]], versions: dict[Version, Stored]
) -> set[tuple[str, int]]:
    """Of the versions the search found, those a topic's trigger accepts (what its search cannot say)."""
    trigger = _trigger(sub, res_type)
    if trigger is None:
        return found
    return {(rid, n) for rid, n in found if trigger.accepts(versions[(res_type, rid, n)].resource())}


def _trigger(sub: Any, res_type: str) -> topics.Trigger | None:
    topic = topics.find(sub.topic) if sub.topic else None
    return topic.trigger(res_type) if topic is not None else None


def _fires(topic_url: str | None, res_type: str, interaction: str) -> bool:
    """A criteria Subscription is told of every change; a topic of the interactions it triggers on."""
    if topic_url is None:
        return True
    topic = topics.find(topic_url)
    return topic is not None and topic.fires(res_type, interaction)


def _keys_allow(sub: Any, codes: set[str], patients: set[str]) -> bool:
    return (sub.key_code is None or sub.key_code in codes) and (
        sub.key_patient is None or sub.key_patient in patients
    )


def _condition(sub: Any, base: str) -> ColumnElement[bool] | None:
    """The criteria AND the owner's search grants, as of now (None: the owner may no longer search it)."""
    try:
        parsed = criteria_.parse(f"{sub.criteria_type}?{sub.criteria}")
        condition = criteria_.condition(sub.criteria_type, sub.criteria, base)
        restriction = enforce.search_restriction(
            Owner.of_row(sub).principal(), criteria_.search(parsed), base
        )
    except FhirError:
        return None
    return condition if restriction is None else and_(condition, restriction)


def _queue(
    tx: Tx,
    events: list[ChangeEvent],
    candidates: dict[str, list[Any]],
    matched: dict[tuple[str, str], set[tuple[str, int]]],
    members: dict[tuple[str, str], set[str]] | None = None,
) -> None:
    """The notifications, in commit order, each with its Subscription's next event number."""
    counters = {sub.id: int(sub.events) for subs in candidates.values() for sub in subs}
    topic_of = {sub.id: sub.topic for subs in candidates.values() for sub in subs}
    if members is None:
        members = _members(tx, {(e.res_type, e.res_id) for e in events})
    missing = {s for subs in members.values() for s in subs} - set(counters)
    if missing:
        for sub_id, n, topic in tx.conn.execute(
            select(_S.c.id, _S.c.events, _S.c.topic).where(
                _S.c.id.in_(sorted(missing)), _S.c.status.in_(LIVE)
            )
        ):
            counters[sub_id] = int(n)
            topic_of[sub_id] = topic
    queued: list[dict[str, Any]] = []
    now = now_us()
    for e in events:
        key = (e.res_type, e.res_id)
        inside = members.setdefault(key, set())
        if e.interaction == "delete":
            targets = sorted(
                s for s in inside if s in counters and _fires(topic_of.get(s), e.res_type, "delete")
            )
            if inside:
                tx.conn.execute(delete(_M).where(_M.c.res_type == e.res_type, _M.c.res_id == e.res_id))
                inside.clear()
        else:
            targets = []
            considered = {sub.id for sub in candidates.get(e.res_type, [])}
            for sub_id in sorted(s for s in inside if s in counters and s not in considered):
                # live, but its index keys exclude every version of the batch: it left the criteria
                inside.discard(sub_id)
                tx.conn.execute(
                    delete(_M).where(
                        _M.c.sub_id == sub_id, _M.c.res_type == e.res_type, _M.c.res_id == e.res_id
                    )
                )
            for sub in candidates.get(e.res_type, []):
                if e.last_updated < sub.since:
                    continue  # written before the Subscription existed (the dispatcher lagged)
                if (e.res_id, e.version) in matched.get((sub.id, e.res_type), ()):
                    if _fires(sub.topic, e.res_type, e.interaction):
                        targets.append(sub.id)
                    if sub.id not in inside:
                        inside.add(sub.id)
                        tx.conn.execute(
                            insert(_M).values(sub_id=sub.id, res_type=e.res_type, res_id=e.res_id)
                        )
                elif sub.id in inside:  # it left the criteria: a later delete is not its business
                    inside.discard(sub.id)
                    tx.conn.execute(
                        delete(_M).where(
                            _M.c.sub_id == sub.id, _M.c.res_type == e.res_type, _M.c.res_id == e.res_id
                        )
                    )
        for sub_id in targets:
            counters[sub_id] += 1
            queued.append(
                {
                    "sub_id": sub_id,
                    "event_number": counters[sub_id],
                    "res_type": e.res_type,
                    "res_id": e.res_id,
                    "version": e.version,
                    "interaction": e.interaction,
                    "queued_at": now,
                    "state": "pending",
                }
            )
    if not queued:
        return
    tx.conn.execute(insert(_D), queued)
    QUEUED.set()
    for sub_id in sorted({q["sub_id"] for q in queued}):
        tx.conn.execute(update(_S).where(_S.c.id == sub_id).values(events=counters[sub_id]))


def _members(tx: Tx, keys: set[tuple[str, str]]) -> dict[tuple[str, str], set[str]]:
    """The Subscriptions each written resource was last matched by."""
    out: dict[tuple[str, str], set[str]] = defaultdict(set)
    by_type: dict[str, list[str]] = defaultdict(list)
    for t, i in keys:
        by_type[t].append(i)
    for t, ids in by_type.items():
        for start in range(0, len(ids), 500):
            rows = tx.conn.execute(
                select(_M.c.sub_id, _M.c.res_id).where(
                    _M.c.res_type == t, _M.c.res_id.in_(ids[start : start + 500])
                )
            )
            for sub_id, rid in rows:
                out[(t, str(rid))].add(str(sub_id))
    return dict(out)


def install(committed: Callable[[], None] | None = None) -> None:
    """Register the listener (at start-up, where change events are delivered); `committed` is
    called after each batch's queue committed (wakes the deliverers)."""
    register(NAME, match, committed=committed, idle=no_live_subscription)


def no_live_subscription(conn: Connection) -> bool:
    """Whether no Subscription is live: then no event committed so far is matched (`match`'s first
    test), and the dispatcher moves the matcher past them unread (events/dispatcher.py `_skipped`)."""
    return conn.execute(select(_S.c.id).where(_S.c.status.in_(LIVE)).limit(1)).first() is None
