"""Benchmarks of the bridge: run each module with ``python -m bench.<name>``."""
