"""Builds the compiled core `fastgw._core`.

`FASTGW_DEBUG=1` builds with the FASTGW_DEBUG macro, line tracing and annotation (see `make debug`).
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("FASTGW_DEBUG") == "1"

macros = [("FASTGW_DEBUG", "1"), ("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")] if DEBUG else []
extensions = [
    Extension(
        "fastgw._core",
        ["src/fastgw/_core.pyx"],
        include_dirs=["src/fastgw/_core_src"],
        define_macros=macros,
        extra_compile_args=["-O2"] if not DEBUG else ["-O0", "-g"],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level="3",
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
