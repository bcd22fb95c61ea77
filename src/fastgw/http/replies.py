"""Gateway-made error bodies (DESIGN §5): one JSON shape for every error, or the body the user
configured for that status (`errors.bodies`), where `{request_id}` and `{status}` are filled in.
The exchange renders the head around them (status line, Content-Length, X-Request-ID, Date)."""

from __future__ import annotations

import orjson

from fastgw.config.model import Errors

DEFAULT_MESSAGES = {
    400: ("bad_request", "malformed request"),
    401: ("unauthorized", "credentials are missing or invalid"),
    403: ("forbidden", "access to this resource is denied"),
    404: ("route_not_found", "no route matches this request"),
    405: ("method_not_allowed", "method not allowed on this route"),
    408: ("request_timeout", "the request was not received in time"),
    413: ("body_too_large", "request body exceeds the configured limit"),
    414: ("uri_too_long", "request target exceeds the configured limit"),
    417: ("expectation_failed", "only 'Expect: 100-continue' is supported"),
    429: ("rate_limited", "too many requests; retry after the time given in Retry-After"),
    431: ("headers_too_large", "request header section exceeds the configured limit"),
    500: ("internal_error", "the gateway failed to handle the request"),
    501: ("not_implemented", "unsupported transfer coding"),
    502: ("upstream_failed", "the upstream failed to answer"),
    503: ("no_upstream", "no upstream target is available"),
    504: ("upstream_timeout", "the upstream did not answer in time"),
}


class Replies:
    """Renders error bodies; the configured ones are read at load, filled per error."""

    __slots__ = ("_format", "_bodies", "_ctype")

    def __init__(self, errors: Errors) -> None:
        self._format = errors.format
        self._bodies = {s: (b.body, b.content_type.encode()) for s, b in errors.bodies.items()}
        self._ctype = b"application/json" if errors.format == "json" else b"text/plain; charset=utf-8"

    def render(self, status: int, request_id: bytes, message: str | None = None) -> tuple[bytes, bytes]:
        """(content type, body) of the error `status`."""
        default_code, default_message = DEFAULT_MESSAGES.get(status, ("error", "error"))
        custom = self._bodies.get(status)
        if custom is not None:
            body, ctype = custom
            if b"{" in body:
                body = body.replace(b"{request_id}", request_id).replace(b"{status}", b"%d" % status)
            return ctype, body
        rid = request_id.decode("ascii", "replace")
        if self._format == "json":
            body = orjson.dumps(
                {
                    "error": {
                        "status": status,
                        "code": default_code,
                        "message": message or default_message,
                        "request_id": rid,
                    }
                }
            )
        else:
            body = f"{status} {message or default_message} (request {rid})\n".encode()
        return self._ctype, body
