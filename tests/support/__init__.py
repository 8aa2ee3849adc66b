"""Helpers shared by test modules (servers to test against)."""
