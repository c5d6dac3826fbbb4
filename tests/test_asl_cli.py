"""The ASL from the command line: list and export it, approve or reject a proposed change, set a status by hand,
list and close actions. The store is written through its own API (no flow runs here: see test_flow_e2e.py)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from test_store import AS_OF as RAISED_ON
from test_store import asl_results, run_record

from flows.cli import main
from suppliers.store import Store

TODAY = date.today()
AS_OF = TODAY - timedelta(days=10)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A store with one official run: S1 probation with a D proposed to disqualified (SCAR-0001 open since it
    entered probation), S2 disqualified with a better score proposed back to approved, S3 approved, S4 pending."""
    path = tmp_path / "supplier-eval.toml"
    path.write_text('[store]\nurl = "sqlite:///store.db"\n[mail]\nofficers = ["qm@example.org"]\n', encoding="utf-8")
    with Store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        store.start_run(run_record("run-1", "k1", AS_OF))
        scores = {"S1": 40.0, "S2": 90.0, "S3": 95.0, "S4": None}
        frame = pl.DataFrame({
            "supplier_id": list(scores), "score": list(scores.values()), "band": ["D", "A", "A", None],
            "status": ["probation", "disqualified", "approved", "pending"],
            "current_status": ["approved", "disqualified", "pending", "pending"],
            "insufficient_reason": [None, None, None, "2 order lines due in the window (minimum 5)"],
            "gates_hit": [[], [], [], []], "metrics": [{}] * 4, "criteria": [[]] * 4,
        }, schema_overrides={"gates_hit": pl.List(pl.String), "score": pl.Float64})
        changes = pl.DataFrame({"supplier_id": ["S1", "S2", "S3"], "from_status": ["approved", "probation", "pending"],
                                "to_status": ["probation", "disqualified", "approved"],
                                "reason": ["score 45.0 puts it in band D", "score 30.0 puts it in band D",
                                           "score 95.0 puts it in band A"]})
        asl = asl_results({"S1": ("proposed", "disqualified"), "S2": ("proposed", "approved"),
                           "S3": ("changed", "approved"), "S4": ("unchanged", "pending")},
                          proposals={"S1": ("probation", "disqualified"), "S2": ("disqualified", "approved")},
                          actions=[("S1", "scar")])
        store.save_results("k1", "run-1", evaluated=frame, changes=changes, quarantine_summary=pl.DataFrame(schema={
            "kind": pl.String, "source": pl.String, "rows_read": pl.Int64, "rows_quarantined": pl.Int64,
            "top_reasons": pl.List(pl.String)}), as_of=AS_OF, window_start=AS_OF - timedelta(days=364),
            rule_set_hash="h", approved_by="supplier-eval nightly run (schedule)", asl=asl)
    return path


