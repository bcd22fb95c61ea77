"""What the master counts on when it sizes the open-file limit: the upstream connections a worker
can hold at most, bounded only when every upstream sets `max_connections`."""

from __future__ import annotations

from fastgw.config.load import load_text
from fastgw.server.fdlimit import upstream_cap

HEAD = """\
listen: [{address: "127.0.0.1:8080"}]
routes: [{match: {prefix: /a}, upstream: a}, {match: {prefix: /b}, upstream: b}]
upstreams:
"""


def cap(a: str, b: str) -> int | None:
    text = HEAD + (
        f"  a: {{targets: ['127.0.0.1:9001', '127.0.0.1:9002'], {a}}}\n"
        f"  b: {{targets: ['127.0.0.1:9003'], {b}}}\n"
    )
    return upstream_cap(load_text(text, "gw.yaml", "/tmp"))


def test_the_upstream_cap_is_the_sum_over_targets_only_when_every_upstream_has_one() -> None:
    assert cap("max_connections: 100", "max_connections: 50") == 2 * 100 + 50
    assert cap("max_connections: 100", "keepalive: 8") is None
    assert cap("keepalive: 8", "keepalive: 8") is None
