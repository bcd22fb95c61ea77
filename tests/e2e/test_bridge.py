"""The WebSocket ↔ HTTP bridge end to end (docs/configuration.md#websocket): a real WebSocket client
(the `websockets` library) through the gateway, which answers the handshake itself and turns
messages into POSTs to a real HTTP backend (tests/support/backend.py, `/bridge/...`), which records
every call it gets; pushes from the backend through the admin API (`POST /connections/{id}`),
across two workers; connect refusals, disconnect events, failing upstreams, oversized messages,
idle timeouts and the 1001 close at the end of a drain."""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.client import http_get
from tests.support.procs import Backend, Gateway, free_port, gateway_config

pytestmark = pytest.mark.e2e

TOKEN = "admin-token-0123456789"
KEY = "k-0123456789abcdef"


def _config(backend: Backend, **extra: Any) -> dict[str, Any]:
    cfg = gateway_config(backend.port, **{"workers": 2, "grace_period": "1s", **extra})
    cfg["admin"] = {"address": f"127.0.0.1:{free_port()}", "token": TOKEN}
    cfg["upstreams"]["dead"] = {"targets": [f"127.0.0.1:{free_port()}"], "timeouts": {"connect": "1s", "read": "2s"}}
    bridge = {
        "upstream": "backend", "path": "/bridge/message", "connect_path": "/bridge/connect?v=1",
        "disconnect_path": "/bridge/disconnect", "route_key": "action", "max_message": "4KiB",
        "forward_headers": ["X-Client-Tag"],
    }
    cfg["auth"] = {"keys": {"type": "api_key", "keys": {"alice": KEY}}}
    cfg["routes"] = [
        {"match": {"prefix": "/chat"}, "websocket": {"bridge": bridge}},
        {"match": {"prefix": "/secure"}, "auth": "keys",
         "websocket": {"bridge": bridge}},
        {"match": {"prefix": "/closing"}, "websocket": {"bridge": {**bridge, "on_error": "close"}}},
        {"match": {"prefix": "/idle"}, "websocket": {"idle_timeout": "1s", "bridge": bridge}},
        {"match": {"prefix": "/dead"}, "websocket": {"bridge": {"upstream": "dead", "path": "/bridge/message"}}},
        {"match": {"prefix": "/"}, "upstream": "backend"},
    ]
    return cfg


@pytest.fixture(scope="module")
def gw(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with Gateway(_config(backend), tmp_path_factory.mktemp("bridge")) as g:
        yield g


def run(coro: Any, timeout: float = 20.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def admin(gw: Gateway, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
          token: str | None = TOKEN) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.admin_port, timeout=5)
    try:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body=body, headers=sent)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    return resp.status, json.loads(data) if data else None


async def push(gw: Gateway, cid: str, body: bytes, **kw: Any) -> tuple[int, Any]:
    return await asyncio.to_thread(admin, gw, "POST", f"/connections/{cid}", body, **kw)


def events(backend: Backend, cid: str, kind: str | None = None, wait_ms: int = 5000) -> list[dict[str, Any]]:
    """The calls the backend got for connection `cid` (after waiting for one of `kind`)."""
    query = f"/bridge/events?id={cid}" + (f"&kind={kind}&wait={wait_ms}" if kind else "")
    found: list[dict[str, Any]] = http_get(backend.port, query, timeout=wait_ms / 1000 + 5).json()
    return found


def cid_of(ws: ClientConnection) -> str:
    assert ws.response is not None
    cid = ws.response.headers["X-Connection-Id"]
    assert cid
    return cid


def test_messages_both_ways(gw: Gateway, backend: Backend) -> None:
    async def scenario() -> tuple[str, list[Any]]:
        async with connect(f"ws://127.0.0.1:{gw.port}/chat?room=7", additional_headers={"X-Client-Tag": "t1"}) as ws:
            out: list[Any] = []
            await ws.send('{"action": "join", "room": 7}')
            out.append(json.loads(await ws.recv()))
            await ws.send("hello")
            out.append(json.loads(await ws.recv()))
            await ws.send("empty")  # a 204: no message back, the next answer comes next
            await ws.send(b"\x00\x01binary")
            out.append(await ws.recv())
            await ws.send("bytes:10")
            out.append(await ws.recv())
            await ws.send(["frag", "mented"])
            out.append(json.loads(await ws.recv())["echo"])
            return cid_of(ws), out

    cid, (join, hello, binary, ten, fragmented) = run(scenario())
    assert join["echo"] == '{"action": "join", "room": 7}' and join["route_key"] == "join", join
    assert join["connection_id"] == cid and join["content_type"] == "text/plain; charset=utf-8", join
    assert join["headers"]["x-client-tag"] == "t1" and join["headers"]["x-forwarded-for"] == "127.0.0.1", join
    assert join["request_id"].endswith(".1") and hello["request_id"].endswith(".2"), (join, hello)
    assert hello["route_key"] == "$default", hello
    assert binary == b"\x00\x01binary" and ten == b"0123456789", (binary, ten)
    assert fragmented == "fragmented"
    calls = events(backend, cid, "disconnect")
    connect_call = calls[0]
    assert connect_call["kind"] == "connect" and connect_call["route_key"] == "$connect", connect_call
    assert connect_call["query"] == "v=1&room=7", connect_call
    assert connect_call["request_id"] == join["request_id"][:-2], (connect_call, join)
    assert [c["kind"] for c in calls] == ["connect", *["message"] * 6, "disconnect"], calls
    assert json.loads(calls[-1]["body"]) == {"code": 1000, "reason": ""}, calls[-1]
    assert calls[-1]["route_key"] == "$disconnect", calls[-1]


