"""From scores to decisions: the evaluation record of each supplier and the ASL status changes it brings.

Which changes a run may make is decided here: a what-if run (another rule set or window than the rules in
force) makes none, and no run changes a supplier whose status a later-dated official evaluation decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from rules.catalogue import METRICS
from rules.metrics import METRIC_COLUMNS, RATES_WITH_INTERVALS, not_measured_reason
from rules.model import RuleSet
from rules.scoring import CURRENT_STATUS, criterion_column


def _criteria_column(rule_set: RuleSet) -> pl.Expr:
    """Each criterion of each supplier, as the reports show it.

    ``measured`` is whether its metric has a value; if not, ``not_measured_reason`` says why and ``points``,
    ``weighted_points`` and ``effective_weight`` are null. ``effective_weight`` = weight × 100 / Σ weight of the
    measured criteria under ``not_measured: renormalise`` (the weight itself when all are measured), and
    ``weighted_points`` = points × effective_weight / 100, so the measured rows add up to the score.
    """
    items = []
    for index, criterion in enumerate(rule_set.criteria):
        info = METRICS[criterion.metric]
        points = pl.col(criterion_column(index))
        measured = pl.col(criterion.metric).is_not_null()
        weight = pl.lit(float(criterion.weight))
        effective = weight * 100.0 / pl.col("measured_weight") if rule_set.not_measured == "renormalise" else weight
        effective = pl.when(measured).then(effective)
        has_interval = criterion.metric in RATES_WITH_INTERVALS
        items.append(
            pl.struct(
                name=pl.lit(criterion.name),
                metric=pl.lit(criterion.metric),
                metric_label=pl.lit(info.label),
                unit=pl.lit(info.unit),
                value=pl.col(criterion.metric).cast(pl.Float64),
                measured=measured,
                not_measured_reason=not_measured_reason(criterion.metric),
                evidence=pl.col(info.evidence).cast(pl.Float64).round(0).cast(pl.Int64),
                evidence_label=pl.lit(info.evidence_label),
                weight=weight,
                effective_weight=effective,
                points=points.round(1),
                weighted_points=(points * effective / 100.0).round(2),
                confidence_low=pl.col(f"{criterion.metric}_low") if has_interval else pl.lit(None, pl.Float64),
                confidence_high=pl.col(f"{criterion.metric}_high") if has_interval else pl.lit(None, pl.Float64),
            )
        )
    return pl.concat_list(items)


def _plain_number(value: pl.Expr) -> pl.Expr:
    """A weight in words: ``50``, ``62.5``."""
    return (
        pl.when(value == value.round(0))
        .then(value.round(0).cast(pl.Int64).cast(pl.String))
        .otherwise(value.round(1).cast(pl.String))
    )


def assemble_evaluations(scored: pl.DataFrame, rule_set: RuleSet, previous: pl.DataFrame) -> pl.DataFrame:
    """Scored rows plus the audit detail: metrics, criteria, previous score and change, the band's action."""
    actions = pl.DataFrame(
        {"band": [b.band for b in rule_set.bands], "action": [b.action for b in rule_set.bands]}
    )
    return (
        scored.with_columns(
            metrics=pl.struct(*METRIC_COLUMNS),
            criteria=_criteria_column(rule_set),
        )
        .join(previous, on="supplier_id", how="left")
        .join(actions, on="band", how="left")
        .with_columns(score_change=(pl.col("score") - pl.col("previous_score")).round(1))
    )


def status_changes(evaluated: pl.DataFrame) -> pl.DataFrame:
    """Suppliers whose status differs from their current ASL status, with the reason in words.

    A score over part of the criteria says so: ``score 82.0 over measured criteria (50 of 100 weight) puts it
    in band B; not measured: Quality of goods received``.
    """
    criterion = pl.element().struct
    not_measured = pl.col("criteria").list.eval(criterion.field("name").filter(~criterion.field("measured")))
    total_weight = pl.col("criteria").list.eval(criterion.field("weight").sum()).list.first()
    partial = pl.col("score").is_not_null() & (not_measured.list.len() > 0)
    score_part = (
        pl.when(partial)
        .then(
            pl.format(
                "score {} over measured criteria ({} of {} weight) puts it in band {}; not measured: {}",
                pl.col("score").round(1), _plain_number(pl.col("measured_weight")), _plain_number(total_weight),
                pl.col("band"), not_measured.list.join(", "),
            )
        )
        .when(pl.col("score").is_not_null())
        .then(pl.format("score {} puts it in band {}", pl.col("score").round(1), pl.col("band")))
    )
    insufficient_part = pl.when(pl.col("insufficient_reason").is_not_null()).then(
        pl.format("insufficient data ({})", pl.col("insufficient_reason"))
    )
    gates_part = pl.when(pl.col("gates_hit").list.len() > 0).then(
        pl.format("gate hit: {}", pl.col("gates_hit").list.join(", "))
    )
    return (
        evaluated.filter(pl.col("status") != pl.col(CURRENT_STATUS))
        .select(
            "supplier_id",
            from_status=pl.col(CURRENT_STATUS),
            to_status=pl.col("status"),
            reason=pl.concat_str([score_part, insufficient_part, gates_part], separator="; ", ignore_nulls=True),
        )
        .sort("supplier_id")
    )


SUPPLIER_FIELDS = ("supplier_id", "name", "category", "criticality", "owner_email")


@dataclass(frozen=True)
class Decisions:
    """Every supplier's evaluation record, and the ASL status changes this run makes."""

    evaluated: pl.DataFrame
    changes: pl.DataFrame


def changes_asl(rule_set: RuleSet, in_force: RuleSet, window_days: int) -> bool:
    """Whether a run is official (may change the ASL): the rules in force, over their own window."""
    return rule_set.content_hash == in_force.content_hash and window_days == in_force.evaluation.window_days


def decide(selected: pl.DataFrame, scored: pl.DataFrame, rule_set: RuleSet, *, previous: pl.DataFrame,
           official_as_of: pl.DataFrame, as_of: date, official: bool) -> Decisions:
    """Evaluations plus the ASL changes they make: none for a what-if, none where a later evaluation decided.

    ``previous`` is each supplier's latest official evaluation before ``as_of`` (supplier_id, previous_as_of,
    previous_score, previous_band); ``official_as_of`` each supplier's latest official as-of date.
    """
    evaluated = assemble_evaluations(scored, rule_set, previous).join(
        selected.select(SUPPLIER_FIELDS), on="supplier_id"
    )
    changes = status_changes(evaluated)
    if not official:
        return Decisions(evaluated, changes.clear())
    decided_later = official_as_of.filter(pl.col("official_as_of") > as_of).select("supplier_id")
    return Decisions(evaluated, changes.join(decided_later, on="supplier_id", how="anti"))
