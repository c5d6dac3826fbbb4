"""`make demo` leaves a working place: every command it prints reaches its store from where it was run."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from flows.cli import main
from suppliers.store import Store


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_every_command_the_demo_prints_works_from_the_folder_it_ran_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)  # as `make demo` from the repository root: demo-work/ below the working folder
    assert main(["demo", "--suppliers", "12", "--lines", "900"]) == 0
    printed = [line.split(":", 1)[1].strip() for line in capsys.readouterr().out.splitlines()
               if ":" in line and line.split(":", 1)[1].strip().startswith("supplier-eval ")]
    commands = [shlex.split(line)[1:] for line in printed]
    names = [command[0] for command in commands]
    assert names == ["asl", "history", "outbox", "actions", "evaluate", "nightly", "serve"]
    assert all(command[-2:] == ["--config", "demo-work/supplier-eval.toml"] for command in commands)
    outputs = {}
    for command in commands:
        if command[0] == "serve":  # runs until stopped: tests/test_serve.py runs it for real
            continue
        assert main(command) == 0, command
        outputs[command[0]] = capsys.readouterr().out
    assert "S0001" in outputs["asl"] and "suppliers; next due" in outputs["asl"]
    assert len(outputs["history"].splitlines()) >= 10  # the demo's evaluations, read from its store
    assert "sent: " in outputs["outbox"] and "sent: 0 " not in outputs["outbox"]
    assert "Suppliers evaluated: 1 " in outputs["evaluate"]
    assert "already recorded: nothing added" in outputs["nightly"]  # the same nightly run again doubles nothing
    with Store(f"sqlite:///{tmp_path / 'demo-work' / 'supplier-eval.db'}", create=False) as store:
        triggers = store.runs_frame().sort("started_at")["trigger"].to_list()
    assert triggers == ["nightly", "adhoc", "nightly"]  # the cron-style command is recorded as nightly
