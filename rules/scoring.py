"""Turn metrics into points, a score, a band, gates hit and an ASL status, as Polars expressions.

- profile: the first of the rule set's profiles whose ``when`` matches the supplier's criticality and/or
  category, else the last (the default). The profile's criteria (the rule set's, with the profile's weights,
  scales and minimum evidence by name), its minimum evidence and its re-evaluation interval apply.
- points of a criterion: ``linear``: 100 × clamp((value − zero_points_at) / (full_points_at − zero_points_at), 0, 1);
  ``steps``: the points of the first step the value satisfies (``at_most``: value ≤ bound, ``at_least``:
  value ≥ bound), else ``otherwise``.
- custom metrics (the rule set's ``custom_metrics``): each formula (``rules.formula``) computed over the metric
  columns and the custom metrics above it, as one more column of the metrics frame; a criterion uses it like a
  catalogue metric.
- measured: a criterion whose metric has a value and, when the criterion sets ``minimum_evidence``, whose
  evidence count (late lines for mean days late, ...) reaches it. One not measured (see
  ``rules.metrics.not_measured_reason``, or "1 late lines (minimum 3)") gets no points, never 0 or 100 of them.
- score = Σ points × weight / Σ weight, both sums over the measured criteria, rounded to one decimal. With
  every criterion measured that is Σ points × weight / 100 (weights add up to 100); otherwise the measured
  weights are scaled up to add up to 100 (``not_measured: renormalise``, the default), so the score stays 0-100.
- band: the band with ``from ≤ score < to`` (the top band includes 100).
- status: the band's status; then every gate hit that caps makes it at best its ``cap_status``, and a gate hit
  that forces sets it to its ``force_status`` (the worst of them when several force). ``gate_note`` names the
  gates that changed it ("Capped at conditional by: Quality certificate expired.").
- insufficient data: fewer judged order lines, or fewer receipts in the window (inspected or not), than the
  profile's minimum; no criterion measured; or, under ``not_measured: insufficient_data``, any criterion not
  measured. No score, no band, and the status stays what it was (gates still cap it).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

import polars as pl

from rules.catalogue import MetricInfo
from rules.formula import compile_formula
from rules.metrics import METRIC_COLUMNS, not_measured_reason
from rules.model import STATUS_ORDER, Gate, Profile, RuleSet, Scale
from suppliers.runs import CURRENT_STATUS

PROFILE = "profile"
REEVALUATE_EVERY = "reevaluate_every_days"
# What the selection may carry besides supplier_id, certificate_expiry and current_status; absent means unknown.
SUPPLIER_FACTS: dict[str, pl.DataType] = {
    "criticality": pl.String(), "category": pl.String(),
    "oldest_open_critical_days": pl.Int64(),  # age of the oldest critical nonconformance open at the as-of date
    "recent_bands": pl.List(pl.String()),  # bands of the previous official evaluations, latest first
}


def criterion_column(index: int) -> str:
    return f"points_{index}"


def weight_column(index: int) -> str:
    """The weight criterion ``index`` has under each supplier's profile."""
    return f"points_{index}_weight"


def measured_column(index: int) -> str:
    return f"points_{index}_measured"


def reason_column(index: int) -> str:
    """Why criterion ``index`` was not measured, in words (null when it was)."""
    return f"points_{index}_not_measured"


def metric_info(rule_set: RuleSet, metric: str) -> MetricInfo:
    """The catalogue's (or the rule set's custom) description of a metric: label, unit, evidence column."""
    return rule_set.metric_info(metric)


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


def profile_expression(rule_set: RuleSet) -> pl.Expr:
    """Each supplier's profile name: the first profile whose ``when`` matches, else the default (the last)."""
    expr: pl.Expr = pl.lit(rule_set.profiles[-1].name)
    for profile in reversed(rule_set.profiles[:-1]):
        assert profile.when is not None
        condition = pl.lit(True)
        if profile.when.criticality:
            condition = condition & pl.col("criticality").is_in(list(profile.when.criticality))
        if profile.when.category:
            condition = condition & pl.col("category").is_in(list(profile.when.category))
        expr = pl.when(condition.fill_null(False)).then(pl.lit(profile.name)).otherwise(expr)
    return expr


def per_profile(rule_set: RuleSet, value: Callable[[Profile], pl.Expr]) -> pl.Expr:
    """``value(profile)`` of each supplier's profile (column ``profile``); one expression when all agree."""
    values = [(profile, value(profile)) for profile in rule_set.profiles]
    if all(expr.meta.eq(values[0][1]) for _, expr in values):
        return values[0][1]
    expr = values[-1][1]
    for profile, profile_value in reversed(values[:-1]):
        expr = pl.when(pl.col(PROFILE) == profile.name).then(profile_value).otherwise(expr)
    return expr


