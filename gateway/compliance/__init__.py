"""Compliance outputs built on the access records (issue 15, items 5-8): the accounting of
disclosures, access reports, the annual audit report of minors' personal information and the
FHIR R5 AuditEvent export. Adapters: they format what the one reader (`gateway.http.reader`)
has already decided and recorded."""