def cli(config: Path, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--config", str(config)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_asl_lists_every_supplier_with_status_since_why_score_profile_and_next_due(
        config: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, err = cli(config, capsys, "asl")
    assert code == 0, err
    rows = {line.split()[0]: line for line in out.splitlines()[1:5]}
    assert list(rows) == ["S1", "S2", "S3", "S4"]
    assert "probation" in rows["S1"] and "proposed: disqualified (awaiting approval)" in rows["S1"]
    assert "open: SCAR-0001" in rows["S1"] and f" {AS_OF} " in rows["S1"] and "major" in rows["S1"]
    assert "2026-12-27" in rows["S3"] and "score 95.0 puts it in band A" in rows["S3"]
    assert "pending" in rows["S4"] and " now " in rows["S4"]
    assert "not scored yet: insufficient data (2 order lines due in the window (minimum 5))" in rows["S4"]


def test_the_asl_exports_as_csv_and_xlsx(config: Path, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    import io

    code, out, _ = cli(config, capsys, "asl", "--format", "csv")
    assert code == 0
    frame = pl.read_csv(io.StringIO(out), try_parse_dates=True)
    assert frame.columns == ["supplier_id", "name", "status", "since", "why", "score", "band", "evaluated_as_of",
                             "profile", "next_due", "proposed", "open_actions"]
    assert frame.select("supplier_id", "status", "proposed").rows() == [
        ("S1", "probation", "disqualified"), ("S2", "disqualified", "approved"), ("S3", "approved", None),
        ("S4", "pending", None)]
    code, out, _ = cli(config, capsys, "asl", "--format", "xlsx", "--out", str(tmp_path / "asl.xlsx"))
    assert code == 0 and "4 suppliers written to" in out
    book = pl.read_excel(tmp_path / "asl.xlsx", sheet_name="ASL")
    assert book["supplier_id"].to_list() == ["S1", "S2", "S3", "S4"] and book["name"][0] == "Name S1"
    code, out, err = cli(config, capsys, "asl", "--format", "xlsx")
    assert (code, out) == (2, "") and err.count("\n") == 1 and "Add --out FILE.xlsx" in err


def test_approving_a_proposed_disqualification_applies_it_and_raises_the_block_recommendation(
        config: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, err = cli(config, capsys, "asl", "approve", "S1", "--by", "Q. Manager", "--reason", "second D")
    assert code == 0, err
    assert out == "S1: probation -> disqualified, approved by Q. Manager; raised BLOCK-0002\n"
    with Store(f"sqlite:///{config.parent / 'store.db'}") as store:
        change = store.status_history("S1").filter(pl.col("to_status") == "disqualified").row(0, named=True)
        blocked = store.actions_frame().filter(pl.col("kind") == "block_orders").row(0, named=True)
    assert (change["approved_by"], change["as_of"]) == ("Q. Manager", AS_OF)  # as of the evaluation it came from
    assert change["reason"] == "score 40.0; approved: second D"
    assert (blocked["supplier_id"], blocked["owner"], blocked["due"]) == ("S1", "buyer@example.org", None)
    code, out, _ = cli(config, capsys, "asl")
    s1 = next(line for line in out.splitlines() if line.startswith("S1"))
    assert "disqualified" in s1 and "(approved by Q. Manager)" in s1 and "BLOCK-0002" in s1
    # nothing is proposed any more: a second approval is a one-line error, exit 2
    code, out, err = cli(config, capsys, "asl", "approve", "S1", "--by", "Q. Manager", "--reason", "again")
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert err.startswith("error: supplier-eval asl approve: nothing proposed for S1")


def test_rejecting_a_proposal_keeps_the_status(config: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, err = cli(config, capsys, "asl", "reject", "S2", "--by", "Q. Manager", "--reason", "audit first")
    assert code == 0, err
    assert out == "S2: disqualified -> approved rejected by Q. Manager; it stays disqualified\n"
    code, out, _ = cli(config, capsys, "asl")
    s2 = next(line for line in out.splitlines() if line.startswith("S2"))
    assert "disqualified" in s2 and "proposed" not in s2


def test_a_manual_decision_is_recorded_with_its_end_date_and_raises_a_scar(
        config: Path, capsys: pytest.CaptureFixture) -> None:
    until = TODAY + timedelta(days=60)
    code, out, err = cli(config, capsys, "asl", "set", "S3", "probation", "--by", "Q. Manager", "--reason",
                         "audit findings", "--until", until.isoformat())
    assert code == 0, err
    assert out == (f"S3: approved -> probation by Q. Manager, respected by evaluations until {until}; "
                   "raised SCAR-0002\n")
    code, out, _ = cli(config, capsys, "asl")
    s3 = next(line for line in out.splitlines() if line.startswith("S3"))
    assert "probation" in s3
    assert f"manual decision: audit findings (approved by Q. Manager); evaluations respect it until {until}" in s3
    with Store(f"sqlite:///{config.parent / 'store.db'}") as store:
        scar = store.actions_frame().filter(pl.col("supplier_id") == "S3").row(0, named=True)
    assert (scar["kind"], scar["raised_on"], scar["due"]) == ("scar", TODAY, TODAY + timedelta(days=30))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["asl", "approve", "S9", "--by", "x", "--reason", "y"],
         "supplier-eval asl approve: unknown supplier 'S9': the ASL has no record of it"),
        (["asl", "reject", "S3", "--by", "x", "--reason", "y"],
         "supplier-eval asl reject: nothing proposed for S3"),
        (["asl", "set", "S3", "banned", "--by", "x", "--reason", "y"],
         "supplier-eval asl set: bad status 'banned'. Use one of approved, conditional, probation, disqualified"),
        (["asl", "set", "S3", "approved", "--by", "x", "--reason", "y", "--until", "2020-01-01"],
         "supplier-eval asl set: --until 2020-01-01 is in the past"),
        (["asl", "set", "S9", "approved", "--by", "x", "--reason", "y"], "unknown supplier 'S9'"),
        (["actions", "close", "SCAR-0099", "--by", "x", "--effective", "yes"], "unknown action 'SCAR-0099'"),
        (["actions", "close", "BLOCK-0001", "--by", "x", "--effective", "yes"], "unknown action 'BLOCK-0001'"),
    ],
)
def test_decision_errors_are_one_line_with_exit_2(config: Path, capsys: pytest.CaptureFixture, args: list[str],
                                                   message: str) -> None:
    code, out, err = cli(config, capsys, *args)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err


def test_actions_are_listed_and_closed_once_with_the_effectiveness_check(
        config: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = cli(config, capsys, "actions", "--open")
    assert code == 0
    (line,) = out.splitlines()
    assert line.startswith("SCAR-0001   S1") and "Corrective action request (SCAR)" in line
    assert f"raised {RAISED_ON}  open, due {RAISED_ON + timedelta(days=30)} (OVERDUE)" in line
    code, out, err = cli(config, capsys, "actions", "close", "scar-0001", "--by", "Q. Manager", "--effective", "no",
                         "--note", "rejects came back")
    assert code == 0, err
    assert out == "SCAR-0001 closed by Q. Manager: not effective\n"
    assert cli(config, capsys, "actions", "--open")[1] == "No open actions.\n"
    code, out, _ = cli(config, capsys, "actions")
    assert f"closed {TODAY} by Q. Manager, NOT effective" in out
    code, out, err = cli(config, capsys, "actions", "close", "SCAR-0001", "--by", "Q. Manager", "--effective", "yes")
    assert code == 2 and "SCAR-0001 is already closed" in err and err.count("\n") == 1
