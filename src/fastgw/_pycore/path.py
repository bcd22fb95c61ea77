"""Plain-Python twin of `fastgw._core.normalize_path`: each rule of DESIGN §8 as one visible step,
in the order the rules are stated, so a reader can check it against the design line by line."""
from __future__ import annotations

import re

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_FORBIDDEN_ESCAPES = {0x2F: "encoded slash (%2F)", 0x5C: "encoded backslash (%5C)", 0x00: "encoded NUL (%00)"}


class PathError(ValueError):
    """The request target's path is malformed or ambiguous; the gateway answers 400."""


def normalize_path(raw: bytes) -> bytes:
    """Unlike the compiled version this always builds a new object: the model is about results."""
    if not raw.startswith(b"/"):
        raise PathError("path must start with '/'")
    for byte in raw:
        if byte < 0x21 or byte >= 0x7F:
            raise PathError(f"invalid byte 0x{byte:02x} in path")
    if b"#" in raw:
        raise PathError("fragment in path")
    if b"\\" in raw:
        raise PathError("backslash in path")
    return _merge_slashes(_remove_dot_segments(_decode_unreserved(raw)))


def _decode_unreserved(raw: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] != ord("%"):
            out.append(raw[i])
            i += 1
            continue
        digits = raw[i + 1:i + 3]
        if len(digits) != 2 or not all(d in _HEX for d in digits):
            raise PathError("invalid percent-escape in path")
        value = int(digits, 16)
        if value in _FORBIDDEN_ESCAPES:
            raise PathError(f"{_FORBIDDEN_ESCAPES[value]} in path")
        if value in _UNRESERVED:
            out.append(value)
        else:
            out += b"%" + digits.upper()
        i += 3
    return bytes(out)


def _remove_dot_segments(path: bytes) -> bytes:
    """RFC 3986 §5.2.4, except that climbing above the root is an error rather than clamped."""
    segments = path[1:].split(b"/")
    out: list[bytes] = []
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == b"..":
            if not out:
                raise PathError("path climbs above the root")
            out.pop()
        elif segment != b".":
            out.append(segment)
            continue
        if last:
            out.append(b"")
    return b"/" + b"/".join(out)


def _merge_slashes(path: bytes) -> bytes:
    return re.sub(rb"/{2,}", b"/", path)
