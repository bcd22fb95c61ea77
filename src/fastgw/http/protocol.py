"""The asyncio face of the compiled client protocol (`fastgw._proxy.ClientCore`, see
`_proxy_src/exchange.pxd` for what happens per request)."""
from __future__ import annotations

import asyncio

from fastgw._proxy import ClientCore


class ClientProtocol(ClientCore, asyncio.Protocol):
    __slots__ = ()
