"""Store → metrics: analysis settings, outcome metrics, Kaplan–Meier survival and disclosure control. Never imports Streamlit."""
