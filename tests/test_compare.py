"""What-if comparison of two rule sets (`evaluate --compare-with`): movements, counts, nothing written or sent."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from conftest import SAMPLE_END

import rules.compare
from flows.cli import main
from rules.compare import (
    common_band_order,
    compare_scores,
    score_under_rule_sets,
    summarise_comparison,
)
from rules.loader import default_rules_path, load_rule_set, parse_rule_set
from suppliers.errors import RuleSetError
from suppliers.store import Store, evaluations, runs, status_changes

SHIPPED = default_rules_path()
AS_OF = SAMPLE_END.isoformat()


def stricter_copy(folder: Path) -> Path:
    """The shipped rules with band A from 90 instead of 85 (and band B up to 90), written from its text."""
    text = SHIPPED.read_text(encoding="utf-8")
    assert text.count("from: 85") == 1 and text.count("to: 85") == 1
    path = folder / "stricter.yaml"
    path.write_text(text.replace("from: 85", "from: 90").replace("to: 85", "to: 90"), encoding="utf-8")
    return path


def band_of(score: float | None, a_from: float) -> str | None:
    """The shipped bands by hand, with band A starting at ``a_from``."""
    if score is None:
        return None
    return "A" if score >= a_from else "B" if score >= 70 else "C" if score >= 50 else "D"


def scored(rows: dict[str, tuple[float | None, str | None, str]]) -> pl.DataFrame:
    """A frame shaped like score_suppliers' output (only the columns a comparison reads)."""
    return pl.DataFrame(
        {"supplier_id": list(rows), "score": [r[0] for r in rows.values()], "band": [r[1] for r in rows.values()],
         "status": [r[2] for r in rows.values()]},
        schema={"supplier_id": pl.String, "score": pl.Float64, "band": pl.String, "status": pl.String},
    )


# --- the pure part


def test_compare_scores_tells_each_movement_and_status_change_apart() -> None:
    a = scored({"S5": (88.0, "A", "approved"), "S1": (72.0, "B", "conditional"), "S2": (40.0, "D", "disqualified"),
                "S3": (None, None, "pending"), "S4": (60.0, "C", "probation"), "S6": (None, None, "approved"),
                "S7": (90.0, "A", "approved")})
    b = scored({"S1": (86.0, "A", "approved"), "S2": (75.0, "B", "conditional"), "S3": (55.0, "C", "probation"),
                "S4": (None, None, "probation"), "S5": (88.0, "B", "conditional"), "S6": (None, None, "approved"),
                "S7": (91.0, "A", "conditional")})  # S7: same band, capped by a gate only under B
    compared = compare_scores(a, b, ["A", "B", "C", "D"])
    assert compared.columns == ["supplier_id", "score_a", "band_a", "status_a", "score_b", "band_b", "status_b",
                                "movement", "band_steps", "status_changed"]
    by_id = {row["supplier_id"]: row for row in compared.iter_rows(named=True)}
    assert list(by_id) == ["S1", "S2", "S3", "S4", "S5", "S6", "S7"]
    assert [(by_id[s]["movement"], by_id[s]["band_steps"], by_id[s]["status_changed"]) for s in by_id] == [
        ("up", 1, True), ("up", 2, True), ("now scored", None, True), ("now insufficient", None, False),
        ("down", -1, True), ("same", None, False), ("same", 0, True),
    ]
    assert by_id["S5"]["score_a"] == by_id["S5"]["score_b"] == 88.0


def test_compare_scores_refuses_frames_that_do_not_match() -> None:
    a = scored({"S1": (88.0, "A", "approved")})
    with pytest.raises(ValueError, match="different suppliers"):
        compare_scores(a, scored({"S2": (88.0, "A", "approved")}), ["A", "B"])
    with pytest.raises(ValueError, match="band Gold is not in the band order"):
        compare_scores(a, scored({"S1": (88.0, "Gold", "approved")}), ["A", "B"])


