"""Reproducible load runs; each writes its results to docs/benchmarks.md."""
