"""The audit trail: an AuditEvent for every access and change (https://hl7.org/fhir/R4/auditevent.html, IHE BALP; docs/audit.md)."""
