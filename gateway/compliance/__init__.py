"""Compliance on information access (issue 15): the rules' configuration file and evaluator;
the accounting of disclosures, access reports, the annual audit report and the FHIR R5
AuditEvent export, which format what the one reader (`gateway.http.reader`) has already decided
and recorded."""
