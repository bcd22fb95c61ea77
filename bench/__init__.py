"""Benchmarks of fastgw: wrk capacity runs against nginx in one run (`python -m bench`), Locust
scenario runs that track p99 over time (`python -m bench.locust_run`), and micro-benchmarks of the
compiled core (`python -m bench.micro`). See bench/README.md."""
