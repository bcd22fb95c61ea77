"""fastgw: an HTTP/1.1 API gateway with a compiled hot path.

The public API is small on purpose: the configuration loader and the version here, the compiled
core in `fastgw._core` (see docs/embedding.md). Everything else is internal.
"""

from fastgw._version import __version__
from fastgw.config import ConfigError
from fastgw.config import load as load_config

__all__ = ["ConfigError", "__version__", "load_config"]
