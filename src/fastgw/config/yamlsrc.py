"""YAML text → plain Python values (dict, list, str, int, float, bool, None) plus the source line
of every key and value.

PyYAML's constructors drop positions, so config errors could not say where a mistake is; we
compose to nodes and convert them ourselves to keep the lines. Doing the conversion ourselves also
lets us refuse duplicate keys, which PyYAML would silently resolve to the last one, hiding
mistakes. Anchors, aliases and `<<` merge keys work as in YAML 1.1.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = ["Document", "Path", "SourceProblem", "YamlSyntaxError", "parse", "format_path", "kind_of"]

# A key path: str items are mapping keys (stringified), int items are list positions.
Path = tuple[str | int, ...]

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
# Aliases can make a small file expand enormously ("billion laughs"). What is bounded is the
# nodes reached again through aliases and merges, not the document's own nodes: a table of
# 100,000 routes has over a million of those, and its size is already the file's.
_MAX_ALIASED_NODES = 200_000


class YamlSyntaxError(Exception):
    """The text is not a single YAML document; nothing can be validated."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


@dataclass(frozen=True, slots=True)
class SourceProblem:
    line: int
    path: Path
    message: str


@dataclass(slots=True)
class Document:
    data: Any
    value_lines: dict[Path, int] = field(default_factory=dict)
    key_lines: dict[Path, int] = field(default_factory=dict)
    problems: list[SourceProblem] = field(default_factory=list)

    def line(self, path: Path, *, at_key: bool = False) -> int:
        """Line of the value at `path` (or of its key when `at_key`); for a path that is not in
        the document (a missing key), the line where its nearest present parent is written."""
        if at_key and path in self.key_lines:
            return self.key_lines[path]
        if path in self.value_lines:
            return self.value_lines[path]
        parent = path[:-1]
        while parent:
            if parent in self.key_lines:
                return self.key_lines[parent]
            if parent in self.value_lines:
                return self.value_lines[parent]
            parent = parent[:-1]
        return self.value_lines.get((), 1)


