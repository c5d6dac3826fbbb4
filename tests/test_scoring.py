"""Scoring against hand-computed cases with the shipped rule set.

Shipped criteria: on-time 30 % (linear 0.70 → 0, 0.98 → 100), OTIF 20 % (0.60 → 0, 0.95 → 100),
PPM 30 % (≤1000: 100, ≤3000: 80, ≤10000: 50, ≤30000: 20, else 0), mean days late 20 % (20 → 0, 2 → 100).
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from rules.decide import assemble_evaluations, status_changes
from rules.loader import load_rule_set
from rules.model import Scale
from rules.scoring import scale_points, score_suppliers

AS_OF = date(2026, 6, 30)
RULES = load_rule_set()


def metrics_row(supplier_id: str, **values: float) -> dict:
    row = {
        "supplier_id": supplier_id, "order_lines": 20, "on_time_lines": 0, "in_full_lines": 0, "otif_lines": 0,
        "late_lines": 0, "on_time_rate": 1.0, "on_time_rate_low": None, "on_time_rate_high": None,
        "in_full_rate": 1.0, "in_full_rate_low": None, "in_full_rate_high": None, "otif_rate": 1.0,
        "otif_rate_low": None, "otif_rate_high": None, "mean_days_late": 0.0, "receipts": 20,
        "units_inspected": 1000.0, "acceptance_rate": 1.0, "ppm_rejected": 0.0, "nonconformances": 0,
        "open_critical_nonconformances": 0, "feedback_entries": 0, "feedback_score": None,
    }
    row.update(values)
    return row


def score(rows: list[dict], *, expiry: dict[str, date] | None = None, current: str = "approved") -> dict[str, dict]:
    metrics = pl.DataFrame(rows, infer_schema_length=None)
    suppliers = pl.DataFrame({
        "supplier_id": [r["supplier_id"] for r in rows],
        "certificate_expiry": [(expiry or {}).get(r["supplier_id"]) for r in rows],
        "current_status": [current] * len(rows),
    }, schema_overrides={"certificate_expiry": pl.Date})
    scored = score_suppliers(suppliers, metrics, RULES, as_of=AS_OF)
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
        "2 order lines due in the window (minimum 5); 1 receipts inspected in the window (minimum 3)"
    )
    assert result["status"] == "conditional"


def test_missing_metric_value_is_insufficient_not_zero() -> None:
    result = score([metrics_row("S1", ppm_rejected=None)])["S1"]
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
