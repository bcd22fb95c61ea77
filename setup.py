"""Builds the compiled modules: `fastgw._core` (the public library: router, path normalization,
buckets), `fastgw._proxy` (the private proxy, which cimports `_core`) and `fastgw._tls` (TLS
termination on OpenSSL's libssl, whose headers come from libssl-dev).

`FASTGW_DEBUG=1` builds with the FASTGW_DEBUG macro, line tracing and annotation (see `make debug`).
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("FASTGW_DEBUG") == "1"

macros = [("FASTGW_DEBUG", "1"), ("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")] if DEBUG else []
extensions = [
    Extension(
        f"fastgw.{name}",
        [f"src/fastgw/{name}.pyx"],
        include_dirs=["src/fastgw/_core_src"],
        define_macros=macros,
        extra_compile_args=["-O2"] if not DEBUG else ["-O0", "-g"],
    )
    for name in ("_core", "_proxy")
] + [
    Extension(
        "fastgw._tls",
        ["src/fastgw/_tls.pyx"],
        libraries=["ssl", "crypto"],
        define_macros=macros,
        extra_compile_args=["-O2"] if not DEBUG else ["-O0", "-g"],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level="3",
        include_path=["src"],
        annotate=DEBUG,
        compiler_directives={
            "boundscheck": DEBUG,
            "wraparound": False,
            "cdivision": True,
            "linetrace": DEBUG,
            "embedsignature": True,
        },
    ),
)
