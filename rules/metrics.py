"""Supplier performance metrics over an evaluation window, as Polars expressions.

Vocabulary (all dates are days; only records dated on or before the as-of date are known):

- window: ``window_start = as_of - window_days + 1`` to ``as_of``, both inclusive.
- deadline of a line: ``promised_date + tolerance_days`` (the late tolerance, ``on_time_tolerance_days``).
- on-time window of a line: ``[promised_date - early_tolerance_days, deadline]``, both inclusive; with
  ``early_tolerance_days`` None (the default) it has no lower bound: early is always fine.
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

The per-line facts come from ``line_facts``; the on-time rate is a share of judged lines (or of their units,
``on_time_basis="quantity"``), the in-full and OTIF rates a share of inspected lines, quantity accuracy and
lead times are over judged lines too. Receipt metrics (acceptance, PPM) use the inspected receipts received in
the window, whichever line they belong to. Price variance is over lines *ordered* in the window (their
order_date), nonconformance counts over reports raised, closed or open in it, the certificate at the as-of
date. A metric with nothing to measure is null (*not measured*), never 0; :func:`not_measured_reason` says why
in words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import polars as pl

from rules.catalogue import OnTimeBasis

Z_95 = 1.959963984540054

RECEIPT_KEYS = ("po_id", "line_no")
# Why a judged line is not on time (``line_facts``' reason), in the order the first that applies is taken.
NOT_DELIVERED, SHORT, LATE, EARLY = "not delivered", "short", "late", "early"
NOT_ON_TIME_REASONS = (NOT_DELIVERED, SHORT, LATE, EARLY)
MICRO = 1_000_000  # quantities are compared to a millionth of a unit


def window_start(as_of: date, window_days: int) -> date:
    """First day of the window: ``as_of - window_days + 1``."""
    return as_of - timedelta(days=window_days - 1)


def line_facts(
    lines: pl.LazyFrame, receipts: pl.LazyFrame, *, as_of: date, window_days: int, tolerance_days: int,
    early_tolerance_days: int | None = None, quantity_accuracy_tolerance: float = 0.0,
) -> pl.LazyFrame:
    """One row per judged line: supplier, dates, quantities by the deadline and by the as-of date, outcome flags.

    - ``inspected``            = no receipt dated ≤ as_of lacks quantity_accepted or quantity_rejected
    - ``has_inspection_results`` = some receipt dated ≤ as_of has both
    - ``received_by_deadline`` = Σ quantity_received of receipts dated ≤ deadline
    - ``received_in_window``   = Σ quantity_received of receipts dated in the on-time window
      [promised_date − early_tolerance_days, deadline] (= received_by_deadline when early_tolerance_days is None)
    - ``accepted_by_deadline`` = Σ quantity_accepted of receipts dated ≤ deadline (null unless inspected)
    - ``accepted_total``       = Σ quantity_accepted of receipts dated ≤ as_of (null unless inspected)
    - ``on_time``  = received_in_window ≥ quantity_ordered
    - ``units_on_time`` = min(received_in_window, quantity_ordered)
    - ``late``     = received_by_deadline < quantity_ordered (not on time for lateness, not for coming early)
    - ``early``    = some receipt dated before promised_date − early_tolerance_days (never, when that is None)
    - ``in_full``  = accepted_total ≥ quantity_ordered (null, unknown, unless inspected)
    - ``otif``     = accepted_by_deadline ≥ quantity_ordered (null, unknown, unless inspected)
    - ``rejected_total``       = Σ quantity_rejected of receipts dated ≤ as_of (an uninspected receipt's as 0)
    - ``quantity_accurate`` = shortfall and excess both ≤ quantity_accuracy_tolerance × quantity_ordered, where
      shortfall = quantity_ordered − received_total and excess = received_total − rejected_total − quantity_ordered:
      |received − ordered| within the tolerance, an excess counted on the units kept, so a replacement for
      rejected units is not an over-delivery
    - ``days_late`` (late lines) = max(0, last_delivery − promised_date), where last_delivery is the
      completed date, else (a short line) its latest receipt, else (nothing received yet) the as-of date.
      A short line's lateness is what it delivered late; its shortfall is the in-full rate's business.
    - ``quantity_missing`` = max(0, quantity_ordered − received_total)
    - ``reason`` (lines not on time; null for a line on time) = ``not delivered``, ``short``, ``late`` or ``early``,
      and ``why`` the same in words, the first that applies:
      ``not yet delivered (N days past the deadline)`` when nothing was received by the as-of date (N = as_of −
      deadline; ``(the deadline is the as-of date)`` when N = 0); ``short: M of Q units received (K missing)``
      when received_total < quantity_ordered, followed by ``, the last N days after the promised date`` when
      days_late > 0; ``late: N days after the promised
      date`` (N = days_late) for a line completed after its deadline; ``early: first receipt N days before the
      promised date (up to T days early is on time)`` for a line not on time only because units came before its
      on-time window (T = early_tolerance_days)
    - ``lead_time_days`` = completed_date − order_date (null without either)
    - ``promised_lead_time_days`` = promised_date − order_date (null without an order date)
    - ``lead_time_met`` = lead_time_days ≤ promised_lead_time_days, false for a line not completed by the as-of
      date (it is past its promise already); null without an order date
    """
    outcomes = _line_outcomes(lines, receipts, as_of=as_of, window_days=window_days, tolerance_days=tolerance_days,
                              early_tolerance_days=early_tolerance_days,
                              quantity_accuracy_tolerance=quantity_accuracy_tolerance)
    return _with_reasons(outcomes, as_of=as_of, early_tolerance_days=early_tolerance_days)


def _with_reasons(facts: pl.LazyFrame, *, as_of: date, early_tolerance_days: int | None) -> pl.LazyFrame:
    """The line facts plus ``reason`` and ``why`` (see :func:`line_facts`)."""
    return facts.with_columns(reason=_not_on_time_reason(early_tolerance_days=early_tolerance_days)).with_columns(
        why=_why_not_on_time(as_of=as_of, early_tolerance_days=early_tolerance_days))


def _line_outcomes(
    lines: pl.LazyFrame, receipts: pl.LazyFrame, *, as_of: date, window_days: int, tolerance_days: int,
    early_tolerance_days: int | None = None, quantity_accuracy_tolerance: float = 0.0,
) -> pl.LazyFrame:
    """:func:`line_facts` without ``reason`` and ``why``: those are words for the lines not on time only, and
    building them for every judged line costs more than all the numbers."""
    line_frame = _with_optional_line_columns(lines).collect()
    known = matched_receipts(line_frame, receipts.collect(), as_of=as_of)
    facts = _outcomes(line_frame, known, as_of=as_of, window_days=window_days, tolerance_days=tolerance_days,
                      early_tolerance_days=early_tolerance_days,
                      quantity_accuracy_tolerance=quantity_accuracy_tolerance)
    return _with_keys(_in_units(facts).collect(engine="streaming"), line_frame).lazy()


def _with_keys(facts: pl.DataFrame, lines: pl.DataFrame) -> pl.DataFrame:
    """Line facts (or some of them) with their line's po_id and line_no after supplier_id, instead of ``line``."""
    at_line = facts.get_column("line")
    return facts.select(
        "supplier_id", *(lines.get_column(key).gather(at_line) for key in RECEIPT_KEYS),
        pl.exclude("supplier_id", "line"))


KNOWN_RECEIPT_FACTS = ("received_date", "quantity_received", "quantity_accepted", "quantity_rejected")


def matched_receipts(lines: pl.DataFrame, receipts: pl.DataFrame, *, as_of: date) -> pl.DataFrame:
    """The receipts known at the as-of date (received on or before it) whose order line is in ``lines``: their
    received_date and quantities, ``receipt`` (the row number in ``receipts``) and ``line``, the row number of
    their order line in ``lines`` (``po_id`` and ``line_no`` are unique there).

    Receipts are matched to their lines on a 64-bit hash of the key, and a pair is kept only when a second,
    independent 64-bit hash of the key agrees too: two different keys would have to collide in both, 128 bits,
    which the odds rule out (about 10⁻²⁵ at ten million keys). Every metric after it reads a line's fields by
    its row number instead of joining on the text key again, which costs a third of the time.
    """
    keys = [pl.col(key).cast(lines.schema[key]) for key in RECEIPT_KEYS]  # a key hashes by its type too
    pairs = (
        receipts.select(pl.col("received_date") <= as_of, receipt=pl.int_range(pl.len(), dtype=pl.UInt32),
                        h=key_hash(*keys))
        .filter("received_date")
        .join(lines.select(h=key_hash(*RECEIPT_KEYS), line=pl.int_range(pl.len(), dtype=pl.UInt32)), on="h",
              how="inner")
    )
    receipt_at, line_at = pairs.get_column("receipt"), pairs.get_column("line")
    same_key = (receipts.select(key_hash(*keys, seed=CHECK_SEED)).to_series().gather(receipt_at)
                == lines.select(key_hash(*RECEIPT_KEYS, seed=CHECK_SEED)).to_series().gather(line_at))
    pairs = pairs.filter(same_key)
    receipt_at = pairs.get_column("receipt")
    return receipts.select(pl.col(*KNOWN_RECEIPT_FACTS).gather(receipt_at)).with_columns(
        receipt=receipt_at, line=pairs.get_column("line"))


def _known_receipts(receipts: pl.DataFrame, receipt_lines: pl.Series, *, as_of: date) -> pl.DataFrame:
    """:func:`matched_receipts` from each receipt's line already known (``receipt_lines``: its row number in the
    lines, null for none), in receipt order."""
    known = _in_one_chunk(receipts.select(*KNOWN_RECEIPT_FACTS), KNOWN_RECEIPT_FACTS).with_columns(
        receipt=pl.int_range(pl.len(), dtype=pl.UInt32), line=receipt_lines.cast(pl.UInt32))
    kept = known.select((pl.col("received_date") <= as_of) & pl.col("line").is_not_null()).to_series()
    return known if kept.all() else known.filter(kept)  # every receipt kept: its columns, not a copy of them


# The line fields the metrics read by row number. A column in many chunks (a Parquet file's row groups, a filtered
# frame) makes every row's read look up its chunk, and a frame whose columns are cut differently is cut again by
# each filter: at 10M lines, a sixth of the step.
LINE_FIELDS_BY_ROW = ("promised_date", "quantity_ordered", "order_date", "unit_price")


def _in_one_chunk(frame: pl.DataFrame, columns: tuple[str, ...]) -> pl.DataFrame:
    """``frame`` with ``columns`` each in one chunk (a copy of those columns that are in several)."""
    return frame.with_columns(frame.get_column(c).rechunk() for c in columns if frame.get_column(c).n_chunks() > 1)


def _after_filter(at_rows: pl.Series, kept: pl.Series) -> pl.Series:
    """Row numbers ``at_rows`` of a frame, renumbered in that frame filtered by ``kept`` (null: a row left out)."""
    if kept.all():
        return at_rows
    position = kept.cast(pl.UInt32).cum_sum() - 1  # a row left out before the first kept wraps: masked out below
    renumbered = pl.select(pl.when(pl.lit(kept)).then(pl.lit(position))).to_series()
    return renumbered.gather(at_rows)


def _judged(*, as_of: date, window_days: int, tolerance_days: int) -> pl.Expr:
    """Whether each order line is judged: promised in the window, deadline on or before the as-of date."""
    deadline = pl.col("promised_date") + pl.duration(days=tolerance_days)
    return pl.col("promised_date").is_between(window_start(as_of, window_days), as_of) & (deadline <= as_of)


def _outcomes(
    lines: pl.DataFrame, known: pl.DataFrame, *, as_of: date, window_days: int, tolerance_days: int,
    early_tolerance_days: int | None, quantity_accuracy_tolerance: float,
) -> pl.LazyFrame:
    """:func:`_line_outcomes` from the order lines and their known receipts (:func:`matched_receipts`), with
    ``line`` (the row number in ``lines``) in place of po_id and line_no (see :func:`_with_keys`), and the
    quantities received, accepted and rejected in millionths of a unit (see :func:`_in_units`)."""
    tolerance = pl.duration(days=tolerance_days)
    is_judged = lines.select(_judged(as_of=as_of, window_days=window_days, tolerance_days=tolerance_days)).to_series()
    judged = lines.with_row_index("line").filter(is_judged).select(
        "line", "supplier_id", "order_date", "promised_date",
        deadline=pl.col("promised_date") + tolerance, quantity_ordered="quantity_ordered",
        ordered_micro=_micro(pl.col("quantity_ordered")))
    # The receipts of judged lines, sorted by line and date: each line's rows are consecutive, so its sums are
    # differences of running totals taken at its last row, and the running quantity of a line is the global
    # running total less the total before the line began. No join on the line's text key and no per-group
    # window. Quantities are summed and compared in integer micro-units, so 0.1 + 0.7 received covers 0.8
    # ordered (in floats it does not).
    # One 64-bit key, the line above the day: half the time of a sort by the two columns. Receipts of a line on
    # one day may come in any order: every sum, flag and date of the line is the same whichever comes first.
    line_and_day = pl.col("line").cast(pl.UInt64) * 2**32 + (pl.col("received_date").cast(pl.Int32).cast(pl.Int64)
                                                            + 2**31).cast(pl.UInt64)
    judged_receipts = (
        known.filter(is_judged.gather(known.get_column("line")))
        .select("line", *KNOWN_RECEIPT_FACTS)
        .sort(line_and_day)
    )
    at_line = judged_receipts.get_column("line")  # ascending: reading the lines' fields in order is cheap
    line = pl.col("line")
    per_receipt = (
        judged_receipts.with_columns(
            line.set_sorted(),
            promised_date=lines.get_column("promised_date").gather(at_line),
            ordered_micro=_micro(lines.get_column("quantity_ordered").gather(at_line)),
        )
        .lazy()
        .with_columns(
            deadline=pl.col("promised_date") + tolerance,
            first=line != line.shift(fill_value=-1),
            last=line != line.shift(-1, fill_value=-1),
            received_micro=_micro(pl.col("quantity_received").fill_null(0.0)),
            inspected_receipt=_receipt_inspected(),
        )
    )
    by_deadline = pl.col("received_date") <= pl.col("deadline")
    if early_tolerance_days is None:
        too_early = pl.lit(False)
    else:
        too_early = pl.col("received_date") < pl.col("promised_date") - pl.duration(days=early_tolerance_days)
    received = pl.col("received_micro")
    so_far = received.cum_sum() - pl.when("first").then(received.cum_sum() - received).forward_fill()
    running = {
        "received_by_deadline": pl.when(by_deadline).then(received).otherwise(0),
        "received_in_window": pl.when(by_deadline & ~too_early).then(received).otherwise(0),
        "accepted_by_deadline": pl.when(by_deadline).then(_micro(pl.col("quantity_accepted"))).fill_null(0),
        "received_total": received,
        "rejected_total": _micro(pl.col("quantity_rejected").fill_null(0.0)),
        "accepted_total": _micro(pl.col("quantity_accepted")).fill_null(0),
        "uninspected": (~pl.col("inspected_receipt")).cast(pl.Int64),
        "inspected_receipts": pl.col("inspected_receipt").cast(pl.Int64),
        "early_receipts": too_early.cast(pl.Int64),
        "completions": pl.col("completes").cast(pl.Int64),
    }
    per_line = (
        per_receipt.with_columns(so_far=so_far)
        .with_columns(completes=(pl.col("so_far") >= pl.col("ordered_micro"))
                      & (pl.col("first") | (pl.col("so_far") - received < pl.col("ordered_micro"))))
        .select(
            "line", "last",
            *(value.cum_sum().alias(name) for name, value in running.items()),
            completed_date=pl.when("completes").then("received_date").forward_fill(),
            first_receipt_date=pl.when("first").then("received_date").forward_fill(),
            last_receipt_date="received_date",
        )
        .filter("last")
        .with_columns((pl.col(name) - pl.col(name).shift(fill_value=0)).alias(name) for name in running)
        .select(
            "line", *(name for name in running if name not in ("uninspected", "inspected_receipts",
                                                                "early_receipts", "completions")),
            completed_date=pl.when(pl.col("completions") > 0).then("completed_date"),
            first_receipt_date="first_receipt_date", last_receipt_date="last_receipt_date",
            inspected=pl.col("uninspected") == 0,
            has_inspection_results=pl.col("inspected_receipts") > 0,
            early=pl.col("early_receipts") > 0,
        )
    )
    ordered_micro = pl.col("ordered_micro")
    nothing_received = {name: 0 for name in running if name in (
        "received_by_deadline", "received_in_window", "accepted_by_deadline", "received_total", "rejected_total",
        "accepted_total")}
    return (
        judged.lazy().with_columns(line.set_sorted())
        .join(per_line.with_columns(line.set_sorted()), on="line", how="left", maintain_order="left")
        .with_columns(
            *(pl.col(name).fill_null(value) for name, value in nothing_received.items()),
            pl.col("inspected").fill_null(True),  # nothing received: nothing was accepted, and that is known
            pl.col("has_inspection_results").fill_null(False),
            pl.col("early").fill_null(False),
        )
        .with_columns(
            on_time=pl.col("received_in_window") >= ordered_micro,
            late=pl.col("received_by_deadline") < ordered_micro,
            units_on_time=pl.min_horizontal("received_in_window", ordered_micro) / MICRO,
            in_full=pl.when("inspected").then(pl.col("accepted_total") >= ordered_micro),
            otif=pl.when("inspected").then(pl.col("accepted_by_deadline") >= ordered_micro),
            quantity_accurate=pl.max_horizontal(
                ordered_micro - pl.col("received_total"),
                pl.col("received_total") - pl.col("rejected_total") - ordered_micro,
            ) <= (ordered_micro * quantity_accuracy_tolerance).round().cast(pl.Int64),
            lead_time_days=(pl.col("completed_date") - pl.col("order_date")).dt.total_days(),
        )
        .with_columns(
            days_late=pl.when("late").then(
                (pl.coalesce("completed_date", "last_receipt_date", pl.lit(as_of)) - pl.col("promised_date"))
                .dt.total_days()
                .clip(lower_bound=0)
            ),
            lead_time_met=pl.when(pl.col("order_date").is_not_null()).then(
                (pl.col("completed_date") <= pl.col("promised_date")).fill_null(False)
            ),
        )
    )


def _in_units(flags: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    """Line outcomes (:func:`_outcomes`) with their quantities in units: the facts :func:`line_facts` lists.

    Only the lines a report lists need them; a supplier's metrics read the outcomes as they are."""
    ordered_micro = pl.col("ordered_micro")
    return (
        flags.lazy()
        .with_columns(quantity_missing=(ordered_micro - pl.col("received_total")).clip(lower_bound=0) / MICRO)
        .with_columns(
            (pl.col(c) / MICRO).alias(c)
            for c in ("received_by_deadline", "received_in_window", "received_total", "rejected_total")
        )
        .with_columns(
            pl.when("inspected").then(pl.col(c) / MICRO).alias(c) for c in ("accepted_by_deadline", "accepted_total")
        )
        .with_columns(promised_lead_time_days=(pl.col("promised_date") - pl.col("order_date")).dt.total_days())
        .drop("ordered_micro")
    )


def _quantity_text(quantity: pl.Expr) -> pl.Expr:
    """A quantity as people write it: ``50`` for 50.0, ``0.25`` for 0.25 (to a millionth of a unit)."""
    return (
        pl.when(quantity == quantity.round(0)).then(quantity.cast(pl.Int64).cast(pl.String))
        .otherwise(quantity.round(6).cast(pl.String))
    )


def _days_text(days: pl.Expr) -> pl.Expr:
    """``1 day``, ``9 days``."""
    return pl.format("{} {}", days, pl.when(days == 1).then(pl.lit("day")).otherwise(pl.lit("days")))


def _not_on_time_reason(*, early_tolerance_days: int | None) -> pl.Expr:
    """``not delivered``, ``short``, ``late`` or ``early``: the first that applies to a line not on time (see
    :func:`line_facts`); null for a line on time."""
    reason = (
        pl.when(pl.col("on_time")).then(pl.lit(None, pl.String))
        .when(pl.col("late") & (pl.col("received_total") == 0)).then(pl.lit(NOT_DELIVERED))
        .when(pl.col("late") & (pl.col("quantity_missing") > 0)).then(pl.lit(SHORT))
        .when(pl.col("late")).then(pl.lit(LATE))
    )
    if early_tolerance_days is not None:  # without one nothing is ever too early
        reason = reason.when(pl.col("early")).then(pl.lit(EARLY))
    return reason.otherwise(pl.lit(None, pl.String))


def _why_not_on_time(*, as_of: date, early_tolerance_days: int | None) -> pl.Expr:
    """Why a judged line is not on time, in words (see :func:`line_facts`), by its ``reason``."""
    days_late = pl.col("days_late")
    past_deadline = (pl.lit(as_of) - pl.col("deadline")).dt.total_days()
    short = pl.format("short: {} of {} units received ({} missing)", _quantity_text(pl.col("received_total")),
                      _quantity_text(pl.col("quantity_ordered")), _quantity_text(pl.col("quantity_missing")))
    short_and_late = pl.concat_str(
        short, pl.when(days_late > 0).then(pl.format(", the last {} after the promised date", _days_text(days_late)))
        .otherwise(pl.lit("")))
    early_by = (pl.col("promised_date") - pl.col("first_receipt_date")).dt.total_days()
    reason = pl.col("reason")
    return (
        pl.when((reason == NOT_DELIVERED) & (past_deadline == 0))
        .then(pl.lit("not yet delivered (the deadline is the as-of date)"))
        .when(reason == NOT_DELIVERED).then(pl.format("not yet delivered ({} past the deadline)",
                                                      _days_text(past_deadline)))
        .when(reason == SHORT).then(short_and_late)
        .when(reason == LATE).then(pl.format("late: {} after the promised date", _days_text(days_late)))
        .when(reason == EARLY).then(pl.format(
            "early: first receipt {} before the promised date (up to {} early is on time)", _days_text(early_by),
            _days_text(pl.lit(early_tolerance_days or 0))))
    )


# Optional in a validated frame (always there, maybe empty); a frame built by hand may leave them out.
OPTIONAL_LINE_COLUMNS = {"item_id": pl.String, "order_date": pl.Date, "unit_price": pl.Float64, "currency": pl.String}


def _with_optional_line_columns(lines: pl.LazyFrame) -> pl.LazyFrame:
    present = set(lines.collect_schema().names())
    return lines.with_columns(
        pl.lit(None, dtype).alias(name) for name, dtype in OPTIONAL_LINE_COLUMNS.items() if name not in present
    )


def _micro(quantity: pl.Expr) -> pl.Expr:
    return (quantity * MICRO).round().cast(pl.Int64)


def _receipt_inspected() -> pl.Expr:
    return pl.col("quantity_accepted").is_not_null() & pl.col("quantity_rejected").is_not_null()


def on_time_rate(basis: OnTimeBasis = "lines") -> pl.Expr:
    """On-time delivery rate over judged lines; null (not measured) with no judged line.

    - ``lines`` (the default): lines fully received in their on-time window / judged lines
    - ``quantity``: Σ min(units received in the on-time window, quantity_ordered) / Σ quantity_ordered; a line's
      units count up to its order, so an over-delivery does not make up for another line's lateness

    The on-time window is [promised − early_tolerance_days, promised + tolerance_days]; with no early
    tolerance, everything received by the deadline is in it.
    """
    if basis == "quantity":
        return pl.col("units_on_time").sum() / pl.col("quantity_ordered").sum()
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


def quantity_accuracy_rate() -> pl.Expr:
    """Quantity accuracy = judged lines with |received − ordered| ≤ tolerance × ordered / judged lines.

    received = Σ quantity_received of the line's receipts dated ≤ as_of; a shortfall is ordered − received, an
    excess is received − rejected − ordered (the units kept: a replacement for rejected units is not an
    over-delivery). A judged line's deadline has passed, so its deliveries should be complete: short,
    over-delivered and nothing-received lines alike are inaccurate. The tolerance is
    ``quantity_accuracy_tolerance``, a share of the quantity ordered (0, exact, by default). Unlike the in-full
    rate it needs no inspection results and counts over-delivery. Null (not measured) with no judged line.
    """
    return pl.col("quantity_accurate").mean()


def mean_lead_time_days() -> pl.Expr:
    """Mean lead time = Σ (completed_date − order_date) / lines, in days, over judged lines with both dates.

    A line not completed by the as-of date has no lead time yet and is left out (lead-time adherence counts
    it as missed). Null (not measured) when no judged line has an order date and a completed date.
    """
    return pl.col("lead_time_days").mean()


def p90_lead_time_days() -> pl.Expr:
    """90th-percentile lead time, nearest rank: the ⌈0.9 × n⌉-th smallest (completed_date − order_date), in days.

    Over the n judged lines with both dates (as the mean): 90 % of them were completed within it. Null when n = 0.
    """
    # Polars' "equiprobable" quantile is the inverse of the empirical distribution: the nearest rank.
    return pl.col("lead_time_days").quantile(0.9, interpolation="equiprobable").cast(pl.Float64)


def lead_time_adherence_rate() -> pl.Expr:
    """Lead-time adherence = lines whose lead time ≤ promised lead time / judged lines with an order date.

    lead time = completed_date − order_date, promised lead time = promised_date − order_date, so a line adheres
    when completed on or before its promised date: no tolerance, it measures the promise itself. A line not
    completed by the as-of date has missed it. Null (not measured) when no judged line has an order date.
    """
    return pl.col("lead_time_met").mean()


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


def delivery_metrics(facts: pl.LazyFrame, *, on_time_basis: OnTimeBasis = "lines",
                     supplier: str = "supplier_id") -> pl.LazyFrame:
    """Per supplier: evidence counts, delivery rates with Wilson intervals, lateness, quantity accuracy, lead times.

    ``order_lines`` counts judged lines (the on-time rate's evidence), ``inspected_lines`` those whose in-full
    and OTIF outcomes are known and count (their evidence: 0 when the rates are not measured). ``units_due`` =
    Σ quantity_ordered and ``units_on_time`` = Σ units_on_time of judged lines. ``early_lines`` counts judged
    lines with units received before their on-time window, ``late_lines`` those not fully received by the
    deadline. ``lines_with_order_date`` is lead-time adherence's evidence, ``lead_time_lines`` (those also
    completed) the mean and p90 lead time's. A quantity-weighted on-time rate has no Wilson interval (units of
    one line are not independent trials). ``supplier`` names the column the facts are grouped by.
    """
    # A quantile among these sums makes Polars gather every group's rows for all of them: at 10M lines, twice the
    # time of the sums and the quantile grouped on their own and joined.
    p90 = facts.group_by(supplier).agg(p90_lead_time_days=p90_lead_time_days())
    metrics = facts.group_by(supplier).agg(
        order_lines=pl.len().cast(pl.Int64),
        inspected_lines=_with_inspection_results(pl.col("inspected").sum()).fill_null(0).cast(pl.Int64),
        on_time_lines=pl.col("on_time").sum().cast(pl.Int64),
        in_full_lines=_with_inspection_results(pl.col("in_full").sum()).fill_null(0).cast(pl.Int64),
        otif_lines=_with_inspection_results(pl.col("otif").sum()).fill_null(0).cast(pl.Int64),
        late_lines=pl.col("late").sum().cast(pl.Int64),
        on_time_rate=on_time_rate(on_time_basis),
        in_full_rate=in_full_rate(),
        otif_rate=otif_rate(),
        mean_days_late=mean_days_late(),
        early_lines=pl.col("early").sum().cast(pl.Int64),
        units_due=pl.col("quantity_ordered").sum(),
        units_on_time=pl.col("units_on_time").sum(),
        accurate_quantity_lines=pl.col("quantity_accurate").sum().cast(pl.Int64),
        quantity_accuracy_rate=quantity_accuracy_rate(),
        lines_with_order_date=pl.col("order_date").count().cast(pl.Int64),
        lead_time_lines=pl.col("lead_time_days").count().cast(pl.Int64),
        mean_lead_time_days=mean_lead_time_days(),
        lead_time_met_lines=pl.col("lead_time_met").sum().cast(pl.Int64),
        lead_time_adherence_rate=lead_time_adherence_rate(),
    )
    intervals = []
    for rate in RATES_WITH_INTERVALS:
        low, high = wilson_interval(pl.col(RATE_SUCCESSES[rate]), pl.col(RATE_EVIDENCE[rate]))
        if rate == "on_time_rate" and on_time_basis == "quantity":
            low = high = pl.lit(None, pl.Float64)
        intervals += [low.alias(f"{rate}_low"), high.alias(f"{rate}_high")]
    columns = metrics.collect_schema().names()
    after = columns.index("mean_lead_time_days") + 1
    return (metrics.join(p90, on=supplier, how="left", maintain_order="left")
            .select(*columns[:after], "p90_lead_time_days", *columns[after:]).with_columns(intervals))


def quality_metrics(
    lines: pl.LazyFrame, receipts: pl.LazyFrame, *, as_of: date, window_days: int
) -> pl.LazyFrame:
    """Per supplier, from receipts received in the window: receipts, those inspected, units inspected, acceptance, PPM.

    ``receipts`` counts every receipt in the window, inspected or not; ``inspected_receipts`` those with
    inspection results; ``units_inspected`` = Σ (quantity_accepted + quantity_rejected) of those.
    """
    line_frame = lines.collect()
    return _quality(line_frame, matched_receipts(line_frame, receipts.collect(), as_of=as_of), as_of=as_of,
                    window_days=window_days)


def _quality(lines: pl.DataFrame, known: pl.DataFrame, *, as_of: date, window_days: int,
             suppliers: SupplierCodes | None = None) -> pl.LazyFrame:
    """:func:`quality_metrics` from the order lines and their known receipts (:func:`matched_receipts`)."""
    suppliers = suppliers or SupplierCodes.of(lines)
    in_window = known.filter(pl.col("received_date") >= window_start(as_of, window_days))
    return suppliers.named(
        in_window.with_columns(supplier=suppliers.of_lines.gather(in_window.get_column("line")))
        .lazy()
        .group_by("supplier")
        .agg(
            receipts=pl.len().cast(pl.Int64),
            inspected_receipts=_receipt_inspected().sum().cast(pl.Int64),
            units_inspected=(pl.col("quantity_accepted") + pl.col("quantity_rejected")).sum(),
            acceptance_rate=acceptance_rate(),
            ppm_rejected=ppm_rejected(),
        )
    )


@dataclass(frozen=True)
class SupplierCodes:
    """A number for each supplier (its place in ``ids``) and the number of each order line's supplier: grouping
    millions of rows on a 4-byte number and naming the few groups after is a fraction of grouping on the id."""

    ids: pl.Series
    of_lines: pl.Series

    @classmethod
    def of(cls, lines: pl.DataFrame, ids: pl.Series | None = None) -> SupplierCodes:
        """``ids``: the distinct supplier ids of ``lines`` or more (those of ``lines`` when not given)."""
        supplier_ids = lines.get_column("supplier_id")
        ids = supplier_ids.unique(maintain_order=True) if ids is None else ids.unique(maintain_order=True)
        return cls(ids=ids, of_lines=supplier_ids.cast(pl.Enum(ids)).to_physical())

    @classmethod
    def chosen(cls, lines: pl.DataFrame, chosen: pl.Series) -> tuple[SupplierCodes, pl.Series | None]:
        """The codes of the lines to measure for the ``chosen`` supplier ids, and which of ``lines`` they are (None:
        every line). Most of the lines chosen (a nightly run leaves out the few of inactive suppliers), they are
        all measured, the others' suppliers numbered after the chosen: a copy of every line kept for the rest would
        take more time and memory than measuring them, and what is not asked for is let go of at the end."""
        supplier_ids = lines.get_column("supplier_id")
        ids = chosen.unique(maintain_order=True)
        codes = supplier_ids.cast(pl.Enum(ids), strict=False)
        mine = codes.is_not_null()
        if mine.all():
            return cls(ids=ids, of_lines=codes.to_physical()), None
        if mine.sum() < MEASURE_EVERY_LINE_FROM * len(mine):
            return cls(ids=ids, of_lines=codes.filter(mine).to_physical()), mine
        others = supplier_ids.filter(~mine)
        other_ids = others.unique(maintain_order=True)
        of_lines = codes.to_physical().cast(pl.UInt32).scatter(  # the others numbered after the chosen
            (~mine).arg_true(), others.cast(pl.Enum(other_ids)).to_physical().cast(pl.UInt32) + ids.len())
        return cls(ids=pl.concat([ids, other_ids]), of_lines=of_lines), None

    def named(self, grouped: pl.LazyFrame) -> pl.LazyFrame:
        """``grouped`` by ``supplier`` (a number) with ``supplier_id`` in its place."""
        return grouped.select(pl.lit(self.ids).gather(pl.col("supplier")).alias("supplier_id"),
                              pl.exclude("supplier"))


def nonconformance_metrics(
    nonconformances: pl.LazyFrame, *, as_of: date, window_days: int, ncr_overdue_days: int = 30
) -> pl.LazyFrame:
    """Per supplier, over the nonconformances raised by the as-of date (open: not closed by then):

    - ``nonconformances``        = raised in the window
    - ``open_critical_nonconformances`` = critical ones open at the as-of date, whenever raised
    - ``open_nonconformances``   = open at the as-of date, whenever raised
    - ``overdue_nonconformances`` = open at the as-of date for more than ``ncr_overdue_days``:
      as_of − raised_date > ncr_overdue_days
    - ``closed_nonconformances`` = closed in the window
    - ``mean_days_to_close``     = Σ (closed_date − raised_date) / closed_nonconformances, in days; null when
      none was closed in the window
    """
    start = window_start(as_of, window_days)
    known = nonconformances.filter(pl.col("raised_date") <= as_of)
    still_open = pl.col("closed_date").is_null() | (pl.col("closed_date") > as_of)
    days_open = (pl.lit(as_of) - pl.col("raised_date")).dt.total_days()
    closed_in_window = pl.col("closed_date").is_between(start, as_of)
    return known.group_by("supplier_id").agg(
        nonconformances=pl.col("raised_date").is_between(start, as_of).sum().cast(pl.Int64),
        open_critical_nonconformances=((pl.col("severity") == "critical") & still_open).sum().cast(pl.Int64),
        open_nonconformances=still_open.sum().cast(pl.Int64),
        overdue_nonconformances=(still_open & (days_open > ncr_overdue_days)).sum().cast(pl.Int64),
        closed_nonconformances=closed_in_window.sum().cast(pl.Int64),
        mean_days_to_close=mean_days_to_close(closed_in_window),
    )


def mean_days_to_close(closed_in_window: pl.Expr) -> pl.Expr:
    """Mean days to close = Σ (closed_date − raised_date) / nonconformances closed in the window; null with none."""
    return (pl.col("closed_date") - pl.col("raised_date")).dt.total_days().filter(closed_in_window).mean()


def feedback_metrics(feedback: pl.LazyFrame, *, as_of: date, window_days: int) -> pl.LazyFrame:
    """Per supplier: feedback entries in the window and their mean score (1-5)."""
    start = window_start(as_of, window_days)
    return (
        feedback.filter(pl.col("date").is_between(start, as_of))
        .group_by("supplier_id")
        .agg(feedback_entries=pl.len().cast(pl.Int64), feedback_score=pl.col("score").mean())
    )


def price_changes(lines: pl.LazyFrame, *, as_of: date, window_days: int) -> pl.LazyFrame:
    """The records behind price variance: each line ordered in the window with a previous price, and its change.

    A line's previous price is the unit_price of the order line before it for the same supplier, item_id and
    currency (an empty currency is a currency of its own), in order of order_date, then po_id, then line_no,
    whether that line is in the window or before it. Lines without an item_id, order_date or unit_price, or
    ordered after the as-of date, take no part. The first purchase of an item has no previous price and is not
    counted, nor is a line whose previous price is 0. There is no contract price in the records: the previous
    price is the only reference.

    ``price_change`` = (unit_price − previous_price) / previous_price.
    """
    line_frame = _with_optional_line_columns(lines).collect()
    changes = _previous_prices(line_frame, as_of=as_of, window_days=window_days)
    return (
        line_frame.select(pl.col("supplier_id", "po_id", "line_no", "item_id", "currency", "order_date", "unit_price")
                          .gather(changes.get_column("row")))
        .lazy()
        .with_columns(previous_price=changes.get_column("previous_price"))
        .with_columns(price_change=(pl.col("unit_price") - pl.col("previous_price")) / pl.col("previous_price"))
    )


SAME_ITEM = ("supplier_id", "item_id", "currency")  # what a line's previous price is looked for within
CHECK_SEED = 0x5EED  # the second hash of a key (see matched_receipts): any seed but the first's, 0


def key_hash(*columns: str | pl.Expr, seed: int = 0) -> pl.Expr:
    """A 64-bit hash of ``columns`` together (a function of its own so that a test can make keys collide)."""
    return pl.struct(*columns).hash(seed=seed)


def _in_item_order(hashed: pl.DataFrame, lines: pl.DataFrame) -> pl.DataFrame:
    """``hashed`` (row, order_date, item, ...) sorted by item, order_date, then the po_id and line_no of ``row``."""
    by_item = hashed.sort("order_date", maintain_order=True).sort("item", maintain_order=True)
    same_day = (pl.col("item") == pl.col("item").shift()) & (pl.col("order_date") == pl.col("order_date").shift())
    ties = by_item.with_row_index("position").with_columns(same_day=same_day.fill_null(False)).filter(
        pl.col("same_day") | pl.col("same_day").shift(-1))
    if ties.is_empty():
        return by_item
    at_row = ties.get_column("row")
    in_order = ties.with_columns(
        day=(~pl.col("same_day")).cum_sum(), **{key: lines.get_column(key).gather(at_row) for key in RECEIPT_KEYS}
    ).sort("day", *RECEIPT_KEYS)
    positions = ties.get_column("position")  # ascending: each day's lines take the places its lines had
    return by_item.with_columns(by_item.get_column(name).scatter(positions, in_order.get_column(name))
                                for name in by_item.columns)


PRICE_PARTS = 4  # the items' lines are put in order a share of the items at a time: a quarter of the memory


def _previous_prices(lines: pl.DataFrame, *, as_of: date, window_days: int) -> pl.DataFrame:
    """``row`` (in ``lines``) and ``previous_price`` of each line ordered in the window whose previous price
    (see :func:`price_changes`) is above 0, in no particular order."""
    # Sorted by item, the line before a line is the row before it when that row is of the same item: a shift,
    # no per-group window. The lines are sorted by a 64-bit hash of the item, then by date, in two stable
    # one-column sorts (a third of the time of one sort by the item's three texts, the date, po_id and line_no);
    # only the lines of an item ordered more than once on one day are then put in po_id and line_no order.
    # A line follows the same item when both its hashes (see matched_receipts) equal its neighbour's. Should
    # two items collide in the first alone, their lines would interleave: that shows as neighbours equal in the
    # first hash but not the second, and then their share of the lines is sorted by the texts. The items are
    # sorted a share at a time (by their first hash, so an item's lines are all in one share).
    usable = (pl.col("order_date") <= as_of) & pl.col("item_id").is_not_null() & pl.col("unit_price").is_not_null()
    hashed = (
        lines.lazy().with_row_index("row").filter(usable)
        .select("row", item=key_hash(*SAME_ITEM), check=key_hash(*SAME_ITEM, seed=CHECK_SEED))
        .collect(engine="streaming")
    )
    share = hashed.select((pl.col("item") % PRICE_PARTS).cast(pl.UInt8)).to_series()
    found = []
    for part in range(PRICE_PARTS):
        keys = hashed.filter(share == part)
        at_row = keys.get_column("row")
        found.append(_previous_prices_of(
            keys.with_columns(lines.get_column(name).gather(at_row) for name in ("order_date", "unit_price")),
            lines, first_day=window_start(as_of, window_days)))
    return pl.concat(found)


def _previous_prices_of(hashed: pl.DataFrame, lines: pl.DataFrame, *, first_day: date) -> pl.DataFrame:
    """:func:`_previous_prices` of the usable lines ``hashed`` (row, item, check, order_date, unit_price), all
    the lines of their items."""
    same_hash = pl.col("item") == pl.col("item").shift()
    same_check = pl.col("check") == pl.col("check").shift()
    sorted_lines = _in_item_order(hashed, lines).select(
        "row", "order_date", "unit_price", follows=same_hash & same_check, collides=same_hash & ~same_check)
    if sorted_lines.get_column("collides").any():
        follows_same_item = pl.all_horizontal(pl.col(c).eq_missing(pl.col(c).shift()) for c in SAME_ITEM)
        sorted_lines = (lines.with_row_index("row")[hashed.get_column("row")].lazy()
                        .sort(*SAME_ITEM, "order_date", *RECEIPT_KEYS)
                        .select("row", "order_date", "unit_price", follows=follows_same_item).collect())
    return (
        sorted_lines.lazy()
        .select("row", "order_date", previous_price=pl.when("follows").then(pl.col("unit_price").shift()))
        .filter(pl.col("order_date") >= first_day, pl.col("previous_price") > 0)
        .select("row", "previous_price")
        .collect()
    )


def price_variance() -> pl.Expr:
    """Price variance = Σ price_change / priced lines: the mean relative change of a line's unit price from the
    previous price of the same item (see :func:`price_changes`), over lines ordered in the window that have one.

    Positive: prices went up. Null (not measured) when no line ordered in the window has a previous price.
    """
    return pl.col("price_change").mean()


def price_metrics(lines: pl.LazyFrame, *, as_of: date, window_days: int,
                  suppliers: SupplierCodes | None = None) -> pl.LazyFrame:
    """Per supplier: ``priced_lines`` (lines ordered in the window with a previous price) and price variance."""
    line_frame = _with_optional_line_columns(lines).collect()
    suppliers = suppliers or SupplierCodes.of(line_frame)
    changes = _previous_prices(line_frame, as_of=as_of, window_days=window_days)
    at_row = changes.get_column("row")
    return suppliers.named(
        changes.lazy()
        .select(supplier=suppliers.of_lines.gather(at_row),
                price_change=(line_frame.get_column("unit_price").gather(at_row) - pl.col("previous_price"))
                / pl.col("previous_price"))
        .group_by("supplier")
        .agg(priced_lines=pl.len().cast(pl.Int64), price_variance=price_variance())
    )


def certificate_metrics(suppliers: pl.LazyFrame, *, as_of: date) -> pl.LazyFrame:
    """Per supplier, its certificate_expiry at the as-of date (expiring on the as-of date is still valid):

    - ``certificates``      = 1 with an expiry date, 0 without
    - ``certificate_valid`` = 1 when certificate_expiry ≥ as_of, 0 when before; null without an expiry date
    - ``days_to_expiry``    = certificate_expiry − as_of, in days (negative once expired); null without a date
    """
    if "certificate_expiry" not in suppliers.collect_schema().names():
        suppliers = suppliers.with_columns(certificate_expiry=pl.lit(None, pl.Date))
    expiry = pl.col("certificate_expiry")
    return suppliers.select(
        "supplier_id",
        certificates=expiry.is_not_null().cast(pl.Int64),
        certificate_valid=pl.when(expiry.is_not_null()).then((expiry >= as_of).cast(pl.Int64)),
        days_to_expiry=(expiry - pl.lit(as_of)).dt.total_days(),
    )


RATES_WITH_INTERVALS = ("on_time_rate", "in_full_rate", "otif_rate", "quantity_accuracy_rate",
                        "lead_time_adherence_rate")
# The lines counted by each rate and the lines it is a share of: successes and trials in the Wilson interval.
RATE_SUCCESSES = {
    "on_time_rate": "on_time_lines", "in_full_rate": "in_full_lines", "otif_rate": "otif_lines",
    "quantity_accuracy_rate": "accurate_quantity_lines", "lead_time_adherence_rate": "lead_time_met_lines",
}
RATE_EVIDENCE = {
    "on_time_rate": "order_lines", "in_full_rate": "inspected_lines", "otif_rate": "inspected_lines",
    "quantity_accuracy_rate": "order_lines", "lead_time_adherence_rate": "lines_with_order_date",
}


def _with_interval(rate: str) -> tuple[str, str, str]:
    return rate, f"{rate}_low", f"{rate}_high"


# Every column ``measure_suppliers`` gives per supplier (besides supplier_id), in order. Stored evaluations and
# reports read the first ones by name: new columns go at the end.
METRIC_COLUMNS = (
    "order_lines", "inspected_lines", "on_time_lines", "in_full_lines", "otif_lines", "late_lines",
    *_with_interval("on_time_rate"), *_with_interval("in_full_rate"), *_with_interval("otif_rate"),
    "mean_days_late", "receipts", "inspected_receipts", "units_inspected", "acceptance_rate", "ppm_rejected",
    "nonconformances", "open_critical_nonconformances", "feedback_entries", "feedback_score",
    "early_lines", "units_due", "units_on_time",
    "accurate_quantity_lines", *_with_interval("quantity_accuracy_rate"),
    "lines_with_order_date", "lead_time_lines", "mean_lead_time_days", "p90_lead_time_days",
    "lead_time_met_lines", *_with_interval("lead_time_adherence_rate"),
    "priced_lines", "price_variance",
    "open_nonconformances", "overdue_nonconformances", "closed_nonconformances", "mean_days_to_close",
    "certificates", "certificate_valid", "days_to_expiry",
)

COUNT_COLUMNS = (
    "order_lines", "inspected_lines", "on_time_lines", "in_full_lines", "otif_lines", "late_lines", "receipts",
    "inspected_receipts", "nonconformances", "open_critical_nonconformances", "feedback_entries",
    "early_lines", "accurate_quantity_lines", "lines_with_order_date", "lead_time_lines", "lead_time_met_lines",
    "priced_lines", "open_nonconformances", "overdue_nonconformances", "closed_nonconformances",
)
UNIT_COLUMNS = ("units_inspected", "units_due", "units_on_time")  # sums of quantities: 0.0 without records

NO_ORDER_LINES = "no order lines due in the window"
NO_INSPECTION_RESULTS = "no inspection results in the data"
NO_ORDER_DATES = "no order dates on the order lines due"


def not_measured_reason(metric: str) -> pl.Expr:
    """Why ``metric`` has no value, in words, over the columns ``measure_suppliers`` gives; null where it has one.

    - on-time rate, mean days late, quantity accuracy: no order lines due in the window;
    - in-full and OTIF rates: no order lines due, else no inspection results in the data (no inspected
      receipt in the window), else none for the order lines due;
    - acceptance rate, PPM: no receipts in the window, else no inspection results in the data, else no units
      inspected (every inspected receipt says 0 accepted and 0 rejected);
    - lead-time adherence: no order lines due, else no order dates on them; mean and p90 lead time: the same,
      else none of them completed by the as-of date;
    - price variance: no line ordered in the window with a previous price for its item;
    - mean days to close: no nonconformance closed in the window;
    - certificate valid, days to expiry: no certificate expiry date;
    - feedback score: no feedback in the window.
    """
    no_inspection = pl.col("inspected_receipts") == 0
    no_order_lines = pl.col("order_lines") == 0
    reasons: dict[str, pl.Expr] = {
        "in_full_rate": pl.when(no_order_lines).then(pl.lit(NO_ORDER_LINES))
        .when(no_inspection).then(pl.lit(NO_INSPECTION_RESULTS))
        .otherwise(pl.lit("no inspection results for the order lines due")),
        "acceptance_rate": pl.when(pl.col("receipts") == 0).then(pl.lit("no receipts in the window"))
        .when(no_inspection).then(pl.lit(NO_INSPECTION_RESULTS))
        .otherwise(pl.lit("no units inspected in the window")),
        "lead_time_adherence_rate": pl.when(no_order_lines).then(pl.lit(NO_ORDER_LINES))
        .otherwise(pl.lit(NO_ORDER_DATES)),
        "mean_lead_time_days": pl.when(no_order_lines).then(pl.lit(NO_ORDER_LINES))
        .when(pl.col("lines_with_order_date") == 0).then(pl.lit(NO_ORDER_DATES))
        .otherwise(pl.lit("no order line due was completed by the as-of date")),
        "price_variance": pl.lit("no line ordered in the window with a previous price for its item"),
        "mean_days_to_close": pl.lit("no nonconformance closed in the window"),
        "certificate_valid": pl.lit("no certificate expiry date"),
        "feedback_score": pl.lit("no feedback in the window"),
    }
    reasons["otif_rate"] = reasons["in_full_rate"]
    reasons["ppm_rejected"] = reasons["acceptance_rate"]
    reasons["p90_lead_time_days"] = reasons["mean_lead_time_days"]
    reasons["days_to_expiry"] = reasons["certificate_valid"]
    reasons["on_time_rate"] = reasons["mean_days_late"] = reasons["quantity_accuracy_rate"] = pl.lit(NO_ORDER_LINES)
    return pl.when(pl.col(metric).is_null()).then(reasons.get(metric, pl.lit("no data")))


# The records behind the metrics (``records_behind_metrics``): one row per record and metric.
RECORD_SCHEMA: dict[str, pl.DataType] = {
    "supplier_id": pl.String(), "metric": pl.String(), "why": pl.String(), "po_id": pl.String(),
    "line_no": pl.Int64(), "receipt_id": pl.String(), "promised_date": pl.Date(), "received_date": pl.Date(),
    "quantity_ordered": pl.Float64(), "quantity_received": pl.Float64(), "quantity_missing": pl.Float64(),
    "quantity_rejected": pl.Float64(), "days_late": pl.Int64(),
}
# Which metric each kind of record is behind, as the reports name it (the catalogue's label).
ON_TIME_RECORDS = "On-time delivery rate"
QUANTITY_RECORDS = "Quantity accuracy (received vs ordered)"
REJECTED_RECORDS = "Rejected parts per million"


@dataclass(frozen=True)
class SupplierPerformance:
    """Every metric per supplier, and the records behind them.

    ``late_lines`` are the judged lines not on time — late, short, not yet delivered, or (with an early tolerance)
    too early — each with ``why`` (see :func:`line_facts`), latest promise first: supplier_id, po_id, line_no,
    promised_date, completed_date, days_late (null for a line only too early), quantity_ordered,
    quantity_received, quantity_missing, reason, why. ``records`` (``RECORD_SCHEMA``; empty unless asked for) lists the
    records behind the metrics, see :func:`records_behind_metrics`.
    """

    metrics: pl.DataFrame  # one row per supplier; counts 0 and rates null without evidence
    late_lines: pl.DataFrame
    records: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=RECORD_SCHEMA))


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
    early_tolerance_days: int | None = None,
    on_time_basis: OnTimeBasis = "lines",
    quantity_accuracy_tolerance: float = 0.0,
    ncr_overdue_days: int = 30,
    with_records: bool = False,
    receipt_lines: pl.Series | None = None,
) -> SupplierPerformance:
    """Metrics for every supplier in ``suppliers`` and their lines not on time, from one pass over the line facts.

    Only the records of those suppliers are measured: a one-supplier evaluation costs that supplier's lines and a
    look-up of each receipt's key (when they have most of the lines, see :meth:`SupplierCodes.chosen`, the few
    others are measured too and left out of what is returned). The keyword arguments after ``window_days`` are the
    rule set's evaluation settings (``on_time_tolerance_days`` is ``tolerance_days``), with the same defaults.
    ``suppliers`` may carry ``certificate_expiry``; without it the certificate metrics are null. ``with_records``
    also lists the records behind the metrics (for the reports: :func:`records_behind_metrics`); without it
    ``records`` is empty and costs nothing. ``receipt_lines`` (validation's ``ValidatedInputs.receipt_lines``) is,
    per receipt, the row number of its order line in ``lines`` (null: none there); given, receipts are not matched
    to lines again.
    """
    chosen = suppliers.get_column("supplier_id")
    if receipt_lines is not None and receipt_lines.len() != receipts.height:
        raise ValueError(f"receipt_lines has {receipt_lines.len()} rows for {receipts.height} receipts")
    codes, mine = SupplierCodes.chosen(lines, chosen)
    others = codes.ids.len() > chosen.n_unique()  # lines of suppliers not chosen are measured too: let go at the end
    if mine is not None:  # a few of the suppliers: their lines only, renumbered
        if receipt_lines is not None:
            receipt_lines = _after_filter(receipt_lines, mine)
        lines = lines.filter(mine)
    lines = _in_one_chunk(_with_optional_line_columns(lines.lazy()).collect(), LINE_FIELDS_BY_ROW)
    # In this order, each step's working memory is let go before the next: the line facts are the largest.
    price = price_metrics(lines.lazy(), as_of=as_of, window_days=window_days, suppliers=codes).collect()
    known = (matched_receipts(lines, receipts, as_of=as_of) if receipt_lines is None
             else _known_receipts(receipts, receipt_lines, as_of=as_of))
    quality = _quality(lines, known, as_of=as_of, window_days=window_days, suppliers=codes).collect()
    rejected = _rejected(lines, receipts, known, as_of=as_of, window_days=window_days) if with_records else None
    delivery_facts, late, inaccurate = [], [], []
    for part in _line_parts(lines.height):  # the facts of every line at once would double the memory it takes
        facts = _outcomes(lines.slice(part.start, part.stop - part.start), _part_of(known, part), as_of=as_of,
                          window_days=window_days, tolerance_days=tolerance_days,
                          early_tolerance_days=early_tolerance_days,
                          quantity_accuracy_tolerance=quantity_accuracy_tolerance).collect(engine="in-memory")
        facts = facts.with_columns(pl.col("line") + part.start)
        delivery_facts.append(facts.select(DELIVERY_FACTS).with_columns(
            pl.col("days_late", "lead_time_days").cast(pl.Int32),  # numbers of days fit: half the memory kept
            supplier=codes.of_lines.gather(facts.get_column("line"))))
        late.append(_in_units(facts.filter(~pl.col("on_time"))).collect())
        if with_records:
            inaccurate.append(_in_units(facts.filter(~pl.col("quantity_accurate"))).collect())
        del facts
    del known
    delivery = codes.named(delivery_metrics(pl.concat(delivery_facts).lazy(), on_time_basis=on_time_basis,
                                            supplier="supplier")).collect()
    del delivery_facts
    late = pl.concat(late)
    if others:
        late = _of_suppliers(late, chosen)
        inaccurate = [_of_suppliers(frame, chosen) for frame in inaccurate]
        rejected = _of_suppliers(rejected, chosen) if rejected is not None else None
    # Texts for the lines not on time only, on the in-memory engine: Polars 2.1's streaming engine panics on
    # these expressions ("i < self.len()" on a string array), over a filtered frame or at 10M order lines.
    not_on_time = _with_reasons(_with_keys(late, lines).lazy(), as_of=as_of,
                                early_tolerance_days=early_tolerance_days).collect(engine="in-memory")
    frames = [
        delivery.lazy(),
        quality.lazy(),
        nonconformance_metrics(_of_suppliers(nonconformances, chosen).lazy(), as_of=as_of, window_days=window_days,
                               ncr_overdue_days=ncr_overdue_days),
        feedback_metrics(_of_suppliers(feedback, chosen).lazy(), as_of=as_of, window_days=window_days),
        price.lazy(),
        certificate_metrics(suppliers.lazy(), as_of=as_of),
    ]
    result = suppliers.lazy().select("supplier_id")
    for frame in frames:  # one row per supplier, in their order
        result = result.join(frame, on="supplier_id", how="left", maintain_order="left")
    metrics = (
        result.with_columns(pl.col(c).fill_null(0) for c in COUNT_COLUMNS)
        .with_columns(pl.col(c).fill_null(0.0) for c in UNIT_COLUMNS)
        .select("supplier_id", *METRIC_COLUMNS)
        .collect(engine="in-memory")  # a row per supplier: a quarter of the streaming engine's time
    )
    # The texts on the in-memory engine, as the lines not on time above.
    records = (_records_behind(not_on_time.lazy(), _with_keys(pl.concat(inaccurate), lines).lazy(), rejected.lazy())
               .collect(engine="in-memory") if rejected is not None else pl.DataFrame(schema=RECORD_SCHEMA))
    return SupplierPerformance(metrics=metrics, late_lines=_lines_not_on_time(not_on_time), records=records)


