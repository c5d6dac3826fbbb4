"""Scoring against hand-computed cases with the shipped rule set.

Shipped criteria: on-time 30 % (linear 0.70 → 0, 0.98 → 100), OTIF 20 % (0.60 → 0, 0.95 → 100),
PPM 30 % (≤1000: 100, ≤3000: 80, ≤10000: 50, ≤30000: 20, else 0), mean days late 20 % (20 → 0, 2 → 100;
measured only over at least 3 late lines). ``metrics_row`` gives every supplier 3 late lines, so the
mean-days-late criterion is measured unless a test says otherwise.
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from rules.decide import assemble_evaluations, status_changes
from rules.loader import load_rule_set
from rules.metrics import METRIC_COLUMNS, supplier_metrics
from rules.model import RuleSet, Scale
from rules.scoring import scale_points, score_suppliers

AS_OF = date(2026, 6, 30)
RULES = load_rule_set()
# The shipped rules as they were before mean days late needed 3 late lines: the renormalising cases below
# were computed by hand over one late line.
WITHOUT_MINIMUM_EVIDENCE = RULES.model_copy(update={"criteria": tuple(
    c.model_copy(update={"minimum_evidence": None}) for c in RULES.criteria)})
INSUFFICIENT_WHEN_NOT_MEASURED = WITHOUT_MINIMUM_EVIDENCE.model_copy(update={"not_measured": "insufficient_data"})


def metrics_row(supplier_id: str, **values: float) -> dict:
    # Every metric column, null unless set below: an evaluation record holds them all.
    row = dict.fromkeys(METRIC_COLUMNS) | {
        "supplier_id": supplier_id, "order_lines": 20, "inspected_lines": 20, "on_time_lines": 0,
        "in_full_lines": 0, "otif_lines": 0,
        "late_lines": 3, "on_time_rate": 1.0, "on_time_rate_low": None, "on_time_rate_high": None,
        "in_full_rate": 1.0, "in_full_rate_low": None, "in_full_rate_high": None, "otif_rate": 1.0,
        "otif_rate_low": None, "otif_rate_high": None, "mean_days_late": 0.0, "receipts": 20,
        "inspected_receipts": 20, "units_inspected": 1000.0, "acceptance_rate": 1.0, "ppm_rejected": 0.0,
        "nonconformances": 0, "open_critical_nonconformances": 0, "feedback_entries": 0, "feedback_score": None,
    }
    row.update(values)
    return row


def score(rows: list[dict], *, expiry: dict[str, date] | None = None, current: str = "approved",
          rules: RuleSet = RULES) -> dict[str, dict]:
    metrics = pl.DataFrame(rows, infer_schema_length=None)
    suppliers = pl.DataFrame({
        "supplier_id": [r["supplier_id"] for r in rows],
        "certificate_expiry": [(expiry or {}).get(r["supplier_id"]) for r in rows],
        "current_status": [current] * len(rows),
    }, schema_overrides={"certificate_expiry": pl.Date})
    scored = score_suppliers(suppliers, metrics, rules, as_of=AS_OF)
    return {r["supplier_id"]: r for r in scored.to_dicts()}


@pytest.mark.parametrize(
    ("scale", "value", "points"),
    [
        (Scale.model_validate({"linear": {"zero_points_at": 0.7, "full_points_at": 0.98}}), 0.84, 50.0),
        (Scale.model_validate({"linear": {"zero_points_at": 0.7, "full_points_at": 0.98}}), 0.5, 0.0),
        (Scale.model_validate({"linear": {"zero_points_at": 0.7, "full_points_at": 0.98}}), 1.0, 100.0),
        (Scale.model_validate({"linear": {"zero_points_at": 20, "full_points_at": 2}}), 11.0, 50.0),
        (Scale.model_validate({"linear": {"zero_points_at": 20, "full_points_at": 2}}), 0.0, 100.0),
        (Scale.model_validate({"steps": [{"at_most": 500, "points": 100}, {"at_most": 2000, "points": 80}],
                               "otherwise": 0}), 500.0, 100.0),
        (Scale.model_validate({"steps": [{"at_most": 500, "points": 100}, {"at_most": 2000, "points": 80}],
                               "otherwise": 0}), 501.0, 80.0),
        (Scale.model_validate({"steps": [{"at_most": 500, "points": 100}, {"at_most": 2000, "points": 80}],
                               "otherwise": 0}), 2000.5, 0.0),
        (Scale.model_validate({"steps": [{"at_least": 4.5, "points": 100}, {"at_least": 3, "points": 60}],
                               "otherwise": 10}), 3.2, 60.0),
    ],
)
def test_scale_points(scale: Scale, value: float, points: float) -> None:
    frame = pl.DataFrame({"v": [value]}).select(scale_points(pl.col("v"), scale))
    assert frame.item() == pytest.approx(points)


def test_weighted_score_band_and_status_hand_computed() -> None:
    # on-time 0.84 → 50 pts × 30 % = 15; OTIF 0.775 → 50 × 20 % = 10; PPM 1500 → 80 × 30 % = 24;
    # 11 days late → 50 × 20 % = 10. Score 59.0 → band C (50-70) → probation.
    result = score([metrics_row("S1", on_time_rate=0.84, otif_rate=0.775, ppm_rejected=1500.0,
                                mean_days_late=11.0)])["S1"]
    assert [result[f"points_{i}"] for i in range(4)] == pytest.approx([50.0, 50.0, 80.0, 50.0])
    assert result["score"] == pytest.approx(59.0)
    assert (result["band"], result["status"], result["insufficient_data"]) == ("C", "probation", False)


@pytest.mark.parametrize(
    ("on_time", "expected_band"),
    [(1.0, "A"), (0.70, "B")],  # perfect: 100 → A; on-time 0 pts: 70.0 sits on B's lower edge → B
)
def test_band_edges(on_time: float, expected_band: str) -> None:
    result = score([metrics_row("S1", on_time_rate=on_time)])["S1"]
    assert result["band"] == expected_band


def test_score_of_exactly_85_is_band_a() -> None:
    # on-time 0.84 → 50 pts → 15 of 30: score 85.0, the bottom of A (from 85 inclusive)
    result = score([metrics_row("S1", on_time_rate=0.84)])["S1"]
    assert result["score"] == pytest.approx(85.0) and result["band"] == "A"


def test_insufficient_evidence_gives_no_score_and_keeps_status() -> None:
    result = score([metrics_row("S1", order_lines=2, receipts=1)], current="conditional")["S1"]
    assert result["score"] is None and result["band"] is None
    assert result["insufficient_data"] is True
    assert result["insufficient_reason"] == (
        "2 order lines due in the window (minimum 5); 1 receipts in the window (minimum 3)"
    )
    assert result["status"] == "conditional"


def test_missing_metric_value_is_insufficient_not_zero() -> None:
    # Under 'not_measured: insufficient_data'; the shipped rules renormalise (tests below).
    result = score([metrics_row("S1", ppm_rejected=None)], rules=INSUFFICIENT_WHEN_NOT_MEASURED)["S1"]
    assert result["score"] is None
    assert "no data for rejected parts per million" in result["insufficient_reason"]


def test_expired_certificate_caps_status_at_conditional() -> None:
    results = score(
        [metrics_row("S1"), metrics_row("S2"), metrics_row("S3", on_time_rate=0.70, otif_rate=0.6)],
        expiry={"S1": date(2026, 6, 29), "S2": date(2026, 6, 30), "S3": date(2026, 1, 1)},
    )
    assert (results["S1"]["band"], results["S1"]["status"]) == ("A", "conditional")
    assert results["S1"]["gates_hit"] == ["Quality certificate expired"]
    assert results["S2"]["status"] == "approved" and results["S2"]["gates_hit"] == []  # expires on the as-of day
    # S3 scores 50 → band C → probation, already worse than the cap: the gate does not improve it
    assert (results["S3"]["band"], results["S3"]["status"]) == ("C", "probation")


def test_status_changes_explain_themselves() -> None:
    rows = [metrics_row("S1", on_time_rate=0.84, otif_rate=0.775, ppm_rejected=1500.0, mean_days_late=11.0),
            metrics_row("S2")]
    metrics = pl.DataFrame(rows, infer_schema_length=None)
    suppliers = pl.DataFrame({"supplier_id": ["S1", "S2"], "certificate_expiry": [None, date(2026, 1, 1)],
                              "current_status": ["approved", "approved"]},
                             schema_overrides={"certificate_expiry": pl.Date})
    scored = score_suppliers(suppliers, metrics, RULES, as_of=AS_OF)
    previous = pl.DataFrame({"supplier_id": ["S1"], "previous_as_of": [date(2025, 6, 30)], "previous_score": [72.5],
                             "previous_band": ["B"]})
    evaluated = assemble_evaluations(scored, RULES, previous)
    s1 = evaluated.filter(pl.col("supplier_id") == "S1").row(0, named=True)
    assert s1["score_change"] == pytest.approx(59.0 - 72.5)
    assert s1["action"].startswith("Probation")
    assert [c["points"] for c in s1["criteria"]] == pytest.approx([50.0, 50.0, 80.0, 50.0])
    assert [c["weighted_points"] for c in s1["criteria"]] == pytest.approx([15.0, 10.0, 24.0, 10.0])
    changes = {r["supplier_id"]: r for r in status_changes(evaluated).to_dicts()}
    assert changes["S1"]["to_status"] == "probation"
    assert changes["S1"]["reason"] == "score 59.0 puts it in band C"
    assert changes["S2"]["to_status"] == "conditional"
    assert changes["S2"]["reason"] == "score 100.0 puts it in band A; gate hit: Quality certificate expired"


def test_a_back_dated_run_changes_no_status_that_a_later_evaluation_decided() -> None:
    from rules.decide import decide

    metrics = pl.DataFrame([metrics_row("S1", on_time_rate=0.84, otif_rate=0.775, ppm_rejected=1500.0,
                                        mean_days_late=11.0), metrics_row("S2", on_time_rate=0.84, otif_rate=0.775,
                                                                          ppm_rejected=1500.0, mean_days_late=11.0)],
                           infer_schema_length=None)
    selected = pl.DataFrame({"supplier_id": ["S1", "S2"], "name": ["One", "Two"], "category": ["c", "c"],
                             "criticality": ["major", "major"], "owner_email": ["b@example.org"] * 2,
                             "certificate_expiry": [None, None], "current_status": ["approved", "approved"]},
                            schema_overrides={"certificate_expiry": pl.Date})
    scored = score_suppliers(selected, metrics, RULES, as_of=AS_OF)  # both score 59.0: probation
    history = {
        "previous": pl.DataFrame(schema={"supplier_id": pl.String, "previous_as_of": pl.Date,
                                         "previous_score": pl.Float64, "previous_band": pl.String}),
        # S1 was evaluated officially later than this run's as-of date (and kept its status: no change row)
        "official_as_of": pl.DataFrame({"supplier_id": ["S1"], "official_as_of": [date(2026, 9, 30)]}),
    }
    official = decide(selected, scored, RULES, **history, as_of=AS_OF, official=True)
    assert official.changes["supplier_id"].to_list() == ["S2"]
    assert official.evaluated["name"].to_list() == ["One", "Two"]  # the supplier's fields ride along for reports
    what_if = decide(selected, scored, RULES, **history, as_of=AS_OF, official=False)
    assert what_if.changes.is_empty() and what_if.evaluated.height == 2


def test_only_the_rules_in_force_over_their_own_window_are_official() -> None:
    from rules.decide import changes_asl
    from rules.loader import default_rules_path, parse_rule_set

    shipped = default_rules_path().read_bytes()
    other = parse_rule_set(shipped.replace(b"weight: 30", b"weight: 30 ", 1), source_name="other.yaml")
    window = RULES.evaluation.window_days
    assert changes_asl(RULES, RULES, window)
    assert not changes_asl(RULES, RULES, window - 1)  # another window: a what-if
    assert not changes_asl(other, RULES, window)  # another rule file (by its bytes): a what-if


# --- criteria not measured: no points, the score over what was measured
#
# Supplier N: ten order lines of 10 units, promised 2026-05-01 .. 05-10, each received once in full, none
# inspected (the export has no accepted or rejected quantities). Nine arrive on the promised date, the tenth
# 8 days after it (tolerance 2 days: late, 8 days late).
#   on time 9/10 = 0.90        → 100 × (0.90 − 0.70) / (0.98 − 0.70) = 71.43 points, weight 30
#   OTIF                       → not measured (no inspection results), weight 20
#   PPM                        → not measured (no inspection results), weight 30
#   mean days late 8           → 100 × (20 − 8) / (20 − 2) = 66.67 points, weight 20
#   score = (71.43 × 30 + 66.67 × 20) / (30 + 20) = (2142.86 + 1333.33) / 50 = 69.52 → 69.5, band C
#   (the measured weights count as 30 × 100/50 = 60 and 20 × 100/50 = 40: 42.86 + 26.67 = 69.52).
# Before, the missing inspection results read as 0 ppm: 30 free points.


def uninspected_supplier() -> tuple[pl.DataFrame, pl.DataFrame]:
    lines = pl.DataFrame({
        "po_id": [f"N-P{n}" for n in range(1, 11)], "line_no": [1] * 10, "supplier_id": ["N"] * 10,
        "promised_date": [date(2026, 5, n) for n in range(1, 11)], "quantity_ordered": [10.0] * 10,
    })
    receipts = lines.select(
        "po_id", "line_no",
        received_date=pl.col("promised_date") + pl.duration(days=pl.when(pl.col("po_id") == "N-P10").then(8)
                                                            .otherwise(0)),
        quantity_received=pl.col("quantity_ordered"),
        quantity_accepted=pl.lit(None, pl.Float64), quantity_rejected=pl.lit(None, pl.Float64),
    )
    suppliers = pl.DataFrame({"supplier_id": ["N"], "certificate_expiry": [None], "current_status": ["approved"]},
                             schema_overrides={"certificate_expiry": pl.Date})
    empty_ncr = pl.DataFrame(schema={"ncr_id": pl.String, "supplier_id": pl.String, "raised_date": pl.Date,
                                     "severity": pl.String, "closed_date": pl.Date})
    empty_feedback = pl.DataFrame(schema={"supplier_id": pl.String, "date": pl.Date, "score": pl.Int64})
    measured = supplier_metrics(suppliers, lines, receipts, empty_ncr, empty_feedback, as_of=AS_OF,
                                window_days=365, tolerance_days=RULES.evaluation.on_time_tolerance_days)
    return suppliers, measured


def test_a_supplier_with_no_inspection_results_is_scored_over_the_measured_criteria() -> None:
    suppliers, measured = uninspected_supplier()
    m = measured.row(0, named=True)
    assert m["acceptance_rate"] is None and m["ppm_rejected"] is None  # not 0 ppm
    assert m["in_full_rate"] is None and m["otif_rate"] is None
    assert m["on_time_rate"] == pytest.approx(0.9) and m["mean_days_late"] == pytest.approx(8.0)
    result = score_suppliers(suppliers, measured, WITHOUT_MINIMUM_EVIDENCE, as_of=AS_OF).row(0, named=True)
    assert [result[f"points_{i}"] for i in range(4)] == pytest.approx([500 / 7, None, None, 200 / 3])
    assert result["measured_weight"] == 50.0
    assert (result["score"], result["band"], result["status"]) == (69.5, "C", "probation")
    assert result["insufficient_data"] is False


def test_the_criteria_rows_say_what_was_not_measured_and_why() -> None:
    suppliers, measured = uninspected_supplier()
    scored = score_suppliers(suppliers, measured, WITHOUT_MINIMUM_EVIDENCE, as_of=AS_OF)
    evaluated = assemble_evaluations(scored, WITHOUT_MINIMUM_EVIDENCE, pl.DataFrame(schema={
        "supplier_id": pl.String, "previous_as_of": pl.Date, "previous_score": pl.Float64, "previous_band": pl.String}))
    criteria = evaluated.row(0, named=True)["criteria"]
    assert [c["measured"] for c in criteria] == [True, False, False, True]
    assert [c["not_measured_reason"] for c in criteria] == [
        None, "no inspection results in the data", "no inspection results in the data", None]
    assert [c["points"] for c in criteria] == pytest.approx([71.4, None, None, 66.7])
    assert [c["weight"] for c in criteria] == [30.0, 20.0, 30.0, 20.0]
    assert [c["effective_weight"] for c in criteria] == pytest.approx([60.0, None, None, 40.0])
    assert [c["weighted_points"] for c in criteria] == pytest.approx([42.86, None, None, 26.67])
    assert [c["evidence"] for c in criteria] == [10, 0, 0, 1]  # order lines, inspected lines, units, late lines
    reason = status_changes(evaluated).row(0, named=True)["reason"]
    assert reason == (
        "score 69.5 over measured criteria (50 of 100 weight) puts it in band C; not measured: "
        "Delivered on time and in full (OTIF), Quality of goods received (rejects per million)"
    )


def test_under_insufficient_data_a_criterion_not_measured_gives_no_score() -> None:
    suppliers, measured = uninspected_supplier()
    result = score_suppliers(suppliers, measured, INSUFFICIENT_WHEN_NOT_MEASURED, as_of=AS_OF).row(0, named=True)
    assert (result["score"], result["band"], result["insufficient_data"]) == (None, None, True)
    assert result["insufficient_reason"] == (
        "no data for on time and in full (otif) rate; no data for rejected parts per million"
    )
    assert result["status"] == "approved"  # kept: nothing was judged


def test_renormalised_score_from_metrics_hand_computed() -> None:
    # on-time 0.91 → 75 points (×30); OTIF and PPM not measured; 5 days late → 83.33 points (×20):
    # (75 × 30 + 83.33 × 20) / 50 = (2250 + 1666.67) / 50 = 78.33 → 78.3, band B.
    result = score([metrics_row("S1", on_time_rate=0.91, mean_days_late=5.0, otif_rate=None, ppm_rejected=None)])["S1"]
    assert (result["score"], result["band"], result["measured_weight"]) == (78.3, "B", 50.0)
    complete = score([metrics_row("S1", on_time_rate=0.91, mean_days_late=5.0)])["S1"]
    # all measured: 75 × 0.3 + 100 × 0.2 + 100 × 0.3 + 83.33 × 0.2 = 22.5 + 20 + 30 + 16.67 = 89.17 → 89.2
    assert (complete["score"], complete["measured_weight"]) == (89.2, 100.0)


def test_with_no_criterion_measured_the_supplier_is_insufficient_data() -> None:
    nothing = {"on_time_rate": None, "otif_rate": None, "ppm_rejected": None, "mean_days_late": None}
    result = score([metrics_row("S1", **nothing)])["S1"]
    assert (result["score"], result["insufficient_data"]) == (None, True)
    assert result["insufficient_reason"] == (
        "no criterion measured (no data for on-time delivery rate; no data for on time and in full (otif) rate; "
        "no data for rejected parts per million; no data for mean days late of late lines)"
    )

