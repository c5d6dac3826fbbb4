"""Supplier performance metrics over an evaluation window, as Polars expressions.

Vocabulary (all dates are days; only records dated on or before the as-of date are known):

- window: ``window_start = as_of - window_days + 1`` to ``as_of``, both inclusive.
- deadline of a line: ``promised_date + tolerance_days``.
- a line is *judged* when its promised date is in the window and its deadline is on or before the as-of
  date; later lines are still open and count nowhere yet. Receipts after the as-of date are ignored.
- completed date of a line: the received date of the receipt that brings the cumulative quantity received
  up to the quantity ordered (null while the line is short).
- a receipt is *inspected* when it has both quantity_accepted and quantity_rejected; without them (an export
  with no inspection results) nothing is known about the quality of what it delivered.
- a judged line is *inspected* when none of its receipts known at the as-of date is uninspected (a line with
  nothing received is inspected: nothing was accepted). Its in-full and OTIF outcomes are known only then.
  A supplier none of whose judged lines has an inspected receipt has no in-full or OTIF rate: its only known
  outcomes would be the lines with nothing received, every one a failure.

The per-line facts come from ``line_facts``; the on-time rate is a share of judged lines, the in-full and OTIF
rates a share of inspected lines. Receipt metrics (acceptance, PPM) use the inspected receipts received in the
window, whichever line they belong to. A metric with nothing to measure is null (*not measured*), never 0;
:func:`not_measured_reason` says why in words.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

Z_95 = 1.959963984540054

RECEIPT_KEYS = ("po_id", "line_no")
MICRO = 1_000_000  # quantities are compared to a millionth of a unit


def window_start(as_of: date, window_days: int) -> date:
    """First day of the window: ``as_of - window_days + 1``."""
    return as_of - timedelta(days=window_days - 1)


def line_facts(
    lines: pl.LazyFrame, receipts: pl.LazyFrame, *, as_of: date, window_days: int, tolerance_days: int
) -> pl.LazyFrame:
    """One row per judged line: supplier, dates, quantities by the deadline and by the as-of date, outcome flags.

    - ``inspected``            = no receipt dated ≤ as_of lacks quantity_accepted or quantity_rejected
    - ``has_inspection_results`` = some receipt dated ≤ as_of has both
    - ``received_by_deadline`` = Σ quantity_received of receipts dated ≤ deadline
    - ``accepted_by_deadline`` = Σ quantity_accepted of receipts dated ≤ deadline (null unless inspected)
    - ``accepted_total``       = Σ quantity_accepted of receipts dated ≤ as_of (null unless inspected)
    - ``on_time``  = received_by_deadline ≥ quantity_ordered
    - ``in_full``  = accepted_total ≥ quantity_ordered (null, unknown, unless inspected)
    - ``otif``     = accepted_by_deadline ≥ quantity_ordered (null, unknown, unless inspected)
    - ``days_late`` (lines not on time) = max(0, last_delivery − promised_date), where last_delivery is the
      completed date, else (a short line) its latest receipt, else (nothing received yet) the as-of date.
      A short line's lateness is what it delivered late; its shortfall is the in-full rate's business.
    """
    start = window_start(as_of, window_days)
    tolerance = pl.duration(days=tolerance_days)
    judged = (
        lines.with_columns(deadline=pl.col("promised_date") + tolerance)
        .filter(pl.col("promised_date").is_between(start, as_of), pl.col("deadline") <= as_of)
        .select("supplier_id", "po_id", "line_no", "promised_date", "deadline", "quantity_ordered")
    )
    known_receipts = receipts.filter(pl.col("received_date") <= as_of).select(
        *RECEIPT_KEYS, "received_date", "quantity_received", "quantity_accepted", "quantity_rejected"
    )
    # Sorted by line and date, a line's running quantity is the global running total minus the total before
    # the line began: no per-group window. Quantities are summed and compared in integer micro-units, so
    # 0.1 + 0.7 received covers 0.8 ordered (in floats it does not). A left join keeps lines with no receipt.
    new_line = (pl.col("po_id") != pl.col("po_id").shift()) | (pl.col("line_no") != pl.col("line_no").shift())
    per_receipt = (
        judged.join(known_receipts, on=list(RECEIPT_KEYS), how="left")
        .sort(*RECEIPT_KEYS, "received_date", nulls_last=True)
        .with_columns(
            new_line=new_line.fill_null(True),
            received_micro=_micro(pl.col("quantity_received").fill_null(0.0)),
            accepted_micro=_micro(pl.col("quantity_accepted")),  # null for an uninspected receipt; sums skip it
            uninspected=pl.col("received_date").is_not_null() & ~_receipt_inspected(),
            ordered_micro=_micro(pl.col("quantity_ordered")),
        )
        .with_columns(running=pl.col("received_micro").cum_sum())
        .with_columns(
            line_index=pl.col("new_line").cum_sum(),
            received_so_far=pl.col("running")
            - pl.when(pl.col("new_line")).then(pl.col("running") - pl.col("received_micro")).forward_fill(),
        )
    )
    by_deadline = pl.col("received_date") <= pl.col("deadline")
    ordered_micro = pl.col("ordered_micro")
    return (
        per_receipt.group_by("line_index")
        .agg(
            pl.col(*RECEIPT_KEYS, "supplier_id", "promised_date", "deadline", "quantity_ordered", "ordered_micro")
            .first(),
            received_by_deadline=pl.col("received_micro").filter(by_deadline).sum(),
            accepted_by_deadline=pl.col("accepted_micro").filter(by_deadline).sum(),
            received_total=pl.col("received_micro").sum(),
            accepted_total=pl.col("accepted_micro").sum(),
            completed_date=pl.col("received_date").filter(pl.col("received_so_far") >= ordered_micro).min(),
            last_receipt_date=pl.col("received_date").max(),
            inspected=~pl.col("uninspected").any(),
            has_inspection_results=(pl.col("received_date").is_not_null() & _receipt_inspected()).any(),
        )
        .drop("line_index")
        .with_columns(
            on_time=pl.col("received_by_deadline") >= ordered_micro,
            in_full=pl.when("inspected").then(pl.col("accepted_total") >= ordered_micro),
            otif=pl.when("inspected").then(pl.col("accepted_by_deadline") >= ordered_micro),
        )
        .drop("ordered_micro")
        .with_columns(
            (pl.col(c) / MICRO).alias(c) for c in ("received_by_deadline", "received_total")
        )
        .with_columns(
            pl.when("inspected").then(pl.col(c) / MICRO).alias(c) for c in ("accepted_by_deadline", "accepted_total")
        )
        .with_columns(
            days_late=pl.when(~pl.col("on_time")).then(
                (pl.coalesce("completed_date", "last_receipt_date", pl.lit(as_of)) - pl.col("promised_date"))
                .dt.total_days()
                .clip(lower_bound=0)
            )
        )
    )


def _micro(quantity: pl.Expr) -> pl.Expr:
    return (quantity * MICRO).round().cast(pl.Int64)


def _receipt_inspected() -> pl.Expr:
    return pl.col("quantity_accepted").is_not_null() & pl.col("quantity_rejected").is_not_null()


def on_time_rate() -> pl.Expr:
    """On-time delivery rate = lines fully received by their deadline / judged lines; null with no judged line."""
    return pl.col("on_time").mean()


def in_full_rate() -> pl.Expr:
    """In-full rate = lines whose accepted quantity (by the as-of date) covers the order / inspected lines.

    Inspected lines are the judged lines with no uninspected receipt, the lines whose outcome is known. Null
    (not measured) when there is none, or when no judged line has an inspected receipt at all.
    """
    return _with_inspection_results(pl.col("in_full").mean())  # a boolean's mean skips nulls: known outcomes only


def otif_rate() -> pl.Expr:
    """OTIF rate = lines whose accepted quantity received by the deadline covers the order / inspected lines.

    Stricter than on time *and* in full separately: a rejected delivery replaced after the deadline is
    on time (quantity arrived) and in full (replacement accepted) but not OTIF (usable goods came late).
    Like the in-full rate it is over inspected lines only, and null (not measured) when there is none or no
    judged line has an inspected receipt.
    """
    return _with_inspection_results(pl.col("otif").mean())


def _with_inspection_results(value: pl.Expr) -> pl.Expr:
    """``value`` for a supplier some of whose judged lines have an inspected receipt, else null."""
    return pl.when(pl.col("has_inspection_results").any()).then(value)


def mean_days_late() -> pl.Expr:
    """Mean days late = Σ days_late of lines not on time / number of such lines; 0 when none is late.

    Over judged lines, so null (not measured) only when the supplier has no judged line at all: every line on
    time is a measured 0.
    """
    return pl.col("days_late").mean().fill_null(0.0)


def acceptance_rate() -> pl.Expr:
    """Acceptance rate = Σ quantity_accepted / Σ (quantity_accepted + quantity_rejected), inspected receipts.

    Over the inspected receipts in the window; null (not measured) when they inspected no unit.
    """
    return pl.col("quantity_accepted").filter(_receipt_inspected()).sum() / _units_inspected()


def ppm_rejected() -> pl.Expr:
    """PPM rejected = 10⁶ × Σ quantity_rejected / Σ (quantity_accepted + quantity_rejected), inspected receipts.

    Over the inspected receipts in the window; null (not measured) when they inspected no unit — never 0 ppm.
    """
    return 1_000_000 * pl.col("quantity_rejected").filter(_receipt_inspected()).sum() / _units_inspected()


def _units_inspected() -> pl.Expr:
    units = (pl.col("quantity_accepted") + pl.col("quantity_rejected")).sum()  # null + x is null: inspected only
    return pl.when(units > 0).then(units)


def wilson_interval(successes: pl.Expr, trials: pl.Expr, *, z: float = Z_95) -> tuple[pl.Expr, pl.Expr]:
    """95 % Wilson score interval for a rate p = successes / trials (null when trials = 0).

    centre = (p + z²/2n) / (1 + z²/n);  half = z·√(p(1−p)/n + z²/4n²) / (1 + z²/n)
    """
    n = trials.cast(pl.Float64)
    p = successes.cast(pl.Float64) / n
    denominator = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denominator
    half = z * (p * (1 - p) / n + z**2 / (4 * n**2)).sqrt() / denominator
    valid = trials > 0
    return pl.when(valid).then(centre - half), pl.when(valid).then(centre + half)


def delivery_metrics(facts: pl.LazyFrame) -> pl.LazyFrame:
    """Per supplier: evidence counts, delivery rates with Wilson intervals, mean days late.

    ``order_lines`` counts judged lines (the on-time rate's evidence), ``inspected_lines`` those whose in-full
    and OTIF outcomes are known and count (their evidence: 0 when the rates are not measured).
    """
    metrics = facts.group_by("supplier_id").agg(
        order_lines=pl.len().cast(pl.Int64),
        inspected_lines=_with_inspection_results(pl.col("inspected").sum()).fill_null(0).cast(pl.Int64),
        on_time_lines=pl.col("on_time").sum().cast(pl.Int64),
        in_full_lines=_with_inspection_results(pl.col("in_full").sum()).fill_null(0).cast(pl.Int64),
        otif_lines=_with_inspection_results(pl.col("otif").sum()).fill_null(0).cast(pl.Int64),
        late_lines=(~pl.col("on_time")).sum().cast(pl.Int64),
        on_time_rate=on_time_rate(),
        in_full_rate=in_full_rate(),
        otif_rate=otif_rate(),
        mean_days_late=mean_days_late(),
    )
    intervals = []
    for rate in RATES_WITH_INTERVALS:
        low, high = wilson_interval(pl.col(rate.replace("_rate", "_lines")), pl.col(RATE_EVIDENCE[rate]))
        intervals += [low.alias(f"{rate}_low"), high.alias(f"{rate}_high")]
    return metrics.with_columns(intervals)


def quality_metrics(
    lines: pl.LazyFrame, receipts: pl.LazyFrame, *, as_of: date, window_days: int
) -> pl.LazyFrame:
    """Per supplier, from receipts received in the window: receipts, those inspected, units inspected, acceptance, PPM.

    ``receipts`` counts every receipt in the window, inspected or not; ``inspected_receipts`` those with
    inspection results; ``units_inspected`` = Σ (quantity_accepted + quantity_rejected) of those.
    """
    start = window_start(as_of, window_days)
    in_window = receipts.filter(pl.col("received_date").is_between(start, as_of))
    owners = lines.select(*RECEIPT_KEYS, "supplier_id")  # (po_id, line_no) is unique after validation
    return (
        in_window.join(owners, on=list(RECEIPT_KEYS), how="inner")
        .group_by("supplier_id")
        .agg(
            receipts=pl.len().cast(pl.Int64),
            inspected_receipts=_receipt_inspected().sum().cast(pl.Int64),
            units_inspected=(pl.col("quantity_accepted") + pl.col("quantity_rejected")).sum(),
            acceptance_rate=acceptance_rate(),
            ppm_rejected=ppm_rejected(),
        )
    )


def nonconformance_metrics(nonconformances: pl.LazyFrame, *, as_of: date, window_days: int) -> pl.LazyFrame:
    """Per supplier: nonconformances raised in the window, and critical ones still open at the as-of date."""
    start = window_start(as_of, window_days)
    known = nonconformances.filter(pl.col("raised_date") <= as_of)
    still_open = pl.col("closed_date").is_null() | (pl.col("closed_date") > as_of)
    return known.group_by("supplier_id").agg(
        nonconformances=pl.col("raised_date").is_between(start, as_of).sum().cast(pl.Int64),
        open_critical_nonconformances=((pl.col("severity") == "critical") & still_open).sum().cast(pl.Int64),
    )


def feedback_metrics(feedback: pl.LazyFrame, *, as_of: date, window_days: int) -> pl.LazyFrame:
    """Per supplier: feedback entries in the window and their mean score (1-5)."""
    start = window_start(as_of, window_days)
    return (
        feedback.filter(pl.col("date").is_between(start, as_of))
        .group_by("supplier_id")
        .agg(feedback_entries=pl.len().cast(pl.Int64), feedback_score=pl.col("score").mean())
    )


RATES_WITH_INTERVALS = ("on_time_rate", "in_full_rate", "otif_rate")
# The lines each rate is a share of: its trials in the Wilson interval.
RATE_EVIDENCE = {"on_time_rate": "order_lines", "in_full_rate": "inspected_lines", "otif_rate": "inspected_lines"}

# Every column ``measure_suppliers`` gives per supplier (besides supplier_id), in order.
METRIC_COLUMNS = (
    "order_lines", "inspected_lines", "on_time_lines", "in_full_lines", "otif_lines", "late_lines",
    *(f"{rate}{part}" for rate in RATES_WITH_INTERVALS for part in ("", "_low", "_high")),
    "mean_days_late", "receipts", "inspected_receipts", "units_inspected", "acceptance_rate", "ppm_rejected",
    "nonconformances", "open_critical_nonconformances", "feedback_entries", "feedback_score",
)

COUNT_COLUMNS = (
    "order_lines", "inspected_lines", "on_time_lines", "in_full_lines", "otif_lines", "late_lines", "receipts",
    "inspected_receipts", "nonconformances", "open_critical_nonconformances", "feedback_entries",
)

NO_ORDER_LINES = "no order lines due in the window"
NO_INSPECTION_RESULTS = "no inspection results in the data"


def not_measured_reason(metric: str) -> pl.Expr:
    """Why ``metric`` has no value, in words, over the columns ``measure_suppliers`` gives; null where it has one.

    - on-time rate, mean days late: no order lines due in the window;
    - in-full and OTIF rates: no order lines due, else no inspection results in the data (no inspected
      receipt in the window), else none for the order lines due;
    - acceptance rate, PPM: no receipts in the window, else no inspection results in the data, else no units
      inspected (every inspected receipt says 0 accepted and 0 rejected);
    - feedback score: no feedback in the window.
    """
    no_inspection = pl.col("inspected_receipts") == 0
    reasons: dict[str, pl.Expr] = {
        "in_full_rate": pl.when(pl.col("order_lines") == 0).then(pl.lit(NO_ORDER_LINES))
        .when(no_inspection).then(pl.lit(NO_INSPECTION_RESULTS))
        .otherwise(pl.lit("no inspection results for the order lines due")),
        "acceptance_rate": pl.when(pl.col("receipts") == 0).then(pl.lit("no receipts in the window"))
        .when(no_inspection).then(pl.lit(NO_INSPECTION_RESULTS))
        .otherwise(pl.lit("no units inspected in the window")),
        "feedback_score": pl.lit("no feedback in the window"),
    }
    reasons["otif_rate"] = reasons["in_full_rate"]
    reasons["ppm_rejected"] = reasons["acceptance_rate"]
    reasons["on_time_rate"] = reasons["mean_days_late"] = pl.lit(NO_ORDER_LINES)
    return pl.when(pl.col(metric).is_null()).then(reasons.get(metric, pl.lit("no data")))


@dataclass(frozen=True)
class SupplierPerformance:
    """Every metric per supplier, and the records behind the delivery metrics."""

    metrics: pl.DataFrame  # one row per supplier; counts 0 and rates null without evidence
    late_lines: pl.DataFrame  # judged lines not on time: supplier_id, po_id, line_no, dates, days_late


def measure_suppliers(
    suppliers: pl.DataFrame,
    lines: pl.DataFrame,
    receipts: pl.DataFrame,
    nonconformances: pl.DataFrame,
    feedback: pl.DataFrame,
    *,
    as_of: date,
    window_days: int,
    tolerance_days: int,
) -> SupplierPerformance:
    """Metrics for every supplier in ``suppliers`` and their late lines, from one pass over the line facts.

    Only the records of those suppliers are read: a one-supplier evaluation costs that supplier's lines.
    """
    chosen = suppliers.lazy().select("supplier_id")
    lines_lazy = lines.lazy().join(chosen, on="supplier_id", how="semi")
    receipts_lazy = receipts.lazy()
    nonconformances = nonconformances.join(suppliers.select("supplier_id"), on="supplier_id", how="semi")
    feedback = feedback.join(suppliers.select("supplier_id"), on="supplier_id", how="semi")
    facts = line_facts(lines_lazy, receipts_lazy, as_of=as_of, window_days=window_days,
                       tolerance_days=tolerance_days).collect()
    frames = [
        delivery_metrics(facts.lazy()),
        quality_metrics(lines_lazy, receipts_lazy, as_of=as_of, window_days=window_days),
        nonconformance_metrics(nonconformances.lazy(), as_of=as_of, window_days=window_days),
        feedback_metrics(feedback.lazy(), as_of=as_of, window_days=window_days),
    ]
    result = suppliers.lazy().select("supplier_id")
    for frame in frames:
        result = result.join(frame, on="supplier_id", how="left")
    metrics = (
        result.with_columns(pl.col(c).fill_null(0) for c in COUNT_COLUMNS)
        .with_columns(pl.col("units_inspected").fill_null(0.0))
        .select("supplier_id", *METRIC_COLUMNS)
        .collect()
    )
    return SupplierPerformance(metrics=metrics, late_lines=_late_lines_of(facts))


def _late_lines_of(facts: pl.DataFrame) -> pl.DataFrame:
    return (
        facts.filter(~pl.col("on_time"))
        .select("supplier_id", "po_id", "line_no", "promised_date", "completed_date", "days_late")
        .sort("supplier_id", "promised_date", "po_id", "line_no", descending=[False, True, False, False])
    )


def supplier_metrics(suppliers: pl.DataFrame, lines: pl.DataFrame, receipts: pl.DataFrame,
                     nonconformances: pl.DataFrame, feedback: pl.DataFrame, *, as_of: date, window_days: int,
                     tolerance_days: int) -> pl.DataFrame:
    """Every metric for every supplier in ``suppliers`` (see ``measure_suppliers``)."""
    return measure_suppliers(suppliers, lines, receipts, nonconformances, feedback, as_of=as_of,
                             window_days=window_days, tolerance_days=tolerance_days).metrics


def late_lines(lines: pl.DataFrame, receipts: pl.DataFrame, *, as_of: date, window_days: int,
               tolerance_days: int) -> pl.DataFrame:
    """The records behind the delivery metrics: every judged line that was not on time, latest first."""
    facts = line_facts(lines.lazy(), receipts.lazy(), as_of=as_of, window_days=window_days,
                       tolerance_days=tolerance_days)
    return _late_lines_of(facts.collect())
