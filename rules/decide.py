"""From scores to decisions: the evaluation record of each supplier and what it does to the ASL.

Which changes a run may make is decided by ``rules.asl``: a what-if run (another rule set or window than the
rules in force) makes none, no run changes a supplier whose status a later-dated decision set, a manual
decision in force is respected, and a change that needs a person's approval is only proposed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import polars as pl

from rules.asl import (
    MANUAL_COLUMNS,
    apply_transitions,
    next_due,
    proposals,
    raise_actions,
    status_changes,
    unchanged_reason,
)
from rules.metrics import METRIC_COLUMNS, RATES_WITH_INTERVALS
from rules.model import RuleSet
from rules.scoring import (
    criterion_column,
    measured_column,
    metric_info,
    reason_column,
    weight_column,
)

__all__ = ["CHANGE_CAUSE", "Decisions", "assemble_evaluations", "change_causes", "changes_asl", "decide",
           "status_changes"]


CRITERION = pl.Struct({
    "name": pl.String, "metric": pl.String, "metric_label": pl.String, "unit": pl.String, "value": pl.Float64,
    "measured": pl.Boolean, "not_measured_reason": pl.String, "evidence": pl.Int64, "evidence_label": pl.String,
    "weight": pl.Float64, "effective_weight": pl.Float64, "points": pl.Float64, "weighted_points": pl.Float64,
    "confidence_low": pl.Float64, "confidence_high": pl.Float64})


def _criteria_column(rule_set: RuleSet) -> pl.Expr:
    """Each criterion of each supplier, as the reports show it.

    ``measured`` is whether its metric has a value and enough evidence (the criterion's ``minimum_evidence``);
    if not, ``not_measured_reason`` says why and ``points``, ``weighted_points`` and ``effective_weight`` are
    null. ``weight`` is the criterion's weight under the supplier's profile; ``effective_weight`` = weight × 100
    / Σ weight of the measured criteria under ``not_measured: renormalise`` (the weight itself when all are
    measured), and ``weighted_points`` = points × effective_weight / 100, so the measured rows add up to the score.
    """
    items = []
    for index, criterion in enumerate(rule_set.criteria):
        info = metric_info(rule_set, criterion.metric)
        points = pl.col(criterion_column(index))
        measured = pl.col(measured_column(index))
        weight = pl.col(weight_column(index))
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
                not_measured_reason=pl.col(reason_column(index)),
                evidence=pl.col(info.evidence).cast(pl.Float64).round(0).cast(pl.Int64),
                evidence_label=pl.lit(info.evidence_label),
                weight=weight,
                effective_weight=effective,
                points=points.round(1),
                weighted_points=(points * effective / 100.0).round(2),
                confidence_low=pl.col(f"{criterion.metric}_low") if has_interval else pl.lit(None, pl.Float64),
                confidence_high=pl.col(f"{criterion.metric}_high") if has_interval else pl.lit(None, pl.Float64),
            ).cast(CRITERION)
        )
    # One array of the criteria, then a list: concat_list of structs goes row by row (1.4 s at 50,000 suppliers).
    return pl.concat_arr(items).arr.to_list()


def _status_actions(rule_set: RuleSet) -> pl.Expr:
    """The action of the status each supplier ends up with, after the gate's note when a gate set it."""
    action = pl.col("status").replace_strict(
        {status: rule_set.action_for(status) for status in ("approved", "conditional", "probation", "disqualified")},
        default="", return_dtype=pl.String)
    return (pl.when(pl.col("gate_note").is_not_null()).then(pl.format("{} Action: {}", pl.col("gate_note"), action))
            .otherwise(action).replace("", None))


def assemble_evaluations(scored: pl.DataFrame, rule_set: RuleSet, previous: pl.DataFrame) -> pl.DataFrame:
    """Scored rows plus the audit detail: metrics, criteria, previous score and change and its main causes
    (``change_causes``), the action of the status.

    ``previous`` has supplier_id, previous_score and optionally previous_as_of, previous_band and
    previous_criteria (the previous evaluation's criteria as stored, JSON text).
    """
    optional = {"previous_as_of": pl.Date, "previous_criteria": pl.String}
    previous = previous.with_columns(pl.lit(None, dtype).alias(name) for name, dtype in optional.items()
                                     if name not in previous.columns)
    evaluated = (
        scored.with_columns(
            metrics=pl.struct(*METRIC_COLUMNS),
            criteria=_criteria_column(rule_set),
            action=_status_actions(rule_set),
        )
        .join(previous, on="supplier_id", how="left")
        .with_columns(score_change=(pl.col("score") - pl.col("previous_score")).round(1))
    )
    return (
        evaluated.join(change_causes(evaluated), on="supplier_id", how="left")
        .with_columns(pl.col("change_causes").fill_null(pl.lit([], dtype=pl.List(CHANGE_CAUSE))))
        .drop("previous_criteria")
    )


# What a change is explained by: each criterion's contribution to the score (weighted points) then and now.
_STORED_CRITERIA = pl.List(pl.Struct({"name": pl.String, "unit": pl.String, "value": pl.Float64,
                                      "measured": pl.Boolean, "effective_weight": pl.Float64,
                                      "weighted_points": pl.Float64}))
CHANGE_CAUSE = pl.Struct({"name": pl.String, "points_change": pl.Float64, "unit": pl.String,
                          "previous_value": pl.Float64, "previous_measured": pl.Boolean,
                          "previous_weight": pl.Float64, "value": pl.Float64, "measured": pl.Boolean,
                          "weight": pl.Float64})
SMALLEST_CAUSE = 0.05  # points of score: a criterion that moved the score less is no cause worth naming


def change_causes(evaluated: pl.DataFrame, *, top: int = 2) -> pl.DataFrame:
    """The main causes of each supplier's score change since its previous evaluation: supplier_id, change_causes.

    A criterion's part of the change is ``points_change`` = weighted points now − weighted points then (a
    criterion not measured, or not in the rule set, counts 0), so the parts add up to the score change (to
    rounding). The causes are the ``top`` criteria (matched by name) whose part is largest in size and at least
    ``SMALLEST_CAUSE``, largest first (ties in the rule set's order), each with its metric's value, whether it
    was measured and the weight it counted with then (``previous_value``, ``previous_measured``,
    ``previous_weight``) and now (``value``, ``measured``, ``weight``; ``measured`` null when the criterion is not
    in that evaluation): a criterion whose value did not move can still move the score when another criterion
    is measured in one evaluation and not the other (its weight counts more or less). Only suppliers scored now
    and then (a ``score_change``) are listed; ``previous_criteria`` is the previous evaluation's criteria as
    stored (JSON text).
    """
    changed = evaluated.filter(pl.col("score_change").is_not_null())
    now = (
        changed.select("supplier_id", pl.col("criteria").list.eval(
            pl.element().struct.with_fields(position=pl.int_range(pl.len()))))
        .explode("criteria").unnest("criteria")
        .select("supplier_id", "name", "unit", "value", "measured", "weighted_points", "position",
                weight="effective_weight")
        .filter(pl.col("name").is_not_null())
    )
    # json.dumps writes a float that is not finite as a bare NaN or Infinity, which is not JSON: read it as null.
    stored = pl.col("previous_criteria").str.replace_all(r"(: )(?:NaN|-?Infinity)([,}])", "${1}null${2}")
    then = (
        changed.select("supplier_id", criteria=stored.str.json_decode(_STORED_CRITERIA))
        .explode("criteria").unnest("criteria")
        .filter(pl.col("name").is_not_null())
        .select("supplier_id", "name", previous_unit="unit", previous_value="value", previous_measured="measured",
                previous_weight="effective_weight", previous_weighted_points="weighted_points")
        .unique(["supplier_id", "name"], keep="first", maintain_order=True)
    )
    part = (pl.col("weighted_points").fill_null(0.0) - pl.col("previous_weighted_points").fill_null(0.0)).round(2)
    return (
        now.join(then, on=["supplier_id", "name"], how="full", coalesce=True)
        .with_columns(points_change=part, unit=pl.coalesce("unit", "previous_unit"),
                      position=pl.col("position").fill_null(pl.len()))
        .filter(pl.col("points_change").abs() >= SMALLEST_CAUSE)
        .sort(pl.col("supplier_id"), pl.col("points_change").abs(), pl.col("position"), pl.col("name"),
              descending=[False, True, False, False])
        .group_by("supplier_id", maintain_order=True).head(top)
        .group_by("supplier_id", maintain_order=True)
        .agg(change_causes=pl.struct(*CHANGE_CAUSE.to_schema()))
        .with_columns(pl.col("change_causes").cast(pl.List(CHANGE_CAUSE)))
    )


SUPPLIER_FIELDS = ("supplier_id", "name", "category", "criticality", "owner_email")


@dataclass(frozen=True)
class Decisions:
    """Every supplier's evaluation record, and what the run does to the ASL: the status changes it makes, the
    changes it proposes for approval, the actions the changes raise, and why it held back (what-if, back-dated)."""

    evaluated: pl.DataFrame
    changes: pl.DataFrame
    proposals: pl.DataFrame | None = None
    actions: pl.DataFrame | None = None
    unchanged_reason: str | None = None

    @property
    def kept_by_manual_decision(self) -> int:
        """Suppliers whose band would have moved them, held where they are by a person's standing decision."""
        return self.evaluated.filter((pl.col("outcome") == "manual")
                                     & (pl.col("proposed_status") != pl.col("status"))).height


def changes_asl(rule_set: RuleSet, in_force: RuleSet, window_days: int) -> bool:
    """Whether a run is official (may change the ASL): the rules in force, over their own window."""
    return rule_set.content_hash == in_force.content_hash and window_days == in_force.evaluation.window_days


def decide(selected: pl.DataFrame, scored: pl.DataFrame, rule_set: RuleSet, *, previous: pl.DataFrame,
           official_as_of: pl.DataFrame, as_of: date, official: bool, officers: Sequence[str] = ()) -> Decisions:
    """Evaluations plus what they do to the ASL (``rules.asl.apply_transitions``).

    ``previous`` is each supplier's latest official evaluation before ``as_of`` (supplier_id, previous_as_of,
    previous_score, previous_band, optionally previous_criteria: what the change is explained by, see
    :func:`change_causes`); ``official_as_of`` each supplier's latest official as-of date. ``selected``
    may carry status_as_of (when the current status was decided) and the manual decision in force
    (``rules.asl.MANUAL_COLUMNS``). ``officers`` own the actions of suppliers without a buyer.
    """
    carried = [c for c in ("status_as_of", *MANUAL_COLUMNS) if c in selected.columns]
    evaluated = (
        assemble_evaluations(scored, rule_set, previous)
        .join(selected.select(*SUPPLIER_FIELDS, *carried), on="supplier_id")
        .join(official_as_of.select("supplier_id", "official_as_of"), on="supplier_id", how="left")
    )
    evaluated = apply_transitions(evaluated, rule_set, as_of=as_of, official=official)
    evaluated = evaluated.with_columns(next_due=next_due(evaluated, as_of=as_of))
    changes = status_changes(evaluated)
    if not official:
        changes = changes.clear()
    proposed = proposals(evaluated)
    actions = raise_actions(changes, evaluated, rule_set, on=as_of, officers=officers)
    return Decisions(evaluated, changes, proposed, actions, unchanged_reason(evaluated, official=official))
