"""The asyncio face of the compiled client protocol (`fastgw._core.ClientCore`, see
`_core_src/proto.pxd` for what happens per request)."""
from __future__ import annotations

import asyncio

from fastgw._core import ClientCore


class ClientProtocol(ClientCore, asyncio.Protocol):
    __slots__ = ()
