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

from datetime import date, timedelta

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


def test_quantity_accuracy_on_the_hand_computed_table() -> None:
    # Received by the as-of date vs ordered (tolerance 0): P1-1 100/100, P1-2 60 + 40 = 100/100, P2-1 30 + 20 =
    # 50/50, P2-2 200/200 (10 rejected, not replaced: accurate, the rejects are PPM's business), P5-1 10 + 5 = 15
    # of 10 with 5 rejected: 10 kept, the 5 were a replacement, not an over-delivery. P3-1 50/80 short, P4-1
    # nothing known: inaccurate. 5 of 7.
    s1 = compute()["S1"]
    assert (s1["accurate_quantity_lines"], s1["order_lines"]) == (5, 7)
    assert s1["quantity_accuracy_rate"] == pytest.approx(5 / 7)


def test_a_supplier_with_no_records_has_every_new_metric_not_measured() -> None:
    s2 = compute()["S2"]
    counts = ("early_lines", "accurate_quantity_lines", "lines_with_order_date", "lead_time_lines",
              "lead_time_met_lines", "priced_lines", "open_nonconformances", "overdue_nonconformances",
              "closed_nonconformances", "certificates")
    assert {c: s2[c] for c in counts} == dict.fromkeys(counts, 0)
    assert (s2["units_due"], s2["units_on_time"]) == (0.0, 0.0)
    values = ("quantity_accuracy_rate", "quantity_accuracy_rate_low", "lead_time_adherence_rate",
              "mean_lead_time_days", "p90_lead_time_days", "price_variance", "mean_days_to_close",
              "certificate_valid", "days_to_expiry")
    assert {v: s2[v] for v in values} == dict.fromkeys(values)  # null, never 0


def test_new_columns_come_after_the_existing_ones() -> None:
    frame = metrics.supplier_metrics(SUPPLIERS, LINES, RECEIPTS, EMPTY_NCR, EMPTY_FEEDBACK, as_of=AS_OF,
                                     window_days=90, tolerance_days=2)
    before = ("order_lines", "inspected_lines", "on_time_lines", "in_full_lines", "otif_lines", "late_lines",
              "on_time_rate", "on_time_rate_low", "on_time_rate_high", "in_full_rate", "in_full_rate_low",
              "in_full_rate_high", "otif_rate", "otif_rate_low", "otif_rate_high", "mean_days_late", "receipts",
              "inspected_receipts", "units_inspected", "acceptance_rate", "ppm_rejected", "nonconformances",
              "open_critical_nonconformances", "feedback_entries", "feedback_score")
    assert frame.columns[: len(before) + 1] == ["supplier_id", *before]
    assert frame.columns == ["supplier_id", *metrics.METRIC_COLUMNS]


# --- on time with an early and a late tolerance, per line and quantity-weighted
#
# As of 2026-03-31, 90 days, every line promised 03-10; late tolerance 2 (deadline 03-12), early tolerance 3
# (on-time window 03-07 .. 03-12, both ends inclusive). Every receipt fully accepted.
#
# | line | ordered | receipts (date: quantity)  | in window | on time | early | late | units on time      |
# |------|---------|----------------------------|-----------|---------|-------|------|--------------------|
# | E-1  | 100     | 03-07: 100 (first day)     | 100       | y       | n     | n    | 100                |
# | E-2  | 100     | 03-06: 100 (a day before)  | 0         | n       | y     | n    | 0                  |
# | E-3  | 100     | 03-12: 100 (the deadline)  | 100       | y       | n     | n    | 100                |
# | E-4  | 100     | 03-13: 100 (a day after)   | 0         | n       | n     | y 3  | 0                  |
# | E-5  | 200     | 03-06: 50, 03-09: 150      | 150       | n       | y     | n    | 150                |
# | E-6  | 50      | 03-10: 80 (over-delivered) | 80        | y       | n     | n    | min(80, 50) = 50   |
#
# Per line: 3 / 6 = 0.5. Quantity-weighted: (100 + 0 + 100 + 0 + 150 + 50) / (4 × 100 + 200 + 50) = 400 / 650.
# Early lines 2 (E-2, E-5); late lines 1 (E-4, 3 days late), so mean days late 3: coming early is not lateness.
# Without the early tolerance everything by the deadline is on time: E-1, E-2, E-3, E-5, E-6 = 5 / 6, and by
# quantity (100 + 100 + 100 + 0 + 200 + 50) / 650 = 550 / 650.
# Quantity accuracy: only E-6 is off (80 − 50 = 30 over): 5 / 6 exact; with a tolerance of 0.6 its excess
# 30 = 0.6 × 50 is on the boundary and accurate (6 / 6), with 0.5 (25) it is not (5 / 6).

