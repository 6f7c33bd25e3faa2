"""A small example clinic export, shipped inside the package as `dashboard.example_export`."""
