"""Importers of files users hand in (rosters of minors: `gateway.imports.roster`)."""
