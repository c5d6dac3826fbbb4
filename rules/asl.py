"""The approved supplier list (ASL) policy: what an evaluation may do to a supplier's status, what it raises,
and when each supplier is due again. Pure functions over frames; the store only keeps what they decide.

An evaluation's *verdict* (``proposed_status``) is the status its band gives, after the gates, after the
transition rules: a band whose status is ``disqualified`` disqualifies only when ``disqualify_after_consecutive``
scored official evaluations in a row (this one included) fell in such a band; before that it gives
``probation``. A supplier already disqualified stays so.

What the run then does with the verdict (``outcome``), in this order:

- ``what-if``: another rule set or window than the rules in force: nothing changes (the report shows the
  verdict as the status, marked what-if);
- ``decided later``: a later-dated official evaluation, approval or manual decision decided this supplier
  (a back-dated run): nothing changes;
- ``manual``: a manual decision (``supplier-eval asl set``) is in force at the as-of date (no end date, or
  one on or after it): nothing changes;
- ``unchanged``: the verdict is the current status;
- ``proposed``: leaving the current status (``transitions.needs_approval``) or entering the verdict
  (``needs_approval_to_enter``) needs a person: the change is recorded as proposed, not applied, until
  ``supplier-eval asl approve`` (or ``reject``);
- ``changed``: the change is applied and recorded with the run as approver.

``status`` is the ASL status after the run (the verdict for ``changed``, the current status otherwise; for a
what-if, the verdict). New suppliers start as ``pending``: their first scored evaluation sets their status.

A status change into ``probation`` raises a corrective action request (SCAR) due ``corrective_actions.
scar_due_days`` later; one into ``disqualified`` raises a recommendation to block new orders. Each is owned by
the supplier's buyer (owner_email), else the officers. Raised once per change: keyed by run key (or approval),
supplier and kind.

A supplier's next evaluation is due ``reevaluate_every_days`` (its profile's) after its last scored official
evaluation; one never scored is due now. An insufficient-data evaluation does not count: the supplier stays due.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

from rules.model import RuleSet
from rules.scoring import PROFILE, REEVALUATE_EVERY, per_profile, profile_expression
from suppliers.runs import CURRENT_STATUS

PENDING = "pending"
SCAR, BLOCK = "scar", "block_orders"
ACTION_PREFIX = {SCAR: "SCAR", BLOCK: "BLOCK"}
ACTION_KINDS = {SCAR: "corrective action request", BLOCK: "block new orders"}
OUTCOMES = ("changed", "unchanged", "proposed", "manual", "decided later", "what-if")
RECENT_BANDS = "recent_bands"
MANUAL_COLUMNS: dict[str, pl.DataType] = {
    "manual_status": pl.String(), "manual_by": pl.String(), "manual_reason": pl.String(), "manual_until": pl.Date(),
}
ACTIONS_SCHEMA: dict[str, pl.DataType] = {
    "supplier_id": pl.String(), "kind": pl.String(), "raised_on": pl.Date(), "due": pl.Date(), "owner": pl.String(),
    "description": pl.String(),
}


# --- before scoring: what the store knows, joined onto the chosen suppliers ---------------------------------


def open_critical_ages(nonconformances: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """Per supplier, the age in days at ``as_of`` of its oldest critical nonconformance raised by then and still
    open then (``oldest_open_critical_days``); suppliers without one are absent."""
    still_open = pl.col("closed_date").is_null() | (pl.col("closed_date") > as_of)
    return (
        nonconformances.filter(pl.col("severity") == "critical", pl.col("raised_date") <= as_of, still_open)
        .group_by("supplier_id")
        .agg(oldest_open_critical_days=(pl.lit(as_of) - pl.col("raised_date").min()).dt.total_days())
    )


def recent_bands(evaluations: pl.DataFrame) -> pl.DataFrame:
    """``recent_bands`` per supplier (latest first) from rows of supplier_id, as_of, band of scored evaluations."""
    return evaluations.sort("supplier_id", "as_of", descending=[False, True]).group_by(
        "supplier_id", maintain_order=True).agg(pl.col("band").alias(RECENT_BANDS))


def with_asl_facts(selected: pl.DataFrame, *, manual: pl.DataFrame, previous_bands: pl.DataFrame,
                   nonconformances: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """The selected suppliers plus what the gates and transition rules need: the manual decision in force
    (``manual_*``, null without one), the bands of the previous scored official evaluations (latest first), and
    the age of the oldest open critical nonconformance."""
    manual = manual.select("supplier_id", *MANUAL_COLUMNS)
    return (
        selected.join(manual, on="supplier_id", how="left")
        .join(recent_bands(previous_bands), on="supplier_id", how="left")
        .join(open_critical_ages(nonconformances, as_of), on="supplier_id", how="left")
        .with_columns(pl.col(RECENT_BANDS).fill_null(pl.lit([], dtype=pl.List(pl.String))))
    )


# --- after scoring: the verdict, the outcome, the status held --------------------------------------------------


def _disqualifying_bands(rule_set: RuleSet) -> list[str]:
    return [band.band for band in rule_set.bands if band.status == "disqualified"]


def apply_transitions(evaluated: pl.DataFrame, rule_set: RuleSet, *, as_of: date, official: bool) -> pl.DataFrame:
    """``proposed_status`` (the verdict), ``outcome``, ``status`` (held after the run), ``status_note`` and
    ``action`` for each scored supplier (see the module docstring for the rules and their order).

    Needs the columns of ``score_suppliers`` plus current_status, and optionally status_as_of (when the current
    status was decided), official_as_of (the latest official evaluation's as-of date) and the ``manual_*``
    columns of the manual decision in force.
    """
    frame = evaluated.with_columns(
        pl.lit(None, dtype=dtype).alias(name)
        for name, dtype in {"status_as_of": pl.Date(), "official_as_of": pl.Date(), **MANUAL_COLUMNS}.items()
        if name not in evaluated.columns
    )
    rules = rule_set.transitions
    needed = rules.disqualify_after_consecutive
    bad_bands = _disqualifying_bands(rule_set)
    earlier = pl.col(RECENT_BANDS).fill_null(pl.lit([], dtype=pl.List(pl.String))).list.head(needed - 1)
    in_a_row = 1 + earlier.list.eval(pl.element().is_in(bad_bands).cast(pl.Int64).cum_prod()).list.sum().fill_null(0)
    waits = (
        (pl.col("status") == "disqualified") & pl.col("gate_note").is_null()
        & (pl.col(CURRENT_STATUS) != "disqualified") & (in_a_row < needed)
    )
    band_names = "/".join(bad_bands) or "a disqualifying band"
    verdict_note = pl.when(waits).then(pl.format(
        "Probation, not disqualified: disqualification needs {} scored evaluations in a row in band {} "
        "({} so far).", pl.lit(needed), pl.lit(band_names), in_a_row))
    verdict = pl.when(waits).then(pl.lit("probation")).otherwise(pl.col("status"))
    frame = frame.with_columns(proposed_status=verdict, verdict_note=verdict_note)

    current, proposed = pl.col(CURRENT_STATUS), pl.col("proposed_status")
    later = pl.max_horizontal("status_as_of", "official_as_of")
    manual_in_force = pl.col("manual_status").is_not_null() & (
        pl.col("manual_until").is_null() | (pl.col("manual_until") >= as_of))
    needs_person = current.is_in(list(rules.needs_approval)) | proposed.is_in(list(rules.needs_approval_to_enter))
    outcome = (
        pl.when(pl.lit(not official)).then(pl.lit("what-if"))
        .when((later > as_of).fill_null(False)).then(pl.lit("decided later"))
        .when(manual_in_force).then(pl.lit("manual"))
        .when(proposed == current).then(pl.lit("unchanged"))
        .when(needs_person).then(pl.lit("proposed"))
        .otherwise(pl.lit("changed"))
    )
    frame = frame.with_columns(outcome=outcome).with_columns(
        status=pl.when(pl.col("outcome").is_in(["changed", "what-if"])).then(proposed).otherwise(current)
    )
    until = pl.when(pl.col("manual_until").is_null()).then(pl.lit("no end date")).otherwise(
        pl.format("until {}", pl.col("manual_until").cast(pl.String)))
    outcome_note = (
        pl.when(pl.col("outcome") == "decided later").then(pl.format(
            "Not applied: a later decision (as of {}) set this supplier's status; back-dated evaluations change "
            "nothing.", later.cast(pl.String)))
        .when((pl.col("outcome") == "manual") & (proposed != current)).then(pl.format(
            "Kept at {}: manual decision by {} ({}): {}. This evaluation says {}.", current, pl.col("manual_by"),
            until, pl.col("manual_reason"), proposed))
        .when(pl.col("outcome") == "manual").then(pl.format(
            "Manual decision by {} ({}): {}.", pl.col("manual_by"), until, pl.col("manual_reason")))
        .when(pl.col("outcome") == "proposed").then(pl.format(
            "Proposed: {} to {}, awaiting a person's approval (supplier-eval asl approve {}); the status stays {} "
            "until then.", current, proposed, pl.col("supplier_id"), current))
    )
    note = pl.concat_str([pl.col("gate_note"), pl.col("verdict_note"), outcome_note], separator=" ",
                         ignore_nulls=True).replace("", None)
    actions = pl.col("status").replace_strict(
        {status: rule_set.action_for(status) for status in ("approved", "conditional", "probation", "disqualified")},
        default="", return_dtype=pl.String)
    return frame.with_columns(status_note=note).with_columns(
        action=pl.when(pl.col("status_note").is_not_null() & (actions != ""))
        .then(pl.format("{} Action: {}", pl.col("status_note"), actions))
        .otherwise(pl.coalesce(pl.col("status_note"), actions).replace("", None))
    )


def change_reason(evaluated: pl.DataFrame) -> pl.Expr:
    """Why a supplier's status moves, in words: the score and band (over part of the criteria when so),
    insufficient data, the gates hit, and what the transition rules did."""
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
    parts = [score_part, insufficient_part, gates_part]
    if "verdict_note" in evaluated.columns:  # what the transition rules made of the band (probation first)
        note = pl.col("verdict_note").str.strip_suffix(".")
        parts.append(pl.concat_str(note.str.head(1).str.to_lowercase(), note.str.slice(1)))
    return pl.concat_str(parts, separator="; ", ignore_nulls=True)


def _plain_number(value: pl.Expr) -> pl.Expr:
    """A weight in words: ``50``, ``62.5``."""
    return (
        pl.when(value == value.round(0))
        .then(value.round(0).cast(pl.Int64).cast(pl.String))
        .otherwise(value.round(1).cast(pl.String))
    )


def status_changes(evaluated: pl.DataFrame) -> pl.DataFrame:
    """The suppliers whose ASL status this run changes (supplier_id, from_status, to_status, reason)."""
    return (
        evaluated.filter(pl.col("status") != pl.col(CURRENT_STATUS))
        .select("supplier_id", from_status=pl.col(CURRENT_STATUS), to_status=pl.col("status"),
                reason=change_reason(evaluated))
        .sort("supplier_id")
    )


def proposals(evaluated: pl.DataFrame) -> pl.DataFrame:
    """The changes this run proposes for a person to approve (supplier_id, from_status, to_status, reason)."""
    return (
        evaluated.filter(pl.col("outcome") == "proposed")
        .select("supplier_id", from_status=pl.col(CURRENT_STATUS), to_status=pl.col("proposed_status"),
                reason=change_reason(evaluated))
        .sort("supplier_id")
    )


def raise_actions(changes: pl.DataFrame, owners: pl.DataFrame, rule_set: RuleSet, *, on: date,
                  officers: Sequence[str] = ()) -> pl.DataFrame:
    """The follow-up each status change raises (``ACTIONS_SCHEMA``): a SCAR into probation, due
    ``scar_due_days`` after ``on``; a block-new-orders recommendation into disqualified (no due date).

    ``owners`` gives supplier_id, name and owner_email; without an owner_email the officers own it.
    """
    officers_text = ", ".join(officers) or None
    due = on + timedelta(days=rule_set.corrective_actions.scar_due_days)
    joined = changes.join(owners.select("supplier_id", "name", "owner_email"), on="supplier_id", how="left")
    return (
        joined.filter(pl.col("to_status").is_in(["probation", "disqualified"]))
        .select(
            "supplier_id",
            kind=pl.when(pl.col("to_status") == "probation").then(pl.lit(SCAR)).otherwise(pl.lit(BLOCK)),
            raised_on=pl.lit(on),
            due=pl.when(pl.col("to_status") == "probation").then(pl.lit(due)),
            owner=pl.coalesce(pl.col("owner_email"), pl.lit(officers_text, dtype=pl.String)),
            description=pl.when(pl.col("to_status") == "probation").then(pl.format(
                "Corrective action request to {}: find the cause and correct it ({}).",
                pl.coalesce("name", "supplier_id"), pl.col("reason")))
            .otherwise(pl.format("Block new orders to {}: disqualified ({}). Source an alternative.",
                                 pl.coalesce("name", "supplier_id"), pl.col("reason"))),
        )
        .cast(ACTIONS_SCHEMA)  # type: ignore[arg-type]
        .sort("supplier_id", "kind")
    )


def next_due(evaluated: pl.DataFrame, *, as_of: date) -> pl.Expr:
    """The as-of date plus the profile's interval for a scored evaluation; null (due again now) without a score."""
    return pl.when(pl.col("score").is_not_null()).then(
        pl.lit(as_of) + pl.duration(days=pl.col(REEVALUATE_EVERY)))


def unchanged_reason(evaluated: pl.DataFrame, *, official: bool) -> str | None:
    """Why a run changed no status that its scores would have changed, in words; None when nothing was held."""
    if not official:
        return "what-if: another rule set or window than the rules in force; the ASL was left unchanged"
    later = evaluated.filter((pl.col("outcome") == "decided later") & (pl.col("proposed_status")
                                                                       != pl.col(CURRENT_STATUS))).height
    if later:
        return (f"back-dated: {later} supplier{'s were' if later != 1 else ' was'} decided by later evaluations "
                "or decisions; their status was left as it is")
    return None


# --- the re-evaluation schedule ---------------------------------------------------------------------------------


def schedule(suppliers: pl.DataFrame, last_scored: pl.DataFrame, rule_set: RuleSet, *, as_of: date) -> pl.DataFrame:
    """Each supplier's profile, interval, last scored official evaluation and next due date, as of ``as_of``.

    ``suppliers``: supplier_id, criticality, category, active. ``last_scored``: supplier_id and
    ``last_scored_before`` (latest scored official as-of date before ``as_of``) and ``last_scored`` (on or
    before it). ``due``: never scored, or due on or before ``as_of`` (by the evaluations before it, so a re-run
    the same day chooses the same suppliers); ``overdue``: due before ``as_of`` by every evaluation up to it,
    or never scored.
    """
    interval = pl.duration(days=pl.col(REEVALUATE_EVERY))
    return (
        suppliers.select("supplier_id", "criticality", "category", "active")
        .join(last_scored.select("supplier_id", "last_scored_before", "last_scored"), on="supplier_id", how="left")
        .with_columns(profile_expression(rule_set).alias(PROFILE))
        .with_columns(per_profile(rule_set, lambda p: pl.lit(p.reevaluate_every_days)).alias(REEVALUATE_EVERY))
        .with_columns(
            due=pl.col("last_scored_before").is_null() | (pl.col("last_scored_before") + interval <= as_of),
            next_due=pl.col("last_scored") + interval,
        )
        .with_columns(overdue=pl.col("next_due").is_null() | (pl.col("next_due") < as_of))
        .select("supplier_id", "active", PROFILE, REEVALUATE_EVERY, "last_scored", "next_due", "due", "overdue")
        .sort("supplier_id")
    )


def due_suppliers(chosen: pl.DataFrame, plan: pl.DataFrame) -> pl.DataFrame:
    """The chosen suppliers that are due (see ``schedule``)."""
    return chosen.join(plan.filter(pl.col("due")).select("supplier_id"), on="supplier_id", how="semi")


def overdue_suppliers(plan: pl.DataFrame, suppliers: pl.DataFrame, evaluated_ids: Sequence[str]) -> pl.DataFrame:
    """Active suppliers overdue and not evaluated in this run: supplier_id, name, profile, last_scored, next_due."""
    return (
        plan.filter(pl.col("active"), pl.col("overdue"), ~pl.col("supplier_id").is_in(list(evaluated_ids)))
        .join(suppliers.select("supplier_id", "name"), on="supplier_id", how="left")
        .select("supplier_id", "name", PROFILE, "last_scored", "next_due")
        .sort("next_due", "supplier_id", nulls_last=False)
    )


# --- the list itself -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AslRecords:
    """What the store holds for the ASL (``Store.asl_records``)."""

    seen: pl.DataFrame  # supplier_id, name, category, criticality, owner_email, active
    current: pl.DataFrame  # supplier_id, status, status_as_of, reason, approved_by
    latest: pl.DataFrame  # latest official evaluation: supplier_id, as_of, score, band, insufficient_reason
    outcome: pl.DataFrame  # latest official outcome: supplier_id, profile, next_due (of the latest scored one)
    proposals: pl.DataFrame  # open proposals: supplier_id, to_status
    manual: pl.DataFrame  # latest manual decision: supplier_id, manual_status, manual_by, manual_until, ...
    actions: pl.DataFrame  # open actions: supplier_id, action_id, kind, due


ASL_COLUMNS = ("supplier_id", "name", "status", "since", "why", "score", "band", "profile", "next_due",
               "proposed", "open_actions")


def approved_supplier_list(records: AslRecords, *, today: date) -> pl.DataFrame:
    """Every supplier the store knows, one row each (``ASL_COLUMNS``), by supplier id.

    ``status`` is its latest recorded status (``pending`` before its first scored evaluation); ``since`` and
    ``why`` come from the change that set it (with who approved it when a person did), ``score`` and ``band``
    from its latest official evaluation, ``profile`` and ``next_due`` from its latest scored one (null: due
    now); ``proposed`` is an open proposal awaiting approval, and ``open_actions`` its open actions by id.
    """
    ids = pl.concat([frame.select("supplier_id") for frame in (records.seen, records.current, records.latest)]
                    ).unique()
    manual = records.manual.filter(pl.col("manual_until").is_null() | (pl.col("manual_until") >= today))
    actions = records.actions.sort("action_id").group_by("supplier_id").agg(
        open_actions=pl.format("{}{}", pl.col("action_id"), pl.when(pl.col("due") < today).then(
            pl.format(" (overdue since {})", pl.col("due").cast(pl.String))).otherwise(pl.lit(""))).str.join(", "))
    by_person = ~pl.col("approved_by").str.starts_with("supplier-eval ")
    why = (
        pl.when(pl.col("reason").is_null() & pl.col("insufficient_reason").is_not_null())
        .then(pl.format("not scored yet: insufficient data ({})", pl.col("insufficient_reason")))
        .when(pl.col("reason").is_null()).then(pl.lit("not evaluated yet"))
        .when(by_person).then(pl.format("{} (approved by {})", pl.col("reason"), pl.col("approved_by")))
        .otherwise(pl.col("reason"))
    )
    manual_note = pl.when(pl.col("manual_status").is_not_null()).then(pl.format(
        "; manual decision by {} in force {}", pl.col("manual_by"),
        pl.when(pl.col("manual_until").is_null()).then(pl.lit("with no end date"))
        .otherwise(pl.format("until {}", pl.col("manual_until").cast(pl.String)))))
    return (
        ids.join(records.seen, on="supplier_id", how="left")
        .join(records.current, on="supplier_id", how="left")
        .join(records.latest, on="supplier_id", how="left")
        .join(records.outcome, on="supplier_id", how="left")
        .join(records.proposals.select("supplier_id", proposed="to_status"), on="supplier_id", how="left")
        .join(manual.select("supplier_id", "manual_status", "manual_by", "manual_until"), on="supplier_id",
              how="left")
        .join(actions, on="supplier_id", how="left")
        .with_columns(
            status=pl.coalesce("status", pl.lit(PENDING)),
            since=pl.col("status_as_of"),
            why=pl.concat_str([why, manual_note], ignore_nulls=True),
        )
        .select(*ASL_COLUMNS)
        .sort("supplier_id")
    )


def action_id(kind: str, number: int) -> str:
    """``SCAR-0001``: the kind's prefix and the action's number in the store."""
    return f"{ACTION_PREFIX.get(kind, kind.upper())}-{number:04d}"
