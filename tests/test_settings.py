"""The settings file: every mistake is reported at once, in one error, and reading settings writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.settings import STORE_URL_ENV, load_settings
from suppliers.errors import ConfigError

THREE_MISTAKES = """\
[data]
dri = "data"

[mail]
sender = "nobody"
colour = "blue"
"""
PROBLEMS = [
    "setting 'data.dri': unknown setting; allowed here: dir, mapping",
    "setting 'mail.sender': 'nobody' is not an email address",
    "setting 'mail.colour': unknown setting; allowed here: sender, officers, data_owner, outbox_dir, concurrency, "
    "retries, smtp",
]


def settings_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "supplier-eval.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_two_unknown_keys_and_a_bad_address_are_one_error_with_two_details(tmp_path: Path) -> None:
    path = settings_file(tmp_path, THREE_MISTAKES)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    error = caught.value
    assert error.where == str(path)
    assert len(error.details) == 2
    assert sorted([error.what, *error.details]) == sorted(PROBLEMS)
    assert "examples/supplier-eval.toml" in (error.fix or "")
    assert "\n" not in str(error) and str(error).endswith("(2 more problems below)")
    assert error.exit_code == 2


def test_history_with_a_bad_settings_file_prints_every_problem_and_exits_2(tmp_path: Path, capsys) -> None:
    from flows.cli import main

    path = settings_file(tmp_path, THREE_MISTAKES)
    assert main(["history", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    first, *others = captured.err.splitlines()
    assert first.startswith(f"error: {path}: setting '")
    assert first.endswith("(2 more problems below)")
    assert len(others) == 2 and all(line.startswith("  setting '") for line in others)
    shown = [first.removeprefix(f"error: {path}: ").split(". See examples")[0], *(line.strip() for line in others)]
    assert sorted(shown) == sorted(PROBLEMS)
    assert "Traceback" not in captured.err
    assert not (tmp_path / "supplier-eval.db").exists()


def test_one_mistake_is_one_line_with_no_details(tmp_path: Path) -> None:
    path = settings_file(tmp_path, '[mail]\nsender = "nobody"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.details == ()
    assert str(caught.value).startswith(f"{path}: setting 'mail.sender': 'nobody' is not an email address.")
    assert "more problem" not in str(caught.value)


def test_reading_store_url_resolves_the_path_and_creates_nothing(tmp_path: Path, monkeypatch) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    path = settings_file(config_dir, '[store]\nurl = "sqlite:///stores/nightly/supplier-eval.db"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv(STORE_URL_ENV, raising=False)
    before = sorted(tmp_path.rglob("*"))

    url = load_settings(path).store_url

    assert url == f"sqlite:///{config_dir.resolve() / 'stores' / 'nightly' / 'supplier-eval.db'}"
    assert sorted(tmp_path.rglob("*")) == before


def test_store_url_from_the_environment_wins_and_creates_nothing(tmp_path: Path, monkeypatch) -> None:
    path = settings_file(tmp_path, '[store]\nurl = "sqlite:///from-file.db"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(STORE_URL_ENV, "sqlite:///env-stores/env.db")
    before = sorted(tmp_path.rglob("*"))

    assert load_settings(path).store_url == f"sqlite:///{tmp_path.resolve() / 'env-stores' / 'env.db'}"
    assert sorted(tmp_path.rglob("*")) == before
