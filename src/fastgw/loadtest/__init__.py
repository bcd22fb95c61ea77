"""Load testing a service directly and through fastgw: wrk and Locust runs, the CPU and memory of
the gateway's processes during them, and the reports and plots made from them.

One implementation for two users: `fastgw bench` (installed with the package, for your own
services; see docs/operations.md) and the repository's benchmark harness `python -m bench`
(fastgw against nginx, the cost curves; see bench/README.md).

- `wrk`: one bounded wrk run and its figures (read from a Lua `done()` hook, µs resolution).
- `locust`: one bounded headless Locust run at a fixed rate, and its CSVs read back.
- `cpu`, `memory`: CPU time and RSS of a process tree (a master and its workers) from /proc.
- `procs`: starting servers in their own process groups and always stopping them.
- `gateway`: starting `fastgw run` and waiting for its ready line.
- `report`, `plot`: medians, ratios and added latency; JSON; PNGs (matplotlib, optional).
- `tools`: what is missing and how to install it (wrk, Locust, matplotlib).
- `command`: `fastgw bench`.
"""
