"""Compliance on information access (issue 15): the records rules look at, the rules, findings."""
