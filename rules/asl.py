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
from typing import TYPE_CHECKING

import polars as pl

from rules.model import RuleSet
from rules.scoring import PROFILE, REEVALUATE_EVERY, per_profile, profile_expression
from suppliers.errors import ConfigError
from suppliers.runs import CURRENT_STATUS, choose_suppliers

if TYPE_CHECKING:
    from suppliers.store import AslRecords, Store

PENDING = "pending"
SCAR, BLOCK = "scar", "block_orders"
ACTION_PREFIX = {SCAR: "SCAR", BLOCK: "BLOCK"}
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


def with_asl_facts(selected: pl.DataFrame, *, manual: pl.DataFrame | None, previous_bands: pl.DataFrame | None,
                   nonconformances: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """The selected suppliers plus what the gates and transition rules need: the latest manual decision
    (``manual_*``, null without one; ``apply_transitions`` checks it is still in force), the bands of the
    previous scored official evaluations (latest first), and the age of the oldest open critical nonconformance.
    """
    if manual is None:
        manual = pl.DataFrame(schema={"supplier_id": pl.String(), **MANUAL_COLUMNS})
    if previous_bands is None:
        previous_bands = pl.DataFrame(schema={"supplier_id": pl.String, "as_of": pl.Date, "band": pl.String})
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
        evaluated.lazy().filter(pl.col("status") != pl.col(CURRENT_STATUS))  # lazy: only the columns used are filtered
        .select("supplier_id", from_status=pl.col(CURRENT_STATUS), to_status=pl.col("status"),
                reason=change_reason(evaluated))
        .sort("supplier_id")
        .collect()
    )


