"""Configuration: `load(path)` turns a YAML/JSON file into the frozen model the runtime is built
from, or raises ConfigError listing every problem as `FILE:LINE: key.path: message`."""

from __future__ import annotations

from .load import load
from .model import (
    AccessLog,
    Address,
    Admin,
    Config,
    ErrorBody,
    Errors,
    HashKey,
    HeaderOps,
    HealthCheck,
    IPNetwork,
    Limits,
    Listener,
    Match,
    Outlier,
    RateLimit,
    RateLimitTable,
    Retries,
    Route,
    RouteHeaders,
    Target,
    Timeouts,
    Upstream,
)
from .report import ConfigError

__all__ = [
    "AccessLog",
    "Address",
    "Admin",
    "Config",
    "ConfigError",
    "ErrorBody",
    "Errors",
    "HashKey",
    "HeaderOps",
    "HealthCheck",
    "IPNetwork",
    "Limits",
    "Listener",
    "Match",
    "Outlier",
    "RateLimit",
    "RateLimitTable",
    "Retries",
    "Route",
    "RouteHeaders",
    "Target",
    "Timeouts",
    "Upstream",
    "load",
]
