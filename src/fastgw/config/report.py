"""What every section validator works with: the `Report` that gathers problems, the `Context` a
section is given, and the structure helpers whose checks and messages all sections share.

Every problem is collected in one pass, so a user fixes a config in one round instead of one error
per run: a section records a problem in the `Report` (which knows the source lines) and substitutes
the model default for the bad value so that validation can go on.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from .yamlsrc import Document, Path, format_path, kind_of

__all__ = [
    "ConfigError",
    "Context",
    "Report",
    "fields",
    "named_items",
    "section",
    "sequence",
    "shown",
    "suggest",
]

T = TypeVar("T")

# The names a config gives its upstreams, rate limits and the like.
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class ConfigError(Exception):
    """A config that must not be used. `problems` holds one `FILE:LINE: key.path: message` line
    per problem, in file order."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class Report:
    """Collects problems with their source lines while validation goes on."""

    def __init__(self, filename: str, document: Document) -> None:
        self.filename = filename
        self._document = document
        self._problems: list[tuple[int, str]] = []

    def error(self, path: Path, message: str, *, at_key: bool = False, line: int | None = None) -> None:
        """Record a problem at `line`, by default the line of the value at `path` (of its key when
        `at_key`, of the nearest parent when `path` is missing)."""
        if line is None:
            line = self._document.line(path, at_key=at_key)
        self._problems.append((line, f"{self.filename}:{line}: {format_path(path)}: {message}"))

    def check(self, path: Path, value: Any, validate: Callable[[Any], T], default: T) -> T:
        """`validate(value)`, or `default` after recording the problem it raised."""
        try:
            return validate(value)
        except ValueError as exc:
            self.error(path, str(exc))
            return default

    def line(self, path: Path) -> int:
        return self._document.line(path)

    def raise_if_any(self) -> None:
        if self._problems:
            ordered = sorted(self._problems, key=lambda item: item[0])
            raise ConfigError([text for _, text in ordered])


@dataclass(frozen=True, slots=True)
class Context:
    """What a section validator may use besides its own value."""

    base_dir: str
    """The config file's directory: relative file paths are taken from it."""
    written: Mapping[str, Any]
    """The known top-level keys, as written."""
    validated: Mapping[str, Any]
    """The model values of the top-level keys validated before this section."""

    def names(self, key: str) -> set[str]:
        """Names declared under `key` (as `upstreams`), even those whose body is invalid, so that
        references to them are not also reported as dangling."""
        declared = self.written.get(key)
        return {str(name) for name in declared} if isinstance(declared, dict) else set()


def suggest(key: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def shown(value: Any) -> str:
    """A value for an error message: short scalars as written, containers by their kind."""
    if isinstance(value, (dict, list)) or value is None:
        return kind_of(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return f"{kind_of(value)} {text if len(text) <= 40 else text[:37] + '...'}"


def section(
    report: Report,
    path: Path,
    value: Any,
    known: Collection[str],
    *,
    required: Collection[str] = (),
) -> dict[str, Any] | None:
    """The known keys of a mapping, after reporting unknown and missing ones;
    None (reported) when `value` is not a mapping at all."""
    if not isinstance(value, dict):
        report.error(path, f"expected a mapping, got {kind_of(value)}")
        return None
    present: dict[str, Any] = {}
    for key, item in value.items():
        key_path = (*path, str(key))
        if key in known:
            present[key] = item
        else:
            suggestion = suggest(str(key), list(known))
            report.error(key_path, f"unknown key {key!r}{suggestion}", at_key=True)
    for key in required:
        if key not in value:
            report.error((*path, key), "required key is missing")
    return present


def sequence(report: Report, path: Path, value: Any, *, non_empty: bool = False) -> list[Any]:
    if not isinstance(value, list):
        report.error(path, f"expected a list, got {kind_of(value)}")
        return []
    if non_empty and not value:
        report.error(path, "must not be empty")
    return value


def fields(
    report: Report, path: Path, present: Mapping[str, Any], validators: Mapping[str, Callable[[Any], Any]]
) -> dict[str, Any]:
    """Model keyword arguments for the valid `present` keys that have a leaf validator."""
    kwargs: dict[str, Any] = {}
    for key, validate in validators.items():
        if key in present:
            try:
                kwargs[key] = validate(present[key])
            except ValueError as exc:
                report.error((*path, key), str(exc))
    return kwargs


def named_items(
    report: Report,
    path: Path,
    value: Any,
    name_word: str,
    items_word: str,
    validate_item: Callable[[Report, Path, str, Any], T | None],
) -> dict[str, T]:
    """A mapping of user-chosen names to items (upstreams, rate limits): each name checked (the
    same syntax for every kind), each item validated under its own key path; a bad one is reported
    and left out."""
    if not isinstance(value, dict):
        report.error(path, f"expected a mapping of {name_word} names to {items_word}, got {kind_of(value)}")
        return {}
    items: dict[str, T] = {}
    for raw_name, body in value.items():
        name = str(raw_name)
        item_path = (*path, name)
        if not _NAME.fullmatch(name):
            message = f"{name_word} name {name!r} may only contain letters, digits, '_', '.' and '-'"
            report.error(item_path, message, at_key=True)
            continue
        item = validate_item(report, item_path, name, body)
        if item is not None:
            items[name] = item
    return items