# The line facts :func:`delivery_metrics` reads, besides the supplier.
DELIVERY_FACTS = ("inspected", "has_inspection_results", "on_time", "in_full", "otif", "late",
                  "days_late", "early", "quantity_ordered", "units_on_time", "quantity_accurate", "order_date",
                  "lead_time_days", "lead_time_met")
LINES_PER_PART = 1_000_000
# When the chosen suppliers have at least this share of the order lines, every line is measured (see
# SupplierCodes.chosen): at worst a third more lines measured, instead of a copy of three quarters of them.
MEASURE_EVERY_LINE_FROM = 0.75


def _line_parts(count: int, size: int = LINES_PER_PART) -> list[range]:
    """Consecutive ranges of row numbers covering ``count`` order lines, ``size`` each but the last."""
    return [range(start, min(start + size, count)) for start in range(0, count, size)] or [range(0, 0)]


def _part_of(known: pl.DataFrame, part: range) -> pl.DataFrame:
    """The known receipts of the order lines in ``part``, numbered within it."""
    line = pl.col("line")
    return known.filter(line >= part.start, line < part.stop).with_columns(line - part.start)


def _of_suppliers(frame: pl.DataFrame, chosen: pl.Series) -> pl.DataFrame:
    """The rows of ``frame`` whose supplier_id is among ``chosen`` (``frame`` itself when they all are)."""
    mine = frame.get_column("supplier_id").is_in(chosen.implode())
    return frame if mine.all() else frame.filter(mine)


