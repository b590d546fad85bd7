"""Helpers shared by the test suite and the benchmarks (real brokers, free ports)."""
