"""Benchmarks: one command each, not tests (see docs/benchmarks.md)."""
