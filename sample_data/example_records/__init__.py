"""An example of a clinic's identified records in the generic layout (fictitious people), shipped as
`dashboard.example_records` for the README's walk-through and the Import page: `ketamine-outcomes anonymize
sample_data/example_records --mapping generic --key clinic.key --out export`."""
