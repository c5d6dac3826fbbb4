"""Who gets which message of a run: the digest to the officers; each supplier's report to its buyer, either in one
message per buyer with all their suppliers (the default) or one message per supplier; optionally also to the
supplier's own contact; and everything of an ad-hoc run to whoever asked for it instead.

A message's identity (its ledger key) is the evaluation (run key), the kind of message, what it is about (the
supplier, or the set of suppliers of a buyer message) and the recipient: a re-run sends nothing twice, a new
recipient gets theirs, and a buyer whose set of suppliers changed gets the new message.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from suppliers.runs import RunRecord

if TYPE_CHECKING:
    from reports.bundle import Report, RunReports

__all__ = ["PER_BUYER", "PER_SUPPLIER", "Routing", "PlannedMessage", "message_key", "plan_messages"]

PER_BUYER, PER_SUPPLIER = "per_buyer", "per_supplier"


@dataclass(frozen=True)
class Routing:
    """How supplier reports go out (the settings' ``[routing]``)."""

    supplier_reports: Literal["per_buyer", "per_supplier"] = PER_BUYER
    supplier_contact: bool = False  # also send each supplier its own report (its contact_email)


@dataclass(frozen=True)
class PlannedMessage:
    """One report to one recipient, before anything is composed."""

    key: str
    recipient: str
    report: Report


def message_key(run_key: str, kind: str, supplier_id: str | None, recipient: str) -> str:
    """One message per evaluation, report and recipient: a new recipient gets it, no one gets it twice."""
    identity = json.dumps([run_key, kind, supplier_id, recipient.strip().lower()])
    return f"{kind}-{hashlib.sha256(identity.encode()).hexdigest()[:32]}"


def _about(report: Report) -> str | None:
    """What a message is about, for its key: the supplier, or every supplier of a buyer message."""
    if report.kind == "buyer":
        return "buyer:" + hashlib.sha256("\n".join(sorted(report.supplier_ids)).encode()).hexdigest()
    return report.supplier_id


def plan_messages(reports: RunReports, *, run: RunRecord, officers: Sequence[str], requested: Sequence[str] = (),
                  routing: Routing | None = None) -> list[PlannedMessage]:
    """Who gets what: the digest to the officers and the supplier reports to their buyers, as ``routing`` (by
    default the one the reports were rendered for) says; or the digest and every supplier report to ``requested``.

    A what-if run goes only to whoever asked for it: owners, contacts and officers act on the rules in force.
    Buyer messages need ``reports.buyers``; without them each report goes on its own.
    """
    routing = routing or reports.routing
    planned: list[PlannedMessage] = []

    def plan(report: Report, recipients: Sequence[str | None]) -> None:
        planned.extend(PlannedMessage(message_key(run.run_key, report.kind, _about(report), to), to, report)
                       for to in recipients if to)

    plan(reports.digest, requested or (officers if run.changes_asl else ()))
    if requested:
        for report in reports.suppliers:
            plan(report, requested)
    elif run.changes_asl:
        if routing.supplier_reports == PER_BUYER and reports.buyers:
            for buyer in reports.buyers:
                plan(buyer, (buyer.owner_email,))
        else:
            for report in reports.suppliers:
                plan(report, (report.owner_email,))
        if routing.supplier_contact:
            for report in reports.suppliers:
                plan(report, (report.contact_email,))
    unique = {item.key: item for item in planned}  # a contact who is also the buyer gets the report once
    return list(unique.values())
