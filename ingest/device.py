"""Source device or app -> FHIR Device, written as a conditional create (https://hl7.org/fhir/R4/device.html)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from ingest.bundle import Entry, conditional_create, full_url_for

DEVICE_SYSTEM = "urn:fhir-server:ingest:device"


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What recorded the data: a wearable/meter (``kind="device"``) or an app (``kind="app"``).

    Identity is (source, kind, name, manufacturer, model, hardware); ``software`` is recorded
    on the Device but left out of the identity so an OS update does not make a new Device.
    """

    source: str
    name: str
    manufacturer: str | None = None
    model: str | None = None
    hardware: str | None = None
    software: str | None = None
    kind: Literal["device", "app"] = "device"

    @property
    def key(self) -> str:
        """The identity string hashed into identifiers."""
        return "\x1f".join(
            (
                self.source,
                self.kind,
                self.name,
                self.manufacturer or "",
                self.model or "",
                self.hardware or "",
            )
        )

    @property
    def identifier_value(self) -> str:
        return _digest(self.key)

    @property
    def full_url(self) -> str:
        return _full_url(self.key)

    @property
    def conditional_reference(self) -> str:
        """``Device?identifier=...``: a reference resolvable outside the bundle that created it."""
        return f"Device?identifier={DEVICE_SYSTEM}|{self.identifier_value}"

    def resource(self) -> dict[str, Any]:
        """The Device resource (no id; created by identifier)."""
        res: dict[str, Any] = {
            "resourceType": "Device",
            "identifier": [{"system": DEVICE_SYSTEM, "value": self.identifier_value}],
            "status": "active",
        }
        if self.manufacturer:
            res["manufacturer"] = self.manufacturer
        res["deviceName"] = [{"name": self.name, "type": "user-friendly-name"}]
        if self.model:
            res["deviceName"].append({"name": self.model, "type": "model-name"})
            res["modelNumber"] = self.model
        res["type"] = {"text": "software application" if self.kind == "app" else "personal health device"}
        versions = []
        if self.hardware:
            versions.append({"type": {"text": "hardware"}, "value": self.hardware})
        if self.software:
            versions.append({"type": {"text": "software"}, "value": self.software})
        if versions:
            res["version"] = versions
        res["note"] = [{"text": f"Recorded via {self.source} import"}]
        return res

    def entry(self) -> Entry:
        """The Device as a conditional create entry (deterministic urn:uuid fullUrl)."""
        return _entry(self)


@lru_cache(maxsize=4096)
def _entry(info: DeviceInfo) -> Entry:
    return conditional_create(info.resource(), DEVICE_SYSTEM, info.identifier_value)


@lru_cache(maxsize=4096)
def _full_url(key: str) -> str:
    return full_url_for(DEVICE_SYSTEM, _digest(key))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]
