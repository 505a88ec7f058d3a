"""Subscription/$topic-list: the topics a caller may subscribe to, by canonical URL (https://hl7.org/fhir/uv/subscriptions-backport/2021Jan/OperationDefinition-Backport-subscriptiontopic-list.html).

R4 has no SubscriptionTopic resource. STU 1.1 of the Backport IG has an R4 server name its topics
with `capabilitystatement-subscriptiontopic-canonical` extensions in the CapabilityStatement (done
in api/metadata.py, all topics, no token needed); the IG's first ballot defined this operation for
the same list, which this server keeps for clients that ask (our OperationDefinition
`Subscription-topic-list`, operations/definitions.py). `GET|POST [base]/Subscription/$topic-list`,
optionally `url` (repeatable: only those topics): a Parameters (profile
backport-subscription-topic-canonical-urls) with one `subscription-topic-canonical` per topic.

Scopes: the caller needs to create Subscriptions (`Subscription.c`), else 403; a topic is listed
only when the caller may search and read every resource type it has events on, the test the
creation of a Subscription on it passes (admission.py), so the list is what this token can use.
"""

from __future__ import annotations

from typing import Any

from ..auth import enforce
from ..auth.principal import Denied, Principal
from ..interactions.context import Context
from ..store.sql import Tx
from ..subscriptions import topics
from .parameters import OperationInput

PROFILE = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-topic-canonical-urls"


def topic_list(ctx: Context, tx: Tx, params: OperationInput) -> dict[str, Any]:
    enforce.check_operation(ctx.principal, "Subscription", "c")
    wanted = {str(v).split("|", 1)[0] for v in params.values.get("url", ())}
    listed = [
        {"name": "subscription-topic-canonical", "valueCanonical": t.url}
        for t in topics.all_topics()
        if (not wanted or t.url in wanted) and _usable(ctx.principal, t)
    ]
    return {"resourceType": "Parameters", "meta": {"profile": [PROFILE]}, "parameter": listed}


def _usable(principal: Principal | None, topic: topics.Topic) -> bool:
    """Whether the caller may search and read every resource type of the topic."""
    if principal is None:
        return True
    return not any(isinstance(enforce.operation(principal, t.res_type, "rs"), Denied) for t in topic.triggers)
