"""Explanations an officer believes: why each line is not on time, the records behind the metrics as an
attachment, and the change since the previous evaluation with its main causes (supplier report and digest).

The change, by hand, with the shipped rules (on time 30: 0.70 → 0, 0.98 → 100; OTIF 20: 0.60 → 0, 0.95 → 100;
rejects per million 30: ≤ 1000 → 100; mean days late 20: 20 → 0, 2 → 100, over at least 3 late lines). S1 as of
2026-03-31 and as of 2026-06-30:

| criterion       | 2026-03-31                      | 2026-06-30                      | part of the change |
|-----------------|---------------------------------|---------------------------------|--------------------|
| on time         | 91 % → 75 points → 22.50        | 84 % → 50 points → 15.00        | −7.50              |
| OTIF            | 90 % → 85.7 points → 17.14      | 85 % → 71.4 points → 14.29      | −2.85              |
| rejects         | 500 ppm → 100 points → 30.00    | 500 ppm → 100 points → 30.00    | 0                  |
| mean days late  | 5 days → 83.3 points → 16.67    | 5 days → 83.3 points → 16.67    | 0                  |
| score           | 86.31 → 86.3                    | 75.96 → 76.0                    | −10.3              |

S2 loses its mean-days-late criterion (2 late lines, 3 needed): on time, OTIF and rejects (all 100 points) now
count 37.5, 25 and 37.5 instead of 30, 20 and 30: 100 − 16.67 → 100; the lateness part is −16.67, and each of
the others gains 100 × (weight now − weight then) / 100: +7.5, +5.0, +7.5.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from test_metrics import AS_OF as LINES_AS_OF
from test_metrics import EMPTY_FEEDBACK, EMPTY_NCR, LINES, RECEIPTS
from test_scoring import metrics_row

from reports.bundle import AslFollowUp, DataQuality, records_file_name, write_run_reports
from reports.context import asl_follow_up_context, change_context, digest_context, supplier_context
from reports.render import render_digest, render_supplier_report
from rules import metrics
from rules.decide import assemble_evaluations, change_causes, decide
from rules.loader import load_rule_set
from rules.scoring import score_suppliers
from suppliers.runs import RunRecord
from suppliers.validate import QUARANTINE_SCHEMA, SUMMARY_SCHEMA

RULES = load_rule_set()
ACTION_SCHEMA = {"number": pl.Int64, "kind": pl.String, "supplier_id": pl.String, "name": pl.String,
                 "raised_on": pl.Date, "due": pl.Date, "owner": pl.String, "description": pl.String}
THEN, NOW = date(2026, 3, 31), date(2026, 6, 30)
ON_TIME, OTIF = "On-time delivery", "Delivered on time and in full (OTIF)"
QUALITY, LATENESS = "Quality of goods received (rejects per million)", "Lateness when late (mean days)"
RUN = {"run_id": "run-1", "trigger": "nightly", "requested_by": None, "generated_at": "2026-06-30 02:00 UTC",
       "code_version": "0.1.0", "what_if": False}
RULE_SET = {"name": RULES.name, "version": RULES.version, "content_hash": RULES.content_hash}
BANDS = [{"band": b.band, "status": b.status, "action": RULES.action_for(b.status)} for b in RULES.bands]
NO_PREVIOUS = pl.DataFrame(schema={"supplier_id": pl.String, "previous_as_of": pl.Date, "previous_score": pl.Float64,
                                   "previous_band": pl.String})


def selected(*ids: str) -> pl.DataFrame:
    return pl.DataFrame({
        "supplier_id": list(ids), "name": [f"Supplier {i}" for i in ids], "category": ["parts"] * len(ids),
        "criticality": ["major"] * len(ids), "owner_email": ["buyer@example.org"] * len(ids),
        "certificate_expiry": [None] * len(ids), "current_status": ["approved"] * len(ids),
    }, schema_overrides={"certificate_expiry": pl.Date, "owner_email": pl.String})


def evaluate(rows: list[dict], as_of: date, previous: pl.DataFrame = NO_PREVIOUS) -> pl.DataFrame:
    chosen = selected(*(row["supplier_id"] for row in rows))
    scored = score_suppliers(chosen, pl.DataFrame(rows, infer_schema_length=None), RULES, as_of=as_of)
    return assemble_evaluations(scored, RULES, previous)


def as_previous(evaluated: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """What ``Store.previous_evaluations`` reads back: the criteria as stored, JSON text."""
    return evaluated.select("supplier_id", previous_as_of=pl.lit(as_of), previous_score="score",
                            previous_band="band", previous_criteria=pl.Series(
                                [json.dumps(c) for c in evaluated["criteria"].to_list()], dtype=pl.String))


BEFORE = [metrics_row("S1", on_time_rate=0.91, otif_rate=0.90, ppm_rejected=500.0, mean_days_late=5.0),
          metrics_row("S2", mean_days_late=5.0), metrics_row("S3")]
AFTER = [metrics_row("S1", on_time_rate=0.84, otif_rate=0.85, ppm_rejected=500.0, mean_days_late=5.0),
         metrics_row("S2", mean_days_late=5.0, late_lines=2), metrics_row("S3")]


@pytest.fixture(scope="module")
def changed() -> dict[str, dict]:
    then = evaluate(BEFORE, THEN)
    now = evaluate(AFTER, NOW, as_previous(then, THEN))
    return {row["supplier_id"]: row for row in now.to_dicts()}


def test_the_change_is_explained_by_the_criteria_that_moved_the_score_most(changed: dict[str, dict]) -> None:
    s1 = changed["S1"]
    assert (s1["previous_score"], s1["score"], s1["score_change"]) == (86.3, 76.0, -10.3)
    assert [(c["name"], c["points_change"], c["previous_value"], c["value"]) for c in s1["change_causes"]] == [
        (ON_TIME, -7.5, 0.91, 0.84), (OTIF, -2.85, 0.90, 0.85)]
    change = change_context(s1)
    assert change["summary"] == (
        "−10.3 since 2026-03-31, mostly On-time delivery (−7.5 points: 91.0 % → 84.0 %) and "
        "Delivered on time and in full (OTIF) (−2.9 points: 90.0 % → 85.0 %)")
    assert change["explanation"] == change["summary"].removeprefix("−10.3 ")
    assert changed["S3"]["score_change"] == 0.0 and changed["S3"]["change_causes"] == []
    assert change_context(changed["S3"])["summary"] == "±0.0 since 2026-03-31"


def test_a_criterion_no_longer_measured_moves_the_weights_of_the_others(changed: dict[str, dict]) -> None:
    s2 = changed["S2"]
    assert (s2["previous_score"], s2["score"], s2["score_change"]) == (96.7, 100.0, 3.3)
    causes = [(c["name"], c["points_change"], c["previous_weight"], c["weight"], c["measured"])
              for c in s2["change_causes"]]
    assert causes == [(LATENESS, -16.67, 20.0, None, False), (ON_TIME, 7.5, 30.0, 37.5, True)]
    assert change_context(s2)["summary"] == (
        "+3.3 since 2026-03-31, largest moves: Lateness when late (mean days) (−16.7 points: 5.0 days → not "
        "measured) and On-time delivery (+7.5 points: 100.0 % both times, weight counted 30.0 → 37.5)")


def test_no_previous_score_no_explanation_and_a_removed_criterion_or_bad_float_is_read() -> None:
    first = evaluate(BEFORE[:1], THEN)
    assert first["change_causes"].to_list() == [[]] and change_context(first.row(0, named=True)) is None
    stored = [{"name": "Price stability", "unit": "rate", "value": float("nan"), "measured": True,
               "effective_weight": 10.0, "weighted_points": 9.0}, *first["criteria"].item()]
    previous = as_previous(first, THEN).with_columns(previous_criteria=pl.lit(json.dumps(stored)))
    assert "NaN" in previous["previous_criteria"].item()  # json.dumps writes it, JSON does not know it
    now = evaluate(AFTER[:1], NOW, previous)
    causes = {c["name"]: c for c in change_causes(now.with_columns(previous_criteria=pl.lit(json.dumps(stored))))
              .row(0, named=True)["change_causes"]}
    assert causes[ON_TIME]["points_change"] == -7.5
    every = change_causes(now.with_columns(previous_criteria=pl.lit(json.dumps(stored))), top=5)
    removed = next(c for c in every["change_causes"].item() if c["name"] == "Price stability")
    assert (removed["points_change"], removed["previous_value"], removed["measured"]) == (-9.0, None, None)
    assert "Price stability (−9.0 points: — → not in the rules)" in change_context(
        {"score_change": -1.0, "previous_as_of": THEN, "change_causes": [removed]})["summary"]


def test_the_supplier_report_and_the_digest_show_the_change_and_its_causes(changed: dict[str, dict]) -> None:
    s1 = changed["S1"] | {"name": "Smith & Sons <Precision> Ltd", "category": "parts", "criticality": "major",
                          "owner_email": None}
    context = supplier_context(run=RUN, rule_set=RULE_SET, evaluation=s1, window_start=date(2025, 7, 1), as_of=NOW,
                               late_lines=pl.DataFrame(), bands=BANDS)
    out = render_supplier_report(context)
    assert "Change         −10.3 (previous score 86.3 as of 2026-03-31)\n" in out.text
    assert ("               mostly On-time delivery (−7.5 points: 91.0 % → 84.0 %)\n"
            "               and Delivered on time and in full (OTIF) (−2.9 points: 90.0 % → 85.0 %)\n") in out.text
    assert "Change since 2026-03-31</th>" in out.html
    assert "mostly<br>On-time delivery (−7.5 points: 91.0 % → 84.0 %) and<br>Delivered on time" in out.html

    evaluated = pl.DataFrame([changed[i] | {"name": f"Supplier {i}"} for i in ("S1", "S2", "S3")])
    status = pl.DataFrame({"supplier_id": ["S1"], "from_status": ["approved"], "to_status": ["conditional"],
                           "reason": ["score 76.0 puts it in band B"]})
    digest = digest_context(run=RUN, rule_set=RULE_SET, evaluated=evaluated, changes=status,
                            quarantine_summary=pl.DataFrame(schema={**SUMMARY_SCHEMA, "top_reasons": pl.List(
                                pl.String)}), window_start=date(2025, 7, 1), as_of=NOW, bands=BANDS)
    assert [(m["supplier_id"], m["score_change"]) for m in digest["score_changes"]] == [("S1", -10.3), ("S2", 3.3)]
    out = render_digest(digest)
    assert ("- Supplier S1 (S1): approved -> conditional. score 76.0 puts it in band B\n"
            "    Score −10.3 since 2026-03-31, mostly On-time delivery (−7.5 points: 91.0 % → 84.0 %) and") in out.text
    assert "- Supplier S2 (S2), score 100.0: +3.3 since 2026-03-31, largest moves: Lateness" in out.text
    assert ">Largest score changes</h2>" in out.html and "Score −10.3 since 2026-03-31, mostly" in out.html

    # a change awaiting approval says it too, when this run evaluated the supplier
    proposals = pl.DataFrame({"supplier_id": ["S1", "S9"], "name": ["Supplier S1", "Supplier S9"],
                              "as_of": [NOW, THEN], "from_status": ["approved", "probation"],
                              "to_status": ["conditional", "disqualified"], "reason": ["band B", "band D"]})
    follow_up = AslFollowUp(proposals=proposals, actions=pl.DataFrame(schema=ACTION_SCHEMA),
                            overdue=pl.DataFrame(schema={"supplier_id": pl.String, "name": pl.String,
                                                         "profile": pl.String, "last_scored": pl.Date,
                                                         "next_due": pl.Date}))
    digest["asl"] = asl_follow_up_context(follow_up, as_of=NOW, evaluated=evaluated)
    assert [p["change"] for p in digest["asl"]["proposals"]] == [change_context(changed["S1"])["summary"], None]
    out = render_digest(digest)
    assert ("- Supplier S1 (S1): approved -> conditional, as of 2026-06-30. band B\n"
            "    Score −10.3 since 2026-03-31, mostly On-time delivery") in out.text
    assert "- Supplier S9 (S9): probation -> disqualified, as of 2026-03-31. band D\n\n" in out.text


# ---- the records attachment, through the run's reports --------------------------------------------------------


def run_record() -> RunRecord:
    return RunRecord(run_id="run-1", run_key="k" * 64, trigger="nightly", requested_by="schedule", as_of=LINES_AS_OF,
                     window_days=90, selection=["*active*"], rule_set_name=RULES.name, rule_set_version="1",
                     rule_set_hash=RULES.content_hash, input_fingerprint="f" * 64, code_version="0.1.0")


def test_each_supplier_gets_its_records_attached_and_the_run_folder_holds_them_all(tmp_path: Path) -> None:
    # S1 is the hand-computed supplier of tests/test_metrics.py; S2 has no order line and no receipt.
    lines = LINES.with_columns(po_id=pl.when(pl.col("po_id") == "P3").then(pl.lit("=HYPERLINK(1)"))
                               .otherwise("po_id"))
    receipts = RECEIPTS.with_columns(po_id=pl.when(pl.col("po_id") == "P3").then(pl.lit("=HYPERLINK(1)"))
                                     .otherwise("po_id"))
    chosen = selected("S1", "S2")
    performance = metrics.measure_suppliers(chosen, lines, receipts, EMPTY_NCR, EMPTY_FEEDBACK, as_of=LINES_AS_OF,
                                            window_days=90, tolerance_days=2, with_records=True)
    scored = score_suppliers(chosen, performance.metrics, RULES, as_of=LINES_AS_OF)
    decisions = decide(chosen, scored, RULES, previous=NO_PREVIOUS, as_of=LINES_AS_OF, official=True,
                       official_as_of=pl.DataFrame(schema={"supplier_id": pl.String, "official_as_of": pl.Date}))
    quality = DataQuality(summary=pl.DataFrame(schema=SUMMARY_SCHEMA), quarantine=pl.DataFrame(
        schema=QUARANTINE_SCHEMA), previous=None, max_share=0.2, read_from="data")
    reports = write_run_reports(tmp_path, run=run_record(), rule_set=RULES, evaluated=decisions.evaluated,
                                changes=decisions.changes, late_lines=performance.late_lines, quality=quality,
                                quarantine_summary=pl.DataFrame(schema={**SUMMARY_SCHEMA,
                                                                        "top_reasons": pl.List(pl.String)}),
                                window_start=metrics.window_start(LINES_AS_OF, 90), records=performance.records)
    s1, s2 = sorted(reports.suppliers, key=lambda report: report.supplier_id)
    assert records_file_name("S1") == "records-S1.csv"
    [(name, content, mime)] = s1.attachments
    assert (name, mime) == ("records-S1.csv", "text/csv")
    everyone = pl.read_csv(tmp_path / "records.csv", infer_schema_length=0)  # the run's folder: one file for all
    assert everyone.filter(pl.col("supplier_id") == "S1").drop("supplier_id").equals(
        pl.read_csv(content, infer_schema_length=0))
    assert not (tmp_path / "suppliers" / "records-S1.csv").exists() and (tmp_path / "suppliers" / "S1.html").exists()
    written = pl.read_csv(content, infer_schema_length=0)
    assert written.columns == [c for c in metrics.RECORD_SCHEMA if c != "supplier_id"]
    assert written.group_by("metric", maintain_order=True).len().rows() == [
        (metrics.ON_TIME_RECORDS, 3), (metrics.QUANTITY_RECORDS, 2), (metrics.REJECTED_RECORDS, 3)]
    assert "'=HYPERLINK(1)" in written["po_id"].to_list()  # spreadsheet-safe: a formula stays text
    assert written.filter(pl.col("po_id") == "'=HYPERLINK(1)")["why"].to_list() == [
        "short: 50 of 80 units received (30 missing)"] * 2

    text, html = s1.rendered.text, s1.rendered.html
    assert "3 order lines were not on time in this period: 1 late, 1 short, 1 not yet delivered." in text
    assert "    short: 50 of 80 units received (30 missing)\n" in text
    assert "not yet delivered (19 days past the deadline)</td>" in html
    assert "Attached as records-S1.csv (one row per record and metric, with why):" in text
    assert "- 3 rows for On-time delivery rate" in text and "- 3 rows for Rejected parts per million" in text
    assert "Attached as <strong>records-S1.csv</strong>" in html

    assert s2.attachments == () and everyone.filter(pl.col("supplier_id") == "S2").height == 0
    assert "nothing is attached" in s2.rendered.text and "nothing is attached" in s2.rendered.html
