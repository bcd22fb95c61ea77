"""`python -m tests.support.claims_gateway run -c FILE`: fastgw with one test-only request filter
on every route, which sets `req.claims` from the JSON in the request's `X-Test-Claims` header, as
an auth filter sets it from a verified token. For end-to-end tests of features that read claims
(aggregation templates) independently of how tokens are verified. Workers are forked from the
master, so the builder added here is in every worker's chain."""
from __future__ import annotations

from typing import Any

import orjson

from fastgw.cli import main
from fastgw.pipeline import RequestPhase, chain


class ClaimsFromHeader:
    request_phase = RequestPhase.AUTH

    def on_request(self, req: Any) -> None:
        raw = req.header(b"x-test-claims")
        if raw is not None:
            req.claims = orjson.loads(raw)


def _claims(rt: Any, route: Any) -> ClaimsFromHeader:
    return ClaimsFromHeader()


chain.BUILDERS = (_claims, *chain.BUILDERS)

if __name__ == "__main__":
    raise SystemExit(main())
