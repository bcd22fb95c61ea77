"""docs/configuration.md documents every key the loader accepts. The keys are read from the
loader's own source: every mapping is validated by `section(report, path, value, KEYS, ...)`
(config/report.py), which refuses any key not in KEYS, so the KEYS arguments of its calls are the
whole set of accepted keys. A call whose KEYS this test cannot read fails it, so that a new way
of writing them cannot hide keys from it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import fastgw.config

CONFIG = Path(fastgw.config.__file__).resolve().parent
DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


class Unreadable(Exception):
    pass


class Module:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.tree = ast.parse(path.read_text(), str(path))
        self.parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node

    def assigned(self, name: str, scope: ast.AST) -> ast.expr | None:
        """The value last bound to `name` directly in `scope` (a function or the module)."""
        found = None
        for node in ast.walk(scope):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                found = node.value
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
                found = node.value
        return found

    def imported(self, name: str) -> Path | None:
        for node in self.tree.body:
            if isinstance(node, ast.ImportFrom) and node.level and any(a.name == name for a in node.names):
                base = self.path.parent
                for _ in range(node.level - 1):
                    base = base.parent
                return base.joinpath(*(node.module or "").split(".")).with_suffix(".py")
        return None

    def strings(self, node: ast.AST, at: ast.AST) -> set[str]:
        """The key names an expression stands for (`at`: where it is used, for name lookups)."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return set().union(*(self.strings(e, at) for e in node.elts))
        if isinstance(node, ast.Starred):
            return self.strings(node.value, at)
        if isinstance(node, ast.Dict):
            out: set[str] = set()
            for key, value in zip(node.keys, node.values, strict=True):
                out |= self.strings(key if key is not None else value, at)
            return out
        if isinstance(node, ast.IfExp):
            return self.strings(node.body, at) | self.strings(node.orelse, at)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("tuple", "list"):
            return self.strings(node.args[0], at)
        if isinstance(node, ast.Name):
            scope = self.parents.get(at)
            while scope is not None and not isinstance(scope, (ast.FunctionDef, ast.Module)):
                scope = self.parents.get(scope)
            for where in (scope, self.tree):
                value = self.assigned(node.id, where) if where is not None else None
                if value is not None:
                    return self.strings(value, value)
            source = self.imported(node.id)
            if source is not None:
                other = Module(source)
                value = other.assigned(node.id, other.tree)
                if value is not None:
                    return other.strings(value, value)
        raise Unreadable(f"{self.path.name}:{getattr(node, 'lineno', '?')}: {ast.unparse(node)}")


def accepted_keys() -> dict[str, set[str]]:
    """Key → the places (`file:line`) of the `section` calls that accept it."""
    keys: dict[str, set[str]] = {}
    for path in sorted(CONFIG.rglob("*.py")):
        module = Module(path)
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "section":
                args = [*node.args, *(k.value for k in node.keywords if k.arg == "keys")]
                if len(args) < 4:
                    continue  # the definition's own recursive uses, if any, pass KEYS on by name
                for key in module.strings(args[3], node):
                    keys.setdefault(key, set()).add(f"{path.relative_to(CONFIG)}:{node.lineno}")
    return keys


def documented(key: str, doc: str) -> bool:
    """The key is named in the doc: as inline code (`key`, `key: ...`, `{key: ...}`) or as a
    key of a YAML example."""
    name = re.escape(key)
    return bool(
        re.search(rf"`{name}`|`\{{?{name}:|[{{,]\s*{name}:|^\s*(- )?{name}:", doc, re.MULTILINE)
    )


def test_the_reader_finds_the_keys_of_known_sections() -> None:
    keys = accepted_keys()
    for key in ("workers", "listen", "underscores_in_headers", "stale_if_error", "jwks_refresh", "expose_headers",
                "on_redis_error", "client_cert", "sni", "keepalive"):
        assert key in keys, key
    assert len(keys) > 150


def test_every_accepted_key_is_in_the_configuration_doc() -> None:
    doc = DOC.read_text()
    missing = {key: sorted(places) for key, places in accepted_keys().items() if not documented(key, doc)}
    assert not missing, f"docs/configuration.md does not name these keys (key: where the loader accepts it): {missing}"


@pytest.mark.parametrize(
    ("source", "keys"),
    [
        ('KEYS = ("a", "b")\ndef f(r, p, v):\n    section(r, p, v, KEYS)\n', {"a", "b"}),
        ('def f(r, p, v):\n    validators = {"a": 1}\n    section(r, p, v, (*validators, "b"))\n', {"a", "b"}),
        ('def f(r, p, v, w):\n    keys = ("a",) if w else ("a", "c")\n    section(r, p, v, keys)\n', {"a", "c"}),
    ],
)
def test_the_reader_resolves_names_and_spreads(tmp_path: Path, source: str, keys: set[str]) -> None:
    path = tmp_path / "m.py"
    path.write_text(source)
    module = Module(path)
    call = next(n for n in ast.walk(module.tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "section")
    assert module.strings(call.args[3], call) == keys


def test_a_key_list_it_cannot_read_fails(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("def f(r, p, v):\n    section(r, p, v, make_keys())\n")
    module = Module(path)
    call = next(n for n in ast.walk(module.tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "section")
    with pytest.raises(Unreadable, match="make_keys"):
        module.strings(call.args[3], call)