EARLY_LINES = pl.DataFrame(
    [("E", 1, "E1", "2026-03-10", 100.0), ("E", 2, "E1", "2026-03-10", 100.0), ("E", 3, "E1", "2026-03-10", 100.0),
     ("E", 4, "E1", "2026-03-10", 100.0), ("E", 5, "E1", "2026-03-10", 200.0), ("E", 6, "E1", "2026-03-10", 50.0)],
    schema=["po_id", "line_no", "supplier_id", "promised_date", "quantity_ordered"], orient="row",
).with_columns(pl.col("promised_date").str.to_date())
EARLY_RECEIPTS = pl.DataFrame(
    [("E", 1, "2026-03-07", 100.0), ("E", 2, "2026-03-06", 100.0), ("E", 3, "2026-03-12", 100.0),
     ("E", 4, "2026-03-13", 100.0), ("E", 5, "2026-03-06", 50.0), ("E", 5, "2026-03-09", 150.0),
     ("E", 6, "2026-03-10", 80.0)],
    schema=["po_id", "line_no", "received_date", "quantity_received"], orient="row",
).with_columns(pl.col("received_date").str.to_date(), quantity_accepted=pl.col("quantity_received"),
               quantity_rejected=pl.lit(0.0))


def early_supplier(**options: object) -> dict:
    frame = metrics.supplier_metrics(pl.DataFrame({"supplier_id": ["E1"]}), EARLY_LINES, EARLY_RECEIPTS, EMPTY_NCR,
                                     EMPTY_FEEDBACK, as_of=AS_OF, window_days=90, tolerance_days=2, **options)
    return frame.row(0, named=True)


def test_early_and_late_tolerance_edges_per_line() -> None:
    facts = metrics.line_facts(EARLY_LINES.lazy(), EARLY_RECEIPTS.lazy(), as_of=AS_OF, window_days=90,
                               tolerance_days=2, early_tolerance_days=3).collect()
    table = {f"{r['po_id']}-{r['line_no']}": (r["on_time"], r["early"], r["late"], r["units_on_time"])
             for r in facts.to_dicts()}
    assert table == {
        "E-1": (True, False, False, 100.0),
        "E-2": (False, True, False, 0.0),
        "E-3": (True, False, False, 100.0),
        "E-4": (False, False, True, 0.0),
        "E-5": (False, True, False, 150.0),
        "E-6": (True, False, False, 50.0),
    }
    e1 = early_supplier(early_tolerance_days=3)
    assert (e1["order_lines"], e1["on_time_lines"], e1["early_lines"], e1["late_lines"]) == (6, 3, 2, 1)
    assert e1["on_time_rate"] == pytest.approx(0.5)
    assert e1["mean_days_late"] == pytest.approx(3.0)
    assert metrics.late_lines(EARLY_LINES, EARLY_RECEIPTS, as_of=AS_OF, window_days=90,
                              tolerance_days=2).select("po_id", "line_no", "days_late").rows() == [("E", 4, 3)]


def test_quantity_weighted_and_per_line_on_the_same_lines() -> None:
    per_line = early_supplier(early_tolerance_days=3)
    by_quantity = early_supplier(early_tolerance_days=3, on_time_basis="quantity")
    assert per_line["on_time_rate"] == pytest.approx(3 / 6)
    assert by_quantity["on_time_rate"] == pytest.approx(400 / 650)
    assert (by_quantity["units_due"], by_quantity["units_on_time"]) == (650.0, 400.0)
    # Units of a line are not independent trials: no Wilson interval for the quantity-weighted rate.
    assert by_quantity["on_time_rate_low"] is None and by_quantity["on_time_rate_high"] is None
    assert per_line["on_time_rate_low"] is not None
    # The basis changes the on-time rate only: the line counts stay what they are.
    assert by_quantity["on_time_lines"] == per_line["on_time_lines"] == 3


def test_without_an_early_tolerance_early_is_always_on_time() -> None:
    e1 = early_supplier()
    assert (e1["on_time_lines"], e1["early_lines"], e1["late_lines"]) == (5, 0, 1)
    assert e1["on_time_rate"] == pytest.approx(5 / 6)
    assert early_supplier(on_time_basis="quantity")["on_time_rate"] == pytest.approx(550 / 650)


def test_quantity_accuracy_tolerance_edges() -> None:
    assert early_supplier()["quantity_accuracy_rate"] == pytest.approx(5 / 6)
    assert early_supplier(quantity_accuracy_tolerance=0.6)["quantity_accuracy_rate"] == pytest.approx(1.0)
    assert early_supplier(quantity_accuracy_tolerance=0.5)["quantity_accuracy_rate"] == pytest.approx(5 / 6)


# --- lead time
#
# As of 2026-03-31, 90 days, tolerance 2. Supplier L1: twelve lines promised 01-25, the first eleven ordered
# 01-05 (promised lead time 20 days).
#
# | line  | completed (receipts)          | lead time | ≤ 20 |
# |-------|-------------------------------|-----------|------|
# | L-1   | 01-15                         | 10        | y    |
# | L-2   | 01-17                         | 12        | y    |
# | L-3   | 01-19                         | 14        | y    |
# | L-4   | 01-20                         | 15        | y    |
# | L-5   | 01-23                         | 18        | y    |
# | L-6   | 01-25 (on the promised date)  | 20        | y    |
# | L-7   | 01-26                         | 21        | n    |
# | L-8   | 01-30                         | 25        | n    |
# | L-9   | 02-04                         | 30        | n    |
# | L-10  | 02-04: 5, 02-14: 5 → 02-14    | 40        | n    |
# | L-11  | 5 of 10 received: not completed | —       | n    |
# | L-12  | 01-20, no order date          | —         | —    |
#
# Mean over the 10 completed lines with an order date: (10 + 12 + 14 + 15 + 18 + 20 + 21 + 25 + 30 + 40) / 10 =
# 205 / 10 = 20.5 days. p90, nearest rank: the ⌈0.9 × 10⌉ = 9th smallest = 30 days (linear interpolation would
# say 31). Adherence over the 11 lines with an order date: 6 / 11 (L-11 is past its promise, not completed).

