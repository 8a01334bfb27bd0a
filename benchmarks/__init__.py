"""Benchmarks: run apart from the tests; each prints the figures its issue names."""
