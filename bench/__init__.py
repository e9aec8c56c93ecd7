"""Benchmarks: scripts that print figures (`python -m bench WORKLOAD`). Tests never time."""
