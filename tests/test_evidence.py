"""The audit evidence pack: `supplier-eval evidence --from --to` writes one printable HTML document and a workbook
of the same tables, holding the records of the period and nothing else, escaped and spreadsheet-safe."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from conftest import SAMPLE_END, fresh_database
from test_store import asl_results, evaluated, run_record

import reports.evidence
from flows.cli import main
from rules.loader import default_rules_path
from suppliers.store import Store

HOSTILE = '=HYPERLINK("http://evil.example","x")</script><script>alert(1)</script>'
RULES = "h" * 64
WHAT_IF_RULES = "w" * 64
RULE_TEXT = "name: rules\nversion: '1'\n# </script><script>alert(2)</script> & <b>bold</b>\ncriteria: []\n"
START, END = date(2026, 3, 1), date(2026, 6, 30)
CRITERIA = [{"name": "On-time delivery", "measured": True, "points": 91.94, "effective_weight": 30.0},
            {"name": "OTIF", "measured": False, "points": None, "effective_weight": 20.0},
            {"name": "Rejects", "measured": True, "points": 80.0, "effective_weight": 37.5}]
SHEETS = ["Cover", "Rule sets used", "Rule set text", "Approved supplier list", "ASL status changes",
          "Proposed changes", "Manual decisions", "Evaluations", "Actions", "Runs", "Data quality"]


def save_run(store: Store, key: str, as_of: date, scores: dict[str, float | None], *, changes=(), proposals=None,
             actions=None, rule_hash: str = RULES, official: bool = True, quality: bool = False) -> None:
    run_id = f"run-{key}"
    store.start_run(replace(run_record(run_id, key, as_of), rule_set_hash=rule_hash, changes_asl=official))
    outcomes = {s: ("changed" if s in dict((c[0], c) for c in changes) else "unchanged", "approved") for s in scores}
    if proposals:
        outcomes |= {s: ("proposed", to) for s, (_, to) in proposals.items()}
    asl = asl_results(outcomes, proposals=proposals, actions=actions)
    asl = replace(asl, seen=asl.seen.with_columns(name=pl.when(pl.col("supplier_id") == "S1").then(pl.lit(HOSTILE))
                                                  .otherwise(pl.format("Name {}", "supplier_id"))))
    summary = pl.DataFrame({"kind": ["receipts"] if quality else [], "source": ["receipts.csv"] if quality else [],
                            "rows_read": [200] if quality else [], "rows_quarantined": [3] if quality else [],
                            "top_reasons": [["unparseable: 2", "unknown_line: 1"]] if quality else []},
                           schema={"kind": pl.String, "source": pl.String, "rows_read": pl.Int64,
                                   "rows_quarantined": pl.Int64, "top_reasons": pl.List(pl.String)})
    change_frame = pl.DataFrame([{"supplier_id": s, "from_status": f, "to_status": t, "reason": r}
                                 for s, f, t, r in changes],
                                schema={"supplier_id": pl.String, "from_status": pl.String, "to_status": pl.String,
                                        "reason": pl.String})
    frame = evaluated(scores).with_columns(pl.Series("criteria", [CRITERIA] * len(scores)))
    store.save_results(key, run_id, evaluated=frame, changes=change_frame, quarantine_summary=summary,
                       as_of=as_of, window_start=as_of - timedelta(days=364), rule_set_hash=rule_hash,
                       approved_by="supplier-eval adhoc run (tester)", asl=asl if official else None)
    store.finish_run(run_id, status="succeeded", evaluations_added=len(scores))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def config(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with runs before, in and after the period 2026-03-01..06-30; in it: one official run as of 04-30
    (S1 D proposed to disqualified, S2 into probation with a SCAR, a data-quality summary) under rules whose
    text is recorded, a what-if run as of 05-31 under other rules; the proposal approved and the SCAR closed by
    Q. Manager. Before: a run as of 02-27; after: one as of 08-31 (a new supplier S3)."""
    folder = tmp_path_factory.mktemp(f"evidence-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'store.db'}"
    else:
        url = fresh_database(request.getfixturevalue("postgres_url"))
    path = folder / "supplier-eval.toml"
    path.write_text(f'[store]\nurl = "{url}"\n[output]\ndir = "out"\n[mail]\nofficers = ["qm@example.org"]\n'
                    '[organisation]\nname = "Acme <Instruments> GmbH"\nscope = "Purchasing, plant 2"\n',
                    encoding="utf-8")
    with Store(url) as store:
        save_run(store, "k0", date(2026, 2, 27), {"S1": 95.0},
                 changes=[("S1", "pending", "approved", "score 95.0 puts it in band A")])
        store.record_rule_set(name="rules", version="1", content_hash=RULES, text=RULE_TEXT)
        save_run(store, "k1", date(2026, 4, 30), {"S1": 40.0, "S2": 55.0}, quality=True,
                 changes=[("S2", "approved", "probation", "score 55.0 puts it in band C")],
                 proposals={"S1": ("approved", "disqualified")}, actions=[("S2", "scar")])
        save_run(store, "w", date(2026, 5, 31), {"S1": 99.0}, rule_hash=WHAT_IF_RULES, official=False)
    assert main(["asl", "approve", "S1", "--by", "Q. Manager", "--reason", "second D confirmed",
                 "--config", str(path)]) == 0
    assert main(["actions", "close", "SCAR-0001", "--by", "Q. Manager", "--effective", "yes", "--note", "8D accepted",
                 "--config", str(path)]) == 0
    with Store(url) as store:
        save_run(store, "k2", date(2026, 8, 31), {"S1": 30.0, "S2": 91.0, "S3": 88.0},
                 changes=[("S2", "probation", "approved", "score 91.0 puts it in band A")])
    return path


class Sections(HTMLParser):
    """Each <section id>'s heading and its data table's rows, as the text of their cells."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, dict] = {}
        self.current: dict | None = None
        self.cell: list[str] | None = None
        self.in_heading = False
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        if tag == "section":
            self.current = self.sections.setdefault(dict(attrs)["id"], {"heading": "", "rows": [], "text": ""})
        elif tag == "h2" and self.current is not None:
            self.in_heading = True
        elif tag == "tr" and self.current is not None and "tbody" in self.tags:
            self.current["rows"].append([])
        elif tag == "td" and self.current is not None and "tbody" in self.tags:
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        self.tags.pop()
        if tag == "td" and self.cell is not None and self.current is not None:
            self.current["rows"][-1].append("".join(self.cell))
            self.cell = None
        elif tag == "h2":
            self.in_heading = False
        elif tag == "section":
            self.current = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)
        if self.current is not None:
            self.current["text"] += data
            if self.in_heading:
                self.current["heading"] += data


def run_evidence(config: Path, out: Path, start: date = START, end: date = END) -> tuple[str, Path, str]:
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["evidence", "--from", start.isoformat(), "--to", end.isoformat(), "--config", str(config),
                     "--out", str(out)]) == 0
    html_path, workbook_path = printed.getvalue().splitlines()[-2:]
    assert Path(html_path).name == f"evidence_{start}_{end}.html"
    return Path(html_path).read_text(encoding="utf-8"), Path(workbook_path), printed.getvalue()


def sections(html: str) -> dict[str, dict]:
    parser = Sections()
    parser.feed(html)
    return parser.sections


def column(rows: list[list[str]], index: int) -> list[str]:
    return [row[index] for row in rows]


def test_the_pack_holds_the_period_only_with_approvers_reasons_and_counts(config: Path, tmp_path: Path) -> None:
    html, _, printed = run_evidence(config, tmp_path)
    assert printed.startswith("Evidence 2026-03-01 to 2026-06-30: 2 rule sets, 2 suppliers on the ASL, 2 status "
                              "changes, 1 proposal, 0 manual decisions, 3 evaluations, 2 actions, 2 runs, 1 "
                              "data-quality summary\n")
    found = sections(html)
    assert list(found) == ["rule-sets", "asl", "status-history", "proposals", "manual-decisions", "evaluations",
                           "actions", "runs", "data-quality", "rule-texts"]
    assert [found[s]["heading"] for s in ("evaluations", "runs")] == ["6. Evaluations (3)", "8. Runs (2)"]
    # evaluations as of 02-27 and 08-31 are outside the period; the what-if one is in it, marked as such
    evaluations = found["evaluations"]["rows"]
    assert [(row[0], row[1], row[4], row[11]) for row in evaluations] == [
        ("2026-04-30", "S1", "40.0", "official"), ("2026-04-30", "S2", "55.0", "official"),
        ("2026-05-31", "S1", "99.0", "what-if")]
    assert evaluations[0][10] == "On-time delivery 91.9 × 30; OTIF not measured; Rejects 80.0 × 37.5"
    assert "2026-02-27" not in found["evaluations"]["text"] and "2026-08-31" not in html
    # the ASL at the end of the period: S1 disqualified by Q. Manager's approval, S2 on probation (not yet back)
    asl = found["asl"]["rows"]
    assert [(row[0], row[2], row[3], row[4], row[5]) for row in asl] == [
        ("S1", "disqualified", "2026-04-30", "score 40.0; approved: second D confirmed", "Q. Manager"),
        ("S2", "probation", "2026-04-30", "score 55.0 puts it in band C", "supplier-eval adhoc run (tester)")]
    history = found["status-history"]["rows"]
    assert [(row[1], row[4], row[6], row[7]) for row in history] == [
        ("S1", "disqualified", "Q. Manager", "approved proposal"),
        ("S2", "probation", "supplier-eval adhoc run (tester)", "evaluation run")]
    (proposal,) = found["proposals"]["rows"]
    assert (proposal[7], proposal[8], proposal[9]) == ("approved", "Q. Manager", "second D confirmed")
    actions = {row[0]: row for row in found["actions"]["rows"]}
    assert sorted(actions) == ["BLOCK-0002", "SCAR-0001"]
    scar = actions["SCAR-0001"]
    assert (scar[8], scar[10], scar[11], scar[12]) == ("closed", "Q. Manager", "yes", "8D accepted")
    runs = found["runs"]["rows"]
    assert column(runs, 0) == ["run-k1", "run-w"] and column(runs, 4) == ["official", "what-if"]
    assert column(runs, 10) == ["f" * 64] * 2 and column(runs, 9) == [RULES, WHAT_IF_RULES]
    (quality,) = found["data-quality"]["rows"]
    assert quality[2:] == ["receipts", "receipts.csv", "200", "3", "1.5 %", "unparseable: 2; unknown_line: 1"]
    rule_sets = {row[0]: row for row in found["rule-sets"]["rows"]}
    assert (rule_sets[RULES][3], rule_sets[WHAT_IF_RULES][3]) == ("yes", "no")  # a what-if's rules are not in force
    assert rule_sets[WHAT_IF_RULES][8].startswith("not recorded")
    assert "criteria: []" in found["rule-texts"]["text"]  # the recorded full text, as written
    assert "<td>Acme &lt;Instruments&gt; GmbH</td>" in html and "<td>Purchasing, plant 2</td>" in html


def test_the_workbook_has_one_sheet_per_table_with_the_stores_counts(config: Path, tmp_path: Path) -> None:
    _, workbook, _ = run_evidence(config, tmp_path)
    book = pl.read_excel(workbook, sheet_id=0)
    assert list(book) == SHEETS
    url = next(line for line in config.read_text().splitlines() if line.startswith("url")).split('"')[1]
    with Store(url, create=False) as store:
        with store.engine.connect() as connection:
            in_period = connection.execute(sa.text(
                "SELECT count(*) FROM evaluations WHERE as_of BETWEEN :a AND :b"), {"a": START, "b": END}).scalar()
    assert book["Evaluations"].height == in_period == 3
    heights = {sheet: frame.height for sheet, frame in book.items()}
    assert heights | {"Cover": 0} == {
        "Cover": 0, "Rule sets used": 2, "Rule set text": 5 + 1, "Approved supplier list": 2, "ASL status changes": 2,
        "Proposed changes": 1, "Manual decisions": 0, "Evaluations": 3, "Actions": 2, "Runs": 2, "Data quality": 1}
    text = book["Rule set text"].filter(pl.col("rule_set_hash") == RULES)
    assert text["line"].fill_null("").to_list() == RULE_TEXT.split("\n")  # the full text, one line per row
    assert text["line_no"].to_list() == list(range(1, 6))
    evaluations = book["Evaluations"]
    assert evaluations["as_of"].dtype == pl.Date and evaluations["score"].to_list() == [40.0, 55.0, 99.0]
    cover = dict(book["Cover"].rows())
    assert (cover["organisation"], cover["from"], cover["to"], cover["Evaluations"]) == (
        "Acme <Instruments> GmbH", "2026-03-01", "2026-06-30", "3 rows")


def test_hostile_names_and_rule_text_are_escaped_and_spreadsheet_safe(config: Path, tmp_path: Path) -> None:
    html, workbook, _ = run_evidence(config, tmp_path)
    assert "<script" not in html.lower() and "alert(1)</script>" not in html
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html  # the name, shown as text
    assert "# &lt;/script&gt;&lt;script&gt;alert(2)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in html
    names = pl.read_excel(workbook, sheet_name="Approved supplier list")["name"].to_list()
    assert names == ["'" + HOSTILE, "Name S2"]  # a formula in a cell is only text


def test_an_empty_period_still_writes_a_valid_document_that_says_so(config: Path, tmp_path: Path) -> None:
    html, workbook, printed = run_evidence(config, tmp_path, date(2025, 1, 1), date(2025, 12, 31))
    assert "no records in this period" in printed
    found = sections(html)
    assert "No records in this period." in html
    assert all(not section["rows"] for section in found.values())
    assert found["evaluations"]["heading"] == "6. Evaluations (0)" and "None in this period." in found["runs"]["text"]
    book = pl.read_excel(workbook, sheet_id=0)
    assert list(book) == SHEETS and all(frame.height == 0 for name, frame in book.items() if name != "Cover")
    assert dict(book["Cover"].rows())["Evaluations"] == "0 rows"


def test_a_decision_taken_in_the_period_counts_even_when_what_it_decided_is_older(config: Path,
                                                                                 tmp_path: Path) -> None:
    today = datetime.now(UTC).date()  # the fixture approved the 04-30 proposal and closed the SCAR today
    html, _, _ = run_evidence(config, tmp_path, today, today)
    found = sections(html)
    (proposal,) = found["proposals"]["rows"]
    assert (proposal[0], proposal[1], proposal[8]) == ("1", "2026-04-30", "Q. Manager")
    (action,) = found["actions"]["rows"]  # closed today; BLOCK-0002, raised 04-30 and open, is not in the period
    assert (action[0], action[4], action[9]) == ("SCAR-0001", "2026-06-30", today.isoformat())
    assert not found["status-history"]["rows"] and not found["evaluations"]["rows"]


def test_the_same_store_and_period_give_the_same_tables(config: Path, tmp_path: Path) -> None:
    first_html, first, _ = run_evidence(config, tmp_path / "a")
    second_html, second, _ = run_evidence(config, tmp_path / "b")
    one, two = pl.read_excel(first, sheet_id=0), pl.read_excel(second, sheet_id=0)
    for sheet in SHEETS[1:]:
        assert one[sheet].equals(two[sheet]), sheet
    assert sections(first_html)["evaluations"] == sections(second_html)["evaluations"]


def test_many_evaluations_are_summarised_per_supplier_in_the_html_only(
        config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reports.evidence, "HTML_ROWS", 2)
    html, workbook, _ = run_evidence(config, tmp_path)
    found = sections(html)["evaluations"]
    assert found["heading"] == "6. Evaluations (3)"
    assert "3 evaluations are too many to print: one row per supplier" in found["text"]
    # supplier, name, evaluations, first, last, lowest, highest, last score, band, status
    assert [(row[0], row[2], row[3], row[4], row[5], row[6]) for row in found["rows"]] == [
        ("S1", "2", "2026-04-30", "2026-05-31", "40.0", "99.0"),
        ("S2", "1", "2026-04-30", "2026-04-30", "55.0", "55.0")]
    assert pl.read_excel(workbook, sheet_name="Evaluations").height == 3


def test_bad_periods_and_a_missing_store_are_one_line_errors(config: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    code = main(["evidence", "--from", "2026-06-30", "--to", "2026-03-01", "--config", str(config), "--out",
                 str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "the range ends (2026-03-01) before it starts" in err
    assert main(["evidence", "--from", "2026-13-01", "--to", "2026-03-01", "--config", str(config)]) == 2
    assert "is not a date" in capsys.readouterr().err
    missing = tmp_path / "none.toml"
    missing.write_text('[store]\nurl = "sqlite:///nothing.db"\n', encoding="utf-8")
    code = main(["evidence", "--from", "2026-01-01", "--to", "2026-03-01", "--config", str(missing)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "the store does not exist" in err
    assert not list(tmp_path.glob("evidence_*"))


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_real_runs_record_their_rule_text_and_the_pack_shows_them(workspace: Path) -> None:
    config = workspace / "supplier-eval.toml"
    for as_of in (date(2026, 3, 31), SAMPLE_END):
        assert main(["evaluate", "--config", str(config), "--as-of", as_of.isoformat(), "--no-email"]) == 0
    html, workbook, _ = run_evidence(config, workspace / "audit", date(2026, 4, 1), SAMPLE_END)
    found = sections(html)
    with Store(f"sqlite:///{workspace / 'store' / 'supplier-eval.db'}", create=False) as store:
        history = store.evaluation_history(limit=1000)
        (run,) = store.runs_frame().filter(pl.col("as_of") == SAMPLE_END).to_dicts()
    stored = history.filter(pl.col("as_of") == SAMPLE_END).height
    assert stored == 24 and len(found["evaluations"]["rows"]) == stored
    assert set(column(found["evaluations"]["rows"], 0)) == {SAMPLE_END.isoformat()}  # 2026-03-31 is outside
    assert column(found["runs"]["rows"], 10) == [run["input_fingerprint"]]
    (rule_set,) = found["rule-sets"]["rows"]
    assert rule_set[8].startswith("recorded by the run that first used it")
    assert default_rules_path().read_text(encoding="utf-8") in found["rule-texts"]["text"]  # whole, as written
    assert pl.read_excel(workbook, sheet_name="Evaluations").height == stored
