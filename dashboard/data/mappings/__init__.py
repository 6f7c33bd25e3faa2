"""Mappings shipped with Ketamine Outcomes for `ketamine-outcomes anonymize --mapping NAME` (generic.toml)."""
