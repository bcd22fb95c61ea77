"""The asyncio face of the compiled upstream connection (the asyncpg shape: a cdef core plus
asyncio.Protocol); the compiled pools open connections of this class."""
from __future__ import annotations

import asyncio

from fastgw._proxy import UpstreamCore, set_connection_class


class UpstreamConnection(UpstreamCore, asyncio.Protocol):
    __slots__ = ()


set_connection_class(UpstreamConnection)
