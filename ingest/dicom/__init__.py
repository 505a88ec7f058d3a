"""DICOM files -> ImagingStudy, and SR measurements -> Observations (https://hl7.org/fhir/R4/imagingstudy.html).

``ingest_dicom(path, patient_ref, options=None) -> IngestResult`` and ``ADAPTER`` (format
``dicom``; ``ADAPTER.ingest(path, ctx, patient_ref) -> list[Bundle dict]``). Modules:
``imaging_study`` (study/series/instance and UID identifiers), ``sr`` (NUM content items of an SR
tree), ``coding`` (DICOM coding schemes -> FHIR systems), ``adapter``.
"""

from ingest.dicom.adapter import ADAPTER, ingest_bytes, ingest_dicom

__all__ = ["ADAPTER", "ingest_bytes", "ingest_dicom"]