LINE_RECORD_COLUMNS = ("supplier_id", "po_id", "line_no", "promised_date", "completed_date", "days_late",
                       "quantity_ordered", "quantity_received", "quantity_missing", "reason", "why")


def _lines_not_on_time(facts: pl.DataFrame) -> pl.DataFrame:
    """Judged lines not on time (late, short, not yet delivered, too early), each with why, latest promise first."""
    not_on_time = (
        facts.filter(~pl.col("on_time"))
        .with_columns(quantity_received=pl.col("received_total"))
        .select(LINE_RECORD_COLUMNS)
    )
    return not_on_time.sort(_supplier_order(not_on_time), "promised_date", "po_id", "line_no",
                            descending=[False, True, False, False])


def _supplier_order(frame: pl.DataFrame) -> pl.Series:
    """Each row's supplier_id as its place among the frame's ids in text order: sorted on this number, rows come
    in the order the text gives, and a sort over several columns is about half as long as on the text."""
    supplier_ids = frame.get_column("supplier_id")
    return supplier_ids.cast(pl.Enum(supplier_ids.unique().drop_nulls().sort())).to_physical()


def _late_lines_of(facts: pl.DataFrame) -> pl.DataFrame:
    """Judged lines not fully received by the deadline (a line only too early is not late), with why."""
    return _lines_not_on_time(facts.filter(pl.col("late")))


