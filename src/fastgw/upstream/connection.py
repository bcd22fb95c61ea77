"""The asyncio face of the compiled upstream connection (the asyncpg shape: a cdef core plus
asyncio.Protocol)."""
from __future__ import annotations

import asyncio

from fastgw._proxy import UpstreamCore


class UpstreamConnection(UpstreamCore, asyncio.Protocol):
    __slots__ = ()