def test_a_refused_connect_refuses_the_handshake_and_plain_http_gets_426(gw: Gateway) -> None:
    async def scenario() -> int:
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"ws://127.0.0.1:{gw.port}/chat?refuse=403"):
                pass
        return info.value.response.status_code

    assert run(scenario()) == 403
    plain = http_get(gw.port, "/chat")
    assert plain.status == 426 and plain.header("sec-websocket-version") == "13", plain.summary()


def test_auth_applies_to_the_handshake_and_its_identity_reaches_every_call(gw: Gateway, backend: Backend) -> None:
    async def scenario() -> tuple[int, str, Any]:
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"ws://127.0.0.1:{gw.port}/secure"):
                pass
        headers = {"X-API-Key": KEY, "X-Consumer": "mallory"}  # a client can never set the identity
        async with connect(f"ws://127.0.0.1:{gw.port}/secure", additional_headers=headers) as ws:
            await ws.send("who am i")
            return info.value.response.status_code, cid_of(ws), json.loads(await ws.recv())

    status, cid, answer = run(scenario())
    assert status == 401
    assert answer["headers"]["x-consumer"] == "alice" and "x-api-key" not in answer["headers"], answer
    connect_call = events(backend, cid)[0]
    assert connect_call["kind"] == "connect" and connect_call["headers"]["x-consumer"] == "alice", connect_call


def test_backend_pushes_through_the_admin_api(gw: Gateway) -> None:
    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with connect(f"ws://127.0.0.1:{gw.port}/chat") as ws:
            cid = cid_of(ws)
            out["text"] = await push(gw, cid, b"pushed text")
            out["got_text"] = await ws.recv()
            out["binary"] = await push(gw, cid, b"\xff\x00", headers={"Content-Type": "application/octet-stream"})
            out["got_binary"] = await ws.recv()
            out["not_utf8"] = await push(gw, cid, b"\xff\x00")
            out["too_large"] = await push(gw, cid, b"x" * 5000)
            out["no_token"] = await push(gw, cid, b"x", token=None)
            gen, slot, token = cid.split(".")
            out["guessed"] = await push(gw, f"{gen}.{slot}.{'A' * len(token)}", b"x")
            out["malformed"] = await push(gw, "nonsense", b"x")
            out["other_worker"] = await push(gw, f"{gen}.99.{token}", b"x")
            out["info"] = await asyncio.to_thread(admin, gw, "GET", f"/connections/{cid}")
            out["delete"] = await asyncio.to_thread(admin, gw, "DELETE", f"/connections/{cid}")
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            out["closed"] = (ws.close_code, ws.close_reason)
            out["after"] = await push(gw, cid, b"x")
        return out

    out = run(scenario())
    assert out["text"][0] == 202 and out["got_text"] == "pushed text", out
    assert out["binary"][0] == 202 and out["got_binary"] == b"\xff\x00", out
    assert out["not_utf8"][0] == 400 and out["too_large"][0] == 413 and out["no_token"][0] == 401, out
    assert out["guessed"][0] == out["malformed"][0] == out["other_worker"][0] == 404, out
    assert out["info"][0] == 200 and out["info"][1]["in_flight"] == 0, out
    assert out["delete"][0] == 202 and out["closed"] == (1000, "closed by the backend"), out
    assert out["after"][0] == 404, out


def test_pushes_reach_connections_on_both_workers(gw: Gateway) -> None:
    async def scenario() -> dict[str, str]:
        sockets: dict[str, ClientConnection] = {}
        opened = []
        try:
            for _ in range(40):  # the kernel spreads connections over the workers' sockets
                ws = await connect(f"ws://127.0.0.1:{gw.port}/chat")
                opened.append(ws)
                slot = cid_of(ws).split(".")[1]
                sockets.setdefault(slot, ws)
                if len(sockets) == 2:
                    break
            assert set(sockets) == {"0", "1"}, sockets
            got = {}
            for slot, ws in sockets.items():
                status, _ = await push(gw, cid_of(ws), f"to slot {slot}".encode())
                assert status == 202
                got[slot] = await ws.recv()
            return got
        finally:
            await asyncio.gather(*(ws.close() for ws in opened))

    assert run(scenario()) == {"0": "to slot 0", "1": "to slot 1"}


