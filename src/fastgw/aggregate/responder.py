"""The responder of an aggregation route.

Per request: every call whose templates read no other call starts at once (stage 1); a call that
reads earlier calls (stage 2: `{profile.team_id}`) starts as soon as those have answered. Each
call goes through the worker's internal client (`Runtime.client`), so the upstream's balancer,
retries, timeouts and health apply as to any request, and its answer is bounded by the call's
`max_body`. An answer counts only when its status is 2xx and its body is JSON.

The reply is `200 application/json`: `{"<call>": <answer>, ...}` in the configured order, each
answer shaped by the call's `keep`, `drop` and `rename` (in that order; on an object, or on each
object of a list), plus `"errors": {"<call>": {"status", "code", "message"}}` when an optional
call failed (its value is then null). A required call that fails answers the whole request at
once, with the status of its failure (502; 504 for a timeout; 503 with no usable target; 400
when the client's request lacks a value a template needs) and a message that names the call and
what went wrong, never a target's address (that goes to the error log); the calls still running
are cancelled. A call that reads a call which failed fails as well (`dependency_failed`). A
header template whose value the request lacks leaves that header out.

The merged body is compressed here by the route's `compress` policy when it has one, since a
local reply does not go through the compression filter's stream. Aggregations whose templates read
claims or request headers answer per caller, so their replies say `Cache-Control: private`.
"""
from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl

import msgspec
import orjson

from fastgw._proxy import Reply, Request
from fastgw.compress import Policy, compress_body
from fastgw.config.model import AggregateCall, Route
from fastgw.pipeline import RequestPhase
from fastgw.upstream.client import UpstreamError

from .template import Missing, Ref, Template, lookup, parse, scalar_text

__all__ = ["AggregateResponder", "route_aggregate_responder"]

_JSON = b"application/json"
_JSON_HEADERS = ((b"content-type", _JSON),)
_PRIVATE = (b"cache-control", b"private")
_QUERY_KEY = "fastgw.aggregate.query"


class Failure:
    """Why a call has no value: `status` the client would get, `code` for `errors`, `message`."""

    __slots__ = ("status", "code", "message")

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message

    def entry(self) -> dict[str, Any]:
        return {"status": self.status, "code": self.code, "message": self.message}


_MESSAGES = {
    "timeout": "upstream timed out",
    "connect_error": "could not connect to the upstream",
    "reset": "upstream closed the connection",
    "protocol_error": "upstream answer is not valid HTTP",
    "no_target": "no healthy upstream target",
}


class Call:
    """One configured call, compiled: its group, templates and shaping."""

    __slots__ = (
        "name", "group", "path", "headers", "timeout", "max_body", "optional", "keep", "drop", "rename",
        "depends", "hash_by_path", "own_host", "shapes", "parse",
    )

    def __init__(self, config: AggregateCall, rt: Any, names: frozenset[str], read: frozenset[str]) -> None:
        self.name = config.name
        self.group = rt.groups[config.upstream]
        upstream = rt.config.upstreams[config.upstream]
        self.path: Template = parse(config.path, names, is_path=True)
        self.headers = tuple((n.encode("latin-1"), parse(v, names, is_path=False)) for n, v in config.headers)
        self.timeout = config.timeout
        self.max_body = config.max_body
        self.optional = config.optional
        self.keep = tuple(tuple(k.split(".")) for k in config.keep)
        self.drop = tuple(tuple(k.split(".")) for k in config.drop)
        self.rename = config.rename
        self.shapes = bool(self.keep or self.drop or self.rename)
        """Without shaping, the answer goes into the merged body as it came (an orjson Fragment,
        once parsed to check it is JSON), not serialized again."""
        self.depends = config.depends
        self.parse = self.shapes or self.name in read
        """The answer is needed as values (to shape it, or for calls that read it); otherwise it is
        only checked to be JSON, which costs a third of building it (`_is_json`)."""
        self.hash_by_path = upstream.balance == "hash" and upstream.hash_key is not None \
            and upstream.hash_key.kind == "path"
        """A `hash_key: path` upstream hashes the call's own path; other keys come from the
        client's request (ip, header, cookie), so a sticky upstream stays sticky per client."""
        self.own_host = upstream.host_header is not None

    def shape(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self._shape(v) if isinstance(v, dict) else v for v in value]
        if isinstance(value, dict):
            return self._shape(value)
        return value

    def _shape(self, obj: dict[str, Any]) -> dict[str, Any]:
        if self.keep:
            kept: dict[str, Any] = {}
            for keys in self.keep:
                _copy(obj, kept, keys)
            obj = kept
        for keys in self.drop:
            _drop(obj, keys)
        for old, new in self.rename:
            if old in obj:
                obj[new] = obj.pop(old)
        return obj


