"""The request mixes of `python -m bench.locust_run` (run by the packaged Locust user,
fastgw/loadtest/locustfile.py, which reads the chosen mix from a JSON file).

A mix is a tuple of weighted endpoints with the statuses each is expected to answer; routes with
auth, limits or caching get their own mix here (a rate-limited route answers 429 by design, which
is then not a failure: `expect=(200, 429)`).
"""

from __future__ import annotations

from fastgw.loadtest.mix import Endpoint

_ORDER = b'{"user":42,"items":[{"sku":"A-1001","qty":2},{"sku":"B-2002","qty":1}],"note":"leave at door"}'

#: Paths are those of the built-in backend (bench/scenarios.py): /small answers 12 B, /json4k 4 KiB.
MIXES: dict[str, tuple[Endpoint, ...]] = {
    "plain": (
        Endpoint("GET small", "GET", "/small", 6),
        Endpoint("GET 4 KiB JSON", "GET", "/json4k", 3),
        Endpoint("POST small JSON", "POST", "/small", 1, body=_ORDER, headers={"Content-Type": "application/json"}),
    ),
    # For your own service behind the gateway (--backend URL): only its root.
    "root": (Endpoint("GET /", "GET", "/", 1),),
}
