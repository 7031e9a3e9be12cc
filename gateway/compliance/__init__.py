"""Compliance on information access (issue 15): the rules' configuration file and evaluator."""
