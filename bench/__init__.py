"""Benchmarks of the kit: `make bench` (run_all.py) and the stand-alone scripts beside it."""
