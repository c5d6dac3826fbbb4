"""The command line: help with an example everywhere, exit codes 0/1/2, one-line errors, the demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import polars as pl
import pytest
from conftest import SAMPLE_END

from flows.cli import cli, main
from rules.loader import default_rules_path


def all_commands(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += all_commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


COMMANDS = all_commands()


def test_the_documented_commands_exist() -> None:
    assert {" ".join(c) for c in COMMANDS} >= {"", "demo", "evaluate", "generate", "validate", "rules", "rules check",
                                               "history", "asl"}


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "supplier-eval")
def test_every_command_has_help_with_an_example(command: tuple[str, ...], capsys: pytest.CaptureFixture) -> None:
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Example:" in out
    example = out.split("Example:")[1].strip().splitlines()[0].strip()
    assert example.startswith("supplier-eval " + " ".join(command))


def test_generate_writes_every_record_kind_deterministically(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["generate", "--suppliers", "8", "--lines", "200", "--seed", "3", "--end", "2026-06-30"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b"), "--format", "csv"]) == 0
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["feedback.csv", "nonconformances.csv", "purchase_order_lines.csv", "receipts.csv",
                     "suppliers.csv"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert pl.read_csv(tmp_path / "a" / "purchase_order_lines.csv").height == 200
    assert "200 purchase order lines" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "p"), "--format", "parquet"]) == 0
    assert pl.read_parquet(tmp_path / "p" / "suppliers.parquet").height == 8


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["generate", "--out", "x", "--suppliers", "2"], 2, "2 is not in the range x>=5"),
        (["evaluate", "--as-of", "30/06/2026"], 2, "'30/06/2026' is not a date; use YYYY-MM-DD"),
        (["evaluate", "--to", "not-an-address", "--config", "{cfg}"], 2, "'not-an-address' is not an email address"),
        (["evaluate", "--config", "{missing}"], 2, "settings file not found"),
        (["evaluate", "--config", "{cfg}", "--rules", "{missing}"], 2, "rule file not found"),
        (["rules", "check", "{missing}"], 2, "rule file not found"),
        (["validate", "--data", "{missing}"], 1, "data folder"),
        (["no-such-command"], 2, "No such command"),
    ],
)
def test_user_errors_are_one_line_with_the_right_exit_code(
    workspace: Path, capsys: pytest.CaptureFixture, args: list[str], code: int, message: str
) -> None:
    filled = [a.format(cfg=workspace / "supplier-eval.toml", missing=workspace / "missing") for a in args]
    assert main(filled) == code
    captured = capsys.readouterr()
    assert message in captured.err
    assert "Traceback" not in captured.err + captured.out


def test_bad_settings_key_is_named(workspace: Path, capsys: pytest.CaptureFixture) -> None:
    config = workspace / "supplier-eval.toml"
    config.write_text(config.read_text(encoding="utf-8") + "[validation]\nmax_quarantine_shar = 0.1\n")
    assert main(["evaluate", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "setting 'validation.max_quarantine_shar': unknown setting" in err


def test_rules_check_reports_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["rules", "check"]) == 0
    assert "is valid; sha256" in capsys.readouterr().out
    bad = tmp_path / "rules.yaml"
    bad.write_text(default_rules_path().read_text(encoding="utf-8").replace("weight: 30", "weight: 31", 1))
    assert main(["rules", "check", str(bad)]) == 2
    assert f"error: {bad}:" in capsys.readouterr().err


def test_validate_reports_counts_and_writes_the_quarantine(workspace: Path, capsys: pytest.CaptureFixture) -> None:
    with (workspace / "data" / "receipts.csv").open("a", encoding="utf-8") as handle:
        handle.write("RBAD,PO0000001,1,2026-13-01,5,5,0\n")
    with (workspace / "data" / "receipts.csv").open("a", encoding="utf-8") as handle:
        handle.write('RBAD2,PO0000001,1,=HYPERLINK("http://evil.example"),5,5,0\n')  # a formula in a bad cell
    out_file = workspace / "q.csv"
    assert main(["validate", "--config", str(workspace / "supplier-eval.toml"), "--quarantine-out", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert "receipts.csv" in out and "2 quarantined" in out
    quarantine = pl.read_csv(out_file)
    values = quarantine.filter(pl.col("kind") == "receipts")["value"].to_list()
    assert sorted(values) == ["'=HYPERLINK(\"http://evil.example\")", "2026-13-01"]  # quoted: safe in a spreadsheet
    # their line's delivery cannot be judged any more: set aside with them, not counted late
    assert quarantine.filter(pl.col("kind") == "purchase_order_lines")["code"].to_list() == ["delivery_quarantined"]


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_evaluate_then_history_and_asl(workspace: Path, capsys: pytest.CaptureFixture) -> None:
    config = str(workspace / "supplier-eval.toml")
    assert main(["evaluate", "--config", config, "--as-of", str(SAMPLE_END)]) == 0
    out = capsys.readouterr().out
    assert "new evaluations recorded" in out and "written as .eml files to" in out
    assert main(["evaluate", "--config", config, "--as-of", str(SAMPLE_END)]) == 0
    assert "already recorded: nothing added" in capsys.readouterr().out
    assert main(["history", "--config", config, "--supplier", "S0001"]) == 0
    history = capsys.readouterr().out.strip().splitlines()
    assert len(history) == 1 and history[0].startswith(f"{SAMPLE_END}  S0001")
    assert main(["asl", "--config", config]) == 0
    listed = capsys.readouterr().out.splitlines()
    s0001 = next(line for line in listed if line.startswith("S0001 "))
    assert " 2026-06-30 " in s0001  # since the evaluation as of 2026-06-30 that set its status
    assert len([line for line in listed if line.startswith("S0")]) == 24  # every active supplier of the sample
    assert main(["evaluate", "--config", config, "--supplier", "NOPE"]) == 2
    assert "unknown supplier id 'NOPE'" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    work = tmp_path / "demo"
    assert main(["demo", "--work-dir", str(work), "--suppliers", "12", "--lines", "900"]) == 0
    out = capsys.readouterr().out
    assert "Band A (approved)" in out and "Band D (disqualified)" in out and "Insufficient data" in out
    assert f"written as .eml files to {work / 'outbox'}" in out
    assert len(list((work / "outbox").glob("*.eml"))) >= 2
    assert (work / "supplier-eval.db").is_file()


@pytest.mark.slow
def test_a_failed_run_prints_no_traceback_from_the_real_command(workspace: Path, prefect_harness: str) -> None:
    receipts = workspace / "data" / "receipts.csv"
    receipts.write_text(receipts.read_text(encoding="utf-8").replace("quantity_accepted", "qty_ok", 1))
    command = [sys.executable, "-c", "import sys; from flows.cli import main; sys.exit(main())",
               "evaluate", "--config", str(workspace / "supplier-eval.toml"), "--as-of", str(SAMPLE_END)]
    env = {**os.environ, "PREFECT_API_URL": prefect_harness}  # the session's server, not a second one
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert error_lines == [error_lines[0]] and "receipts.csv: missing column 'quantity_accepted'" in error_lines[0]
    # said once: Prefect's own log does not repeat it for the task, its state, the flow and its state
    assert (result.stdout + result.stderr).count("missing column 'quantity_accepted'") == 1


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_outbox_lists_the_ledger_and_retries_what_could_not_go(workspace: Path, capsys: pytest.CaptureFixture) -> None:
    from smtp_support import Recorder, free_port, smtp_server

    port = free_port()  # no server yet
    config = workspace / "supplier-eval.toml"
    settings = config.read_text(encoding="utf-8").replace("[mail]\n", "[mail]\nretries = 0\n")
    smtp = f'[mail.smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
    config.write_text(settings + smtp, encoding="utf-8")
    assert main(["evaluate", "--config", str(config), "--as-of", str(SAMPLE_END)]) == 1
    assert "messages were not delivered" in capsys.readouterr().err
    assert main(["outbox", "--config", str(config)]) == 0
    listing = capsys.readouterr().out
    failed = int(listing.split("failed-temporary: ")[1].split()[0])
    assert failed > 0 and listing.count("Connection refused") == failed  # each failed message, its last error
    recorder = Recorder()
    with smtp_server(recorder, port=port):
        assert main(["outbox", "--retry", "--config", str(config)]) == 0  # the old spelling of `outbox retry`
    assert f"Retried {failed}: {failed} delivered, 0 failed" in capsys.readouterr().out
    assert len(recorder.envelopes) == failed
    assert main(["outbox", "--config", str(config)]) == 0
    assert (f"queued: 0  sending: 0  sent: {failed}  failed-temporary: 0  failed-permanent: 0"
            in capsys.readouterr().out)


def test_help_and_usage_errors_answer_without_importing_prefect(workspace: Path) -> None:
    """Prefect takes seconds to import and start: a typo must not wait for it (each case is timed in the note)."""
    missing = str(workspace / "missing.toml")
    cases = [["--help"], ["evaluate", "--help"], ["serve-nothing"], ["evaluate", "--to", "bad"],
             ["evaluate", "--config", missing], ["evaluate", "--as-of", "30/06/2026"], ["history", "--config", missing],
             ["asl", "--config", missing], ["outbox", "--config", missing], ["rules", "check", missing]]
    script = (
        "import json, sys, time\n"
        "from flows.cli import main\n"
        "codes = []\n"
        "for args in json.loads(sys.argv[1]):\n"
        "    started = time.process_time()\n"  # CPU seconds: what the command costs, not how busy the machine is
        "    codes.append([main(args), round(time.process_time() - started, 3)])\n"
        "prefect = sorted(m for m in sys.modules if m.split('.')[0] == 'prefect')\n"
        "print(json.dumps({'codes': codes, 'prefect': prefect}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, json.dumps(cases)], capture_output=True, text=True,
                            timeout=120, env=dict(os.environ), check=False)
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert [code for code, _ in outcome["codes"]] == [0, 0, 2, 2, 2, 2, 2, 2, 2, 2]
    assert outcome["prefect"] == []
    assert max(seconds for _, seconds in outcome["codes"]) < 1.0, outcome["codes"]
    assert "Traceback" not in result.stderr
