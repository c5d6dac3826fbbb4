"""The outbox: who gets which message, the identity that keeps each one single, and claim-and-send.

Every message is written to the store's outbox ledger before anything is sent, keyed by what it says and to
whom; a run sends only what it could claim, and records each outcome as it comes. So a crash, a re-run or a
second run at once neither loses a message nor sends one twice, and a new recipient still gets theirs. A claim
belongs to a live process: what a killed run held is sent by the next run at once (the message that was on the
wire at the kill may arrive twice). A message refused for good (5xx, a refused login, an untrusted certificate)
is recorded as failed-permanent and left alone until someone re-queues it (`outbox retry --include-permanent`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.utils import parseaddr
from pathlib import Path

import polars as pl

from reports.bundle import DataQuality, RunReports, write_quality_report
from reports.delivery import DeliveryResult, OutgoingMessage, Transport, deliver_messages
from reports.mail import compose_message
from reports.routing import PlannedMessage, message_key, plan_messages
from suppliers.errors import DeliveryError, StoreError
from suppliers.runs import RunRecord
from suppliers.store import FAILED_PERMANENT, SENDING, ClaimedMessage, MessageOutcome, PendingMessage, Store

__all__ = ["PlannedMessage", "DeliveryOutcome", "message_key", "plan_messages", "compose_messages",
           "deliver_run_messages", "deliver_stopped_run_report", "deliver_planned", "retry_unsent", "send_claimed",
           "raise_for_failures", "failures_to_report"]

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryOutcome:
    messages: int = 0  # messages of this evaluation
    sent_now: int = 0  # delivered by this call
    elsewhere: int = 0  # being sent by another run at this moment
    refused_before: int = 0  # refused for good by an earlier run: not tried again (`outbox retry --include-permanent`)


def compose_messages(planned: Sequence[PlannedMessage], *, sender: str) -> list[PendingMessage]:
    """The MIME message of each planned message, as the ledger stores it."""
    pending = []
    for item in planned:
        report = item.report
        message = compose_message(sender=sender, to=[item.recipient], subject=report.subject,
                                  rendered=report.rendered, message_key=item.key, attachments=report.attachments)
        pending.append(PendingMessage(message_key=item.key, kind=report.kind, supplier_id=report.supplier_id,
                                      recipients=[item.recipient], subject=str(message["Subject"]),
                                      body=message.as_bytes()))
    return pending


def deliver_run_messages(store: Store, run: RunRecord, reports: RunReports, *, sender: str,
                         officers: Sequence[str], requested: Sequence[str], transport: Transport) -> DeliveryOutcome:
    """Plan who gets what (:func:`plan_messages`), then deliver it (:func:`deliver_planned`).

    Once the officers' digest is delivered, the permanent failures it listed are marked reported, so the next
    digest does not list them again (a digest sent only to ``requested`` leaves them for the officers).
    """
    planned = plan_messages(reports, run=run, officers=officers, requested=requested)
    outcome = deliver_planned(store, run, planned, sender=sender, transport=transport)
    if reports.failures_shown and not requested and any(item.report is reports.digest for item in planned):
        store.mark_failures_reported(reports.failures_shown)
    return outcome


def failures_to_report(store: Store, run: RunRecord) -> pl.DataFrame | None:
    """The permanent delivery failures the run's digest lists: those not yet reported, in an official run's digest
    (the one the officers get); None for a what-if."""
    return store.delivery_failures() if run.changes_asl else None


def deliver_stopped_run_report(store: Store, run: RunRecord, quality: DataQuality, *, out_dir: Path,
                               owner: str | None, sender: str, transport: Transport) -> DeliveryOutcome:
    """A run stopped for bad data: write its data-quality report, and mail it to the data owner if there is one.

    The message is keyed by the attempted evaluation (its run key), so re-running on the same bad data mails the
    owner once, while new data (or a new as-of date) that is still bad mails again.
    """
    report = write_quality_report(out_dir, run, quality, stopped=True)
    planned = [PlannedMessage(message_key(run.run_key, report.kind, None, owner), owner, report)] if owner else []
    return deliver_planned(store, run, planned, sender=sender, transport=transport)


def deliver_planned(store: Store, run: RunRecord, planned: Sequence[PlannedMessage], *, sender: str,
                    transport: Transport) -> DeliveryOutcome:
    """Ledger first, then send what this run could claim; messages the ledger already holds are not composed."""
    if not planned:  # e.g. a what-if nobody asked to receive: no transport is touched
        return DeliveryOutcome()
    keys = [item.key for item in planned]
    known = store.known_message_keys(keys)
    store.enqueue_messages(run.run_key, run.run_id,
                           compose_messages([item for item in planned if item.key not in known], sender=sender))
    claimed = store.claim_messages(keys, run_id=run.run_id)
    results = send_claimed(store, run.run_id, claimed, transport=transport)
    raise_for_failures(results, where=transport.location,
                       again="run the same evaluation again, or `supplier-eval outbox retry`, to send it")
    counts = store.outbox_counts(keys)
    return DeliveryOutcome(messages=len(planned), sent_now=len(results), elsewhere=counts.get(SENDING, 0),
                           refused_before=counts.get(FAILED_PERMANENT, 0))


def raise_for_failures(results: Sequence[DeliveryResult], *, where: str, again: str) -> None:
    """One line for what this call could not deliver: what was refused for good, what may pass later, what to do."""
    failed = [result for result in results if not result.ok]
    if not failed:
        return
    refused = [result for result in failed if result.permanent]
    later = len(failed) - len(refused)
    parts, fixes = [], []
    if refused:
        parts.append(f"{len(refused)} refused for good (first: {refused[0].error})")
        fixes.append("a refused message is not tried again: correct its address or the mail settings (`supplier-eval "
                     "outbox` lists them), then `supplier-eval outbox retry --include-permanent`")
    if later:
        first = next(result for result in failed if not result.permanent)
        parts.append(f"{later} failed for now (first: {first.error})")
        fixes.append(f"what failed for now stays queued: {again}")
    fix = "; ".join(fixes)
    raise DeliveryError(f"{len(failed)} of {len(results)} messages were not delivered: {'; '.join(parts)}",
                        where=where, fix=f"{fix[0].upper()}{fix[1:]}.")


def send_claimed(store: Store, run_id: str, claimed: Sequence[ClaimedMessage], *,
                 transport: Transport) -> list[DeliveryResult]:
    """Send the ledger's bytes of each claimed message to the ledger's recipients; record each outcome as it comes.

    The envelope sender is the From of the stored message, so it matches the header even if the settings'
    sender changed since. If sending is interrupted (Ctrl-C, SIGTERM, a bug), what this run claimed and did not
    send goes back to the queue for the next run; the interruption itself is what the caller sees.
    """
    outgoing = [OutgoingMessage(key=c.message_key, sender=envelope_sender(c.body), recipients=c.recipients,
                                raw=c.body) for c in claimed]

    def record(results: list[DeliveryResult]) -> None:
        lost = store.mark_messages([MessageOutcome(r.key, r.ok, r.attempts, r.transport, r.location, r.error,
                                                   r.permanent) for r in results], run_id=run_id)
        for key in lost:
            LOG.warning("Message %s was taken over by another run before this one recorded it", key)

    try:
        return deliver_messages(outgoing, smtp=transport.smtp, outbox_dir=transport.outbox_dir,
                                concurrency=transport.concurrency, retries=transport.retries, on_results=record)
    except BaseException:
        try:
            store.release_claims(run_id)
        except StoreError as error:  # the interruption matters more; the next run frees them (this process ends)
            LOG.warning("Could not give back this run's claims: %s", error)
        raise


def retry_unsent(store: Store, *, transport: Transport, include_permanent: bool = False) -> list[DeliveryResult]:
    """Send every message of the ledger not yet sent, whichever run wrote it; one result per message claimed.

    Messages refused for good are re-queued and sent too only with ``include_permanent``.
    """
    retry_id = str(uuid.uuid4())
    with store.hold(retry_id):
        claimed = store.claim_messages(store.unsent_message_keys(include_permanent=include_permanent),
                                       run_id=retry_id, include_permanent=include_permanent)
        return send_claimed(store, retry_id, claimed, transport=transport)


def envelope_sender(body: bytes) -> str:
    """The address in the From header of a stored message (its headers are read; its body is not parsed)."""
    return parseaddr(str(BytesHeaderParser().parsebytes(body)["From"] or ""))[1]
