"""CodeSystems and ValueSets we ship, and terminology operations (https://hl7.org/fhir/R4/terminology-module.html)."""
