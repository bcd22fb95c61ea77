"""Gateway-made responses (DESIGN §5): one JSON shape for every error, a body the user may
override per status, and `X-Request-ID` always returned."""
from __future__ import annotations

import orjson

from fastgw._core import status_line
from fastgw.config.model import Errors

DEFAULT_MESSAGES = {
    400: ("bad_request", "malformed request"),
    404: ("route_not_found", "no route matches this request"),
    405: ("method_not_allowed", "method not allowed on this route"),
    408: ("request_timeout", "the request was not received in time"),
    413: ("body_too_large", "request body exceeds the configured limit"),
    414: ("uri_too_long", "request target exceeds the configured limit"),
    429: ("rate_limited", "too many requests; retry after the time given in Retry-After"),
    417: ("expectation_failed", "only 'Expect: 100-continue' is supported"),
    431: ("headers_too_large", "request header section exceeds the configured limit"),
    500: ("internal_error", "the gateway failed to handle the request"),
    501: ("not_implemented", "unsupported transfer coding"),
    502: ("upstream_failed", "the upstream failed to answer"),
    503: ("no_upstream", "no upstream target is available"),
    504: ("upstream_timeout", "the upstream did not answer in time"),
}


class Replies:
    """Builds local replies; the per-status heads are rendered once at config load."""

    __slots__ = ("_format", "_bodies", "_ctype")

    def __init__(self, errors: Errors) -> None:
        self._format = errors.format
        self._bodies = {s: (b.body, b.content_type.encode()) for s, b in errors.bodies.items()}
        self._ctype = b"application/json" if errors.format == "json" else b"text/plain; charset=utf-8"

    def error(
        self,
        status: int,
        request_id: bytes,
        *,
        code: str | None = None,
        message: str | None = None,
        close: bool = False,
        extra_headers: bytes = b"",
        head_only: bool = False,
    ) -> bytes:
        """The full bytes of an error response."""
        default_code, default_message = DEFAULT_MESSAGES.get(status, ("error", "error"))
        custom = self._bodies.get(status)
        if custom is not None:
            body, ctype = custom
        else:
            ctype = self._ctype
            rid = request_id.decode("ascii", "replace")
            if self._format == "json":
                body = orjson.dumps(
                    {
                        "error": {
                            "status": status,
                            "code": code or default_code,
                            "message": message or default_message,
                            "request_id": rid,
                        }
                    }
                )
            else:
                body = f"{status} {message or default_message} (request {rid})\n".encode()
        head = b"".join(
            (
                status_line(status),
                b"content-type: ",
                ctype,
                b"\r\ncontent-length: ",
                str(len(body)).encode(),
                b"\r\nx-request-id: ",
                request_id,
                b"\r\n",
                extra_headers,
                b"connection: close\r\n\r\n" if close else b"\r\n",
            )
        )
        return head if head_only else head + body