LEAD_DAYS = (10, 12, 14, 15, 18, 20, 21, 25, 30)
LEAD_LINES = pl.DataFrame({
    "po_id": ["L"] * 12, "line_no": list(range(1, 13)), "supplier_id": ["L1"] * 12,
    "order_date": [D("2026-01-05")] * 11 + [None], "promised_date": [D("2026-01-25")] * 12,
    "quantity_ordered": [10.0] * 12,
})
LEAD_RECEIPTS = pl.DataFrame({
    "po_id": ["L"] * 13,
    "line_no": [*range(1, 10), 10, 10, 11, 12],
    "received_date": [D("2026-01-05") + timedelta(days=d) for d in LEAD_DAYS]
    + [D("2026-02-04"), D("2026-02-14"), D("2026-01-20"), D("2026-01-20")],
    "quantity_received": [10.0] * 9 + [5.0, 5.0, 5.0, 10.0],
}).with_columns(quantity_accepted=pl.col("quantity_received"), quantity_rejected=pl.lit(0.0))


def test_lead_time_mean_p90_and_adherence() -> None:
    frame = metrics.supplier_metrics(pl.DataFrame({"supplier_id": ["L1"]}), LEAD_LINES, LEAD_RECEIPTS, EMPTY_NCR,
                                     EMPTY_FEEDBACK, as_of=AS_OF, window_days=90, tolerance_days=2)
    l1 = frame.row(0, named=True)
    assert (l1["order_lines"], l1["lines_with_order_date"], l1["lead_time_lines"], l1["lead_time_met_lines"]) == (
        12, 11, 10, 6)
    assert l1["mean_lead_time_days"] == pytest.approx(20.5)
    assert l1["p90_lead_time_days"] == 30.0
    assert l1["lead_time_adherence_rate"] == pytest.approx(6 / 11)


def test_lead_time_per_line() -> None:
    facts = metrics.line_facts(LEAD_LINES.lazy(), LEAD_RECEIPTS.lazy(), as_of=AS_OF, window_days=90,
                               tolerance_days=2).collect().sort("line_no")
    assert facts["lead_time_days"].to_list() == [*LEAD_DAYS, 40, None, None]
    assert facts["lead_time_met"].to_list() == [True] * 6 + [False] * 5 + [None]


def test_lead_times_without_order_dates_are_not_measured() -> None:
    frame = metrics.supplier_metrics(pl.DataFrame({"supplier_id": ["L1"]}), LEAD_LINES.drop("order_date"),
                                     LEAD_RECEIPTS, EMPTY_NCR, EMPTY_FEEDBACK, as_of=AS_OF, window_days=90,
                                     tolerance_days=2)
    l1 = frame.row(0, named=True)
    assert (l1["order_lines"], l1["lines_with_order_date"], l1["lead_time_lines"]) == (12, 0, 0)
    assert l1["mean_lead_time_days"] is None and l1["p90_lead_time_days"] is None
    assert l1["lead_time_adherence_rate"] is None and l1["lead_time_adherence_rate_low"] is None
    reasons = frame.select(metrics.not_measured_reason(m).alias(m)
                           for m in ("lead_time_adherence_rate", "p90_lead_time_days"))
    assert reasons.row(0) == ("no order dates on the order lines due", "no order dates on the order lines due")


# --- price variance
#
# As of 2026-03-31, window 2026-01-01 .. 03-31 (by order date). Supplier P1:
#
# | line | item | currency | ordered    | price | previous (same item and currency)  | change                 |
# |------|------|----------|------------|-------|------------------------------------|------------------------|
# | A-1  | A    | EUR      | 2025-11-01 | 10.00 | — (first purchase, before window)  | not in the window      |
# | A-2  | A    | EUR      | 2026-01-10 | 11.00 | 10.00 (A-1, before the window)     | +0.10                  |
# | A-3  | A    | EUR      | 2026-02-10 |  9.90 | 11.00                              | −0.10                  |
# | A-4  | A    | USD      | 2026-02-15 | 20.00 | — (first purchase in USD)          | not counted            |
# | A-5  | A    | EUR      | 2026-02-20 |  —    | (no price: takes no part)          |                        |
# | B-1  | B    | EUR      | 2026-02-01 |  5.00 | — (first purchase of B)            | not counted            |
# | Q-1  | C    | EUR      | 2026-03-01 |  4.00 | — (first purchase of C)            | not counted            |
# | Q-2  | C    | EUR      | 2026-03-01 |  5.00 | 4.00 (same day: Q-1 by po, line)   | +0.25                  |
# | D-1  | D    | EUR      | 2026-01-05 |  0.00 | —                                  | not counted            |
# | D-2  | D    | EUR      | 2026-01-20 |  3.00 | 0.00 (no relative change from 0)   | not counted            |
# | N-1  | —    | EUR      | 2026-01-15 |  7.00 | (no item: takes no part)           |                        |
#
# Priced lines 3: (0.10 − 0.10 + 0.25) / 3 = 0.08333…

