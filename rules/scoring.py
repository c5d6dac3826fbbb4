"""Turn metrics into points, a score, a band, gates hit and an ASL status, as Polars expressions.

- points of a criterion: ``linear``: 100 × clamp((value − zero_points_at) / (full_points_at − zero_points_at), 0, 1);
  ``steps``: the points of the first step the value satisfies (``at_most``: value ≤ bound, ``at_least``:
  value ≥ bound), else ``otherwise``.
- custom metrics (the rule set's ``custom_metrics``): each formula (``rules.formula``) computed over the metric
  columns and the custom metrics above it, as one more column of the metrics frame; a criterion uses it like a
  catalogue metric.
- measured: a criterion whose metric has a value; one without (see ``rules.metrics.not_measured_reason``)
  gets no points, never 0 or 100 of them.
- score = Σ points × weight / Σ weight, both sums over the measured criteria, rounded to one decimal. With
  every criterion measured that is Σ points × weight / 100 (weights add up to 100); otherwise the measured
  weights are scaled up to add up to 100 (``not_measured: renormalise``, the default), so the score stays 0-100.
- band: the band with ``from ≤ score < to`` (the top band includes 100).
- status: the band's status, then capped by every gate hit (a cap can only make a status worse).
- insufficient data: fewer judged order lines, or fewer receipts in the window (inspected or not), than the
  rule set's minimum; no criterion measured; or, under ``not_measured: insufficient_data``, any criterion not
  measured. No score, no band, and the status stays what it was (gates still cap it).
"""

from __future__ import annotations

from datetime import date

import polars as pl

from rules.formula import compile_formula
from rules.metrics import METRIC_COLUMNS
from rules.model import STATUS_ORDER, Criterion, RuleSet, Scale
from suppliers.runs import CURRENT_STATUS


def criterion_column(index: int) -> str:
    return f"points_{index}"


def scale_points(value: pl.Expr, scale: Scale) -> pl.Expr:
    """Points 0-100 for a metric value under a scale (null value → null points)."""
    if scale.linear is not None:
        zero, full = scale.linear.zero_points_at, scale.linear.full_points_at
        return (((value - zero) / (full - zero)).clip(0.0, 1.0) * 100.0).cast(pl.Float64)
    assert scale.steps is not None and scale.otherwise is not None
    expr: pl.Expr = pl.lit(float(scale.otherwise))
    for step in reversed(scale.steps):
        condition = value <= step.at_most if step.at_most is not None else value >= step.at_least
        expr = pl.when(condition).then(pl.lit(float(step.points))).otherwise(expr)
    return pl.when(value.is_not_null()).then(expr)


def _status_rank(column: pl.Expr) -> pl.Expr:
    return column.replace_strict(list(STATUS_ORDER), list(range(len(STATUS_ORDER))), default=None,
                                 return_dtype=pl.Int64)


def _rank_to_status(rank: pl.Expr) -> pl.Expr:
    return rank.replace_strict(list(range(len(STATUS_ORDER))), list(STATUS_ORDER), default=None,
                               return_dtype=pl.String)


def gate_expressions(as_of: date) -> dict[str, pl.Expr]:
    """Each gate condition of the catalogue as a boolean expression over supplier + metric columns."""
    return {
        "certificate_expired": pl.col("certificate_expiry").is_not_null() & (pl.col("certificate_expiry") < as_of),
        "open_critical_nonconformance": pl.col("open_critical_nonconformances") > 0,
    }


def _insufficient_reason(rule_set: RuleSet) -> pl.Expr:
    minimum = rule_set.minimum_evidence
    reasons = [
        pl.when(pl.col("order_lines") < minimum.order_lines).then(
            pl.format("{} order lines due in the window (minimum {})", pl.col("order_lines"),
                      pl.lit(minimum.order_lines))
        ),
        pl.when(pl.col("receipts") < minimum.receipts).then(
            pl.format("{} receipts in the window (minimum {})", pl.col("receipts"), pl.lit(minimum.receipts))
        ),
    ]
    metrics = list(dict.fromkeys(c.metric for c in rule_set.criteria))
    no_data = {metric: f"no data for {rule_set.metric_info(metric).label.lower()}" for metric in metrics}
    if rule_set.not_measured == "insufficient_data":
        reasons += [pl.when(pl.col(metric).is_null()).then(pl.lit(no_data[metric])) for metric in metrics]
    else:
        nothing_measured = pl.all_horizontal(pl.col(metric).is_null() for metric in metrics)
        reasons.append(pl.when(nothing_measured).then(pl.lit(f"no criterion measured ({'; '.join(no_data.values())})")))
    return pl.concat_str(reasons, separator="; ", ignore_nulls=True).replace("", None)


