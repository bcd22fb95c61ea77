"""Plain-Python twins of `fastgw._core`: the oracle for property tests and the baseline for the
micro-benchmarks. Never used by the gateway itself."""