PRICE_LINES = pl.DataFrame(
    [("A", 1, "A", "EUR", "2025-11-01", 10.00), ("A", 2, "A", "EUR", "2026-01-10", 11.00),
     ("A", 3, "A", "EUR", "2026-02-10", 9.90), ("A", 4, "A", "USD", "2026-02-15", 20.00),
     ("A", 5, "A", "EUR", "2026-02-20", None), ("B", 1, "B", "EUR", "2026-02-01", 5.00),
     ("Q", 2, "C", "EUR", "2026-03-01", 5.00), ("Q", 1, "C", "EUR", "2026-03-01", 4.00),
     ("D", 1, "D", "EUR", "2026-01-05", 0.00), ("D", 2, "D", "EUR", "2026-01-20", 3.00),
     ("N", 1, None, "EUR", "2026-01-15", 7.00)],
    schema={"po_id": pl.String, "line_no": pl.Int64, "item_id": pl.String, "currency": pl.String,
            "order_date": pl.String, "unit_price": pl.Float64}, orient="row",
).with_columns(supplier_id=pl.lit("P1"), order_date=pl.col("order_date").str.to_date(),
               promised_date=pl.col("order_date").str.to_date() + timedelta(days=10), quantity_ordered=pl.lit(1.0))


def test_price_changes_compare_with_the_previous_price_of_the_same_item() -> None:
    changes = metrics.price_changes(PRICE_LINES.lazy(), as_of=AS_OF, window_days=90).collect().sort("po_id", "line_no")
    assert changes.select("po_id", "line_no", "previous_price").rows() == [("A", 2, 10.0), ("A", 3, 11.0),
                                                                            ("Q", 2, 4.0)]
    assert changes["price_change"].to_list() == pytest.approx([0.10, -0.10, 0.25])


def test_price_variance_is_the_mean_change_over_lines_with_a_previous_price() -> None:
    frame = metrics.supplier_metrics(pl.DataFrame({"supplier_id": ["P1", "P2"]}), PRICE_LINES, RECEIPTS.clear(),
                                     EMPTY_NCR, EMPTY_FEEDBACK, as_of=AS_OF, window_days=90, tolerance_days=2)
    p1, p2 = frame.sort("supplier_id").rows(named=True)
    assert p1["priced_lines"] == 3
    assert p1["price_variance"] == pytest.approx(0.25 / 3)
    assert (p2["priced_lines"], p2["price_variance"]) == (0, None)


def test_a_first_purchase_has_no_previous_price() -> None:
    first_only = PRICE_LINES.filter(pl.col("po_id") == "B")
    assert metrics.price_changes(first_only.lazy(), as_of=AS_OF, window_days=90).collect().height == 0
    frame = metrics.supplier_metrics(pl.DataFrame({"supplier_id": ["P1"]}), first_only, RECEIPTS.clear(), EMPTY_NCR,
                                     EMPTY_FEEDBACK, as_of=AS_OF, window_days=90, tolerance_days=2)
    assert frame.select("priced_lines", "price_variance").row(0) == (0, None)


# --- nonconformances
#
# As of 2026-03-31, window from 2026-01-01, overdue after 30 days open. Supplier S1:
#
# | ncr | severity | raised     | closed     | in window | open at as-of | days open | overdue | days to close |
# |-----|----------|------------|------------|-----------|---------------|-----------|---------|---------------|
# | N1  | minor    | 2026-03-01 | —          | raised    | y             | 30        | n (= 30)|               |
# | N2  | critical | 2026-02-28 | —          | raised    | y             | 31        | y       |               |
# | N3  | major    | 2025-12-01 | 2026-01-10 | closed    | n             |           |         | 40            |
# | N4  | major    | 2026-02-01 | 2026-02-11 | both      | n             |           |         | 10            |
# | N5  | critical | 2025-11-01 | 2026-04-05 | —         | y (closed later) | 150    | y       |               |
# | N6  | critical | 2026-04-02 | —          | not yet raised at the as-of date: ignored                       |
# | N7  | minor    | 2025-10-01 | 2025-12-15 | —         | n             |           |         | (before)      |
#
# Raised in the window 3 (N1, N2, N4); open 3 (N1, N2, N5), of them critical 2; overdue 2 (N2, N5); closed in
# the window 2 (N3, N4), mean days to close (40 + 10) / 2 = 25. Overdue after 29 days: N1 too, 3.

