"""Subscriptions: criteria-based R4 Subscriptions delivered over rest-hook (https://hl7.org/fhir/R4/subscription.html).

`admission` checks a Subscription when it is written (status, channel, criteria within its owner's
scopes) and records it; `matcher` is the change-event listener that turns committed versions into
queued deliveries; `delivery` sends them, in order per subscription, with retries (docs/subscriptions.md).
"""