def rejected_receipts(lines: pl.LazyFrame, receipts: pl.LazyFrame, *, as_of: date, window_days: int) -> pl.LazyFrame:
    """The records behind acceptance and PPM rejected that lowered them: each inspected receipt received in the
    window with quantity_rejected > 0, with its line's supplier, promised date and quantity ordered.

    Over the same receipts as :func:`quality_metrics` (``receipt_id`` is null when the frame has none).
    """
    line_frame, receipt_frame = lines.collect(), receipts.collect()
    return _rejected(line_frame, receipt_frame, matched_receipts(line_frame, receipt_frame, as_of=as_of),
                     as_of=as_of, window_days=window_days).lazy()


def _rejected(lines: pl.DataFrame, receipts: pl.DataFrame, known: pl.DataFrame, *, as_of: date,
              window_days: int) -> pl.DataFrame:
    """:func:`rejected_receipts` from the order lines, the receipts and the known ones (:func:`matched_receipts`)."""
    rejected = known.filter(pl.col("received_date") >= window_start(as_of, window_days), _receipt_inspected(),
                            pl.col("quantity_rejected") > 0)
    at_line = rejected.get_column("line")
    receipt_id = (receipts.get_column("receipt_id").gather(rejected.get_column("receipt"))
                  if "receipt_id" in receipts.columns else pl.lit(None, pl.String))
    return rejected.with_columns(
        *(lines.get_column(name).gather(at_line) for name in ("supplier_id", *RECEIPT_KEYS, "promised_date",
                                                              "quantity_ordered")),
        receipt_id=receipt_id,
    ).select("supplier_id", "receipt_id", *RECEIPT_KEYS, "promised_date", "received_date", "quantity_ordered",
             "quantity_received", "quantity_accepted", "quantity_rejected")


