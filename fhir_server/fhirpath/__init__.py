"""FHIRPath (https://hl7.org/fhir/R4/fhirpath.html): parsed once, compiled to closures over the R4 model."""
