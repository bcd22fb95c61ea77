"""The WebSocket bridge in process: its config (every problem as `FILE:LINE: key.path: message`),
the push channel's framing and ids, and a `BridgeConnection`'s bounds against a fake transport and
a fake internal client (calls in flight, messages waiting, the queue of a slow reader, oversized
messages, the idle timeout, the close handshake). End to end: tests/e2e/test_bridge.py."""
from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message, TextMessage

from fastgw.bridge.channel import (
    MAX_FRAME,
    OP_TEXT,
    FrameReader,
    decode_answer,
    decode_request,
    encode_answer,
    encode_request,
    parse_id,
)
from fastgw.bridge.connection import BridgeConnection
from fastgw.bridge.responder import BridgeRoute
from fastgw.config import ConfigError, load
from fastgw.config.model import Bridge

BASE = """\
listen:
  - {address: "127.0.0.1:8080"}
upstreams:
  app: {targets: ["127.0.0.1:9001"]}
routes:
  - match: {prefix: /chat}
"""


def problems(tmp_path: Path, route_lines: str) -> list[str]:
    path = tmp_path / "gw.yaml"
    path.write_text(BASE + textwrap.indent(textwrap.dedent(route_lines), "    "))
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert all(line.startswith(f"{path}:") for line in info.value.problems), info.value.problems
    return [line[len(str(path)) + 1 :] for line in info.value.problems]


