"""A topic-based Subscription's criteria: the topic canonical and its `backport-filter-criteria` filters (https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/StructureDefinition-backport-filter-criteria.html).

`Subscription.criteria` is the topic's canonical URL; each `backport-filter-criteria` extension on
it is `name=value` (every resource type of the topic with that filter) or `Type?name=value` (that
type only); several are AND-ed. The channel's `backport-payload-content` (`_payload`) says how much
a notification carries (empty, id-only, full-resource; default empty), `backport-heartbeat-period`
and `backport-timeout` (on the channel) the heartbeat and the request timeout in seconds, and
`backport-max-count` the most events one notification Bundle may carry (default one).
Per resource type of the topic the result is one search (`criteria.Criteria`): the trigger's own
search plus the filters, checked by the search parser, so a filter means what that search means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from ..errors import Invalid
from . import criteria as criteria_
from .topics import Topic, find

IG = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
FILTER = f"{IG}/backport-filter-criteria"
CONTENT = f"{IG}/backport-payload-content"
HEARTBEAT = f"{IG}/backport-heartbeat-period"
TIMEOUT = f"{IG}/backport-timeout"
MAX_COUNT = f"{IG}/backport-max-count"
MAX_EVENTS = 1000  # the most events one notification may carry
CONTENTS = ("empty", "id-only", "full-resource")
WHERE_FILTER = "Subscription.criteria.extension"
MAX_SECONDS = 86400


@dataclass(frozen=True)
class TopicCriteria:
    topic: Topic
    parts: tuple[criteria_.Criteria, ...]  # one search per resource type of the topic
    content: str
    heartbeat: int | None
    timeout: int | None
    max_count: int | None = None  # events a notification may carry (None: one)


def is_topic(text: object) -> bool:
    """A criteria that is a canonical URL rather than a search."""
    return (
        isinstance(text, str) and "?" not in text and text.strip().startswith(("http://", "https://", "urn:"))
    )


def _extensions(holder: Any, url: str) -> list[dict[str, Any]]:
    found = holder.get("extension") if isinstance(holder, dict) else None
    return [e for e in found or [] if isinstance(e, dict) and e.get("url") == url]


def parse(resource: dict[str, Any], channel: dict[str, Any]) -> TopicCriteria:
    """The topic, its filters per resource type and the channel's topic settings; 400 at the element."""
    url = str(resource["criteria"]).strip()
    topic = find(url)
    if topic is None:
        raise Invalid(
            f"The topic '{url[:200]}' is not known here (see the CapabilityStatement)", criteria_.WHERE
        )
    extra: dict[str, list[tuple[str, str]]] = {t.res_type: [] for t in topic.triggers}
    for n, ext in enumerate(_extensions(resource.get("_criteria"), FILTER)):
        _add_filter(topic, ext.get("valueString"), extra, f"{WHERE_FILTER}[{n}]")
    parts = []
    for trigger in topic.triggers:
        pairs = [*trigger.query, *extra[trigger.res_type]]
        try:
            parts.append(criteria_.parse(f"{trigger.res_type}?{urlencode(pairs)}"))
        except Invalid as exc:
            raise Invalid(exc.message, WHERE_FILTER) from None
    content = "empty"
    for ext in _extensions(channel.get("_payload"), CONTENT):
        content = ext.get("valueCode")  # type: ignore[assignment]
        if content not in CONTENTS:
            raise Invalid(
                f"The payload content '{str(content)[:64]}' is not supported (supported: {', '.join(CONTENTS)})",
                "Subscription.channel.payload",
            )
    return TopicCriteria(
        topic,
        tuple(parts),
        content,
        _seconds(channel, HEARTBEAT),
        _seconds(channel, TIMEOUT),
        _max_count(channel),
    )


def _max_count(channel: dict[str, Any]) -> int | None:
    """`backport-max-count` (valuePositiveInt): the most events one notification Bundle carries."""
    found = _extensions(channel, MAX_COUNT)
    if not found:
        return None
    value = found[0].get("valuePositiveInt")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_EVENTS:
        raise Invalid(
            f"backport-max-count must be a valuePositiveInt, 1 to {MAX_EVENTS}",
            "Subscription.channel.extension",
        )
    return value


def _add_filter(topic: Topic, value: Any, extra: dict[str, list[tuple[str, str]]], where: str) -> None:
    if not isinstance(value, str) or "=" not in value:
        raise Invalid("A filter criteria is 'name=value' or 'Type?name=value' (valueString)", where)
    res_type, sep, query = value.strip().partition("?")
    if not sep:
        res_type, query = "", value.strip()
    if res_type and res_type not in extra:
        raise Invalid(f"The topic {topic.url} has no events on '{res_type[:64]}'", where)
    for name, filter_value in parse_qsl(query, keep_blank_values=True):
        declared = topic.filter(name.partition(":")[0])
        types = [t for t in ([res_type] if res_type else list(extra)) if declared and t in declared.params]
        if declared is None or not types:
            allowed = ", ".join(f.name for f in topic.filters) or "none"
            raise Invalid(f"The topic {topic.url} has no filter '{name[:64]}' (filters: {allowed})", where)
        modifier = name.partition(":")[2]
        for t in types:
            param = declared.params[t]
            extra[t].append((f"{param}:{modifier}" if modifier else param, filter_value))


def _seconds(channel: dict[str, Any], url: str) -> int | None:
    found = _extensions(channel, url)
    if not found:
        return None
    value = found[0].get("valueUnsignedInt")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_SECONDS:
        raise Invalid(
            f"{url.rsplit('/', 1)[-1]} must be a number of seconds, 1 to {MAX_SECONDS}",
            "Subscription.channel.extension",
        )
    return value


def to_text(parts: tuple[criteria_.Criteria, ...]) -> str:
    """The searches of a topic subscription, for messages."""
    return "; ".join(f"{p.res_type}?{p.text}" for p in parts)
