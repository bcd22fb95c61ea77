"""`errors`: the format of the gateway's own error responses and per-status bodies, read at load
time so that a missing file fails the load, not the first error response."""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import orjson

from ..model import ErrorBody, Errors
from ..report import Context, Report, section, shown
from ..validators import file_path, one_of, validate_header_value, validate_string
from ..yamlsrc import Path, kind_of

__all__ = ["validate_errors"]

MAX_ERROR_BODY = 64 * 1024


def validate_errors(report: Report, path: Path, value: Any, context: Context) -> Errors:
    present = section(report, path, value, ("format", "bodies"))
    if present is None:
        return Errors()
    fmt = report.check((*path, "format"), present.get("format", "json"), one_of("json", "text"), "json")
    bodies: dict[int, ErrorBody] = {}
    if "bodies" in present:
        bodies_path = (*path, "bodies")
        raw_bodies = present["bodies"]
        if not isinstance(raw_bodies, dict):
            report.error(bodies_path, f"expected a mapping of statuses to bodies, got {kind_of(raw_bodies)}")
            raw_bodies = {}
        for raw_status, raw_body in raw_bodies.items():
            item_path = (*bodies_path, str(raw_status))
            status = report.check(item_path, raw_status, validate_status, None)
            body = validate_error_body(report, item_path, raw_body, fmt, context.base_dir)
            if status is None or body is None:
                continue
            if status in bodies:
                report.error(item_path, f"status {status} is given twice")
            bodies[status] = body
    return Errors(format="text" if fmt == "text" else "json", bodies=MappingProxyType(bodies))


def validate_error_body(report: Report, path: Path, value: Any, fmt: str, base_dir: str) -> ErrorBody | None:
    """`{body: TEXT}` or `{file: PATH}`, plus an optional content_type (default from `format`).
    Files are read now, so a missing file fails the load, not the first error response."""
    present = section(report, path, value, ("body", "file", "content_type"))
    if present is None:
        return None
    if ("body" in present) == ("file" in present):
        report.error(path, "needs exactly one of 'body' or 'file'")
        return None
    default_type = "application/json" if fmt == "json" else "text/plain; charset=utf-8"
    content_type = report.check(
        (*path, "content_type"), present.get("content_type", default_type), validate_content_type, None
    )
    if "body" in present:
        text = report.check((*path, "body"), present["body"], _body_text, None)
        data = text.encode() if text is not None else None
        data_path = (*path, "body")
    else:
        data_path = (*path, "file")
        data = report.check(data_path, present["file"], _read_body_file(base_dir), None)
    if data is None or content_type is None:
        return None
    if _is_json_type(content_type):
        try:
            # Checked as it will be sent: with its placeholders filled in.
            orjson.loads(data.replace(b"{request_id}", b"0").replace(b"{status}", b"500"))
        except orjson.JSONDecodeError:
            report.error(data_path, f"is not valid JSON but the content type is {content_type!r}; set content_type")
            return None
    return ErrorBody(body=data, content_type=content_type)


def _body_text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {shown(value)}")
    if len(value.encode()) > MAX_ERROR_BODY:
        raise ValueError(f"is larger than {MAX_ERROR_BODY // 1024}KiB")
    return value


def _read_body_file(base_dir: str) -> Callable[[Any], bytes]:
    resolve = file_path(base_dir)

    def read_body_file(value: Any) -> bytes:
        path = resolve(value)
        try:
            with open(path, "rb") as file:
                data = file.read(MAX_ERROR_BODY + 1)
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
        if len(data) > MAX_ERROR_BODY:
            raise ValueError(f"{path} is larger than {MAX_ERROR_BODY // 1024}KiB")
        return data

    return read_body_file


def _is_json_type(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def validate_status(key: Any) -> int:
    status = int(key) if isinstance(key, str) and key.isdigit() else key
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        raise ValueError(f"expected an error status from 400 to 599, got {key!r}")
    return status


def validate_content_type(value: Any) -> str:
    return validate_header_value(validate_string(value))
