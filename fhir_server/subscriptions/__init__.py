"""Subscriptions: criteria-based R4 Subscriptions and topic-based ones of the Backport IG (https://hl7.org/fhir/R4/subscription.html, https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/).

`admission` checks a Subscription when it is written (status, channel, criteria within its owner's
scopes) and records it; `matcher` is the change-event listener that turns committed versions into
queued deliveries; `delivery` sends them, in order per subscription, with retries (docs/subscriptions.md).
Topics: `topics` (the registry), `shipped_topics`, `filter_criteria` (a topic Subscription's
searches), `notification` (Bundles), `handshake`, `heartbeat`, `replay` (what $status/$events read).
"""
