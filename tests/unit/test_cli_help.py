"""Every command's --help ends with an example, for every command registered at test time."""

from __future__ import annotations

import re
from collections.abc import Iterator

import click
import pytest

from rescue_runner.cli import cli, main


def commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in sorted(group.commands.items()):
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


ALL = [(), *commands(cli)]
EXAMPLE = re.compile(r"^\s*Examples?( \([^)\n]*\))?:", re.MULTILINE)  # "Example:", "Example (cron):"


def test_the_expected_commands_are_registered() -> None:
    assert {"validate", "plan", "init", "new"} <= set(cli.commands)


@pytest.mark.parametrize("path", ALL, ids=lambda p: " ".join(p) or "rescue")
def test_help_shows_an_example(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    found = EXAMPLE.search(out)
    assert found, out
    example = out[found.end():].splitlines()[1:]
    expected = " ".join(("rescue", *path))
    assert any(line.strip().startswith(expected) for line in example), out


def test_bash_completion_as_documented() -> None:
    """docs/getting-started.md: eval "$(_RESCUE_COMPLETE=bash_source rescue)"."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    rescue = str(Path(sys.executable).parent / "rescue")
    source = subprocess.run([rescue], env={**os.environ, "_RESCUE_COMPLETE": "bash_source"},
                            capture_output=True, text=True, timeout=60, check=True).stdout
    assert "complete -o nosort -F _rescue_completion rescue" in source
    words = subprocess.run([rescue], env={**os.environ, "_RESCUE_COMPLETE": "bash_complete",
                                          "COMP_WORDS": "rescue ne", "COMP_CWORD": "1"},
                           capture_output=True, text=True, timeout=60, check=True).stdout
    assert "plain,new" in words.splitlines()
