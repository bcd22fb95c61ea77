"""Upstream layer: per-worker keep-alive pools, target selection and the proxy exchange."""
