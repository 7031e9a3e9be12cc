"""Compliance read models (issue 15): the access log (`access_log`), which the rules, the
disclosure accounting, the access reports and the FHIR export read."""
