"""Import → store: the export format vocabulary (spec), the DuckDB store, the importer, the sample generator and the built-in sample database."""
