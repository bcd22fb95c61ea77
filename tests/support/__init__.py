"""End-to-end test infrastructure: a real backend process, gateway process control, raw clients.

Everything here talks to real processes over real loopback sockets; nothing is mocked.
"""
