"""The Streamlit dashboard: the entry script (main.py), shared UI blocks and cached loads (ui.py), one page per file in views/. The only part of the package that imports Streamlit."""