NCRS = pl.DataFrame(
    [("N1", "S1", "2026-03-01", "minor", None), ("N2", "S1", "2026-02-28", "critical", None),
     ("N3", "S1", "2025-12-01", "major", "2026-01-10"), ("N4", "S1", "2026-02-01", "major", "2026-02-11"),
     ("N5", "S1", "2025-11-01", "critical", "2026-04-05"), ("N6", "S1", "2026-04-02", "critical", None),
     ("N7", "S1", "2025-10-01", "minor", "2025-12-15")],
    schema=["ncr_id", "supplier_id", "raised_date", "severity", "closed_date"], orient="row",
).with_columns(pl.col("raised_date", "closed_date").str.to_date())


def test_nonconformance_counts_overdue_and_days_to_close() -> None:
    s1 = compute(NCRS)["S1"]
    assert (s1["nonconformances"], s1["open_nonconformances"], s1["open_critical_nonconformances"]) == (3, 3, 2)
    assert s1["overdue_nonconformances"] == 2
    assert s1["closed_nonconformances"] == 2
    assert s1["mean_days_to_close"] == pytest.approx(25.0)


def test_a_nonconformance_open_exactly_the_overdue_days_is_not_overdue() -> None:
    def overdue(days: int) -> int:
        frame = metrics.supplier_metrics(SUPPLIERS, LINES, RECEIPTS, NCRS, EMPTY_FEEDBACK, as_of=AS_OF,
                                         window_days=90, tolerance_days=2, ncr_overdue_days=days)
        return frame.filter(pl.col("supplier_id") == "S1")["overdue_nonconformances"].item()

    assert overdue(30) == 2  # N1 open 30 days: not more than 30
    assert overdue(29) == 3  # N1 open 30 > 29 days
    assert overdue(31) == 1  # N2 open 31 days: not more than 31; N5 still


def test_no_nonconformance_closed_in_the_window_has_no_mean_days_to_close() -> None:
    s1 = compute(NCRS.filter(pl.col("ncr_id").is_in(["N1", "N2"])))["S1"]
    assert (s1["closed_nonconformances"], s1["mean_days_to_close"]) == (0, None)
    assert compute(NCRS)["S2"]["mean_days_to_close"] is None


# --- certificate at the as-of date (2026-03-31)
#
# | supplier | expiry     | valid | days to expiry                      |
# |----------|------------|-------|-------------------------------------|
# | C1       | 2026-03-31 | 1     | 0 (expires on the as-of date: valid) |
# | C2       | 2026-03-30 | 0     | −1                                  |
# | C3       | —          | null  | null                                |
# | C4       | 2026-06-29 | 1     | 30 + 31 + 29 = 90                   |

def test_certificate_validity_and_days_to_expiry() -> None:
    suppliers = pl.DataFrame({"supplier_id": ["C1", "C2", "C3", "C4"],
                              "certificate_expiry": [D("2026-03-31"), D("2026-03-30"), None, D("2026-06-29")]})
    frame = metrics.supplier_metrics(suppliers, LINES, RECEIPTS, EMPTY_NCR, EMPTY_FEEDBACK, as_of=AS_OF,
                                     window_days=90, tolerance_days=2).sort("supplier_id")
    assert frame.select("supplier_id", "certificates", "certificate_valid", "days_to_expiry").rows() == [
        ("C1", 1, 1, 0), ("C2", 1, 0, -1), ("C3", 0, None, None), ("C4", 1, 1, 90)]
    assert frame.select(metrics.not_measured_reason("certificate_valid").alias("why"))["why"].to_list() == [
        None, None, "no certificate expiry date", None]


def test_suppliers_without_a_certificate_column_have_no_certificate_metrics() -> None:
    s1 = compute()["S1"]
    assert (s1["certificates"], s1["certificate_valid"], s1["days_to_expiry"]) == (0, None, None)


# --- why a line is not on time, and the records behind the metrics
#
# The hand-computed table at the top: P2-1 completed 02-10, 9 days after its promise (late); P3-1 got 50 of 80
# before its promise (short, 30 missing); P4-1 has nothing received by the as-of date 03-31, 19 days past its
# deadline 03-12 (not yet delivered: 21 days late counted from the promise). Rejected receipts in the window:
# P2-2 10 of 200, P5-1 5 of 10 (its replacement came later), P0-1 2 of 10 (its line was promised before the window).


def test_each_line_not_on_time_says_why_in_words() -> None:
    facts = metrics.line_facts(LINES.lazy(), RECEIPTS.lazy(), as_of=AS_OF, window_days=90, tolerance_days=2).collect()
    why = {f"{r['po_id']}-{r['line_no']}": (r["reason"], r["why"]) for r in facts.to_dicts()}
    assert why == {
        "P1-1": (None, None), "P1-2": (None, None), "P2-2": (None, None), "P5-1": (None, None),
        "P2-1": ("late", "late: 9 days after the promised date"),
        "P3-1": ("short", "short: 50 of 80 units received (30 missing)"),
        "P4-1": ("not delivered", "not yet delivered (19 days past the deadline)"),
    }
    late = metrics.late_lines(LINES, RECEIPTS, as_of=AS_OF, window_days=90, tolerance_days=2)
    assert late.select("po_id", "days_late", "quantity_received", "quantity_missing", "why").rows() == [
        ("P4", 21, 0.0, 20.0, "not yet delivered (19 days past the deadline)"),
        ("P3", 0, 50.0, 30.0, "short: 50 of 80 units received (30 missing)"),
        ("P2", 9, 50.0, 0.0, "late: 9 days after the promised date"),
    ]