def gate_condition(gate: Gate, as_of: date) -> pl.Expr:
    """Whether ``gate`` is hit, over the supplier, metric and band columns (never null)."""
    if gate.when == "certificate_expired":
        limit = as_of + timedelta(days=gate.within_days or 0)
        hit = pl.col("certificate_expiry") < limit
    elif gate.when == "open_critical_nonconformance":
        hit = (pl.col("open_critical_nonconformances") > 0 if gate.older_than_days is None
               else pl.col("oldest_open_critical_days") > gate.older_than_days)
    elif gate.when == "repeated_low_score":
        bands, earlier = list(gate.bands or ()), gate.runs - 1
        recent = pl.col("recent_bands").fill_null(pl.lit([], dtype=pl.List(pl.String)))
        hit = (pl.col("band").is_in(bands) & (recent.list.len() >= earlier)
               & recent.list.head(earlier).list.eval(pl.element().is_in(bands)).list.all())
    else:  # pragma: no cover - the model admits only the conditions above
        raise ValueError(f"unknown gate condition {gate.when!r}")
    return hit.fill_null(False)


def _criterion_columns(rule_set: RuleSet) -> list[pl.Expr]:
    """Per criterion: its weight under the supplier's profile, whether it was measured, why not, its points."""
    columns: list[pl.Expr] = []
    for index, criterion in enumerate(rule_set.criteria):
        info = metric_info(rule_set, criterion.metric)
        value, evidence = pl.col(criterion.metric), pl.col(info.evidence)
        minimum = per_profile(rule_set, lambda p, i=index: pl.lit(rule_set.criteria_for(p)[i].minimum_evidence,
                                                                   dtype=pl.Int64))
        below = (evidence < minimum).fill_null(False)
        measured = value.is_not_null() & ~below
        evidence_count = evidence.cast(pl.Float64).round(0).cast(pl.Int64)
        columns += [
            per_profile(rule_set, lambda p, i=index: pl.lit(float(rule_set.criteria_for(p)[i].weight)))
            .alias(weight_column(index)),
            measured.alias(measured_column(index)),
            pl.when(value.is_null()).then(not_measured_reason(criterion.metric))
            .when(below).then(pl.format("{} {} (minimum {})", evidence_count, pl.lit(info.evidence_label), minimum))
            .alias(reason_column(index)),
            pl.when(measured).then(per_profile(rule_set, lambda p, i=index, v=value: scale_points(
                v, rule_set.criteria_for(p)[i].scale))).alias(criterion_column(index)),
        ]
    return columns


def _insufficient_reason(rule_set: RuleSet) -> pl.Expr:
    minimum_lines = per_profile(rule_set, lambda p: pl.lit(rule_set.minimum_evidence_for(p).order_lines))
    minimum_receipts = per_profile(rule_set, lambda p: pl.lit(rule_set.minimum_evidence_for(p).receipts))
    reasons = [
        pl.when(pl.col("order_lines") < minimum_lines).then(
            pl.format("{} order lines due in the window (minimum {})", pl.col("order_lines"), minimum_lines)
        ),
        pl.when(pl.col("receipts") < minimum_receipts).then(
            pl.format("{} receipts in the window (minimum {})", pl.col("receipts"), minimum_receipts)
        ),
    ]
    # Per criterion not measured: "no data for <metric>" (once per metric), or its evidence below the minimum.
    missing = pl.concat_list(
        pl.when(pl.col(c.metric).is_null())
        .then(pl.lit(f"no data for {metric_info(rule_set, c.metric).label.lower()}"))
        .when(~pl.col(measured_column(i)))
        .then(pl.format("{}: {}", pl.lit(c.name), pl.col(reason_column(i))))
        for i, c in enumerate(rule_set.criteria)
    ).list.drop_nulls().list.unique(maintain_order=True).list.join("; ")
    if rule_set.not_measured == "insufficient_data":
        reasons.append(pl.when(missing != "").then(missing))
    else:
        nothing_measured = pl.all_horizontal(~pl.col(measured_column(i)) for i in range(len(rule_set.criteria)))
        reasons.append(pl.when(nothing_measured).then(pl.format("no criterion measured ({})", missing)))
    return pl.concat_str(reasons, separator="; ", ignore_nulls=True).replace("", None)


def measured_weight(rule_set: RuleSet) -> pl.Expr:
    """Σ weight of the measured criteria (the profile's total, 100, when all are measured), over the columns
    ``score_suppliers`` makes."""
    return pl.sum_horizontal(
        pl.when(pl.col(measured_column(i))).then(pl.col(weight_column(i))).otherwise(pl.lit(0.0))
        for i in range(len(rule_set.criteria))
    )


