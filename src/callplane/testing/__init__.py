"""Helpers for tests and benchmarks: a running server, factories, speech test calls, WER and soak tooling."""