def test_disconnect_event_carries_the_close_code(gw: Gateway, backend: Backend) -> None:
    async def scenario() -> str:
        async with connect(f"ws://127.0.0.1:{gw.port}/chat") as ws:
            await ws.send("hi")
            await ws.recv()
            await ws.close(4000, "bye now")
            return cid_of(ws)

    cid = run(scenario())
    last = events(backend, cid, "disconnect")[-1]
    assert last["kind"] == "disconnect" and json.loads(last["body"]) == {"code": 4000, "reason": "bye now"}, last


def test_failing_upstreams_give_error_messages_or_a_close(gw: Gateway) -> None:
    async def scenario() -> tuple[Any, Any, Any, Any, tuple[int | None, str | None]]:
        async with connect(f"ws://127.0.0.1:{gw.port}/chat") as ws:
            await ws.send("status:500")
            status = json.loads(await ws.recv())
            await ws.send("reset")
            reset = json.loads(await ws.recv())
            await ws.send("still here")
            after = json.loads(await ws.recv())["echo"]
        async with connect(f"ws://127.0.0.1:{gw.port}/dead") as ws:
            await ws.send("anyone?")
            dead = json.loads(await ws.recv())
        async with connect(f"ws://127.0.0.1:{gw.port}/closing") as ws:
            await ws.send("status:503")
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            closed = (ws.close_code, ws.close_reason)
        return status, reset, after, dead, closed

    status, reset, after, dead, closed = run(scenario())
    assert status["error"]["status"] == 502 and status["error"]["code"] == "status", status
    assert status["error"]["message"] == "upstream answered 500", status
    assert reset["error"]["code"] == "reset" and after == "still here", (reset, after)
    assert dead["error"] == {**dead["error"], "status": 502, "code": "connect_error"}, dead
    assert "127.0.0.1" not in json.dumps(dead), dead  # target addresses stay in the log
    assert closed == (1011, "upstream failed: upstream answered 503"), closed


def test_oversized_messages_close_with_1009(gw: Gateway, backend: Backend) -> None:
    async def scenario() -> tuple[str, int | None]:
        async with connect(f"ws://127.0.0.1:{gw.port}/chat", max_size=None) as ws:
            await ws.send("empty:" + "x" * 4090)  # max_message exactly: taken (answered 204: no message)
            await ws.send("fits")
            assert json.loads(await ws.recv())["echo"] == "fits"
            await ws.send(["y" * 3000, "y" * 3000])  # fragmented, 6000 bytes in all
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return cid_of(ws), ws.close_code

    cid, code = run(scenario())
    assert code == 1009
    calls = events(backend, cid, "disconnect")
    assert [c["kind"] for c in calls] == ["connect", "message", "message", "disconnect"], calls
    assert len(calls[1]["body"]) == 4096, len(calls[1]["body"])


def test_idle_connections_are_closed(gw: Gateway, backend: Backend) -> None:
    async def scenario() -> tuple[str, int | None, str | None]:
        async with connect(f"ws://127.0.0.1:{gw.port}/idle", ping_interval=None) as ws:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            return cid_of(ws), ws.close_code, ws.close_reason

    cid, code, reason = run(scenario())
    assert (code, reason) == (1000, "idle timeout")
    assert json.loads(events(backend, cid, "disconnect")[-1]["body"])["reason"] == "idle timeout"


@pytest.mark.timeout(60)
def test_a_drain_ends_with_1001_and_pushes_reach_the_old_worker(backend: Backend, tmp_path: Path) -> None:
    with Gateway(_config(backend, workers=1, grace_period="2s"), tmp_path) as g:

        async def scenario() -> tuple[str, Any, str, int | None]:
            async with connect(f"ws://127.0.0.1:{g.port}/chat") as ws:
                cid = cid_of(ws)
                await asyncio.to_thread(g.reload)  # a new generation; the old worker drains
                pushed = await push(g, cid, b"during the drain")
                got = await ws.recv()
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 10)  # the old worker's grace period ends
                return cid, pushed, got, ws.close_code

        cid, pushed, got, code = run(scenario(), 30)
        assert pushed[0] == 202 and got == "during the drain" and code == 1001, (pushed, got, code)
        last = events(backend, cid, "disconnect")[-1]
        assert json.loads(last["body"]) == {"code": 1001, "reason": "going away"}, last
