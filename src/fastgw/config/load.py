"""Validation of a config file into the frozen model (`fastgw.config.model`): reading and parsing
the file, then the top-level assembly of its sections.

Where things go: a new top-level section is one module in `sections/` exporting
`validate_<section>(report, path, value, context)`, which returns the value of the `Config` field
of the same name, and one line in `SECTIONS` below. It builds on the structure helpers in
`report.py` and the value types in `validators.py`; leaf validators only it needs stay in its
module. Sections run in table order, so a section that uses another's validated value (as `admin`
uses `listen`) comes after it; references by name (routes to upstreams) use `context.names`. A new
top-level scalar (as `grace_period`) is one entry in `validate_config` and one in `TOP_LEVEL`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .environment import check_host
from .model import Config
from .report import ConfigError, Context, Report, fields, section
from .sections.access import validate_global_access
from .sections.access_log import validate_access_log
from .sections.auth import validate_auth
from .sections.cache import validate_cache_size
from .sections.errors import validate_errors
from .sections.hide_backend_headers import validate_hide_backend_headers
from .sections.limits import validate_limits
from .sections.listen import validate_admin, validate_listen
from .sections.metrics import validate_metrics
from .sections.rate_limits import validate_rate_limit_table, validate_rate_limits
from .sections.routes import validate_routes
from .sections.tracing import validate_tracing
from .sections.trusted_proxies import validate_trusted_proxies
from .sections.upstreams import validate_upstreams
from .validators import file_path, validate_duration, validate_workers
from .yamlsrc import Path, YamlSyntaxError, parse

__all__ = ["load", "load_text", "validate_config"]

# The top-level sections, in the order they are validated (which is also the order of problems
# that share a line, as in one-line JSON), each with its validator.
SECTIONS: dict[str, Callable[[Report, Path, Any, Context], Any]] = {
    "listen": validate_listen,
    "admin": validate_admin,
    "upstreams": validate_upstreams,
    "rate_limits": validate_rate_limits,
    "rate_limit_table": validate_rate_limit_table,
    "limits": validate_limits,
    "trusted_proxies": validate_trusted_proxies,
    "access": validate_global_access,
    "auth": validate_auth,
    "cache_size": validate_cache_size,
    "routes": validate_routes,
    "errors": validate_errors,
    "access_log": validate_access_log,
    "hide_backend_headers": validate_hide_backend_headers,
    "metrics": validate_metrics,
    "tracing": validate_tracing,
}
TOP_LEVEL = ("workers", "grace_period", "pidfile", *SECTIONS)


def load(path: str, *, host_checks: bool = False) -> Config:
    """The validated config in the YAML (or JSON) file at `path`; raises ConfigError listing every
    problem found. With `host_checks`, also what the file asks of this host (writable
    directories, listen hosts that resolve to its addresses: see `environment.py`)."""
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except OSError as exc:
        raise ConfigError([f"{path}:1: (root): cannot read the config file: {exc.strerror or exc}"]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError([f"{path}:{line}: (root): the config file is not UTF-8 text"]) from None
    if path.endswith(".json"):
        # YAML forbids tabs as indentation, JSON allows them anywhere between tokens; JSON strings
        # cannot hold a raw tab, so replacing every tab keeps the content and the line numbers.
        text = text.replace("\t", " ")
    return load_text(text, path, base_dir=os.path.dirname(os.path.abspath(path)), host_checks=host_checks)


def load_text(text: str, filename: str, base_dir: str, *, host_checks: bool = False) -> Config:
    """`load` for text already read; relative paths in it resolve against `base_dir`."""
    try:
        document = parse(text)
    except YamlSyntaxError as exc:
        raise ConfigError([f"{filename}:{exc.line}: (root): {exc.message}"]) from None
    if document is None or document.data is None:
        raise ConfigError([f"{filename}:1: (root): the config file is empty (at least 'listen' is required)"])
    report = Report(filename, document)
    for problem in document.problems:
        report.error(problem.path, problem.message, line=problem.line)
    config = validate_config(report, document.data, source=os.path.join(base_dir, os.path.basename(filename)))
    if host_checks:
        check_host(report, config)
    report.raise_if_any()
    return config


def validate_config(report: Report, data: Any, source: str) -> Config:
    """The model of the top-level mapping `data` (read from the file `source`), every problem
    recorded in `report`. Top-level scalars are validated here, before the sections."""
    base_dir = os.path.dirname(source)
    present = section(report, (), data, TOP_LEVEL, required=("listen",))
    if present is None:
        return Config(source=source, workers=1)
    values = fields(report, (), present, {"grace_period": validate_duration, "pidfile": file_path(base_dir)})
    values["workers"] = report.check(("workers",), present.get("workers", "auto"), validate_workers, 1)
    context = Context(base_dir=base_dir, written=present, validated=values)
    for key, validate in SECTIONS.items():
        if key in present:
            values[key] = validate(report, (key,), present[key], context)
    return Config(source=source, **values)