def records_behind_metrics(facts: pl.LazyFrame, lines: pl.LazyFrame, receipts: pl.LazyFrame, *, as_of: date,
                           window_days: int) -> pl.LazyFrame:
    """The records behind each supplier's metrics, one row per record and metric (``RECORD_SCHEMA``):

    - ``metric`` = ``ON_TIME_RECORDS``: every judged line not on time, ``why`` as in :func:`line_facts` (late,
      short, not yet delivered, early); the lines with ``days_late`` are those the mean days late is over;
    - ``metric`` = ``QUANTITY_RECORDS``: every judged line whose quantity is not accurate (see
      :func:`quantity_accuracy_rate`), ``why`` = ``short: M of Q units received (K missing)`` or
      ``over-delivered: M units kept of Q ordered (E extra)`` (kept = received − rejected); these lines are not
      in full either, nor OTIF;
    - ``metric`` = ``REJECTED_RECORDS``: every inspected receipt in the window that rejected units (see
      :func:`rejected_receipts`), ``why`` = ``rejected: R of N units inspected``; these lower the acceptance
      rate too.

    A line short and late is listed under both of the first two. For a line, ``received_date`` is its completed
    date, else its last receipt's; ``quantity_received`` and ``quantity_rejected`` are its totals by the as-of
    date. For a receipt, they are its own; ``quantity_ordered`` and ``promised_date`` are its line's. Sorted by
    supplier, then the three kinds in that order, then latest first (lines by promised date, receipts by
    received date).
    """
    return _records_behind(facts.filter(~pl.col("on_time")), facts.filter(~pl.col("quantity_accurate")),
                           rejected_receipts(lines, receipts, as_of=as_of, window_days=window_days))


