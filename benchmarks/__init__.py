"""Benchmarks: each `bench_*.py` runs standalone (`python -m benchmarks.bench_prepare`) and writes results/."""