def proposals(evaluated: pl.DataFrame) -> pl.DataFrame:
    """The changes this run proposes for a person to approve (supplier_id, from_status, to_status, reason)."""
    return (
        evaluated.lazy().filter(pl.col("outcome") == "proposed")
        .select("supplier_id", from_status=pl.col(CURRENT_STATUS), to_status=pl.col("proposed_status"),
                reason=change_reason(evaluated))
        .sort("supplier_id")
        .collect()
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


def suppliers_to_evaluate(suppliers: pl.DataFrame, requested: Sequence[str], plan: pl.DataFrame, *,
                          due_only: bool) -> pl.DataFrame:
    """The requested suppliers (every active one when none are), only those due (see ``schedule``) with
    ``due_only``: decided by the evaluations before the as-of date, so a re-run the same day chooses the same."""
    chosen = choose_suppliers(suppliers, requested)
    return due_suppliers(chosen, plan) if due_only else chosen


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


ASL_COLUMNS = ("supplier_id", "name", "status", "since", "why", "score", "band", "evaluated_as_of", "profile",
               "next_due", "proposed", "open_actions")


def action_ids(kind: pl.Expr, number: pl.Expr) -> pl.Expr:
    """``SCAR-0001``: the kind's prefix and the action's number in the store (see ``action_id``)."""
    prefix = kind.replace_strict(ACTION_PREFIX, default=kind.str.to_uppercase(), return_dtype=pl.String)
    return pl.format("{}-{}", prefix, number.cast(pl.String).str.zfill(4))


def approved_supplier_list(records: AslRecords, *, today: date) -> pl.DataFrame:
    """Every supplier the store knows, one row each (``ASL_COLUMNS``), by supplier id.

    ``status`` is its latest recorded status (``pending`` before its first scored evaluation); ``since`` and
    ``why`` come from the change that set it (with who approved it when a person did, and a manual decision
    in force), ``score``, ``band`` and ``evaluated_as_of`` from its latest official evaluation, ``profile`` and
    ``next_due`` from its latest scored one (null: never scored, due now); ``proposed`` is a change awaiting
    approval, and ``open_actions`` its open actions by id (overdue ones say since when).
    """
    ids = pl.concat([frame.select("supplier_id") for frame in (records.seen, records.current, records.latest)]
                    ).unique()
    manual = records.manual.filter(pl.col("manual_until").is_null() | (pl.col("manual_until") >= today))
    overdue = pl.when(pl.col("due") < today).then(pl.format(" (overdue since {})", pl.col("due").cast(pl.String)))
    actions = records.actions.sort("number").group_by("supplier_id").agg(
        open_actions=pl.concat_str([action_ids(pl.col("kind"), pl.col("number")), overdue], ignore_nulls=True)
        .str.join(", "))
    by_person = ~pl.col("approved_by").str.starts_with("supplier-eval ")
    never_set = pl.col("reason").is_null() & (pl.col("status").is_null() | (pl.col("status") == PENDING))
    why = (
        pl.when(never_set & pl.col("insufficient_reason").is_not_null())
        .then(pl.format("not scored yet: insufficient data ({})", pl.col("insufficient_reason")))
        .when(never_set).then(pl.lit("not evaluated yet"))
        .when(pl.col("reason").is_null()).then(pl.lit("the status its evaluations kept (no change recorded)"))
        .when(by_person.fill_null(False)).then(pl.format("{} (approved by {})", pl.col("reason"),
                                                         pl.col("approved_by")))
        .otherwise(pl.col("reason"))
    )
    until = (pl.when(pl.col("manual_until").is_null()).then(pl.lit("with no end date"))
             .otherwise(pl.format("until {}", pl.col("manual_until").cast(pl.String))))
    set_by_it = pl.col("reason").str.starts_with("manual decision: ").fill_null(False)
    manual_note = (pl.when(pl.col("manual_status").is_not_null() & set_by_it)
                   .then(pl.format("; evaluations respect it {}", until))
                   .when(pl.col("manual_status").is_not_null())
                   .then(pl.format("; manual decision by {} in force {}", pl.col("manual_by"), until)))
    return (
        ids.join(records.seen, on="supplier_id", how="left")
        .join(records.current, on="supplier_id", how="left")
        .join(records.latest, on="supplier_id", how="left")
        .join(records.outcome, on="supplier_id", how="left")
        .join(records.proposals.select("supplier_id", proposed="to_status"), on="supplier_id", how="left")
        .join(manual.select("supplier_id", "manual_status", "manual_by", "manual_until"), on="supplier_id",
              how="left")
        .join(actions, on="supplier_id", how="left")
        .with_columns(why=pl.concat_str([why, manual_note], ignore_nulls=True))
        .with_columns(status=pl.coalesce("status", pl.lit(PENDING)), since=pl.col("status_as_of"))
        .select(*ASL_COLUMNS)
        .sort("supplier_id")
    )


def action_id(kind: str, number: int) -> str:
    """``SCAR-0001``: the kind's prefix and the action's number in the store."""
    return f"{ACTION_PREFIX.get(kind, kind.upper())}-{number:04d}"


# --- what a person decides (the CLI's `asl approve|reject|set` and `actions close`) --------------------------------

STATUSES = ("approved", "conditional", "probation", "disqualified")


@dataclass(frozen=True)
class Decision:
    """What a person's decision recorded: the status change (None when the status did not move) and the ids of
    the actions it raised."""

    supplier_id: str
    from_status: str
    to_status: str
    actions: tuple[str, ...] = ()
    changed: bool = True


def _known(store: Store, supplier_id: str, command: str) -> None:
    if not store.knows_supplier(supplier_id):
        raise ConfigError(f"unknown supplier {supplier_id!r}: the ASL has no record of it", where=command,
                          fix="Use a supplier id that `supplier-eval asl` lists (a supplier is listed once evaluated).")


def _open_proposal(store: Store, supplier_id: str, command: str) -> dict:
    _known(store, supplier_id, command)
    proposal = store.open_proposals(supplier_id)
    if proposal.is_empty():
        raise ConfigError(f"nothing proposed for {supplier_id}: no status change of it awaits approval",
                          where=command, fix="`supplier-eval asl` shows proposed changes in its 'proposed' column; "
                          "to set a status yourself use `supplier-eval asl set`.")
    return proposal.row(-1, named=True)


def _owners(store: Store, supplier_id: str) -> pl.DataFrame:
    return store.asl_records().seen.filter(pl.col("supplier_id") == supplier_id)


def _action_names(kinds: pl.Series, numbers: Sequence[int]) -> tuple[str, ...]:
    return tuple(action_id(kind, number) for kind, number in zip(kinds.to_list(), numbers, strict=True))


def approve_change(store: Store, supplier_id: str, *, by: str, reason: str, rule_set: RuleSet,
                   officers: Sequence[str] = ()) -> Decision:
    """Apply the change proposed for ``supplier_id``: a status change approved by ``by``, dated as of the
    evaluation that proposed it, and the actions it raises (a SCAR into probation, block orders into
    disqualified)."""
    command = "supplier-eval asl approve"
    proposal = _open_proposal(store, supplier_id, command)
    change = {"supplier_id": supplier_id, "as_of": proposal["as_of"], "from_status": proposal["from_status"],
              "to_status": proposal["to_status"], "reason": f"{proposal['reason']}; approved: {reason}"}
    raised = raise_actions(pl.DataFrame([change]), _owners(store, supplier_id), rule_set, on=proposal["as_of"],
                           officers=officers)
    numbers = store.decide_proposal(proposal["proposal_id"], approve=True, decided_by=by, reason=reason,
                                    change=change, raised=raised)
    if numbers is None:
        raise ConfigError(f"the change proposed for {supplier_id} was decided meanwhile", where=command,
                          fix="Look at `supplier-eval asl` again.")
    return Decision(supplier_id, proposal["from_status"], proposal["to_status"],
                    _action_names(raised["kind"], numbers))


def reject_change(store: Store, supplier_id: str, *, by: str, reason: str) -> Decision:
    """Reject the change proposed for ``supplier_id``: it keeps its status (a later evaluation may propose again)."""
    command = "supplier-eval asl reject"
    proposal = _open_proposal(store, supplier_id, command)
    if store.decide_proposal(proposal["proposal_id"], approve=False, decided_by=by, reason=reason) is None:
        raise ConfigError(f"the change proposed for {supplier_id} was decided meanwhile", where=command,
                          fix="Look at `supplier-eval asl` again.")
    return Decision(supplier_id, proposal["from_status"], proposal["to_status"], changed=False)


def set_status(store: Store, supplier_id: str, status: str, *, by: str, reason: str, until: date | None,
               rule_set: RuleSet, officers: Sequence[str] = (), today: date) -> Decision:
    """Record a person's decision on a supplier's status; runs respect it (change nothing) until ``until``
    (with none, until another decision). The change is dated ``today`` (or the supplier's latest decision, if
    that is later, so it is the current one), and raises the actions a change into its status raises."""
    command = "supplier-eval asl set"
    if status not in STATUSES:
        raise ConfigError(f"bad status {status!r}", where=command, fix=f"Use one of {', '.join(STATUSES)}.")
    if until is not None and until < today:
        raise ConfigError(f"--until {until.isoformat()} is in the past", where=command,
                          fix="Give a date from today on, or leave --until out for a decision with no end date.")
    _known(store, supplier_id, command)
    current = store.current_statuses(excluding_run_key="").filter(pl.col("supplier_id") == supplier_id)
    from_status = current["status"].item() if current.height else PENDING
    as_of = max(today, current["status_as_of"].item()) if current.height else today
    change = pl.DataFrame([{"supplier_id": supplier_id, "from_status": from_status, "to_status": status,
                            "reason": f"manual decision: {reason}"}])
    raised = raise_actions(change, _owners(store, supplier_id), rule_set, on=as_of, officers=officers)
    _, numbers = store.record_manual_decision(supplier_id=supplier_id, status=status, from_status=from_status,
                                              decided_by=by, reason=reason, until=until, as_of=as_of, raised=raised)
    return Decision(supplier_id, from_status, status, _action_names(raised["kind"], numbers),
                    changed=status != from_status)


def close_action(store: Store, action: str, *, by: str, effective: bool, note: str | None, today: date) -> str:
    """Close an open action (``SCAR-0001``, or its number) with its effectiveness check; returns its id."""
    command = "supplier-eval actions close"
    digits = action.rsplit("-", 1)[-1]
    recorded = store.actions_frame().filter(pl.col("number") == int(digits)) if digits.isdigit() else None
    if (recorded is None or recorded.is_empty()
            or not (action.isdigit() or action.upper() == action_id(recorded["kind"].item(), int(digits)))):
        raise ConfigError(f"unknown action {action!r}", where=command,
                          fix="Use an id that `supplier-eval actions` lists, e.g. SCAR-0001.")
    name = action_id(recorded["kind"].item(), int(digits))
    if recorded["state"].item() != "open" or not store.close_action(int(digits), closed_by=by, effective=effective,
                                                                   note=note, on=today):
        raise ConfigError(f"{name} is already closed", where=command,
                          fix="`supplier-eval actions` shows it with who closed it; raise a new one if it recurred.")
    return name


def read_approved_supplier_list(store_url: str, *, today: date) -> pl.DataFrame:
    """The ASL (``approved_supplier_list``) of the store at ``store_url``, which must exist (nothing is created)."""
    from suppliers.store import Store

    with Store(store_url, create=False) as store:
        return approved_supplier_list(store.asl_records(), today=today)
