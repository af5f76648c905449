"""Benchmarks: long experiments, not tests (see README.md in this folder)."""