def with_custom_metrics(metrics: pl.DataFrame, rule_set: RuleSet) -> pl.DataFrame:
    """The metrics frame plus one Float64 column per custom metric, in rule-file order (null: not measured)."""
    allowed = list(METRIC_COLUMNS)
    for custom in rule_set.custom_metrics:
        metrics = metrics.with_columns(compile_formula(custom.formula, allowed).alias(custom.name))
        allowed.append(custom.name)
    return metrics


def _gated_status(rule_set: RuleSet, as_of: date) -> dict[str, pl.Expr]:
    """``gates_hit`` (names), ``status`` (band status, or the current one without a band, then capped or forced)
    and ``gate_note`` (which gates changed it, in words; null when none did)."""
    hits = [(gate, gate_condition(gate, as_of)) for gate in rule_set.gates]
    rank = {status: index for index, status in enumerate(STATUS_ORDER)}
    cap_ranks = [pl.when(hit).then(pl.lit(rank[g.effect[1]])) for g, hit in hits if g.effect[0] == "cap"]
    force_ranks = [pl.when(hit).then(pl.lit(rank[g.effect[1]])) for g, hit in hits if g.effect[0] == "force"]
    base_status = pl.coalesce(pl.col("band_status"), pl.col(CURRENT_STATUS))
    base_rank = _status_rank(base_status)
    capped = pl.max_horizontal(base_rank, *cap_ranks) if cap_ranks else base_rank
    forced = pl.max_horizontal(*force_ranks) if force_ranks else pl.lit(None, dtype=pl.Int64)
    final = pl.coalesce(forced, capped)
    # A status outside the ranked ASL statuses (pending) is not a gate's to change.
    status = pl.when(base_rank.is_null()).then(base_status).otherwise(_rank_to_status(final))

    def names(kind: str) -> pl.Expr:
        named = [pl.when(hit & (pl.lit(rank[g.effect[1]]) == final)).then(pl.lit(g.name))
                 for g, hit in hits if g.effect[0] == kind]
        return pl.concat_str(named, separator=", ", ignore_nulls=True) if named else pl.lit("")

    note = (
        pl.when(base_rank.is_null()).then(None)
        .when(forced.is_not_null()).then(pl.format("Set to {} by: {}.", status, names("force")))
        .when(final != base_rank).then(pl.format("Capped at {} by: {}.", status, names("cap")))
    )
    # concat_arr, not concat_list, which goes row by row (a tenth of the scoring time at 50,000 suppliers).
    gates_hit = (pl.concat_arr(pl.when(hit).then(pl.lit(g.name, dtype=pl.String)) for g, hit in hits)
                 .arr.to_list().list.drop_nulls() if hits else pl.lit([], dtype=pl.List(pl.String)))
    return {"gates_hit": gates_hit, "status": status, "gate_note": note}


def score_suppliers(suppliers: pl.DataFrame, metrics: pl.DataFrame, rule_set: RuleSet, *, as_of: date) -> pl.DataFrame:
    """One row per supplier: profile, points per criterion (with its weight and whether it was measured),
    measured weight, score, band, gates hit, status after the gates, insufficient reason.

    ``suppliers`` needs supplier_id, certificate_expiry and ``current_status`` (the ASL status before this run);
    it may carry ``SUPPLIER_FACTS`` (criticality and category choose the profile; without them every supplier
    has the default profile).
    """
    present = [name for name in SUPPLIER_FACTS if name in suppliers.columns]
    frame = suppliers.select("supplier_id", "certificate_expiry", CURRENT_STATUS, *present).with_columns(
        pl.lit(None, dtype=dtype).alias(name) for name, dtype in SUPPLIER_FACTS.items() if name not in present
    ).join(with_custom_metrics(metrics, rule_set), on="supplier_id", how="left")
    count = len(rule_set.criteria)
    frame = frame.with_columns(profile_expression(rule_set).alias(PROFILE)).with_columns(
        per_profile(rule_set, lambda p: pl.lit(p.reevaluate_every_days)).alias(REEVALUATE_EVERY),
        *_criterion_columns(rule_set),
    )
    # Σ points × weight / 100 divided by the measured share of the weight: with every criterion measured the
    # share is exactly 1.0, so a complete supplier's score is bit for bit what it was before renormalising.
    weighted = pl.sum_horizontal(pl.col(criterion_column(i)) * (pl.col(weight_column(i)) / 100.0)
                                 for i in range(count))
    total_weight = pl.sum_horizontal(pl.col(weight_column(i)) for i in range(count))
    frame = frame.with_columns(measured_weight=measured_weight(rule_set)).with_columns(
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
    return frame.with_columns(**_gated_status(rule_set, as_of)).drop("certificate_expiry", "criticality", "category")