def test_a_bridge_route_loads_with_its_defaults(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(BASE + "    websocket:\n      bridge: {upstream: app, path: /ws/message}\n")
    route = load(str(path)).routes[0]
    assert route.upstream == "" and route.websocket is not None and route.websocket.idle_timeout is None
    assert route.websocket.bridge == Bridge(upstream="app", path="/ws/message")
    assert route.websocket.bridge.max_message == 64 * 1024 and route.websocket.bridge.max_in_flight == 1


def test_bridge_config_errors_name_the_line_and_key(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
        upstream: app
        websocket:
          idle_timeout: 0s
          bridge:
            upstream: ap
            path: ws/message
            connect_path: "/a b"
            route_key: "a..b"
            max_message: 17MiB
            max_in_flight: 0
            max_queued: many
            on_error: drop
            forward_headers: [Authorization, X-Forwarded-For, X-Route-Key, authorization]
            bogus: 1
        """)
    assert found == [
        "7: routes[0].upstream: a route with websocket.bridge answers at the gateway: remove upstream (the bridge "
        "names its own upstream)",
        "9: routes[0].websocket.idle_timeout: must be longer than 0, got '0s'",
        "11: routes[0].websocket.bridge.upstream: unknown upstream 'ap' (did you mean 'app'?)",
        "12: routes[0].websocket.bridge.path: must start with '/', got 'ws/message'",
        "13: routes[0].websocket.bridge.connect_path: may contain only visible ASCII (percent-encode the rest), "
        "found ' '",
        "14: routes[0].websocket.bridge.route_key: expected a field name, dotted for a nested one (as action or "
        "meta.type), got 'a..b'",
        "15: routes[0].websocket.bridge.max_message: must be at most 16MiB (a message is held whole), got '17MiB'",
        "16: routes[0].websocket.bridge.max_in_flight: must be from 1 to 1024, got 0",
        "17: routes[0].websocket.bridge.max_queued: expected an integer, got string 'many'",
        "18: routes[0].websocket.bridge.on_error: expected one of message, close, got string 'drop'",
        found[10],
        "19: routes[0].websocket.bridge.forward_headers[2]: 'x-route-key' is set by the gateway on every call",
        "19: routes[0].websocket.bridge.forward_headers[3]: 'authorization' is listed twice",
        "20: routes[0].websocket.bridge.bogus: unknown key 'bogus'",
    ], found
    assert found[10].startswith("19: routes[0].websocket.bridge.forward_headers[1]: 'X-Forwarded-For' cannot be set")


def test_a_bridge_needs_its_upstream_and_path(tmp_path: Path) -> None:
    assert problems(tmp_path, "websocket: {bridge: {max_message: 1KiB}}\n") == [
        "7: routes[0].websocket.bridge.upstream: required key is missing",
        "7: routes[0].websocket.bridge.path: required key is missing",
    ]


# ---- the push channel -------------------------------------------------------------------------


def test_channel_frames_survive_any_split() -> None:
    stream = encode_request(7, OP_TEXT, b"1.0.abc", b"hello") + encode_answer(7, 202, b'{"queued": false}')
    for cut in range(len(stream) + 1):
        reader = FrameReader()
        frames = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
        assert [n for n, _ in frames] == [7, 7], cut
        assert decode_request(frames[0][1]) == (OP_TEXT, b"1.0.abc", b"hello")
        assert decode_answer(frames[1][1]) == (202, b'{"queued": false}')
    with pytest.raises(ValueError):
        FrameReader().feed((MAX_FRAME + 1).to_bytes(4, "big") + b"\0\0\0\1")


@pytest.mark.parametrize(
    ("cid", "named"),
    [
        ("3.1.AbCdEfGhIjKlMnOpQrStUv", (3, 1)),
        ("12.0.abc-def_ghi-jkl-mno", (12, 0)),
        ("3.1.short", None),
        ("x.1.AbCdEfGhIjKlMnOpQrStUv", None),
        ("3.1.AbCdEfGhIjKl/nOpQrStUv", None),
        ("3.1.AbCdEfGhIjKlMnOpQrStUé", None),
        ("3.AbCdEfGhIjKlMnOpQrStUv", None),
        ("", None),
    ],
)
def test_connection_ids_name_generation_and_slot(cid: str, named: tuple[int, int] | None) -> None:
    assert parse_id(cid) == named


# ---- a connection against fakes ---------------------------------------------------------------


class FakeTransport:
    def __init__(self) -> None:
        self.out = bytearray()
        self.reading = True
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.out += data

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.out += line

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


class FakeClient:
    """Each call waits on a future the test resolves (`answer`)."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bytes, asyncio.Future[Any]]] = []

    async def request(self, group: Any, method: bytes, target: bytes, headers: Any, body: bytes = b"",
                      **kw: Any) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.calls.append((target, body, fut))
        return await fut

    def answer(self, index: int, status: int = 200, body: bytes = b"") -> None:
        class Response:
            def header(self, name: bytes) -> bytes | None:
                return None

        response = Response()
        response.status, response.body = status, body  # type: ignore[attr-defined]
        self.calls[index][2].set_result(response)


class FakeRt:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.client = FakeClient()
        self.clock = type("Clock", (), {"now": 100.0})()
        self.errors: list[str] = []

    def upstream_error(self, *args: Any) -> None:
        self.errors.append(repr(args))


class FakeHub:
    def __init__(self, rt: FakeRt) -> None:
        self.rt = rt
        self.connections: dict[str, Any] = {}
        self.tasks: set[asyncio.Task[Any]] = set()

    def add(self, conn: Any) -> None:
        self.connections[conn.id] = conn

    def remove(self, conn: Any) -> None:
        self.connections.pop(conn.id, None)

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = self.rt.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task


def make_route(**settings: Any) -> BridgeRoute:
    route = BridgeRoute.__new__(BridgeRoute)
    values = {
        "group": None, "path": b"/m", "connect_path": None, "disconnect_path": b"/d", "route_key": None,
        "max_message": 1024, "max_in_flight": 1, "max_queued": 2, "timeout": None, "close_on_error": False,
        "forward": (), "idle_timeout": 60.0, "own_host": False, "hash_by_path": False,
    }
    values.update(settings)
    for name, value in values.items():
        setattr(route, name, value)
    return route


class Client:
    """The client's side: wsproto frames to send, and what the gateway wrote, decoded."""

    def __init__(self, transport: FakeTransport) -> None:
        self.ws = Connection(ConnectionType.CLIENT)
        self.transport = transport

    def frames(self, *messages: str | bytes) -> bytes:
        return b"".join(self.ws.send(TextMessage(data=m) if isinstance(m, str) else BytesMessage(data=m))
                        for m in messages)

    def received(self) -> list[Any]:
        self.ws.receive_data(bytes(self.transport.out))
        self.transport.out.clear()
        out: list[Any] = []
        for event in self.ws.events():
            if isinstance(event, Message):
                out.append(event.data)
            elif isinstance(event, CloseConnection):
                out.append(("close", event.code, event.reason))
        return out


def open_connection(**settings: Any) -> tuple[BridgeConnection, FakeRt, FakeTransport, Client]:
    loop = asyncio.get_running_loop()
    rt = FakeRt(loop)
    conn = BridgeConnection(make_route(**settings), FakeHub(rt), "1.0.tokentokentokentoken", b"rid", [],  # type: ignore[arg-type]
                            b"host", None, True)
    transport = FakeTransport()
    conn.connection_made(transport, None)
    return conn, rt, transport, Client(transport)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_calls_in_flight_are_bounded_and_answers_keep_their_order() -> None:
    async def scenario() -> None:
        conn, rt, transport, client = open_connection(max_in_flight=1)
        conn.data_received(client.frames("one", "two", "three"))
        await settle()
        assert [c[1] for c in rt.client.calls] == [b"one"] and not transport.reading
        assert len(conn.waiting) == 2
        rt.client.answer(0, body=b"ONE")
        await settle()
        assert [c[1] for c in rt.client.calls] == [b"one", b"two"] and not transport.reading
        rt.client.answer(1, body=b"TWO")
        await settle()
        rt.client.answer(2, body=b"THREE")
        await settle()
        assert transport.reading and conn.in_flight == 0
        assert client.received() == ["ONE", "TWO", "THREE"]

    asyncio.run(scenario())


def test_a_slow_reader_queues_answers_and_refuses_pushes_beyond_max_queued() -> None:
    async def scenario() -> None:
        conn, rt, transport, client = open_connection(max_queued=2)
        conn.pause_writing()
        assert not transport.reading
        assert [conn.push("a"), conn.push(b"b"), conn.push("c")] == [203, 203, 429]
        assert not transport.out
        conn.resume_writing()
        assert transport.reading and client.received() == ["a", b"b"]
        assert conn.push("d") == 202 and client.received() == ["d"]

    asyncio.run(scenario())


def test_an_oversized_message_closes_with_1009_before_it_is_whole() -> None:
    async def scenario() -> None:
        conn, rt, transport, client = open_connection(max_message=10)
        frame = client.frames("x" * 11)
        conn.data_received(frame[:8])  # the header announces 11 bytes; 6 of them have come
        conn.data_received(frame[8:])
        await settle()
        assert rt.client.calls == [] and client.received() == [("close", 1009, "message larger than 10 bytes")]
        conn.sweep(100.0 + 3.0)  # no close frame from the client within CLOSE_WAIT
        assert transport.aborted
        conn.connection_lost(None)
        await settle()
        assert [c[0] for c in rt.client.calls] == [b"/d"] and b'"code":1009' in rt.client.calls[0][1]

    asyncio.run(scenario())


def test_failed_calls_give_error_messages_or_a_close() -> None:
    async def scenario() -> None:
        conn, rt, transport, client = open_connection()
        conn.data_received(client.frames("hi"))
        await settle()
        rt.client.answer(0, status=500)
        await settle()
        [error] = client.received()
        assert '"status":502' in error and '"code":"status"' in error and '"request_id":"rid.1"' in error
        closing, rt2, transport2, client2 = open_connection(close_on_error=True)
        closing.data_received(client2.frames("hi"))
        await settle()
        rt2.client.answer(0, status=503)
        await settle()
        assert client2.received() == [("close", 1011, "upstream failed: upstream answered 503")]

    asyncio.run(scenario())


def test_idle_connections_close_and_the_close_handshake_completes() -> None:
    async def scenario() -> None:
        conn, rt, transport, client = open_connection(idle_timeout=5.0)
        conn.sweep(104.0)
        assert client.received() == []
        conn.sweep(105.5)
        assert client.received() == [("close", 1000, "idle timeout")]
        conn.data_received(client.ws.send(CloseConnection(code=1000)))
        assert transport.closed and not transport.aborted
        conn.connection_lost(None)
        await settle()
        assert b'"reason":"idle timeout"' in rt.client.calls[0][1]

    asyncio.run(scenario())