def _records_behind(not_on_time_facts: pl.LazyFrame, inaccurate_facts: pl.LazyFrame,
                    rejected: pl.LazyFrame) -> pl.LazyFrame:
    """:func:`records_behind_metrics`, from the facts of the lines not on time (with ``why``), of those whose
    quantity is not accurate (``why`` not needed) and the rejected receipts (:func:`rejected_receipts`)."""
    line_columns = dict(
        po_id=pl.col("po_id").cast(pl.String), line_no=pl.col("line_no").cast(pl.Int64),
        receipt_id=pl.lit(None, pl.String), promised_date="promised_date",
        received_date=pl.coalesce("completed_date", "last_receipt_date"), quantity_ordered="quantity_ordered",
        quantity_received="received_total", quantity_missing="quantity_missing", quantity_rejected="rejected_total",
    )
    kept = pl.col("received_total") - pl.col("rejected_total")
    quantity_why = (
        pl.when(pl.col("quantity_missing") > 0)
        .then(pl.format("short: {} of {} units received ({} missing)", _quantity_text(pl.col("received_total")),
                        _quantity_text(pl.col("quantity_ordered")), _quantity_text(pl.col("quantity_missing"))))
        .otherwise(pl.format("over-delivered: {} units kept of {} ordered ({} extra)", _quantity_text(kept),
                             _quantity_text(pl.col("quantity_ordered")),
                             _quantity_text(kept - pl.col("quantity_ordered"))))
    )
    not_on_time = not_on_time_facts.select(
        "supplier_id", metric=pl.lit(ON_TIME_RECORDS), why="why", **line_columns, days_late="days_late", kind=0)
    inaccurate = inaccurate_facts.select(
        "supplier_id", metric=pl.lit(QUANTITY_RECORDS), why=quantity_why, **line_columns,
        days_late=pl.lit(None, pl.Int64), kind=1)
    inspected = pl.col("quantity_accepted") + pl.col("quantity_rejected")
    rejected = rejected.select(
        "supplier_id", metric=pl.lit(REJECTED_RECORDS),
        why=pl.format("rejected: {} of {} units inspected", _quantity_text(pl.col("quantity_rejected")),
                      _quantity_text(inspected)),
        po_id=pl.col("po_id").cast(pl.String), line_no=pl.col("line_no").cast(pl.Int64),
        receipt_id=pl.col("receipt_id").cast(pl.String), promised_date="promised_date", received_date="received_date",
        quantity_ordered="quantity_ordered", quantity_received="quantity_received",
        quantity_missing=pl.lit(None, pl.Float64), quantity_rejected="quantity_rejected",
        days_late=pl.lit(None, pl.Int64), kind=2)
    schema = {**RECORD_SCHEMA, "kind": pl.Int32()}
    records = pl.concat([frame.cast(schema).select(list(schema)) for frame in (not_on_time, inaccurate, rejected)])
    records = records.collect(engine="in-memory")  # texts: not on the streaming engine (measure_suppliers)
    return (
        records.lazy()
        .with_columns(latest=pl.when(pl.col("kind") == 2).then("received_date").otherwise("promised_date"),
                      no_receipt_id=pl.col("receipt_id").is_null())
        # A receipt without an id after those with one, by a column of its own: nulls_last over several columns
        # takes a slower path in Polars (0.5 of 1.3 CPU seconds at 1.3M records).
        .sort(pl.lit(_supplier_order(records)), "kind", "latest", "po_id", "line_no", "no_receipt_id", "receipt_id",
              descending=[False, False, True, False, False, False, False])
        .drop("kind", "latest", "no_receipt_id")
    )


