"""Type stubs for the compiled TLS termination `fastgw._tls` (listener contexts and the TLS layer
of client connections, on OpenSSL). Internal to the gateway's master and workers."""

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, Literal

class ServerContext:
    """One TLS listener's context; the first certificate is the default. ValueError says what is
    wrong with a file."""
    def __init__(
        self,
        certificates: Iterable[tuple[str, str, tuple[str, ...]]],
        min_version: Literal["1.2", "1.3"] = "1.2",
        ciphers: str = "DEFAULT",
        client_ca: str | None = None,
        client_cert: Literal["off", "optional", "required"] = "off",
    ) -> None: ...

class TlsListener:
    """A TLS listener's protocol factory in a worker, and its handshakes in flight."""
    handshake_timeout: float
    def __init__(
        self,
        context: ServerContext,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        loop: asyncio.AbstractEventLoop,
        handshake_timeout: float,
        count: Callable[[int], object],
        counters: tuple[int, int, int, int],
    ) -> None:
        """`count(counters[k])` once per handshake completed, resumed, failed, timed out."""
    def __call__(self) -> TlsConnection: ...
    @property
    def handshaking(self) -> int: ...
    def expire(self) -> None: ...

class TlsConnection(asyncio.Protocol, asyncio.Transport):
    """The TCP connection's protocol and the HTTP protocol's transport."""
    def get_extra_info(self, name: str, default: Any = None) -> Any: ...
