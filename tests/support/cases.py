"""The hostile-request corpus: `tests/data/requests/{valid,invalid}/NNN.http` + `NNN.py`.

The `.http` file is the exact bytes sent (see tests/data/requests/README.md); the `.py` file
defines `description` and `expect`, and may set `bare_line_endings = True`. Loading checks what
can be checked without a gateway, so that a mistyped key or an editor that rewrote line endings
fails loudly instead of making a case test nothing.
"""

from __future__ import annotations

import re
import runpy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parents[1] / "data" / "requests"

_COMMON_KEYS = {"status", "closed", "upstream_requests"}
_KEYS = {
    "invalid": _COMMON_KEYS | {"upstream_completed"},
    "valid": _COMMON_KEYS
    | {
        "upstream_method",
        "upstream_target",
        "upstream_headers",
        "upstream_headers_absent",
        "upstream_headers_if_present",
        "upstream_header_matches",
        "upstream_body_length",
        "upstream_body_sha256",
        "response_headers",
    },
}
_REQUIRED = {"invalid": {"status", "upstream_requests"}, "valid": {"status"}}
_MODULE_NAMES = {"description", "expect", "bare_line_endings"}
_BARE_LINE_ENDING = re.compile(rb"\r(?!\n)|(?<!\r)\n")


@dataclass(frozen=True)
class Case:
    """One request and what the gateway must do with it.

    `expect` keys: `status` (int, or a list of acceptable ones), `closed` (True: the gateway
    closes the connection after answering, with a FIN and not a reset; False: it stays usable; absent: either),
    `upstream_requests` (how many request heads reach the backend; None where a case
    leaves it open, with the reason in its description), and for invalid cases
    `upstream_completed` (how many requests the backend receives in full or cannot parse: the
    check for body errors, which a streaming gateway finds only after sending the head on). Valid
    cases may also say what the backend receives: `upstream_method`, `upstream_target` (raw request target),
    `upstream_headers` (name -> value that must appear exactly once, or list of values in
    order), `upstream_headers_absent` (names), `upstream_headers_if_present` (name -> value it
    must have if sent at all), `upstream_header_matches` (name -> regex the single value must
    fullmatch), `upstream_body_length`, `upstream_body_sha256`, and `response_headers` (name ->
    value the client must get). In strings, `{port}` stands for the gateway's listen port."""

    kind: str
    number: str
    description: str
    data: bytes
    expect: Mapping[str, Any]

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.number}"

    def statuses(self) -> list[int]:
        status = self.expect["status"]
        return list(status) if isinstance(status, (list, tuple)) else [status]


def _load(kind: str, http: Path) -> Case:
    where = f"{kind}/{http.name}"
    spec = http.with_suffix(".py")
    if not spec.exists():
        raise ValueError(f"{where}: no {spec.name} beside it")
    module = {k: v for k, v in runpy.run_path(str(spec)).items() if not k.startswith("__")}
    if unknown := set(module) - _MODULE_NAMES:
        raise ValueError(f"{where}: unknown names in {spec.name}: {sorted(unknown)}")
    expect = module["expect"]
    if unknown := set(expect) - _KEYS[kind]:
        raise ValueError(f"{where}: unknown expect keys {sorted(unknown)}")
    if missing := _REQUIRED[kind] - set(expect):
        raise ValueError(f"{where}: expect lacks {sorted(missing)}")
    data = http.read_bytes()
    if not data:
        raise ValueError(f"{where}: empty request")
    if _BARE_LINE_ENDING.search(data) and not module.get("bare_line_endings", False):
        raise ValueError(
            f"{where}: has a CR or LF outside CRLF; if that is the point of the case, "
            "set bare_line_endings = True in its .py"
        )
    return Case(kind, http.stem, module["description"], data, expect)


def load_cases(kind: str) -> list[Case]:
    """Every case of `kind` ("valid" or "invalid"), in file-name order."""
    files = sorted((CORPUS / kind).glob("*.http"))
    if orphans := {p.stem for p in (CORPUS / kind).glob("*.py")} - {p.stem for p in files}:
        raise ValueError(f"{kind}: .py files without a .http: {sorted(orphans)}")
    return [_load(kind, f) for f in files]
