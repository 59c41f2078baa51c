"""Messages a new user meets: a CI job pointed at nothing fails, hints name the right thing,
`--env` of the runner commands is the deprecated name of `--lock-env`."""

from __future__ import annotations

from pathlib import Path

import pytest

from rescue_runner.cli import main


def test_validate_in_ci_with_no_config_and_no_requests_exits_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CI", "true")
    assert main(["validate"]) == 2
    err = capsys.readouterr().err
    assert "no rescue.yaml found" in err and "nothing was checked" in err and "--config" in err
    monkeypatch.delenv("CI")
    assert main(["validate"]) == 0  # on a laptop: nothing to check is not an error


def test_hints_do_not_name_another_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert "not inside a git repository" in err and "rescue apply" not in err
    assert main(["plan", "rescues/nope.yaml"]) == 2
    err = capsys.readouterr().err
    assert "no such file or folder" in err and "rescue validate" not in err


def test_lock_env_is_the_name_and_env_still_works_with_a_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["retry", "x", "--by", "a", "--reason", "long enough reason", "--env", "prod"]) == 2
    err = capsys.readouterr().err
    assert "--env is deprecated here: use --lock-env" in err
    assert main(["apply", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--lock-env" in out and "--env " not in out