def test_a_short_line_delivered_late_says_both_and_one_day_is_singular() -> None:
    # Tolerance 0, as of 03-31. Q1: 4 of 10 on 03-06 (promised 03-01). Q2: 1.25 ordered, 0.5 received on the
    # promised date. Q3: complete one day late. Q4: promised 03-31, nothing yet: its deadline is the as-of date.
    lines = pl.DataFrame({"po_id": ["Q"] * 4, "line_no": [1, 2, 3, 4], "supplier_id": ["S1"] * 4,
                          "promised_date": [D("2026-03-01")] * 3 + [AS_OF], "quantity_ordered": [10.0, 1.25, 5.0, 1.0]})
    receipts = pl.DataFrame({"po_id": ["Q"] * 3, "line_no": [1, 2, 3],
                             "received_date": [D("2026-03-06"), D("2026-03-01"), D("2026-03-02")],
                             "quantity_received": [4.0, 0.5, 5.0], "quantity_accepted": [4.0, 0.5, 5.0],
                             "quantity_rejected": [0.0, 0.0, 0.0]})
    facts = metrics.line_facts(lines.lazy(), receipts.lazy(), as_of=AS_OF, window_days=90, tolerance_days=0).collect()
    assert facts.sort("line_no")["why"].to_list() == [
        "short: 4 of 10 units received (6 missing), the last 5 days after the promised date",
        "short: 0.5 of 1.25 units received (0.75 missing)",
        "late: 1 day after the promised date",
        "not yet delivered (the deadline is the as-of date)",
    ]


def test_early_lines_say_how_early_and_are_reported_but_not_late() -> None:
    facts = metrics.line_facts(EARLY_LINES.lazy(), EARLY_RECEIPTS.lazy(), as_of=AS_OF, window_days=90,
                               tolerance_days=2, early_tolerance_days=3).collect()
    early = "early: first receipt 4 days before the promised date (up to 3 days early is on time)"
    assert dict(facts.select(pl.format("{}-{}", "po_id", "line_no"), "why").rows()) == {
        "E-1": None, "E-2": early, "E-3": None, "E-4": "late: 3 days after the promised date", "E-5": early,
        "E-6": None}
    performance = metrics.measure_suppliers(pl.DataFrame({"supplier_id": ["E1"]}), EARLY_LINES, EARLY_RECEIPTS,
                                            EMPTY_NCR, EMPTY_FEEDBACK, as_of=AS_OF, window_days=90, tolerance_days=2,
                                            early_tolerance_days=3)
    # the lines not on time, for the report: the early ones too (no days late), latest promise first
    assert sorted(performance.late_lines.select("line_no", "reason", "days_late").rows()) == [
        (2, "early", None), (4, "late", 3), (5, "early", None)]
    # without an early tolerance nothing is too early: only E-4 is not on time
    assert metrics.line_facts(EARLY_LINES.lazy(), EARLY_RECEIPTS.lazy(), as_of=AS_OF, window_days=90,
                              tolerance_days=2).collect()["reason"].drop_nulls().to_list() == ["late"]


def test_the_records_behind_the_metrics_one_row_per_record_and_metric() -> None:
    performance = metrics.measure_suppliers(SUPPLIERS, LINES, RECEIPTS.with_columns(
        receipt_id=pl.format("R{}-{}-{}", "po_id", "line_no", pl.col("received_date").dt.day())), EMPTY_NCR,
        EMPTY_FEEDBACK, as_of=AS_OF, window_days=90, tolerance_days=2, with_records=True)
    records = performance.records
    assert records.schema == pl.Schema(metrics.RECORD_SCHEMA)
    assert set(records["supplier_id"]) == {"S1"}
    on_time, quantity, rejects = metrics.ON_TIME_RECORDS, metrics.QUANTITY_RECORDS, metrics.REJECTED_RECORDS
    assert records.select("metric", "why", "po_id", "line_no", "receipt_id", "received_date", "quantity_received",
                          "quantity_missing", "quantity_rejected", "days_late").rows() == [
        (on_time, "not yet delivered (19 days past the deadline)", "P4", 1, None, None, 0.0, 20.0, 0.0, 21),
        (on_time, "short: 50 of 80 units received (30 missing)", "P3", 1, None, D("2026-02-28"), 50.0, 30.0, 0.0, 0),
        (on_time, "late: 9 days after the promised date", "P2", 1, None, D("2026-02-10"), 50.0, 0.0, 0.0, 9),
        (quantity, "short: 0 of 20 units received (20 missing)", "P4", 1, None, None, 0.0, 20.0, 0.0, None),
        (quantity, "short: 50 of 80 units received (30 missing)", "P3", 1, None, D("2026-02-28"), 50.0, 30.0, 0.0,
         None),
        (rejects, "rejected: 10 of 200 units inspected", "P2", 2, "RP2-2-14", D("2026-02-14"), 200.0, None, 10.0,
         None),
        (rejects, "rejected: 5 of 10 units inspected", "P5", 1, "RP5-1-14", D("2026-01-14"), 10.0, None, 5.0, None),
        (rejects, "rejected: 2 of 10 units inspected", "P0", 1, "RP0-1-5", D("2026-01-05"), 10.0, None, 2.0, None),
    ]
    # the records counted are the metrics' own: 3 lines not on time, 17 units rejected in the window
    s1 = performance.metrics.filter(pl.col("supplier_id") == "S1").row(0, named=True)  # row order is not kept
    assert records.filter(pl.col("metric") == on_time).height == s1["order_lines"] - s1["on_time_lines"]
    assert records.filter(pl.col("metric") == rejects)["quantity_rejected"].sum() == 17.0
    # measured without asking for them, there are none (and they cost nothing)
    plain = metrics.measure_suppliers(SUPPLIERS, LINES, RECEIPTS, EMPTY_NCR, EMPTY_FEEDBACK, as_of=AS_OF,
                                      window_days=90, tolerance_days=2)
    assert plain.records.is_empty() and plain.records.schema == records.schema


