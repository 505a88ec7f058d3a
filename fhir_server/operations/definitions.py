"""OperationDefinitions of the operations this server defines (https://hl7.org/fhir/R4/operationdefinition.html).

`$ingest` (docs/ingest.md) and `$import` (docs/bulk-data.md, after the Bulk Data import proposal,
https://github.com/smart-on-fhir/bulk-import/blob/master/import.md) have no published definition;
`Observation-stats-series` is HL7's `Observation-stats` with our series inputs (docs/clinical-operations.md);
`Subscription-topic-list` is the topic list of the Subscriptions Backport IG's first ballot (docs/subscriptions.md):
the
CapabilityStatement points at these, served at `[base]/OperationDefinition/[name]` without a token
(like the CapabilityStatement itself).
"""

from __future__ import annotations

from typing import Any

STATS_SERIES = "Observation-stats-series"
TOPIC_LIST = "Subscription-topic-list"
NAMES = ("ingest", "import", STATS_SERIES, TOPIC_LIST)


def _param(
    name: str, use: str, low: int, high: str, kind: str | None, doc: str, **more: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "use": use, "min": low, "max": high, "documentation": doc}
    if kind is not None:
        out["type"] = kind
    return out | more


def _common(name: str, base: str, title: str, description: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationDefinition",
        "id": name,
        "url": f"{base}/OperationDefinition/{name}",
        "name": title,
        "status": "active",
        "kind": "operation",
        "affectsState": True,
        "code": name,
        "description": description,
    }


def definition(name: str, base: str) -> dict[str, Any]:
    """The OperationDefinition `name` (one of NAMES) with canonical URLs under `base`."""
    accepted = _param(
        "return",
        "out",
        1,
        "1",
        "OperationOutcome",
        "202 Accepted: the request was queued; Content-Location names where its status is polled",
    )
    if name == "ingest":
        return _common(
            name,
            base,
            "Ingest",
            "Turn a file (CSV, Apple Health / Health Connect / Fitbit / Open mHealth export, lab report "
            "PDF or image, DICOM) into Observations and related resources of one patient, in the "
            "background. The status is a Task (Content-Location: [base]/Task/[id]).",
        ) | {
            "resource": ["Patient"],
            "system": True,
            "type": False,
            "instance": True,
            "parameter": [
                _param(
                    "file", "in", 1, "1", "Binary", "The file: a multipart field 'file', or the request body"
                ),
                _param("patient", "in", 0, "1", "string", "Patient/[id] (system level; required there)"),
                _param(
                    "format", "in", 0, "1", "code", "The file's format (fhir-server ingest formats), or auto"
                ),
                _param("timezone", "in", 0, "1", "string", "IANA time zone of local times in the file"),
                accepted,
            ],
        }
    if name == "import":
        input_parts = [
            _param("type", "in", 0, "1", "code", "The resource type of the file"),
            _param("url", "in", 1, "1", "url", "file:///absolute/path under FHIR_BULK_IMPORT_DIR"),
        ]
        return _common(
            name,
            base,
            "Import",
            "Load NDJSON files of resources (validated, indexed, idempotent by id) as a Bulk Data job; "
            "polled like $export. The body may also be the NDJSON itself (application/fhir+ndjson).",
        ) | {
            "system": True,
            "type": False,
            "instance": False,
            "parameter": [
                _param("inputFormat", "in", 0, "1", "code", "application/fhir+ndjson"),
                _param("input", "in", 1, "*", None, "One input file", part=input_parts),
                accepted,
            ],
        }
    if name == STATS_SERIES:
        return _stats_series(base)
    if name == TOPIC_LIST:
        return _topic_list(base)
    raise KeyError(name)


def _topic_list(base: str) -> dict[str, Any]:
    """Subscription/$topic-list (operations/subscription_topic_list.py), after the Subscriptions
    Backport IG's first ballot: the topics the caller may subscribe to."""
    return _common(
        TOPIC_LIST,
        base,
        "SubscriptionTopicList",
        "The subscription topics this server supports that the caller may subscribe to (its token "
        "may create Subscriptions and search and read every resource type of the topic), by "
        "canonical URL. The same topics, all of them, are in the CapabilityStatement as "
        "capabilitystatement-subscriptiontopic-canonical extensions (Subscriptions R5 Backport IG).",
    ) | {
        "affectsState": False,
        "code": "topic-list",
        "resource": ["Subscription"],
        "system": False,
        "type": True,
        "instance": False,
        "parameter": [
            _param("url", "in", 0, "*", "uri", "Only these topic canonical URLs (if listed)"),
            _param(
                "return",
                "out",
                1,
                "1",
                "Parameters",
                "Parameters (profile backport-subscription-topic-canonical-urls): one "
                "subscription-topic-canonical (valueCanonical) per topic",
            ),
        ],
    }


def _stats_series(base: str) -> dict[str, Any]:
    """HL7's Observation-stats (R4) with `interval` and `timezone` (statistics per calendar bucket) and
    `start`/`end` (the period, by URL)."""
    common = _common(
        STATS_SERIES,
        base,
        "ObservationStatisticsSeries",
        "Observation/$stats: statistics of a subject's quantity Observations per code (panel "
        "components apart, UCUM canonical units where a code's units differ), computed by the "
        "database. With `interval`, the same statistics per calendar hour, day, ISO week or month "
        "of `timezone`, one statistics Observation per bucket (effectivePeriod: the bucket, end = "
        "the next bucket's start); the repeated hour of a DST fall-back is two buckets.",
    )
    return common | {
        "affectsState": False,
        "code": "stats",
        "base": "http://hl7.org/fhir/OperationDefinition/Observation-stats",
        "resource": ["Observation"],
        "system": False,
        "type": True,
        "instance": False,
        "parameter": [
            _param("subject", "in", 1, "1", "uri", "The subject, e.g. Patient/123"),
            _param("code", "in", 0, "*", "string", "Code(s), comma-separated allowed; with 'system'"),
            _param("system", "in", 0, "1", "uri", "The system of the codes"),
            _param("coding", "in", 0, "*", "Coding", "A code as a Coding (GET: system|code)"),
            _param("duration", "in", 0, "1", "decimal", "The last N hours"),
            _param("period", "in", 0, "1", "Period", "The period (POST)"),
            _param("start", "in", 0, "1", "dateTime", "The period's start (GET; ours)"),
            _param("end", "in", 0, "1", "dateTime", "The period's end (GET; ours)"),
            _param(
                "statistic",
                "in",
                1,
                "*",
                "code",
                "average | maximum | minimum | count | sum | median | std-dev | variance | 20-percent "
                "| 80-percent | 4-lower | 4-upper (sample variance and std-dev; percentiles interpolate)",
            ),
            _param("include", "in", 0, "1", "boolean", "Also return the source Observations"),
            _param("limit", "in", 0, "1", "positiveInt", "At most this many source Observations"),
            _param("interval", "in", 0, "1", "code", "Series form (ours): hour | day | week | month"),
            _param("timezone", "in", 0, "1", "string", "IANA time zone of the buckets (ours; default UTC)"),
            _param("statistics", "out", 1, "*", "Observation", "One per code and unit (and bucket)"),
            _param("source", "out", 0, "*", "Observation", "The Observations the statistics are based on"),
        ],
    }
