"""Metric formulas against a hand-computed example.

Window: as of 2026-03-31, 90 days (2026-01-01 .. 2026-03-31), on-time tolerance 2 days. Supplier S1:

| line  | promised | ordered | receipts (date: received / accepted / rejected)      | judged | OT | IF | OTIF | days late |
|-------|----------|---------|------------------------------------------------------|--------|----|----|------|-----------|
| P1-1  | 01-10    | 100     | 01-09: 100/100/0                                     | yes    | y  | y  | y    |           |
| P1-2  | 01-20    | 100     | 01-19: 60/60/0, 01-22: 40/40/0 (split, within tol.)  | yes    | y  | y  | y    |           |
| P2-1  | 02-01    | 50      | 02-01: 30/30/0, 02-10: 20/20/0 (completed 02-10)     | yes    | n  | y  | n    | 9         |
| P2-2  | 02-15    | 200     | 02-14: 200/190/10                                    | yes    | y  | n  | n    |           |
| P3-1  | 03-01    | 80      | 02-28: 50/50/0 (short, never completed)              | yes    | n  | n  | n    | 0 (short) |
| P3-2  | 03-30    | 10      | 03-30: 10/10/0 (deadline 04-01 after as-of)           | no     |    |    |      |           |
| P0-1  | 2025-12-20 | 10    | 01-05: 10/8/2 (promised before the window)           | no     |    |    |      |           |
| P4-1  | 03-10    | 20      | 04-02: 20/20/0 (after as-of: unknown)                | yes    | n  | n  | n    | 21 (open) |
| P5-1  | 01-15    | 10      | 01-14: 10/5/5, 01-25: 5/5/0 (late replacement)       | yes    | y  | y  | n    |           |

Judged 7: on time 4/7, in full 4/7, OTIF 2/7, late lines 3 with mean (9 + 0 + 21) / 3 = 10 days
(P3-1's last delivery came before its promise: short, not late; P4-1 has nothing known, so as-of − promised).
Receipts in the window (not the 04-02 one): 11; accepted 518, rejected 17, inspected 535:
acceptance 518/535 = 0.968224…, PPM 17/535 × 10⁶ = 31,775.70….
Wilson 95 % for 4/7 = [0.2505, 0.8418].
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from rules import metrics

D = date.fromisoformat
AS_OF = D("2026-03-31")

LINES = pl.DataFrame(
    [
        ("P1", 1, "S1", "2026-01-10", 100.0),
        ("P1", 2, "S1", "2026-01-20", 100.0),
        ("P2", 1, "S1", "2026-02-01", 50.0),
        ("P2", 2, "S1", "2026-02-15", 200.0),
        ("P3", 1, "S1", "2026-03-01", 80.0),
        ("P3", 2, "S1", "2026-03-30", 10.0),
        ("P0", 1, "S1", "2025-12-20", 10.0),
        ("P4", 1, "S1", "2026-03-10", 20.0),
        ("P5", 1, "S1", "2026-01-15", 10.0),
    ],
    schema=["po_id", "line_no", "supplier_id", "promised_date", "quantity_ordered"],
    orient="row",
).with_columns(pl.col("promised_date").str.to_date())

RECEIPTS = pl.DataFrame(
    [
        ("P1", 1, "2026-01-09", 100.0, 100.0, 0.0),
        ("P1", 2, "2026-01-19", 60.0, 60.0, 0.0),
        ("P1", 2, "2026-01-22", 40.0, 40.0, 0.0),
        ("P2", 1, "2026-02-01", 30.0, 30.0, 0.0),
        ("P2", 1, "2026-02-10", 20.0, 20.0, 0.0),
        ("P2", 2, "2026-02-14", 200.0, 190.0, 10.0),
        ("P3", 1, "2026-02-28", 50.0, 50.0, 0.0),
        ("P3", 2, "2026-03-30", 10.0, 10.0, 0.0),
        ("P0", 1, "2026-01-05", 10.0, 8.0, 2.0),
        ("P4", 1, "2026-04-02", 20.0, 20.0, 0.0),
        ("P5", 1, "2026-01-14", 10.0, 5.0, 5.0),
        ("P5", 1, "2026-01-25", 5.0, 5.0, 0.0),
    ],
    schema=["po_id", "line_no", "received_date", "quantity_received", "quantity_accepted", "quantity_rejected"],
    orient="row",
).with_columns(pl.col("received_date").str.to_date())

SUPPLIERS = pl.DataFrame({"supplier_id": ["S1", "S2"]})
EMPTY_NCR = pl.DataFrame(
    schema={"ncr_id": pl.String, "supplier_id": pl.String, "raised_date": pl.Date, "severity": pl.String,
            "closed_date": pl.Date}
)
EMPTY_FEEDBACK = pl.DataFrame(schema={"supplier_id": pl.String, "date": pl.Date, "score": pl.Int64})


def compute(nonconformances: pl.DataFrame = EMPTY_NCR, feedback: pl.DataFrame = EMPTY_FEEDBACK) -> dict[str, dict]:
    frame = metrics.supplier_metrics(SUPPLIERS, LINES, RECEIPTS, nonconformances, feedback,
                                     as_of=AS_OF, window_days=90, tolerance_days=2)
    return {row["supplier_id"]: row for row in frame.to_dicts()}


def test_window_starts_window_days_before_as_of_inclusive() -> None:
    assert metrics.window_start(AS_OF, 90) == D("2026-01-01")


def test_per_line_outcomes_match_the_hand_computed_table() -> None:
    facts = metrics.line_facts(LINES.lazy(), RECEIPTS.lazy(), as_of=AS_OF, window_days=90, tolerance_days=2).collect()
    table = {
        f"{r['po_id']}-{r['line_no']}": (r["on_time"], r["in_full"], r["otif"], r["days_late"])
        for r in facts.to_dicts()
    }
    assert table == {
        "P1-1": (True, True, True, None),
        "P1-2": (True, True, True, None),
        "P2-1": (False, True, False, 9),
        "P2-2": (True, False, False, None),
        "P3-1": (False, False, False, 0),
        "P4-1": (False, False, False, 21),
        "P5-1": (True, True, False, None),
    }


def test_completed_date_is_the_receipt_that_fills_the_line() -> None:
    facts = metrics.line_facts(LINES.lazy(), RECEIPTS.lazy(), as_of=AS_OF, window_days=90, tolerance_days=2).collect()
    completed = {f"{r['po_id']}-{r['line_no']}": r["completed_date"] for r in facts.to_dicts()}
    assert completed["P1-2"] == D("2026-01-22")
    assert completed["P2-1"] == D("2026-02-10")
    assert completed["P5-1"] == D("2026-01-14")
    assert completed["P3-1"] is None  # short
    assert completed["P4-1"] is None  # its only receipt is after the as-of date


def test_delivery_rates() -> None:
    s1 = compute()["S1"]
    assert s1["order_lines"] == 7
    assert s1["on_time_rate"] == pytest.approx(4 / 7)
    assert s1["in_full_rate"] == pytest.approx(4 / 7)
    assert s1["otif_rate"] == pytest.approx(2 / 7)
    assert s1["late_lines"] == 3
    assert s1["mean_days_late"] == pytest.approx(10.0)


def test_quality_metrics_count_receipts_in_the_window() -> None:
    s1 = compute()["S1"]
    assert s1["receipts"] == 11
    assert s1["units_inspected"] == pytest.approx(535.0)
    assert s1["acceptance_rate"] == pytest.approx(518 / 535)
    assert s1["ppm_rejected"] == pytest.approx(31_775.700934, rel=1e-9)


def test_wilson_interval_for_on_time_rate() -> None:
    s1 = compute()["S1"]
    assert s1["on_time_rate_low"] == pytest.approx(0.2505, abs=1e-4)
    assert s1["on_time_rate_high"] == pytest.approx(0.8418, abs=1e-4)


def test_tolerance_zero_makes_the_split_line_late() -> None:
    frame = metrics.supplier_metrics(SUPPLIERS, LINES, RECEIPTS, EMPTY_NCR, EMPTY_FEEDBACK,
                                     as_of=AS_OF, window_days=90, tolerance_days=0)
    s1 = frame.filter(pl.col("supplier_id") == "S1").row(0, named=True)
    # P1-2's last 40 units came 2 days after the promise; P3-2 (promised 03-30) is now judged and on time.
    assert s1["order_lines"] == 8
    assert s1["on_time_rate"] == pytest.approx(4 / 8)
    assert s1["mean_days_late"] == pytest.approx((2 + 9 + 0 + 21) / 4)


def test_supplier_without_records_has_zero_evidence_and_no_rates() -> None:
    s2 = compute()["S2"]
    assert (s2["order_lines"], s2["receipts"], s2["late_lines"]) == (0, 0, 0)
    assert s2["on_time_rate"] is None and s2["ppm_rejected"] is None and s2["on_time_rate_low"] is None


def test_no_late_line_means_zero_mean_days_late() -> None:
    on_time_only = LINES.filter(pl.col("po_id") == "P1")
    frame = metrics.supplier_metrics(SUPPLIERS, on_time_only, RECEIPTS, EMPTY_NCR, EMPTY_FEEDBACK,
                                     as_of=AS_OF, window_days=90, tolerance_days=2)
    assert frame.filter(pl.col("supplier_id") == "S1")["mean_days_late"].item() == 0.0


def test_nonconformances_and_feedback() -> None:
    ncrs = pl.DataFrame(
        [("N1", "S1", "2026-02-01", "critical", None), ("N2", "S1", "2026-02-05", "critical", "2026-03-01"),
         ("N3", "S1", "2025-06-01", "major", None), ("N4", "S1", "2026-04-10", "critical", None)],
        schema=["ncr_id", "supplier_id", "raised_date", "severity", "closed_date"], orient="row",
    ).with_columns(pl.col("raised_date", "closed_date").str.to_date())
    feedback = pl.DataFrame({"supplier_id": ["S1", "S1", "S1"], "date": ["2026-01-05", "2026-02-05", "2025-01-01"],
                             "score": [4, 2, 1]}).with_columns(pl.col("date").str.to_date())
    s1 = compute(ncrs, feedback)["S1"]
    assert s1["nonconformances"] == 2  # N1, N2 raised in the window; N3 before it, N4 after as-of
    assert s1["open_critical_nonconformances"] == 1  # N1 (N2 closed, N4 not yet raised)
    assert s1["feedback_entries"] == 2 and s1["feedback_score"] == pytest.approx(3.0)


def test_late_lines_lists_the_records_behind_the_metric() -> None:
    late = metrics.late_lines(LINES, RECEIPTS, as_of=AS_OF, window_days=90, tolerance_days=2)
    assert late.select("po_id", "line_no", "days_late").rows() == [("P4", 1, 21), ("P3", 1, 0), ("P2", 1, 9)]


def test_fractional_quantities_that_add_up_exactly_are_in_full() -> None:
    # 0.1 + 0.7 == 0.7999999999999999 in floats; received in two parts before the promise, it is complete.
    lines = pl.DataFrame({"po_id": ["F1"], "line_no": [1], "supplier_id": ["S1"], "promised_date": [D("2026-03-01")],
                          "quantity_ordered": [0.8]})
    receipts = pl.DataFrame({"po_id": ["F1", "F1"], "line_no": [1, 1],
                             "received_date": [D("2026-02-20"), D("2026-02-28")],
                             "quantity_received": [0.1, 0.7], "quantity_accepted": [0.1, 0.7],
                             "quantity_rejected": [0.0, 0.0]})
    facts = metrics.line_facts(lines.lazy(), receipts.lazy(), as_of=AS_OF, window_days=90, tolerance_days=0).collect()
    row = facts.row(0, named=True)
    assert (row["on_time"], row["in_full"], row["otif"], row["days_late"]) == (True, True, True, None)
    assert row["completed_date"] == D("2026-02-28")
    assert row["received_total"] == pytest.approx(0.8)


# --- receipts without inspection results: not measured, never 0 ppm
#
# The same records, but P2-2's receipt (200 / 190 / 10) has no inspection results, and P0-1's has an accepted
# quantity without a rejected one (half a result is no result: not inspected either).
#
# Lines: P2-2 is not inspected, so its in-full and OTIF outcomes are unknown; the other six judged lines are
# inspected (P4-1 has nothing known received: 0 accepted, known). In full: P1-1, P1-2, P2-1, P5-1 = 4 of 6;
# OTIF: P1-1, P1-2 = 2 of 6. On time and lateness do not need inspection: 4/7 and 10 days as before.
# Receipts in the window: still 11; inspected 9: accepted 518 − 190 − 8 = 320, rejected 17 − 10 − 2 = 5,
# inspected units 325: acceptance 320/325 = 0.984615…, PPM 5/325 × 10⁶ = 15,384.615….

def _uninspected(receipts: pl.DataFrame, *lines: tuple[str, int], only_rejected: bool = False) -> pl.DataFrame:
    hit = pl.any_horizontal((pl.col("po_id") == po) & (pl.col("line_no") == no) for po, no in lines)
    columns = ["quantity_rejected"] if only_rejected else ["quantity_accepted", "quantity_rejected"]
    return receipts.with_columns(pl.when(~hit).then(pl.col(c)).alias(c) for c in columns)


MIXED = _uninspected(_uninspected(RECEIPTS, ("P2", 2)), ("P0", 1), only_rejected=True)


def test_a_line_with_an_uninspected_receipt_has_unknown_in_full_and_otif() -> None:
    facts = metrics.line_facts(LINES.lazy(), MIXED.lazy(), as_of=AS_OF, window_days=90, tolerance_days=2).collect()
    table = {f"{r['po_id']}-{r['line_no']}": (r["on_time"], r["in_full"], r["otif"], r["inspected"])
             for r in facts.to_dicts()}
    assert table == {
        "P1-1": (True, True, True, True),
        "P1-2": (True, True, True, True),
        "P2-1": (False, True, False, True),
        "P2-2": (True, None, None, False),
        "P3-1": (False, False, False, True),
        "P4-1": (False, False, False, True),
        "P5-1": (True, True, False, True),
    }
    p22 = facts.filter(pl.col("po_id") == "P2", pl.col("line_no") == 2).row(0, named=True)
    assert (p22["accepted_total"], p22["accepted_by_deadline"], p22["received_total"]) == (None, None, 200.0)


def test_a_mix_of_inspected_and_uninspected_receipts_counts_only_the_inspected_units() -> None:
    s1 = metrics.supplier_metrics(SUPPLIERS, LINES, MIXED, EMPTY_NCR, EMPTY_FEEDBACK, as_of=AS_OF, window_days=90,
                                  tolerance_days=2).filter(pl.col("supplier_id") == "S1").row(0, named=True)
    assert (s1["receipts"], s1["inspected_receipts"]) == (11, 9)
    assert s1["units_inspected"] == pytest.approx(325.0)
    assert s1["acceptance_rate"] == pytest.approx(320 / 325)
    assert s1["ppm_rejected"] == pytest.approx(15_384.615385, rel=1e-9)
    assert (s1["order_lines"], s1["inspected_lines"], s1["in_full_lines"], s1["otif_lines"]) == (7, 6, 4, 2)
    assert s1["in_full_rate"] == pytest.approx(4 / 6) and s1["otif_rate"] == pytest.approx(2 / 6)
    assert s1["on_time_rate"] == pytest.approx(4 / 7) and s1["mean_days_late"] == pytest.approx(10.0)
    low, high = (s1["otif_rate_low"], s1["otif_rate_high"])  # Wilson over the 6 inspected lines, not 7
    assert (low, high) == pytest.approx((0.0968, 0.7000), abs=1e-4)


def test_a_supplier_with_no_inspected_receipt_has_quality_in_full_and_otif_not_measured() -> None:
    none_inspected = RECEIPTS.with_columns(pl.lit(None, pl.Float64).alias(c)
                                           for c in ("quantity_accepted", "quantity_rejected"))
    s1 = metrics.supplier_metrics(SUPPLIERS, LINES, none_inspected, EMPTY_NCR, EMPTY_FEEDBACK, as_of=AS_OF,
                                  window_days=90, tolerance_days=2).filter(pl.col("supplier_id") == "S1").row(0, named=True)
    assert (s1["receipts"], s1["inspected_receipts"], s1["units_inspected"]) == (11, 0, 0.0)
    assert s1["acceptance_rate"] is None and s1["ppm_rejected"] is None  # not measured, never 0 ppm
    # P4-1 received nothing by the as-of date: its 0 accepted is known (not in full), but it is not counted. With
    # no inspected receipt on any line it would be the only known outcome, and the rates would read 0 %.
    facts = metrics.line_facts(LINES.lazy(), none_inspected.lazy(), as_of=AS_OF, window_days=90,
                               tolerance_days=2).collect()
    assert facts.filter(pl.col("inspected")).select("po_id", "line_no", "in_full").rows() == [("P4", 1, False)]
    assert (s1["order_lines"], s1["inspected_lines"], s1["in_full_lines"], s1["otif_lines"]) == (7, 0, 0, 0)
    assert s1["in_full_rate"] is None and s1["otif_rate"] is None
    assert s1["in_full_rate_low"] is None and s1["otif_rate_high"] is None
    assert s1["on_time_rate"] == pytest.approx(4 / 7) and s1["mean_days_late"] == pytest.approx(10.0)


def test_not_measured_reasons_say_why_in_words() -> None:
    frame = pl.DataFrame({
        "order_lines": [0, 7, 7, 7], "inspected_lines": [0, 0, 0, 3], "receipts": [0, 11, 11, 11],
        "inspected_receipts": [0, 0, 4, 4], "on_time_rate": [None, 0.5, 0.5, 0.5],
        "otif_rate": [None, None, None, 0.5], "ppm_rejected": [None, None, None, 10.0],
        "feedback_score": [None, None, 3.0, 3.0],
    }, schema_overrides={"on_time_rate": pl.Float64, "otif_rate": pl.Float64, "ppm_rejected": pl.Float64,
                         "feedback_score": pl.Float64})
    reasons = frame.select(metrics.not_measured_reason(m).alias(m) for m in
                           ("on_time_rate", "otif_rate", "ppm_rejected", "feedback_score")).rows()
    assert reasons == [
        ("no order lines due in the window", "no order lines due in the window", "no receipts in the window",
         "no feedback in the window"),
        (None, "no inspection results in the data", "no inspection results in the data",
         "no feedback in the window"),
        (None, "no inspection results for the order lines due", "no units inspected in the window", None),
        (None, None, None, None),
    ]
