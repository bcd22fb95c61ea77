"""Type stubs for the compiled core `fastgw._core` (see docs/embedding.md)."""
from typing import Callable, Iterable

# --- path normalization (_core_src/path.pyx) ---

# --- routing (_core_src/trie.pyx) ---

# --- rate limiting (_core_src/bucket.pyx) ---
