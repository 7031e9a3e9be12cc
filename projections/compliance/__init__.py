"""Read models of compliance on information access (issue 15)."""
