"""Metrics → figures: the Plotly figure builders and the fixed route palette, shared by the dashboard and the reports. Never imports Streamlit."""
