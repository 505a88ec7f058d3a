"""Tests of the terminology package and operations (https://hl7.org/fhir/R4/terminology-module.html)."""
