"""One model for a run's parameters: the CLI builds it, both flows take it, a deployment shows it as a form."""

from __future__ import annotations

import getpass
from datetime import date
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from suppliers.addresses import is_address

if TYPE_CHECKING:  # the CLI imports this module before anything heavy
    from reports.bundle import AslFollowUp
    from reports.delivery import Transport
    from reports.outbox import DeliveryOutcome
    from rules.decide import Decisions
    from rules.model import RuleSet
    from suppliers.runs import RunRecord


def _default_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class RunParameters(BaseModel):
    """What to evaluate, as of when, and who asked."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    suppliers: tuple[str, ...] = Field(
        (), description="Supplier ids to evaluate; empty means every active supplier."
    )
    as_of: date | None = Field(
        None, description="Evaluate as of this date (records after it are ignored); today if empty."
    )
    window_days: int | None = Field(
        None, ge=1, le=3660, description="Days to look back over; the rule set's window if empty."
    )
    rules_file: str | None = Field(
        None, description="Rule file; the settings' (or the shipped ISO 9001 8.4 rules) if empty."
    )
    config_file: str | None = Field(
        None, description="Settings file (TOML); ./supplier-eval.toml or defaults if empty."
    )
    recipients: tuple[str, ...] = Field(
        (), description="Send the digest and every report to these addresses instead of the usual recipients."
    )
    send_email: bool = Field(True, description="Deliver the reports (to SMTP or the outbox folder).")
    shards: int = Field(
        1, ge=1, le=100_000,
        description="Measure and score the suppliers in this many shards (by a hash of the supplier id), each a "
                    "task of its own: on a Dask cluster, spread over its workers.",
    )
    trigger: Literal["nightly", "adhoc"] = Field("adhoc", description="What started the run.")
    requested_by: str = Field(default_factory=_default_user, min_length=1, max_length=200,
                              description="Who started the run (recorded with it).")

    @field_validator("suppliers")
    @classmethod
    def _clean_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted({item.strip() for item in value if item.strip()}))

    @field_validator("recipients")
    @classmethod
    def _emails(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            if not is_address(address):  # the rule mail uses, so an accepted recipient can be mailed
                raise ValueError(f"{address!r} is not an email address")
        return value

    def effective_as_of(self) -> date:
        return self.as_of or date.today()


class RunSummary(BaseModel):
    """What a run did, for the CLI and the flow's return value."""

    run_id: str
    run_key: str
    as_of: date
    window_days: int
    changes_asl: bool
    suppliers_evaluated: int
    evaluations_added: int
    bands: dict[str, int]
    band_statuses: dict[str, str]
    status_changes: int
    quarantined_rows: int
    reports_dir: str
    messages: int
    messages_delivered_now: int
    messages_in_progress_elsewhere: int
    transport: str
    delivery_location: str
    already_recorded: bool
    selection: str = "chosen"  # "due" (the nightly run's due suppliers), "all active", or "chosen" (ad hoc)
    proposals: int = 0  # changes this run proposed for a person's approval
    awaiting_approval: int = 0  # every proposal still open after this run, this run's included
    kept_by_manual_decision: int = 0
    actions_raised: int = 0
    overdue: int = 0  # active suppliers overdue for re-evaluation and not evaluated in this run
    unchanged_reason: str | None = None  # why the run changed no status its scores would have (what-if, back-dated)

    @classmethod
    def of(cls, run: RunRecord, rule_set: RuleSet, decisions: Decisions, *, added: int, quarantined_rows: int,
           reports_dir: str, delivered: DeliveryOutcome, transport: Transport, follow_up: AslFollowUp,
           selection: str) -> RunSummary:
        """The summary of a finished run, from what its steps returned."""
        from reports.context import band_counts

        evaluated = decisions.evaluated
        return cls(
            run_id=run.run_id, run_key=run.run_key, as_of=run.as_of, window_days=run.window_days,
            changes_asl=run.changes_asl, suppliers_evaluated=evaluated.height, evaluations_added=added,
            bands=band_counts(evaluated, [b.band for b in rule_set.bands]),
            band_statuses={b.band: b.status for b in rule_set.bands}, status_changes=decisions.changes.height,
            quarantined_rows=quarantined_rows, reports_dir=reports_dir, messages=delivered.messages,
            messages_delivered_now=delivered.sent_now, messages_in_progress_elsewhere=delivered.elsewhere,
            transport=transport.name, delivery_location=transport.location,
            already_recorded=added == 0 and evaluated.height > 0, selection=selection,
            proposals=decisions.proposals.height, awaiting_approval=follow_up.proposals.height,
            kept_by_manual_decision=decisions.kept_by_manual_decision, actions_raised=decisions.actions.height,
            overdue=follow_up.overdue.height, unchanged_reason=decisions.unchanged_reason,
        )