def kind_of(value: object) -> str:
    """The user-facing (YAML) name of a converted value's type, for 'expected X, got Y' messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def format_path(path: Path) -> str:
    """`routes[0].match.prefix`; keys that are not plain words are quoted (`upstreams["a.b"]`) so
    the path stays unambiguous and on one line."""
    if not path:
        return "(root)"
    out: list[str] = []
    for item in path:
        if isinstance(item, int):
            out.append(f"[{item}]")
        elif item and all(c.isascii() and (c.isalnum() or c in "_-") for c in item):
            out.append(f".{item}" if out else item)
        else:
            out.append(f"[{json.dumps(item, ensure_ascii=False)}]")
    return "".join(out)


def parse(text: str) -> Document | None:
    """The document in `text`, or None when it holds no document at all (empty or only comments).
    Raises YamlSyntaxError for text that is not exactly one well-formed YAML document."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        return _Converter(loader).document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        detail = "; ".join(p for p in (exc.context, exc.problem) if p)
        raise YamlSyntaxError(line, f"invalid YAML: {detail}") from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(1, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()


class _Converter:
    def __init__(self, loader: yaml.SafeLoader) -> None:
        self._loader = loader
        self._doc = Document(data=None)
        self._active: set[int] = set()
        self._seen: set[int] = set()
        self._aliased = 0

    def document(self, root: Node) -> Document:
        self._doc.data = self._value(root, (), root.start_mark.line + 1)
        # A node reached through several aliases or merges reports its problem once, under the
        # first path it was reached by.
        unique: dict[tuple[int, str], SourceProblem] = {}
        for problem in self._doc.problems:
            unique.setdefault((problem.line, problem.message), problem)
        self._doc.problems = list(unique.values())
        return self._doc

    def _problem(self, line: int, path: Path, message: str) -> None:
        self._doc.problems.append(SourceProblem(line, path, message))

    def _value(self, node: Node, path: Path, key_line: int) -> Any:
        if id(node) in self._seen:
            self._aliased += 1
            if self._aliased > _MAX_ALIASED_NODES:
                raise YamlSyntaxError(node.start_mark.line + 1, "document too large (aliases expanded too far)")
        else:
            self._seen.add(id(node))
        empty = isinstance(node, ScalarNode) and node.value == "" and node.style is None
        self._doc.value_lines[path] = key_line if empty else node.start_mark.line + 1
        if isinstance(node, ScalarNode):
            return self._loader.construct_object(node)
        if id(node) in self._active:
            self._problem(node.start_mark.line + 1, path, "recursive alias (a node that contains itself)")
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return self._sequence(node, path)
            if isinstance(node, MappingNode):
                return self._mapping(node, path)
        finally:
            self._active.discard(id(node))
        raise YamlSyntaxError(node.start_mark.line + 1, f"unexpected YAML node {type(node).__name__}")

    def _sequence(self, node: SequenceNode, path: Path) -> list[Any]:
        if node.tag != _SEQ_TAG:
            raise YamlSyntaxError(node.start_mark.line + 1, f"unsupported YAML tag {node.tag!r}")
        return [self._value(item, (*path, i), item.start_mark.line + 1) for i, item in enumerate(node.value)]

    def _mapping(self, node: MappingNode, path: Path) -> dict[Any, Any]:
        if node.tag != _MAP_TAG:
            raise YamlSyntaxError(node.start_mark.line + 1, f"unsupported YAML tag {node.tag!r}")
        result: dict[Any, Any] = {}
        for key, key_node, value_node in self._pairs(node, path):
            item_path = (*path, str(key))
            key_line = key_node.start_mark.line + 1
            self._doc.key_lines[item_path] = key_line
            result[key] = self._value(value_node, item_path, key_line)
        return result

    def _pairs(self, node: MappingNode, path: Path) -> list[tuple[Any, Node, Node]]:
        """The mapping's (key, key node, value node) after applying `<<` merges: explicit keys win
        over merged ones, earlier merge sources over later ones; explicit keys must be unique."""
        explicit: dict[Any, tuple[Node, Node]] = {}
        merged: dict[Any, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                for key, k_node, v_node in self._merge_sources(value_node, path):
                    merged.setdefault(key, (k_node, v_node))
                continue
            key = self._key(key_node, path)
            if key is _BAD_KEY:
                continue
            if key in explicit:
                first = explicit[key][0].start_mark.line + 1
                self._problem(
                    key_node.start_mark.line + 1,
                    (*path, str(key)),
                    f"duplicate key {key!r} (first defined on line {first})",
                )
                continue
            explicit[key] = (key_node, value_node)
        combined = {**merged, **explicit}
        return [(key, k_node, v_node) for key, (k_node, v_node) in combined.items()]

    def _merge_sources(self, value_node: Node, path: Path) -> list[tuple[Any, Node, Node]]:
        sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
        pairs: list[tuple[Any, Node, Node]] = []
        for source in sources:
            if not isinstance(source, MappingNode):
                self._problem(source.start_mark.line + 1, path, "'<<' (merge) needs a mapping or a list of mappings")
                continue
            if id(source) in self._active:
                self._problem(source.start_mark.line + 1, path, "recursive alias (a node that contains itself)")
                continue
            self._active.add(id(source))
            try:
                pairs.extend(self._pairs(source, path))
            finally:
                self._active.discard(id(source))
        return pairs

    def _key(self, node: Node, path: Path) -> Any:
        if not isinstance(node, ScalarNode):
            self._problem(node.start_mark.line + 1, path, "mapping keys must be plain scalars, not lists or mappings")
            return _BAD_KEY
        key = self._loader.construct_object(node)
        if isinstance(key, bool) and node.style is None:
            # YAML 1.1 reads a bare `on`, `off`, `yes` or `no` as a boolean; no config key is a
            # boolean, while `retries: {on: [...]}` is a real key, so keys keep their text.
            key = node.value
        try:
            hash(key)
        except TypeError:
            self._problem(node.start_mark.line + 1, path, f"unusable mapping key {node.value!r}")
            return _BAD_KEY
        return key


_BAD_KEY = object()