def test_an_over_delivery_is_a_quantity_record_but_a_replacement_for_rejects_is_not() -> None:
    # O1: 12 of 10 kept; O2: 10 received, 4 rejected, 4 more sent as replacement (14 received, 10 kept).
    lines = pl.DataFrame({"po_id": ["O", "O"], "line_no": [1, 2], "supplier_id": ["S1", "S1"],
                          "promised_date": [D("2026-03-01")] * 2, "quantity_ordered": [10.0, 10.0]})
    receipts = pl.DataFrame({"po_id": ["O"] * 3, "line_no": [1, 2, 2],
                             "received_date": [D("2026-02-27"), D("2026-02-27"), D("2026-02-28")],
                             "quantity_received": [12.0, 10.0, 4.0], "quantity_accepted": [12.0, 6.0, 4.0],
                             "quantity_rejected": [0.0, 4.0, 0.0]})
    records = metrics.measure_suppliers(SUPPLIERS, lines, receipts, EMPTY_NCR, EMPTY_FEEDBACK, as_of=AS_OF,
                                        window_days=90, tolerance_days=2, with_records=True).records
    assert records.select("metric", "line_no", "why").rows() == [
        (metrics.QUANTITY_RECORDS, 1, "over-delivered: 12 units kept of 10 ordered (2 extra)"),
        (metrics.REJECTED_RECORDS, 2, "rejected: 4 of 10 units inspected"),
    ]


# --- how the metrics are computed at scale must not change what they are ------------------------------------

def _everything(suppliers: pl.DataFrame, lines: pl.DataFrame, receipts: pl.DataFrame,
                receipt_lines: pl.Series | None = None) -> metrics.SupplierPerformance:
    return metrics.measure_suppliers(suppliers, lines, receipts, EMPTY_NCR, EMPTY_FEEDBACK, as_of=AS_OF,
                                     window_days=90, tolerance_days=2, with_records=True, receipt_lines=receipt_lines)


def _same(first: metrics.SupplierPerformance, second: metrics.SupplierPerformance) -> None:
    from polars.testing import assert_frame_equal

    assert_frame_equal(first.metrics, second.metrics)
    assert_frame_equal(first.late_lines, second.late_lines)
    assert_frame_equal(first.records, second.records)


BOTH = pl.concat([LINES, PRICE_LINES.select(LINES.columns)]).with_columns(
    item_id=pl.lit("X"), currency=pl.lit("EUR"), unit_price=pl.int_range(1, pl.len() + 1, dtype=pl.Int64) * 1.5,
    order_date=pl.col("promised_date") - timedelta(days=20))


