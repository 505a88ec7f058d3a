"""A FHIR R4 (4.0.1) health data server. See https://hl7.org/fhir/R4/."""

__version__ = "0.1.0"
