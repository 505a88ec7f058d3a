"""The server's subscription topics, as data: R4 has no SubscriptionTopic resource (https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/topics.html).

A `Topic` is what a SubscriptionTopic would say: its canonical URL, per resource type a `Trigger`
(the interactions it fires on, a search the resource must meet, and a test of the content where a
search cannot say it) and the filters a Subscription may narrow it with (`Filter`: the filter name
and, per resource type, the search parameter it means). A filter is applied with the search
engine's semantics, like a criteria. The topics are declared in the CapabilityStatement
(`capability_extensions`); `shipped_topics.py` holds the server's own; a new one is one entry there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

CANONICAL_EXTENSION = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical"
INTERACTIONS = frozenset({"create", "update", "delete"})


@dataclass(frozen=True)
class Trigger:
    """When a write of one resource type is an event of the topic."""

    res_type: str
    interactions: frozenset[str]
    query: tuple[tuple[str, str], ...] = ()  # a search the current resource must meet
    test: Callable[[dict[str, Any]], bool] | None = None  # what a search cannot say
    description: str = ""

    def accepts(self, resource: dict[str, Any]) -> bool:
        return self.test is None or bool(self.test(resource))


@dataclass(frozen=True)
class Filter:
    """A `filterBy` a Subscription may use: its name and, per resource type, the search parameter."""

    name: str
    params: Mapping[str, str]
    description: str = ""


@dataclass(frozen=True)
class Topic:
    url: str
    title: str
    description: str
    triggers: tuple[Trigger, ...]
    filters: tuple[Filter, ...] = field(default=())

    def trigger(self, res_type: str) -> Trigger | None:
        return next((t for t in self.triggers if t.res_type == res_type), None)

    def filter(self, name: str) -> Filter | None:
        return next((f for f in self.filters if f.name == name), None)

    def fires(self, res_type: str, interaction: str) -> bool:
        """Whether `interaction` on `res_type` is one of this topic's events (a patch is an update)."""
        trigger = self.trigger(res_type)
        kind = "update" if interaction == "patch" else interaction
        return trigger is not None and kind in trigger.interactions


_REGISTRY: dict[str, Topic] = {}


def register(topic: Topic) -> Topic:
    """Add a topic (at import of the module that defines it); its URL must be new."""
    if topic.url in _REGISTRY:
        raise ValueError(f"topic {topic.url} is registered twice")
    if any(not t.interactions or not t.interactions <= INTERACTIONS for t in topic.triggers):
        raise ValueError(f"topic {topic.url}: a trigger's interactions must be create, update, delete")
    _REGISTRY[topic.url] = topic
    return topic


def find(url: str) -> Topic | None:
    from . import shipped_topics  # noqa: F401  (registers the server's topics)

    return _REGISTRY.get(url.split("|", 1)[0])


def all_topics() -> list[Topic]:
    from . import shipped_topics  # noqa: F401

    return sorted(_REGISTRY.values(), key=lambda t: t.url)


def capability_extensions() -> list[dict[str, str]]:
    """The CapabilityStatement.rest.resource (Subscription) extensions naming every topic."""
    return [{"url": CANONICAL_EXTENSION, "valueCanonical": t.url} for t in all_topics()]
