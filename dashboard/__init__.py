"""Ketamine Outcomes: outcomes analytics for ketamine clinics (import → store → metrics → views)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ketamine-outcomes")
except PackageNotFoundError:  # running from a checkout that was not installed
    __version__ = "0.1.0"
