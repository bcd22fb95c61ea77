"""Where a key is written in the config file, for run-time errors that concern it (a listen
address someone else holds, a pidfile directory that is gone): they are reported as config errors
are, `FILE:LINE: key.path: message`, so that an operator goes straight to the line."""
from __future__ import annotations

from fastgw.config.yamlsrc import Path, YamlSyntaxError, format_path, parse


def place(config_path: str, path: Path) -> str:
    """`FILE:LINE: key.path` for `path` in the file at `config_path` (line 1 when the file can no
    longer be read: it may have changed since it was loaded)."""
    line = 1
    try:
        with open(config_path, encoding="utf-8-sig") as f:
            text = f.read()
        if config_path.endswith(".json"):
            text = text.replace("\t", " ")
        document = parse(text)
        if document is not None:
            line = document.line(path)
    except (OSError, UnicodeDecodeError, YamlSyntaxError):
        pass
    return f"{config_path}:{line}: {format_path(path)}"