def test_summary_counts_movements_status_changes_and_bands_under_each() -> None:
    a = scored({"S1": (72.0, "B", "conditional"), "S2": (88.0, "A", "approved"), "S3": (88.0, "A", "approved"),
                "S4": (None, None, "pending")})
    b = scored({"S1": (86.0, "A", "approved"), "S2": (88.0, "B", "conditional"), "S3": (95.0, "A", "approved"),
                "S4": (60.0, "C", "probation")})
    summary = summarise_comparison(compare_scores(a, b, ["A", "B", "C", "D"]), ["A", "B", "C", "D"])
    assert (summary.suppliers, summary.up, summary.down, summary.unchanged) == (4, 1, 1, 1)
    assert (summary.now_scored, summary.now_insufficient, summary.status_changes) == (1, 0, 3)
    assert summary.bands_a == {"A": 2, "B": 1, "C": 0, "D": 0, "insufficient data": 1}
    assert summary.bands_b == {"A": 2, "B": 1, "C": 1, "D": 0, "insufficient data": 0}


def test_rule_sets_naming_other_bands_are_refused() -> None:
    shipped = load_rule_set()
    renamed = SHIPPED.read_bytes().replace(b"band: A", b"band: Gold")
    with pytest.raises(RuleSetError, match=r"name different bands \(A, B, C, D vs Gold, B, C, D"):
        common_band_order(shipped, parse_rule_set(renamed, source_name="renamed.yaml"))
    assert common_band_order(shipped, shipped) == ("A", "B", "C", "D")


