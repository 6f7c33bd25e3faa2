"""The dashboard's pages, one script per URL path, run by `st.navigation` in dashboard/app/main.py.

A package so the page scripts ship with the project; Streamlit runs each file by its path, never by import.
"""
