"""The Patient compartment (https://hl7.org/fhir/R4/compartmentdefinition-patient.html).

Data: search/data/compartment_patient.json, generated from CompartmentDefinition-patient by
scripts/gen_search_registry.py.
"""

from __future__ import annotations

import functools
from pathlib import Path

import orjson

from .. import model

DATA = Path(__file__).resolve().parent / "data" / "compartment_patient.json"


@functools.cache
def _patient() -> dict[str, tuple[str, ...]]:
    return {t: tuple(codes) for t, codes in orjson.loads(DATA.read_bytes()).items()}


def patient_compartment_params(resource_type: str) -> tuple[str, ...]:
    """The search parameters that put a resource of this type in a Patient's compartment (empty:
    the type is not in it). A Patient is also in its own compartment, by identity (not listed)."""
    return _patient().get(resource_type, ())


def compartment_types() -> list[str]:
    """Patient and the types in the Patient compartment."""
    inside = [rt for rt in sorted(model.resource_types()) if patient_compartment_params(rt)]
    return ["Patient", *[rt for rt in inside if rt != "Patient"]]
