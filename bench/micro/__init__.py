"""Micro-benchmarks of the compiled core against the plain-Python models."""
