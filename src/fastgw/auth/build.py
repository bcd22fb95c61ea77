"""A worker's authenticators, built once per worker, and each route's AUTH-phase filter.

One authenticator per `auth` entry (its caches are shared by every route that uses it); one
filter per route that has `auth`. A route with a single auth and no `require` gets the
authenticator's own `authenticate` as its `on_request`, so the filter adds no call of its own; a
route whose one auth is a JWT read from `Authorization: Bearer` gets the compiled
`TokenCacheFilter`, which answers cache hits without calling into Python at all, and one whose
one auth is an API key from a header the compiled `ApiKeyFilter` (the same rules, in C).
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastgw._proxy import ApiKeyFilter, Reply, TokenCacheFilter
from fastgw.config.model import ApiKeyAuth, Config, IntrospectionAuth, JwtAuth, MtlsAuth, Route
from fastgw.log import process_log
from fastgw.pipeline import RequestPhase

from .apikey import ApiKeyAuthenticator, MtlsAuthenticator, sha256
from .introspect import AgentClient, IntrospectionAuthenticator
from .jwks import JwksFile
from .jwt import JwtAuthenticator, SharedJwks
from .require import compile_require
from .shared import AuthShared, source_key

__all__ = ["AuthFilter", "WorkerAuth"]

CHECK_EVERY = 0.25
"""Seconds between two checks of the key sources (a JWKS file's stat, a shared slot's number)."""


class WorkerAuth:
    """The authenticators of one worker, by auth name, and the periodic check that keeps their
    keys current (`every(period, job)` schedules it: the worker's `Runtime.every`). `shared` is the
    generation's `AuthShared` (None outside the master: tests building a runtime in-process; JWKS
    URLs then never get keys)."""

    def __init__(
        self, config: Config, loop: asyncio.AbstractEventLoop, shared: AuthShared | None,
        every: Callable[[float, Callable[[], None]], None],
    ) -> None:
        if shared is None:
            shared = AuthShared(config.auth)
        self.shared = shared
        client = AgentClient(shared.socket_name, loop) if shared.socket_name else None
        self.authenticators: dict[str, Any] = {}
        self._watched: list[tuple[Any, JwtAuthenticator]] = []
        for name, spec in config.auth.items():
            if isinstance(spec, JwtAuth):
                source: Any = None
                if spec.jwks_file is not None:
                    source = JwksFile(spec.jwks_file)
                elif spec.jwks_url is not None:
                    source = SharedJwks(shared.slot(source_key(spec)))
                authenticator: Any = JwtAuthenticator(spec, source)
                if source is not None:
                    self._watched.append((source, authenticator))
            elif isinstance(spec, ApiKeyAuth):
                authenticator = ApiKeyAuthenticator(spec)
            elif isinstance(spec, IntrospectionAuth):
                authenticator = IntrospectionAuthenticator(spec, client)
            elif isinstance(spec, MtlsAuth):
                authenticator = MtlsAuthenticator(spec)
            else:  # pragma: no cover - the loader knows every type
                raise TypeError(f"unknown auth {spec!r}")
            self.authenticators[name] = authenticator
        self._errors: dict[int, str | None] = {}
        if self._watched:
            every(CHECK_EVERY, self.check)

    def check(self) -> None:
        """Every CHECK_EVERY: keys reloaded where their source changed, errors logged once."""
        for source, authenticator in self._watched:
            try:
                if source.check():
                    authenticator.keys_changed()
            except Exception as exc:  # a bad document is its source's error (logged once below)
                source.error = str(exc)
            error = source.error
            if error != self._errors.get(id(source)):
                self._errors[id(source)] = error
                if error:
                    process_log(f"auth {authenticator.name}: {error}")

    def route_filter(self, route: Route) -> Any:
        """The AUTH-phase filter of `route`, or None when it has no `auth`."""
        if not route.auth:
            return None
        authenticators = [self.authenticators[name] for name in route.auth]
        python = AuthFilter(authenticators, compile_require(route.require) if route.require else None)
        one = authenticators[0]
        if len(authenticators) == 1 and isinstance(one, JwtAuthenticator) and one.bearer and one.cache_size:
            # The cache's hit path in C; misses and refusals go through the Python filter.
            return TokenCacheFilter(one.cache, python.on_request, python.check)
        if len(authenticators) == 1 and isinstance(one, ApiKeyAuthenticator) and one.lname is not None:
            r = one.refusals
            return ApiKeyFilter(
                one.lname, sha256, hmac.compare_digest, one.keys, r.missing, r.invalid, r.ambiguous, python.check
            )
        return python


class AuthFilter:
    """A route's authentication: the first of its authenticators for which the request carries
    credentials decides (a request with none gets every auth's challenge), then `require`."""

    __slots__ = ("authenticators", "check", "on_request")
    request_phase = RequestPhase.AUTH

    def __init__(self, authenticators: Sequence[Any], check: Callable[[Any], Reply | None] | None) -> None:
        self.authenticators = tuple(authenticators)
        self.check = check
        if len(self.authenticators) == 1 and check is None:
            self.on_request = self.authenticators[0].authenticate
        elif len(self.authenticators) == 1:
            self.on_request = self._one
        else:
            self.on_request = self._any

    def _one(self, req: Any) -> Reply | None | Awaitable[Reply | None]:
        result = self.authenticators[0].authenticate(req)
        if result is None:
            return self.check(req)  # type: ignore[misc]
        if type(result) is Reply:
            return result
        return self._then_check(result, req)

    async def _then_check(self, pending: Awaitable[Reply | None], req: Any) -> Reply | None:
        result = await pending
        if result is None and self.check is not None:
            return self.check(req)
        return result

    def _any(self, req: Any) -> Reply | None | Awaitable[Reply | None]:
        challenges: list[tuple[bytes, bytes]] = []
        for authenticator in self.authenticators:
            result = authenticator.authenticate(req)
            if result is authenticator.refusals.missing:
                challenges.extend(result.headers)
                continue
            if result is None:
                return self.check(req) if self.check is not None else None
            if type(result) is Reply or not inspect.isawaitable(result):
                return result  # type: ignore[no-any-return]
            return self._then_check(result, req)
        return Reply.error(401, "authentication required", challenges)
