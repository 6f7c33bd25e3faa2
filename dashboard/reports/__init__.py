"""Metrics → files: the CSV summaries with provenance (and the reports built from them). Never imports Streamlit."""
