"""The command line's own contract: every option explains itself (with its unit and default),
and `--version` works without a subcommand."""
from __future__ import annotations

import argparse
import re

import pytest

from fastgw import __version__
from fastgw.cli import build_parser, main


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, (argparse._HelpAction, argparse._VersionAction))]


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_option_has_help_with_its_default(name: str) -> None:
    parser = _subcommands()[name]
    assert parser.description, f"fastgw {name} has no description"
    for action in _options(parser):
        what = f"fastgw {name} {'/'.join(action.option_strings) or action.dest}"
        assert action.help, f"{what} has no help"
        takes_value = action.nargs != 0  # not a flag (whose default is its absence)
        if takes_value and action.option_strings and action.default not in (None, [], argparse.SUPPRESS):
            assert "default" in action.help, f"{what} does not say its default ({action.default!r})"


@pytest.mark.parametrize("name", ["reload", "stop"])
def test_durations_say_their_unit(name: str) -> None:
    (timeout,) = (a for a in _options(_subcommands()[name]) if "--timeout" in a.option_strings)
    assert timeout.metavar == "SECONDS" and "seconds" in (timeout.help or "")
    assert "(default: 60)" in (timeout.help or "")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert re.fullmatch(rf"fastgw {re.escape(__version__)} \(Python 3\.\d+\.\d+, compiled core\)\n", out), out
