"""DICOM instance -> FHIR ImagingStudy with its series and instance, keyed by Study Instance UID (https://hl7.org/fhir/R4/imagingstudy.html).

Identifiers follow the ImagingStudy page: the study is ``urn:dicom:uid`` | ``urn:oid:<Study
Instance UID>`` (the conditional-create key), the Accession Number an ``ACSN`` identifier; series
and instance carry their UIDs in ``uid``; the SOP Class is a Coding in ``urn:ietf:rfc:3986``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from pydicom.dataset import Dataset

from ingest.bundle import Entry, conditional_create
from ingest.dicom.coding import DCM_SYSTEM

DICOM_UID_SYSTEM = "urn:dicom:uid"
_V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def uid_identifier(uid: str) -> dict[str, str]:
    """A DICOM UID as a FHIR Identifier (``urn:dicom:uid`` | ``urn:oid:...``)."""
    return {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{uid}"}


def text(ds: Dataset, keyword: str) -> str:
    """An element's value as stripped text ('' when absent or empty)."""
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def integer(ds: Dataset, keyword: str) -> int | None:
    """An IS/US element as a non-negative int (FHIR unsignedInt), or None when absent or not a number."""
    value = text(ds, keyword)
    try:
        number = int(float(value))
    except ValueError:
        return None
    return number if number >= 0 else None


def _offset(ds: Dataset) -> timezone | None:
    raw = text(ds, "TimezoneOffsetFromUTC")
    if len(raw) != 5 or raw[0] not in "+-" or not raw[1:].isdigit():
        return None
    sign = -1 if raw[0] == "-" else 1
    return timezone(sign * timedelta(hours=int(raw[1:3]), minutes=int(raw[3:5])))


def fhir_when(ds: Dataset, date_keyword: str, time_keyword: str) -> str | None:
    """A DICOM DA (+ TM) pair as a FHIR date/dateTime: with the time only when the data set gives its zone.

    FHIR requires a zone on every dateTime with a time; a DICOM time without Timezone Offset From
    UTC (0008,0201) is local to an unknown place, so only the date is kept then.
    """
    date_text = text(ds, date_keyword)
    try:
        day = datetime.strptime(date_text, "%Y%m%d")
    except ValueError:
        return None
    tz = _offset(ds)
    digits = text(ds, time_keyword).split(".")[0].replace(":", "")
    if tz is None or len(digits) < 4 or not digits.isdigit():
        return day.date().isoformat()
    digits = digits.ljust(6, "0")[:6]
    try:
        moment = day.replace(
            hour=int(digits[:2]), minute=int(digits[2:4]), second=int(digits[4:6]), tzinfo=tz
        )
    except ValueError:
        return day.date().isoformat()
    return moment.isoformat()


def _modality(code: str) -> dict[str, str]:
    return {"system": DCM_SYSTEM, "code": code}


def resource(ds: Dataset, *, patient_ref: str) -> dict[str, Any]:
    """The ImagingStudy for the one instance in ``ds`` (study, its series, the instance)."""
    study_uid = text(ds, "StudyInstanceUID")
    identifiers: list[dict[str, Any]] = [uid_identifier(study_uid)]
    accession = text(ds, "AccessionNumber")
    if accession:
        identifiers.append({"type": {"coding": [{"system": _V2_0203, "code": "ACSN"}]}, "value": accession})
    modality = text(ds, "Modality")
    instance: dict[str, Any] = {
        "uid": text(ds, "SOPInstanceUID"),
        "sopClass": {"system": "urn:ietf:rfc:3986", "code": f"urn:oid:{text(ds, 'SOPClassUID')}"},
    }
    number = integer(ds, "InstanceNumber")
    if number is not None:
        instance["number"] = number
    series: dict[str, Any] = {"uid": text(ds, "SeriesInstanceUID")}
    number = integer(ds, "SeriesNumber")
    if number is not None:
        series["number"] = number
    series["modality"] = _modality(modality or "OT")
    if text(ds, "SeriesDescription"):
        series["description"] = text(ds, "SeriesDescription")
    series["numberOfInstances"] = 1
    started = fhir_when(ds, "SeriesDate", "SeriesTime")
    if started:
        series["started"] = started
    series["instance"] = [instance]
    study: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "identifier": identifiers,
        "status": "available",
        "modality": [_modality(modality or "OT")],
        "subject": {"reference": patient_ref},
    }
    started = fhir_when(ds, "StudyDate", "StudyTime")
    if started:
        study["started"] = started
    study["numberOfSeries"] = 1
    study["numberOfInstances"] = 1
    if text(ds, "StudyDescription"):
        study["description"] = text(ds, "StudyDescription")
    study["series"] = [series]
    return study


def entry(ds: Dataset, *, patient_ref: str) -> Entry:
    """The ImagingStudy as a conditional create on its Study Instance UID."""
    ident = uid_identifier(text(ds, "StudyInstanceUID"))
    return conditional_create(resource(ds, patient_ref=patient_ref), ident["system"], ident["value"])