def measured_weight(rule_set: RuleSet) -> pl.Expr:
    """Σ weight of the criteria whose metric has a value (the rule set's total, 100, when all are measured)."""
    return pl.sum_horizontal(
        pl.when(pl.col(c.metric).is_not_null()).then(pl.lit(float(c.weight))).otherwise(pl.lit(0.0))
        for c in rule_set.criteria
    )


def with_custom_metrics(metrics: pl.DataFrame, rule_set: RuleSet) -> pl.DataFrame:
    """The metrics frame plus one Float64 column per custom metric, in rule-file order (null: not measured)."""
    allowed = list(METRIC_COLUMNS)
    for custom in rule_set.custom_metrics:
        metrics = metrics.with_columns(compile_formula(custom.formula, allowed).alias(custom.name))
        allowed.append(custom.name)
    return metrics


def score_suppliers(suppliers: pl.DataFrame, metrics: pl.DataFrame, rule_set: RuleSet, *, as_of: date) -> pl.DataFrame:
    """One row per supplier: points per criterion, measured weight, score, band, gates hit, proposed status,
    insufficient reason.

    ``suppliers`` needs supplier_id, certificate_expiry and ``current_status`` (the ASL status before this run).
    """
    criteria: tuple[Criterion, ...] = rule_set.criteria
    gates = gate_expressions(as_of)
    frame = suppliers.select("supplier_id", "certificate_expiry", CURRENT_STATUS).join(
        with_custom_metrics(metrics, rule_set), on="supplier_id", how="left"
    )
    points = [scale_points(pl.col(c.metric), c.scale).alias(criterion_column(i)) for i, c in enumerate(criteria)]
    # Σ points × weight / 100 divided by the measured share of the weight: with every criterion measured the
    # share is exactly 1.0, so a complete supplier's score is bit for bit what it was before renormalising.
    weighted = pl.sum_horizontal(pl.col(criterion_column(i)) * (c.weight / 100.0) for i, c in enumerate(criteria))
    total_weight = pl.sum_horizontal(pl.lit(float(c.weight)) for c in criteria)
    frame = frame.with_columns(points, measured_weight=measured_weight(rule_set)).with_columns(
        insufficient_reason=_insufficient_reason(rule_set),
    ).with_columns(
        insufficient_data=pl.col("insufficient_reason").is_not_null(),
        score=pl.when(pl.col("insufficient_reason").is_null()).then(
            (weighted / (pl.col("measured_weight") / total_weight)).round(1)
        ),
    )
    band_expr: pl.Expr = pl.lit(None, dtype=pl.String)
    band_status: pl.Expr = pl.lit(None, dtype=pl.String)
    for band in sorted(rule_set.bands, key=lambda b: b.lower):
        in_band = (pl.col("score") >= band.lower) & (
            (pl.col("score") < band.upper) if band.upper < 100 else (pl.col("score") <= band.upper)
        )
        band_expr = pl.when(in_band).then(pl.lit(band.band)).otherwise(band_expr)
        band_status = pl.when(in_band).then(pl.lit(band.status)).otherwise(band_status)
    frame = frame.with_columns(band=band_expr, band_status=band_status)

    gate_hits = [pl.when(gates[g.when]).then(pl.lit(g.name)) for g in rule_set.gates]
    cap_ranks = [pl.when(gates[g.when]).then(pl.lit(STATUS_ORDER.index(g.cap_status))) for g in rule_set.gates]
    base_status = pl.coalesce(pl.col("band_status"), pl.col(CURRENT_STATUS))
    base_rank = _status_rank(base_status)
    capped_rank = pl.max_horizontal(base_rank, *cap_ranks) if cap_ranks else base_rank
    # A status outside the ranked ASL statuses (pending) is not a gate's to change.
    status = pl.when(base_rank.is_null()).then(base_status).otherwise(_rank_to_status(capped_rank))
    gates_hit = (pl.concat_list(gate_hits).list.drop_nulls() if gate_hits
                 else pl.lit([], dtype=pl.List(pl.String)))
    return frame.with_columns(gates_hit=gates_hit, status=status).drop("certificate_expiry")
