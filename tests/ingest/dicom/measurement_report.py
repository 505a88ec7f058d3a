"""A synthetic TID 1500 measurement report SR made with highdicom on pydicom's CT_small test image (https://highdicom.readthedocs.io/en/latest/tid1500.html)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import highdicom.sr as hsr
import pydicom
from pydicom.data import get_testdata_file
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid


@dataclass(frozen=True)
class ExpectedMeasurement:
    system: str
    code: str
    value: float
    ucum: str


MEASUREMENTS = (
    (hsr.CodedConcept("81827009", "SCT", "Diameter"), 12.5, hsr.CodedConcept("mm", "UCUM", "millimeter")),
    (hsr.CodedConcept("42798000", "SCT", "Area"), 1.8, hsr.CodedConcept("cm2", "UCUM", "square centimeter")),
    (
        hsr.CodedConcept("118565006", "SCT", "Volume"),
        3.25,
        hsr.CodedConcept("cm3", "UCUM", "cubic centimeter"),
    ),
    (
        hsr.CodedConcept("112031", "DCM", "Attenuation Coefficient"),
        42.0,
        hsr.CodedConcept("[hnsf'U]", "UCUM", "HU"),
    ),
)
EXPECTED = (
    ExpectedMeasurement("http://snomed.info/sct", "81827009", 12.5, "mm"),
    ExpectedMeasurement("http://snomed.info/sct", "42798000", 1.8, "cm2"),
    ExpectedMeasurement("http://snomed.info/sct", "118565006", 3.25, "cm3"),
    ExpectedMeasurement("http://dicom.nema.org/resources/ontology/DCM", "112031", 42.0, "[hnsf'U]"),
)


def make_measurement_report(path: Path, *, seed: str = "synthetic-sr") -> Path:
    """Write a Comprehensive 3D SR with one measurement group of :data:`MEASUREMENTS`; UIDs derive from ``seed``."""
    ct_path = get_testdata_file("CT_small.dcm")
    assert isinstance(ct_path, str)
    image = pydicom.dcmread(ct_path)
    observer = hsr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=hsr.PersonObserverIdentifyingAttributes(name="Synthetic^Reader"),
    )
    source = hsr.SourceImageForMeasurement(image.SOPClassUID, image.SOPInstanceUID)
    measurements = [
        hsr.Measurement(name=name, value=value, unit=unit, referenced_images=[source])
        for name, value, unit in MEASUREMENTS
    ]
    group = hsr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hsr.TrackingIdentifier(
            uid=generate_uid(entropy_srcs=[seed, "tracking"]), identifier="Lesion 1"
        ),
        measurements=measurements,
        finding_type=codes.SCT.Lesion,
    )
    report = hsr.MeasurementReport(
        observation_context=hsr.ObservationContext(observer_person_context=observer),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
        imaging_measurements=[group],
    )
    sr = hsr.Comprehensive3DSR(
        evidence=[image],
        content=report,
        series_instance_uid=generate_uid(entropy_srcs=[seed, "series"]),
        series_number=99,
        sop_instance_uid=generate_uid(entropy_srcs=[seed, "instance"]),
        instance_number=1,
        manufacturer="Synthetic",
        is_complete=True,
        is_final=True,
        is_verified=True,
        verifying_observer_name="Synthetic^Reader",
        verifying_organization="Synthetic Org",
    )
    sr.save_as(path)
    return path
