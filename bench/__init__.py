"""Benchmarks of rotorshm: one runnable module per scenario (``python -m bench.<name>``)."""
