"""Benchmarks (not tests): each prints its figures; results are written down in docs/benchmarks.md."""