def test_metrics_are_measured_once_per_window_and_tolerance(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from suppliers.runs import choose_suppliers, with_current_status
    from suppliers.sources import load_sources
    from suppliers.validate import validate_inputs

    loaded = load_sources(workspace / "data")
    inputs = validate_inputs(loaded.raw, as_of=SAMPLE_END)
    selected = with_current_status(choose_suppliers(inputs.suppliers),
                                   pl.DataFrame(schema={"supplier_id": pl.String, "status": pl.String}))
    calls: list[tuple[int, int]] = []
    measure = rules.compare.measure_suppliers

    def counting(*args: object, window_days: int, tolerance_days: int, **kwargs: object) -> object:
        calls.append((window_days, tolerance_days))
        return measure(*args, window_days=window_days, tolerance_days=tolerance_days, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rules.compare, "measure_suppliers", counting)
    shipped = load_rule_set()
    text = SHIPPED.read_bytes()
    stricter = parse_rule_set(text.replace(b"from: 85", b"from: 90").replace(b"to: 85", b"to: 90"), source_name="s")
    tolerant = parse_rule_set(text.replace(b"on_time_tolerance_days: 2", b"on_time_tolerance_days: 5"),
                              source_name="t")
    short = parse_rule_set(text.replace(b"window_days: 365", b"window_days: 180"), source_name="w")

    first, second = score_under_rule_sets(selected, inputs, (shipped, stricter), as_of=SAMPLE_END)
    assert calls == [(365, 2)]  # bands differ only: one measurement serves both
    assert first["score"].to_list() == second["score"].to_list()
    calls.clear()
    score_under_rule_sets(selected, inputs, (shipped, tolerant, short), as_of=SAMPLE_END)
    assert calls == [(365, 2), (365, 5), (180, 2)]
    calls.clear()
    score_under_rule_sets(selected, inputs, (shipped, short), as_of=SAMPLE_END, window_days=90)
    assert calls == [(90, 2)]  # one window for both: one measurement


# --- the command


def untouched_state(workspace: Path) -> dict[str, object]:
    """What a comparison must leave as it was: the store (mtime, rows), outbox and reports folders."""
    db = workspace / "store" / "supplier-eval.db"
    state: dict[str, object] = {"store_files": sorted(p.name for p in (workspace / "store").glob("*"))
                                if (workspace / "store").exists() else None,
                                "outbox": (workspace / "outbox").exists(), "reports": (workspace / "reports").exists()}
    if db.exists():
        state["mtime"] = db.stat().st_mtime_ns
        with Store(f"sqlite:///{db}", create=False) as store:
            state["rows"] = [store.count(table) for table in (runs, evaluations, status_changes)]
    return state


def compare(workspace: Path, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(["evaluate", "--config", str(workspace / "supplier-eval.toml"), "--as-of", AS_OF, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table_rows(out: str) -> dict[str, list[str]]:
    """The table's rows by supplier id: [score A, band A, status A, score B, band B, status B, moved...]."""
    header, *lines = out.split("\n\n")[1].splitlines()
    assert header.split()[:3] == ["supplier", "name", "score"]
    cells_start = header.index("score A")  # the name column is as wide as the longest name (at most 28)
    return {line.split()[0]: line[cells_start:].split() for line in lines}


def test_compare_shipped_rules_with_a_stricter_copy_writes_nothing(workspace: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    stricter = stricter_copy(workspace)
    before = untouched_state(workspace)
    assert before == {"store_files": None, "outbox": False, "reports": False}
    code, out, err = compare(workspace, capsys, "--rules", str(stricter), "--compare-with", str(SHIPPED))
    assert code == 0, err
    assert untouched_state(workspace) == before  # no store created, no outbox, no reports
    assert f"What-if comparison as of {AS_OF}, 24 suppliers: nothing is stored or sent." in out
    assert f"A: {SHIPPED}  (ISO 9001:2015 clause 8.4 supplier evaluation 2026.1, 365-day window" in out
    assert f"B: {stricter}  (" in out
    assert "Current statuses from the supplier records (no evaluations recorded yet: the store does not exist)" in out

    rows = table_rows(out)
    assert len(rows) == 24
    for supplier, cells in rows.items():  # every supplier by hand: same score, band from the score
        score = None if cells[0] == "-" else float(cells[0])
        assert cells[3] == cells[0], supplier  # the metrics and scales are the same: only the bands moved
        assert (cells[1], cells[4]) == (band_of(score, 85) or "-", band_of(score, 90) or "-"), supplier
    # One supplier by hand: S0023 scores 87.7 — band A (85-100, approved) under the shipped rules, band B
    # (70-90, conditional) under the stricter copy: down one band, and its status changes.
    assert rows["S0023"] == ["87.7", "A", "approved", "87.7", "B", "conditional", "down,", "status", "changed"]
    # S0001 scores 89.3, also A -> B, but an expired certificate caps it at conditional under both: no change.
    assert rows["S0001"] == ["89.3", "A", "conditional", "89.3", "B", "conditional", "down"]
    moved_down = [s for s, cells in rows.items() if cells[6].startswith("down")]
    assert moved_down == ["S0001", "S0021", "S0023"]  # S0021 scores 89.4: A -> B as well
    assert ("Summary: 0 suppliers moved up a band, 3 down, 21 unchanged; 2 status changes\n"
            "Bands under A: A 17, B 0, C 1, D 4, insufficient data 2\n"
            "Bands under B: A 14, B 3, C 1, D 4, insufficient data 2\n") in out


def test_current_status_is_read_from_an_existing_store_which_is_left_untouched(
        workspace: Path, capsys: pytest.CaptureFixture) -> None:
    db = workspace / "store" / "supplier-eval.db"
    with Store(f"sqlite:///{db}") as store:  # S0015 has too little evidence to be scored: it keeps its status
        store.save_status_changes("key-1", "run-1", pl.DataFrame(
            {"supplier_id": ["S0015"], "from_status": ["pending"], "to_status": ["probation"], "reason": ["test"]}),
            as_of=SAMPLE_END, approved_by="tester")
    before = untouched_state(workspace)
    assert before["rows"] == [0, 0, 1]
    code, out, err = compare(workspace, capsys, "--rules", str(stricter_copy(workspace)), "--compare-with",
                             str(SHIPPED), "--supplier", "S0015", "--supplier", "S0023", "--no-email")
    assert code == 0, err
    assert untouched_state(workspace) == before  # same files, same mtime, same row counts
    assert f"Current statuses from the store (sqlite:///{db})" in out
    rows = table_rows(out)
    assert list(rows) == ["S0015", "S0023"]
    assert rows["S0015"] == ["-", "-", "probation", "-", "-", "probation", "same"]


def test_compare_with_alone_compares_the_settings_rules_with_the_file(workspace: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    stricter = stricter_copy(workspace)
    config = workspace / "supplier-eval.toml"
    config.write_text(config.read_text(encoding="utf-8") + '[rules]\nfile = "stricter.yaml"\n', encoding="utf-8")
    code, out, err = compare(workspace, capsys, "--compare-with", str(SHIPPED), "--format", "csv")
    assert code == 0, err
    frame = pl.read_csv(io.StringIO(out))
    assert frame.columns == ["supplier_id", "name", "current_status", "score_a", "band_a", "status_a", "score_b",
                             "band_b", "status_b", "movement", "band_steps", "status_changed"]
    assert frame.height == 24
    row = frame.filter(pl.col("supplier_id") == "S0023").row(0, named=True)
    assert (row["band_a"], row["band_b"], row["movement"], row["status_changed"]) == ("A", "B", "down", True)
    # Without a rule file in the settings, --compare-with alone compares the shipped rules with the file.
    config.write_text(config.read_text(encoding="utf-8").replace('[rules]\nfile = "stricter.yaml"\n', ""))
    code, out, _ = compare(workspace, capsys, "--compare-with", str(stricter))
    assert code == 0
    assert f"A: {stricter}" in out and "B: the shipped iso9001-8.4.yaml  (" in out
    assert "Summary: 3 suppliers moved up a band, 0 down, 21 unchanged; 2 status changes" in out
    assert not (workspace / "store").exists() and not (workspace / "outbox").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--compare-with", "{bad}"], "error: {bad}:"),
        (["--compare-with", str(SHIPPED), "--rules", "{bad}"], "error: {bad}:"),
        (["--compare-with", "{missing}"], "error: {missing}: rule file not found"),
        (["--compare-with", "{renamed}"], "error: --compare-with: the two rule sets name different bands"),
        (["--compare-with", str(SHIPPED), "--supplier", "S9999"], "error: --supplier: unknown supplier id 'S9999'"),
        (["--compare-with", str(SHIPPED), "--to", "me@example.org"], "error: --to: a comparison sends nothing"),
        (["--format", "csv"], "error: --format: only a comparison is printed"),
    ],
)
def test_comparison_errors_are_one_line_with_exit_2(workspace: Path, capsys: pytest.CaptureFixture,
                                                     args: list[str], message: str) -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    files = {"bad": workspace / "bad.yaml", "missing": workspace / "missing.yaml",
             "renamed": workspace / "renamed.yaml"}
    files["bad"].write_text(text.replace("weight: 30", "weight: 31", 1), encoding="utf-8")
    files["renamed"].write_text(text.replace("band: A", "band: Gold"), encoding="utf-8")
    filled = [a.format(**files) for a in args]
    code, out, err = compare(workspace, capsys, *filled)
    assert code == 2
    assert message.format(**files) in err
    assert err.count("\n") == 1 and "Traceback" not in err and out == ""
    assert not (workspace / "store").exists() and not (workspace / "outbox").exists()


def test_a_comparison_imports_no_prefect(workspace: Path) -> None:
    """The what-if runs in-process through the core: neither it nor its errors start (or import) Prefect."""
    stricter = stricter_copy(workspace)
    config = str(workspace / "supplier-eval.toml")
    cases = [["evaluate", "--config", config, "--as-of", AS_OF, "--rules", str(stricter), "--compare-with",
              str(SHIPPED)],
             ["evaluate", "--config", config, "--compare-with", str(workspace / "missing.yaml")]]
    script = (
        "import json, sys\n"
        "from flows.cli import main\n"
        "codes = [main(args) for args in json.loads(sys.argv[1])]\n"
        "prefect = sorted(m for m in sys.modules if m.split('.')[0] == 'prefect')\n"
        "print(json.dumps({'codes': codes, 'prefect': prefect}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, json.dumps(cases)], capture_output=True, text=True,
                            timeout=120, env=dict(os.environ), check=False, cwd=workspace)
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == {"codes": [0, 2], "prefect": []}
    assert "Summary: 0 suppliers moved up a band, 3 down" in result.stdout
    assert not (workspace / "store").exists() and not (workspace / "outbox").exists()