def supplier_metrics(suppliers: pl.DataFrame, lines: pl.DataFrame, receipts: pl.DataFrame,
                     nonconformances: pl.DataFrame, feedback: pl.DataFrame, *, as_of: date, window_days: int,
                     tolerance_days: int, early_tolerance_days: int | None = None,
                     on_time_basis: OnTimeBasis = "lines", quantity_accuracy_tolerance: float = 0.0,
                     ncr_overdue_days: int = 30, receipt_lines: pl.Series | None = None) -> pl.DataFrame:
    """Every metric for every supplier in ``suppliers`` (see ``measure_suppliers``)."""
    return measure_suppliers(suppliers, lines, receipts, nonconformances, feedback, as_of=as_of,
                             window_days=window_days, tolerance_days=tolerance_days,
                             early_tolerance_days=early_tolerance_days, on_time_basis=on_time_basis,
                             quantity_accuracy_tolerance=quantity_accuracy_tolerance,
                             ncr_overdue_days=ncr_overdue_days, receipt_lines=receipt_lines).metrics


def late_lines(lines: pl.DataFrame, receipts: pl.DataFrame, *, as_of: date, window_days: int,
               tolerance_days: int) -> pl.DataFrame:
    """The records behind lateness: every judged line not fully received by its deadline, latest first.

    A line not on time only because it came too early (before promised − early_tolerance_days) is not late.
    """
    facts = line_facts(lines.lazy(), receipts.lazy(), as_of=as_of, window_days=window_days,
                       tolerance_days=tolerance_days)
    return _late_lines_of(facts.collect())
