"""A generation's TLS contexts and auth state: what the master builds once per generation, before
forking its workers and auth agent, and hands to both (see `fastgw.tls` and `fastgw.auth.shared`
for why each is built in the master)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastgw._tls import ServerContext
from fastgw.auth.shared import AuthShared
from fastgw.config.model import Address, Config
from fastgw.tls import listener_contexts

__all__ = ["Security", "build_security"]


@dataclass(eq=False)
class Security:
    tls: dict[Address, ServerContext] = field(default_factory=dict)
    """The server context of each TLS listener."""
    auth: AuthShared | None = None
    """Shared with the generation's auth agent (None without `auth`)."""

    @property
    def agent_needed(self) -> bool:
        return self.auth is not None and self.auth.needed

    def fds(self) -> set[int]:
        return self.auth.fds() if self.auth is not None else set()

    def close(self) -> None:
        if self.auth is not None:
            self.auth.close()


def build_security(config: Config, previous: Security | None) -> Security:
    """Raises OSError or ValueError when a certificate file changed for the worse since the
    config was validated (the caller reports it and keeps the running generation)."""
    tls = listener_contexts(config)
    auth = AuthShared(config.auth, previous.auth if previous is not None else None) if config.auth else None
    return Security(tls, auth)
