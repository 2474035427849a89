"""Shared test helpers (see tests/helpers/sandbox.py)."""