def _copy(src: dict[str, Any], dst: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys[:-1]:
        src = src.get(key)  # type: ignore[assignment]
        if not isinstance(src, dict):
            return
        nxt = dst.get(key)
        if not isinstance(nxt, dict):
            nxt = dst[key] = {}
        dst = nxt
    if keys[-1] in src:
        dst[keys[-1]] = src[keys[-1]]


def _drop(obj: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys[:-1]:
        obj = obj.get(key)  # type: ignore[assignment]
        if not isinstance(obj, dict):
            return
    obj.pop(keys[-1], None)


class AggregateResponder:
    """The RESPOND filter of an aggregation route (see the module docstring)."""

    request_phase = RequestPhase.RESPOND
    __slots__ = ("calls", "client", "rt", "compress", "private")

    def __init__(self, rt: Any, route: Route) -> None:
        names = frozenset(c.name for c in route.aggregate)
        read = frozenset(dep for c in route.aggregate for dep in c.depends)
        self.calls = tuple(Call(c, rt, names, read) for c in route.aggregate)
        self.client = rt.client
        self.rt = rt
        self.compress = Policy(route.compress) if route.compress is not None else None
        self.private = any(
            ref.kind in ("claim", "header")
            for call in self.calls
            for template in (call.path, *(t for _, t in call.headers))
            for ref in template.refs
        )

    def on_request(self, req: Request) -> Any:
        return self.run(req)

    async def run(self, req: Request) -> Reply:
        loop = asyncio.get_running_loop()
        results: dict[str, Any] = {}
        raw: dict[str, bytes] = {}
        tasks: dict[str, asyncio.Task[Any]] = {}
        base = self._base_headers(req)
        settled: asyncio.Future[Call | None] = loop.create_future()
        """The first required call that failed, or None once every call has an outcome."""
        left = len(self.calls)

        def finished(task: asyncio.Task[Any]) -> None:
            nonlocal left
            if settled.done() or task.cancelled():
                return
            exc = task.exception()
            if exc is not None:
                settled.set_exception(exc)
                return
            call, outcome = task.result()
            left -= 1
            if type(outcome) is Failure and not call.optional:
                settled.set_result(call)
            elif not left:
                settled.set_result(None)

        for call in self.calls:
            task = tasks[call.name] = loop.create_task(self._call(call, req, base, results, raw, tasks))
            task.add_done_callback(finished)
        try:
            failed = await settled
        finally:
            if left:
                for task in tasks.values():
                    task.cancel()
        if failed is not None:
            outcome = results[failed.name]
            return Reply.error(outcome.status, f"aggregate call {failed.name!r} failed: {outcome.message}")
        out: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for call in self.calls:
            outcome = results[call.name]
            if type(outcome) is Failure:
                out[call.name] = None
                errors[call.name] = outcome.entry()
            elif call.shapes:
                out[call.name] = call.shape(outcome)
            else:
                out[call.name] = orjson.Fragment(raw[call.name])
        if errors:
            out["errors"] = errors
        body = orjson.dumps(out)
        body, extra = compress_body(self.compress, req, body, _JSON)
        headers = [*_JSON_HEADERS, *extra]
        if self.private:
            headers.append(_PRIVATE)
        return Reply(200, headers, body)

    @staticmethod
    def _base_headers(req: Request) -> list[tuple[bytes, bytes]]:
        """What every call carries: the request id, the client's address and Host as forwarded
        headers, and that JSON is wanted."""
        headers = [(b"accept", _JSON), (b"x-request-id", req.rid), (b"x-forwarded-for", req.client_address)]
        if req.host is not None:
            headers.append((b"x-forwarded-host", req.host))
        return headers

    async def _call(
        self, call: Call, req: Request, base: list[tuple[bytes, bytes]], results: dict[str, Any],
        raw: dict[str, bytes], tasks: dict[str, asyncio.Task[Any]],
    ) -> tuple[Call, Any]:
        outcome = await self._outcome(call, req, base, results, raw, tasks)
        results[call.name] = outcome
        return call, outcome

    async def _outcome(
        self, call: Call, req: Request, base: list[tuple[bytes, bytes]], results: dict[str, Any],
        raw: dict[str, bytes], tasks: dict[str, asyncio.Task[Any]],
    ) -> Any:
        for dep in call.depends:
            _, value = await tasks[dep]
            if type(value) is Failure:
                return Failure(502, "dependency_failed", f"it uses call {dep!r}, which failed")

        def value_of(ref: Ref) -> str:
            return _value(ref, req, results)

        try:
            target = call.path.render(value_of).encode("utf-8")
        except Missing as missing:
            return Failure(400 if missing.args[1] else 502, "missing_value", missing.args[0])
        headers = base
        if call.headers:
            headers = list(base)
            for name, template in call.headers:
                try:
                    headers.append((name, template.render(value_of).encode("utf-8")))
                except Missing:
                    pass  # a header whose value the request lacks is not sent
        try:
            response = await self.client.request(
                call.group, b"GET", target, headers, timeout=call.timeout, max_body=call.max_body,
                host=None if call.own_host else req.host, key_request=None if call.hash_by_path else req,
            )
        except UpstreamError as exc:
            self.rt.upstream_error(exc.target, exc.kind, exc.message, req.rid)
            if exc.kind == "too_large":
                return Failure(502, "too_large", f"upstream answer larger than {call.max_body} bytes")
            return Failure(exc.status, exc.kind, _MESSAGES.get(exc.kind, exc.message))
        except ValueError:
            return Failure(502, "invalid_value", "a value for the call's path or headers cannot be sent")
        status = response.status
        if not 200 <= status < 300:
            return Failure(502, "status", f"upstream answered {status}")
        body = response.body
        if call.parse:
            try:
                value = orjson.loads(body)
            except orjson.JSONDecodeError:
                return Failure(502, "invalid_json", "upstream answer is not JSON")
        else:
            if not _is_json(body):
                return Failure(502, "invalid_json", "upstream answer is not JSON")
            value = True
        raw[call.name] = body
        return value


_RAW = msgspec.json.Decoder(msgspec.Raw)


def _is_json(body: bytes) -> bool:
    """Whether `body` is one JSON value (RFC 8259), checked without building it: msgspec's decoder
    into `Raw` checks the syntax and skips the values, and UTF-8 is checked apart (it is not there)."""
    try:
        _RAW.decode(body)
    except msgspec.DecodeError:
        return False
    if not body.isascii():
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


def _value(ref: Ref, req: Request, results: dict[str, Any]) -> str:
    """A reference's text for `req`; raises Missing(message, client_fault)."""
    kind = ref.kind
    if kind == "param":
        params = req.route_params
        value = params.get(ref.name) if params else None
        if value is None:
            raise Missing(f"no {ref.describe()} in the request", True)
        return value
    if kind == "call":
        text = scalar_text(lookup(results.get(ref.name), ref.keys))
        if text is None:
            raise Missing(f"no value for {ref.describe()}", False)
        return text
    if kind == "claim":
        claims = req.claims
        text = scalar_text(lookup(claims.get(ref.name), ref.keys)) if claims else None
        if text is None:
            raise Missing(f"the request has no {ref.describe()}", True)
        return text
    if kind == "header":
        raw = req.header(ref.name.encode("latin-1"))
        if raw is None:
            raise Missing(f"the request has no {ref.describe()}", True)
        return raw.decode("latin-1")
    query = req.vars.get(_QUERY_KEY)
    if query is None:
        query = req.vars[_QUERY_KEY] = _parse_query(req.query)
    text = query.get(ref.name)
    if text is None:
        raise Missing(f"the request has no {ref.describe()}", True)
    return text


def _parse_query(query: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in parse_qsl(query[1:].decode("latin-1"), keep_blank_values=True, encoding="utf-8",
                                 errors="replace"):
        out.setdefault(name, value)
    return out


def route_aggregate_responder(rt: Any, route: Route) -> AggregateResponder | None:
    """The chain builder: the route's responder, or None when it is not an aggregation."""
    return AggregateResponder(rt, route) if route.aggregate else None
