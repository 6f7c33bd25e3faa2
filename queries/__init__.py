"""The project's SQL, one named query per .sql file, shipped inside the package as `dashboard.queries` (see dashboard/data/store.py)."""
