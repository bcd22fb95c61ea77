"""`routes[].compress`: response compression (`fastgw.compress`). `compress: true` takes every
default; a mapping sets `types`, `min_size`, `encodings` and `level` (per encoding)."""

from __future__ import annotations

import re
from typing import Any

from ..model import COMPRESS_ENCODINGS, Compress
from ..report import Report, fields, section, sequence, shown
from ..validators import int_between, validate_size
from ..yamlsrc import Path

__all__ = ["validate_compress"]

LEVELS = {"gzip": (1, 9), "br": (0, 11), "zstd": (1, 19)}
"""Level ranges: zlib's; brotli's quality; zstd's up to 19, whose 8 MiB window is the most
RFC 9659 allows a zstd content coding (20-22 need larger windows)."""
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9a-z]+"
_MEDIA = re.compile(rf"{_TOKEN}/(\*|\*\+{_TOKEN}|{_TOKEN})")


def validate_compress(report: Report, path: Path, value: Any) -> Compress | None:
    if value is True:
        return Compress()
    if value is False:
        return None
    present = section(report, path, value, ("types", "min_size", "encodings", "level"))
    if present is None:
        return None
    kwargs = fields(report, path, present, {"min_size": validate_size})
    if "types" in present:
        types = _list(report, (*path, "types"), present["types"], _media_type)
        if types is not None:
            kwargs["types"] = types
    if "encodings" in present:
        encodings = _list(report, (*path, "encodings"), present["encodings"], _encoding)
        if encodings is not None:
            kwargs["encodings"] = encodings
    if "level" in present:
        level_path = (*path, "level")
        levels = section(report, level_path, present["level"], tuple(LEVELS))
        if levels is not None:
            for name, raw in levels.items():
                low, high = LEVELS[name]
                level = report.check((*level_path, name), raw, int_between(low, high), None)
                if level is not None:
                    kwargs[f"{name}_level"] = level
    return Compress(**kwargs)


def _list(report: Report, path: Path, value: Any, validate: Any) -> tuple[str, ...] | None:
    out: list[str] = []
    ok = True
    for index, item in enumerate(sequence(report, path, value, non_empty=True)):
        text = report.check((*path, index), item, validate, None)
        if text is None:
            ok = False
        elif text in out:
            report.error((*path, index), f"{text!r} is listed twice")
            ok = False
        else:
            out.append(text)
    return tuple(out) if ok and out else None


def _media_type(value: Any) -> str:
    """`type/subtype`, `type/*` or `type/*+suffix`, lower-cased (media types are case-insensitive)."""
    if not isinstance(value, str):
        raise ValueError(f"expected a media type such as application/json or text/*, got {shown(value)}")
    text = value.strip().lower()
    if ";" in text:
        raise ValueError(f"{value!r}: write the media type without parameters (they are ignored when matching)")
    if not _MEDIA.fullmatch(text) or text.startswith("*/"):
        raise ValueError(f"{value!r} is not a media type such as application/json, text/* or application/*+json")
    return text


def _encoding(value: Any) -> str:
    if value not in COMPRESS_ENCODINGS:
        raise ValueError(f"expected one of {', '.join(COMPRESS_ENCODINGS)}, got {shown(value)}")
    return str(value)

