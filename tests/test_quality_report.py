"""The data-quality report: counts per source and reason, example rows, the change since the previous run."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from test_templates import ALLOWED_CHILDREN, parse

from flows.cli import main
from reports.context import quarantine_summary_with_reasons
from reports.quality import (
    quality_attachment,
    quality_context,
    quality_subject,
    render_quality_report,
    with_quality_report,
)
from reports.render import _environment, render_digest
from suppliers.runs import RunRecord
from suppliers.store import Store
from suppliers.validate import QUARANTINE_SCHEMA, SUMMARY_SCHEMA

AS_OF = date(2026, 6, 30)
SCRIPT = '<script>alert("x")</script>'
RUN = {"run_id": "run-3", "trigger": "nightly", "requested_by": "schedule", "as_of": AS_OF,
       "read_from": "data folder /srv/exports", "read_at": "2026-07-01 02:00 UTC"}


def summary(rows: dict[str, tuple[str, int, int]]) -> pl.DataFrame:
    """kind -> (source, rows read, rows quarantined), as validation summarises a run."""
    return pl.DataFrame(
        [(kind, source, read, bad, bad / read) for kind, (source, read, bad) in rows.items()],
        schema=SUMMARY_SCHEMA, orient="row",
    )


def quarantine(rows: list[tuple[str, str, int, str | None, str | None, str, str]]) -> pl.DataFrame:
    """(source, kind, row, column, value, code, reason) per problem, as validation quarantines them."""
    return pl.DataFrame(rows, schema=QUARANTINE_SCHEMA, orient="row")


NOW = summary({
    "suppliers": ("suppliers.csv", 10, 1),
    "purchase_order_lines": ("lines.csv", 20, 3),
    "receipts": ("receipts.csv", 40, 8),
})
BAD_DATE = "not a date (expected YYYY-MM-DD)"
QUARANTINE = quarantine([
    ("suppliers.csv", "suppliers", 4, "criticality", "urgent", "not_allowed", "must be one of critical, major, minor"),
    ("lines.csv", "purchase_order_lines", 2, "quantity_ordered", "abc", "unparseable", "not a number"),
    ("lines.csv", "purchase_order_lines", 5, "quantity_ordered", "-1", "out_of_range", "quantity_ordered must be > 0"),
    ("lines.csv", "purchase_order_lines", 5, "supplier_id", "S9", "unknown_supplier",
     "unknown supplier_id 'S9' (not in suppliers.csv)"),  # row 5 fails twice: one row, two reasons
    ("lines.csv", "purchase_order_lines", 9, "supplier_id", "S8", "unknown_supplier",
     "unknown supplier_id 'S8' (not in suppliers.csv)"),
    # seven bad dates, not in row order; only the first five by row number are examples
    *[("receipts.csv", "receipts", row, "received_date", value, "unparseable", BAD_DATE)
      for row, value in [(13, "31/12/2025"), (3, SCRIPT), (1, "Smith & Sons"), (15, "tomorrow"), (7, " 2026-02-30 "),
                         (11, "2026-13-01"), (9, "=1+1")]],
    ("receipts.csv", "receipts", 20, "received_date", None, "missing", "required value is missing"),
])


def context(previous: pl.DataFrame | None = None, **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {"run": RUN, "stopped": False, "max_share": 0.25, **overrides}
    return quality_context(NOW, QUARANTINE, previous, **arguments)


# ---- counts ---------------------------------------------------------------------------------------------


def test_counts_per_source_are_the_summarys_rows_with_the_problems_behind_them() -> None:
    ctx = context()
    assert [(s["kind"], s["source"], s["rows_read"], s["rows_quarantined"], s["problems"]) for s in ctx["sources"]] == [
        ("suppliers", "suppliers.csv", 10, 1, 1),
        ("purchase_order_lines", "lines.csv", 20, 3, 4),  # row 5 has two problems
        ("receipts", "receipts.csv", 40, 8, 8),
    ]
    totals = ctx["totals"]
    counted = (totals["rows_read"], totals["rows_quarantined"], totals["rows_kept"], totals["problems"])
    assert counted == (70, 12, 58, 13)
    assert totals["share"] == pytest.approx(12 / 70)
    assert ctx["over"] == [] and not ctx["stopped"]


def test_reasons_are_grouped_by_source_code_and_family_and_count_rows() -> None:
    reasons = [(r["source"], r["code"], r["family"], r["rows"]) for r in context()["reasons"]]
    assert reasons == [  # sources in the summary's order; in each, most rows first, then by family
        ("suppliers.csv", "not_allowed", "must be one of critical, major, minor", 1),
        ("lines.csv", "unknown_supplier", "unknown supplier_id '…' (not in suppliers.csv)", 2),
        ("lines.csv", "out_of_range", "quantity_ordered must be > 0", 1),
        ("lines.csv", "unparseable", "quantity_ordered: not a number", 1),
        ("receipts.csv", "unparseable", f"received_date: {BAD_DATE}", 7),
        ("receipts.csv", "missing", "received_date: required value is missing", 1),
    ]


def test_reason_codes_are_counted_over_all_sources_with_their_meaning() -> None:
    codes = [(c["code"], c["rows"], c["sources"]) for c in context()["codes"]]
    assert codes == [
        ("unparseable", 8, ["lines.csv", "receipts.csv"]),
        ("unknown_supplier", 2, ["lines.csv"]),
        ("missing", 1, ["receipts.csv"]),
        ("not_allowed", 1, ["suppliers.csv"]),
        ("out_of_range", 1, ["lines.csv"]),
    ]
    assert context()["codes"][0]["meaning"] == "a cell's value is not of its column's type"


def test_at_most_five_example_rows_per_reason_the_first_by_row_number_with_values_as_written() -> None:
    dates = next(r for r in context()["reasons"] if r["code"] == "unparseable" and r["source"] == "receipts.csv")
    assert [(e["row"], e["value"]) for e in dates["examples"]] == [
        (1, "Smith & Sons"), (3, SCRIPT), (7, " 2026-02-30 "), (9, "=1+1"), (11, "2026-13-01")]
    assert dates["more"] == 2
    assert all(len(r["examples"]) <= 5 for r in context()["reasons"])
    missing = next(r for r in context()["reasons"] if r["code"] == "missing")
    assert missing["examples"] == [{"row": 20, "column": "received_date", "value": None, "more_chars": 0,
                                    "reason": "required value is missing"}]


def test_a_very_long_value_is_cut_and_says_how_much_is_left_out() -> None:
    long = quarantine([("receipts.csv", "receipts", 1, "received_date", "x" * 250, "unparseable", BAD_DATE)])
    ctx = quality_context(NOW, long, run=RUN, max_share=0.25)
    example = ctx["reasons"][0]["examples"][0]
    assert (example["value"], example["more_chars"]) == ("x" * 200, 50)
    assert "and 50 more characters" in render_quality_report(ctx).text


# ---- rendering ------------------------------------------------------------------------------------------


def test_values_are_escaped_in_html_and_raw_in_text() -> None:
    out = render_quality_report(context())
    assert SCRIPT not in out.html and "<script" not in out.html
    assert "&lt;script&gt;alert(" in out.html and "Smith &amp; Sons" in out.html
    assert f'"{SCRIPT}"' in out.text and '"Smith & Sons"' in out.text and '" 2026-02-30 "' in out.text
    assert "&lt;" not in out.text and "&amp;" not in out.text


def test_report_shows_the_header_counts_reasons_and_examples_in_both_parts() -> None:
    out = render_quality_report(context())
    for part in (out.html, out.text):
        assert "2026-06-30" in part and "2026-07-01 02:00 UTC" in part and "/srv/exports" in part
        assert "12 rows were quarantined and left out" in part and "the other 58" in part
        assert "17.14 %" in part  # 12 of 70
        assert f"received_date: {BAD_DATE}" in part and "unknown supplier_id '…' (not in suppliers.csv)" in part
        assert "and 2 more not shown" in part
        assert "tomorrow" not in part and "31/12/2025" not in part  # rows 13 and 15: not among the first five
    assert "(empty)" in out.text and "(empty)" in out.html  # the missing value of row 20


def test_a_run_stopped_for_bad_data_says_nothing_was_scored_or_sent() -> None:
    out = render_quality_report(context(stopped=True, max_share=0.15))  # receipts: 8 of 40 = 20 %
    for part in (out.html, out.text):
        assert "nothing was scored or sent" in part.lower()
        assert "receipts.csv (receipts): 20.00 % of its rows quarantined (8 of 40), over the limit of 15.00 %" in part
    ok = render_quality_report(context())
    assert "nothing was scored or sent" not in ok.text.lower() and "OVER THE LIMIT" not in ok.text


def test_a_check_with_too_many_bad_rows_says_an_evaluation_would_stop() -> None:
    out = render_quality_report(context(stopped=True, max_share=0.15, run={"trigger": "validate"}))
    for part in (out.html, out.text):
        assert "an evaluation of these records would stop here" in part
        assert "Nothing would be scored or sent" in part
        assert "nothing was scored or sent" not in part


def test_html_is_laid_out_as_written_and_its_css_inlined() -> None:
    for ctx in (context(), context(stopped=True, max_share=0.1), quality_context(
            NOW.clear(), QUARANTINE.clear(), run={}, max_share=0.2)):
        tree = parse(_environment().get_template("data_quality.html.j2").render(ctx))
        misplaced = [f"<{e.tag}> in <{e.parent.tag}> line {e.line}" for e in tree.elements
                     if e.parent is not None and e.parent.tag in ALLOWED_CHILDREN
                     and e.tag not in ALLOWED_CHILDREN[e.parent.tag]]
        assert misplaced == [] and tree.stray_text == []
        html = render_quality_report(ctx).html
        head, style, rest = html.partition("<style>\n@media only screen and (max-width: 480px)")  # the phone layout
        assert style and "<style" not in head + rest and 'style="' in html


def test_nothing_quarantined_renders_without_reasons() -> None:
    clean = summary({"suppliers": ("suppliers.csv", 10, 0)})
    out = render_quality_report(quality_context(clean, QUARANTINE.clear(), run=RUN, max_share=0.2))
    for part in (out.html, out.text):
        assert "No row was quarantined" in part and "Example rows" not in part


def test_subject_is_one_line_and_says_what_matters() -> None:
    assert quality_subject(context()) == "Data quality as of 2026-06-30: 12 of 70 rows quarantined (17.14 %)"
    hostile = summary({"receipts": ("receipts.csv\r\nBcc: all@example.org", 40, 8)})
    ctx = quality_context(hostile, QUARANTINE, run=RUN, stopped=True, max_share=0.15)
    subject = quality_subject(ctx)
    assert "\n" not in subject and "\r" not in subject
    assert subject == ("Data quality as of 2026-06-30: run stopped for bad data, receipts.csv Bcc: all@example.org "
                       "20.00 % quarantined (limit 15.00 %)")


# ---- trend against the previous run -----------------------------------------------------------------------


def run_record(run_id: str, as_of: date) -> RunRecord:
    return RunRecord(run_id=run_id, run_key=f"key-{run_id}", trigger="nightly", requested_by="schedule", as_of=as_of,
                     window_days=365, selection=["*active*"], rule_set_name="rules", rule_set_version="1",
                     rule_set_hash="h" * 64, input_fingerprint="f" * 64, code_version="0.1.0")


def record_run(store: Store, run_id: str, as_of: date, kinds: dict[str, tuple[str, int, int]]) -> None:
    """A run and its quarantine summary, saved the way the flow saves them."""
    store.start_run(run_record(run_id, as_of))
    store.save_quarantine_summary(f"key-{run_id}", run_id, quarantine_summary_with_reasons(summary(kinds), QUARANTINE))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(f"sqlite:///{tmp_path / 'store.db'}") as opened:
        record_run(opened, "run-1", date(2026, 4, 30), {"suppliers": ("suppliers.csv", 10, 0),
                                                        "receipts": ("receipts.csv", 30, 6)})
        record_run(opened, "run-2", date(2026, 5, 31), {"suppliers": ("suppliers.csv", 10, 2),
                                                        "purchase_order_lines": ("old-lines.csv", 20, 3),
                                                        "receipts": ("receipts.csv", 35, 5)})
        record_run(opened, "run-3", AS_OF, {"suppliers": ("suppliers.csv", 10, 1),
                                            "purchase_order_lines": ("lines.csv", 20, 3),
                                            "receipts": ("receipts.csv", 40, 8)})
        yield opened


def test_the_previous_summary_is_the_latest_run_before_this_one(store: Store) -> None:
    before_3 = store.previous_quarantine_summary(before_run_id="run-3")
    assert before_3["run_id"].unique().to_list() == ["run-2"]
    assert before_3.select("kind", "rows_read", "rows_quarantined").rows() == [
        ("suppliers", 10, 2), ("purchase_order_lines", 20, 3), ("receipts", 35, 5)]
    assert before_3["as_of"].to_list()[0] == date(2026, 5, 31)
    assert store.previous_quarantine_summary(before_run_id="run-2")["run_id"].unique().to_list() == ["run-1"]
    assert store.previous_quarantine_summary(before_run_id="run-1").is_empty()
    assert store.previous_quarantine_summary()["run_id"].unique().to_list() == ["run-3"]  # latest of all
    assert store.previous_quarantine_summary(before_run_id="not-recorded")["run_id"].unique().to_list() == ["run-3"]


def test_trend_compares_rows_quarantined_now_with_the_previous_run(store: Store) -> None:
    ctx = context(store.previous_quarantine_summary(before_run_id="run-3"))
    trend = ctx["trend"]
    assert trend["available"] and trend["run_id"] == "run-2" and trend["as_of"] == "2026-05-31"
    assert [(r["kind"], r["previous_rows_quarantined"], r["rows_quarantined"], r["change_text"], r["direction"])
            for r in trend["rows"]] == [
        ("suppliers", 2, 1, "\u22121", "better"),
        ("purchase_order_lines", 3, 3, "±0", "same"),
        ("receipts", 5, 8, "+3", "worse"),
    ]
    assert (trend["total"]["previous"], trend["total"]["now"], trend["total"]["change_text"]) == (10, 12, "+2")
    out = render_quality_report(ctx)
    assert "was old-lines.csv" in out.html  # the lines now come from another file
    for part in (out.html, out.text):
        assert "as of 2026-05-31" in part and "First run" not in part


def test_a_source_read_in_only_one_of_the_runs_has_no_change(store: Store) -> None:
    ctx = context(store.previous_quarantine_summary(before_run_id="run-2"))  # run-1 read no order lines
    lines = next(r for r in ctx["trend"]["rows"] if r["kind"] == "purchase_order_lines")
    assert (lines["previous_rows_quarantined"], lines["rows_quarantined"], lines["change_text"]) == (None, 3, None)
    assert "not read" in render_quality_report(ctx).text


def test_without_a_previous_run_the_report_says_it_is_the_first(store: Store) -> None:
    for previous in (None, store.previous_quarantine_summary(before_run_id="run-1")):
        ctx = context(previous)
        assert not ctx["trend"]["available"]
        out = render_quality_report(ctx)
        for part in (out.html, out.text):
            assert "First run: no earlier run's summary is recorded" in part
    unreadable = render_quality_report(context(previous_unavailable="cannot open the store (locked)"))
    assert "No previous run to compare with (cannot open the store (locked))" in unreadable.text
    assert "First run" not in unreadable.text


# ---- the digest and its attachment --------------------------------------------------------------------------


def test_the_report_is_an_html_attachment_and_the_digest_says_it_is_attached() -> None:
    rendered = render_quality_report(context())
    name, data, mime = quality_attachment(rendered)
    assert (name, mime) == ("data-quality.html", "text/html") and data.decode("utf-8") == rendered.html
    from test_templates import digest

    plain = render_digest(digest(False))
    attached = render_digest(with_quality_report(digest(False), name))
    for before, after in ((plain.html, attached.html), (plain.text, attached.text)):
        assert "Full data-quality report attached" not in before
        assert "Full data-quality report attached" in after and "data-quality.html" in after
        assert "bad date (3 rows)" in after  # the section's per-source top reasons stay


def test_top_reasons_count_rows_not_problems() -> None:
    twice = quarantine([("lines.csv", "purchase_order_lines", 5, "supplier_id", "S9", "unknown_supplier",
                         "unknown supplier_id 'S9' (not in suppliers.csv)")] * 2)
    top = quarantine_summary_with_reasons(summary({"purchase_order_lines": ("lines.csv", 20, 1)}), twice)
    assert top["top_reasons"].to_list() == [["unknown supplier_id '…' (not in suppliers.csv) (1 rows)"]]


# ---- supplier-eval validate --report ----------------------------------------------------------------------


def append_bad_receipt(workspace: Path) -> None:
    with (workspace / "data" / "receipts.csv").open("a", encoding="utf-8") as handle:
        handle.write('RBAD,PO0000001,1,<b>soon</b> & "later",5,5,0\n')


def test_validate_report_writes_html_and_text_and_creates_no_store(workspace: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    append_bad_receipt(workspace)
    report = workspace / "out" / "dq.html"
    assert main(["validate", "--config", str(workspace / "supplier-eval.toml"), "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "receipts.csv" in out and "1 quarantined" in out  # the command's own output is kept
    assert f"Data-quality report written to {report}" in out
    html, text = report.read_text(encoding="utf-8"), report.with_suffix(".txt").read_text(encoding="utf-8")
    assert '&lt;b&gt;soon&lt;/b&gt; &amp; &#34;later&#34;' in html and "<b>soon" not in html
    assert '"<b>soon</b> & "later""' in text
    assert "received_date: not a date" in text and "the store does not exist" in text
    assert not (workspace / "store").exists()  # validate never creates the store


def test_validate_report_compares_with_the_last_run_in_the_store(workspace: Path) -> None:
    append_bad_receipt(workspace)
    (workspace / "store").mkdir()
    with Store(f"sqlite:///{workspace / 'store' / 'supplier-eval.db'}") as existing:
        record_run(existing, "run-1", date(2026, 5, 31), {"receipts": ("receipts.csv", 100, 4)})
    report = workspace / "dq.html"
    assert main(["validate", "--config", str(workspace / "supplier-eval.toml"), "--report", str(report)]) == 0
    text = report.with_suffix(".txt").read_text(encoding="utf-8")
    assert "previous recorded run (as of 2026-05-31" in text
    trend = text.split("Change since the previous run")[1]
    receipts = next(line for line in trend.splitlines() if line.startswith("receipts "))
    assert receipts.split()[-3:] == ["4", "1", "\u22123"]  # previous, now, change


def test_validate_report_is_written_when_there_are_too_many_bad_rows(workspace: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    append_bad_receipt(workspace)
    config = workspace / "supplier-eval.toml"
    config.write_text(config.read_text(encoding="utf-8") + "[validation]\nmax_quarantine_share = 0.0001\n",
                      encoding="utf-8")
    report = workspace / "dq.html"
    assert main(["validate", "--config", str(config), "--report", str(report)]) == 1
    assert "over the 0.0% threshold" in capsys.readouterr().err  # the error is still the command's answer
    text = report.with_suffix(".txt").read_text(encoding="utf-8")
    assert "TOO MANY BAD ROWS: an evaluation of these records would stop here." in text
    assert "OVER THE LIMIT" in next(line for line in text.splitlines() if line.startswith("receipts "))