def test_colliding_key_hashes_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Receipts are matched to their lines and price histories sorted by a 64-bit hash; should every key's first
    hash collide, the second hash keeps the match exact and the price history is sorted by the texts."""
    expected = _everything(SUPPLIERS, BOTH, RECEIPTS)
    assert expected.metrics["priced_lines"].sum() > 0 and expected.records.height > 0
    real = metrics.key_hash
    monkeypatch.setattr(metrics, "key_hash", lambda *columns, seed=0: real(*columns, seed=seed) if seed else
                        pl.lit(7, pl.UInt64))
    _same(_everything(SUPPLIERS, BOTH, RECEIPTS), expected)


def test_lines_measured_in_parts_give_what_they_give_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = _everything(SUPPLIERS, BOTH, RECEIPTS)
    assert len(metrics._line_parts(BOTH.height, 2)) > 3
    monkeypatch.setattr(metrics, "_line_parts", lambda count, size=2: [range(s, min(s + 2, count))
                                                                      for s in range(0, count, 2)])
    _same(_everything(SUPPLIERS, BOTH, RECEIPTS), expected)


def test_one_suppliers_metrics_are_what_it_gets_among_all() -> None:
    two = pl.concat([BOTH, BOTH.with_columns(supplier_id=pl.lit("S2"), po_id="Z" + pl.col("po_id"))])
    receipts = pl.concat([RECEIPTS, RECEIPTS.with_columns(po_id="Z" + pl.col("po_id"))])
    together = _everything(pl.DataFrame({"supplier_id": ["S1", "S2"]}), two, receipts)
    alone = _everything(pl.DataFrame({"supplier_id": ["S1"]}), two, receipts)
    _same(alone, metrics.SupplierPerformance(
        metrics=together.metrics.filter(pl.col("supplier_id") == "S1"),
        late_lines=together.late_lines.filter(pl.col("supplier_id") == "S1"),
        records=together.records.filter(pl.col("supplier_id") == "S1")))


@pytest.mark.parametrize("measure_every_line_from", [0.0, 1.01])  # every line measured / the chosen ones only
@pytest.mark.parametrize("handed_on", [False, True])
def test_the_lines_of_suppliers_not_chosen_change_nothing_and_show_nowhere(
        monkeypatch: pytest.MonkeyPatch, measure_every_line_from: float, handed_on: bool) -> None:
    """A nightly run leaves out the few lines of inactive suppliers; whether they are measured and let go of or
    left out before, the chosen suppliers get what they get without them, and nothing of the others is returned."""
    other = BOTH.with_columns(supplier_id=pl.lit("S9"), po_id="Z" + pl.col("po_id"))
    lines = pl.concat([BOTH, other]).sample(fraction=1.0, shuffle=True, seed=5)
    receipts = pl.concat([RECEIPTS, RECEIPTS.with_columns(po_id="Z" + pl.col("po_id"))])
    receipt_lines = (receipts.join(lines.with_row_index("line").select("po_id", "line_no", "line"),
                                   on=["po_id", "line_no"], how="left", maintain_order="left").get_column("line")
                     if handed_on else None)
    without = _everything(SUPPLIERS, BOTH, RECEIPTS)
    assert without.late_lines.height > 0 and without.records.height > 0
    monkeypatch.setattr(metrics, "MEASURE_EVERY_LINE_FROM", measure_every_line_from)
    _same(_everything(SUPPLIERS, lines, receipts, receipt_lines), without)


@pytest.mark.parametrize("n", range(1, 41))
def test_p90_lead_time_is_the_nearest_rank(n: int) -> None:
    days = [(7 * i) % (n + 3) for i in range(n)]  # some repeats, not in order
    nearest_rank = sorted(days)[-(-9 * n // 10) - 1]  # the ⌈0.9 n⌉-th smallest
    got = pl.DataFrame({"lead_time_days": days}).select(metrics.p90_lead_time_days()).item()
    assert got == nearest_rank


def test_receipts_handed_on_with_their_lines_give_what_matching_them_gives() -> None:
    """Validation hands on each receipt's line (its row number in the lines, null for none); the metrics read it
    instead of matching the receipts again, for all suppliers or one (its lines then renumbered among its own)."""
    two = pl.concat([BOTH, BOTH.with_columns(supplier_id=pl.lit("S2"), po_id="Z" + pl.col("po_id"))])
    two = two.sample(fraction=1.0, shuffle=True, seed=3)  # S2's lines among S1's: renumbering is not a slice
    receipts = pl.concat([RECEIPTS, RECEIPTS.with_columns(po_id="Z" + pl.col("po_id")),
                          RECEIPTS.head(1).with_columns(po_id=pl.lit("NOWHERE"))])  # a line not there: null
    receipt_lines = receipts.join(two.with_row_index("line").select("po_id", "line_no", "line"),
                                  on=["po_id", "line_no"], how="left", maintain_order="left").get_column("line")
    assert receipt_lines.null_count() == 1
    for chosen in (["S1", "S2"], ["S1"], ["S2"]):
        suppliers = pl.DataFrame({"supplier_id": chosen})
        handed_on = _everything(suppliers, two, receipts, receipt_lines)
        assert handed_on.late_lines.height > 0 and handed_on.records.height > 0
        _same(handed_on, _everything(suppliers, two, receipts))
    with pytest.raises(ValueError, match="receipt_lines has 2 rows for"):
        _everything(suppliers, two, receipts, receipt_lines.head(2))


def test_rejected_receipts_of_one_line_and_day_are_listed_by_id_and_one_without_an_id_last() -> None:
    line = LINES.filter(pl.col("po_id") == "P2").head(1)
    day = D("2026-02-14")
    receipts = pl.DataFrame({"receipt_id": ["B", None, "A"], "po_id": ["P2"] * 3, "line_no": [1] * 3,
                             "received_date": [day] * 3, "quantity_received": [10.0] * 3,
                             "quantity_accepted": [9.0] * 3, "quantity_rejected": [1.0] * 3})
    records = metrics.measure_suppliers(SUPPLIERS, line, receipts, EMPTY_NCR, EMPTY_FEEDBACK, as_of=AS_OF,
                                        window_days=90, tolerance_days=2, with_records=True).records
    assert records.filter(pl.col("metric") == metrics.REJECTED_RECORDS)["receipt_id"].to_list() == ["A", "B", None]
