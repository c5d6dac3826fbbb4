"""The outbox: who gets which message, the identity that keeps each one single, and claim-and-send.

Every message is written to the store's outbox ledger before anything is sent, keyed by what it says and to
whom; a run sends only what it could claim, and records each outcome as it comes. So a crash, a re-run or a
second run at once neither loses a message nor sends one twice, and a new recipient still gets theirs.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.utils import parseaddr
from pathlib import Path

from reports.bundle import DataQuality, RunReports, write_quality_report
from reports.delivery import DeliveryResult, OutgoingMessage, Transport, deliver_messages
from reports.mail import compose_message
from reports.routing import PlannedMessage, message_key, plan_messages
from suppliers.errors import DeliveryError, StoreError
from suppliers.runs import RunRecord
from suppliers.store import STALE_CLAIM, ClaimedMessage, PendingMessage, Store

__all__ = ["PlannedMessage", "DeliveryOutcome", "message_key", "plan_messages", "compose_messages",
           "deliver_run_messages", "deliver_stopped_run_report", "deliver_planned", "retry_unsent", "send_claimed"]

LOG = logging.getLogger(__name__)
REFRESH_CLAIMS_EVERY = STALE_CLAIM.total_seconds() / 10


@dataclass(frozen=True)
class DeliveryOutcome:
    messages: int  # messages of this evaluation
    sent_now: int  # delivered by this call
    elsewhere: int  # being sent by another run at this moment


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
    """Plan who gets what (:func:`plan_messages`), then deliver it (:func:`deliver_planned`)."""
    planned = plan_messages(reports, run=run, officers=officers, requested=requested)
    return deliver_planned(store, run, planned, sender=sender, transport=transport)


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
        return DeliveryOutcome(messages=0, sent_now=0, elsewhere=0)
    keys = [item.key for item in planned]
    known = store.known_message_keys(keys)
    store.enqueue_messages(run.run_key, run.run_id,
                           compose_messages([item for item in planned if item.key not in known], sender=sender))
    claimed = store.claim_messages(keys, run_id=run.run_id)
    results = send_claimed(store, run.run_id, claimed, transport=transport)
    elsewhere = store.outbox_counts(keys).get("sending", 0)
    failed = [result for result in results if not result.ok]
    if failed:
        raise DeliveryError(
            f"{len(failed)} of {len(results)} messages were not delivered (first: {failed[0].error})",
            where=transport.location,
            fix="They stay in the outbox ledger; run the same evaluation again to retry them.",
        )
    return DeliveryOutcome(messages=len(planned), sent_now=len(results), elsewhere=elsewhere)


def send_claimed(store: Store, run_id: str, claimed: Sequence[ClaimedMessage], *,
                 transport: Transport) -> list[DeliveryResult]:
    """Send the ledger's bytes of each claimed message to the ledger's recipients; record each outcome as it comes.

    The envelope sender is the From of the stored message, so it matches the header even if the settings'
    sender changed since. If sending is interrupted (Ctrl-C, a bug), what this run claimed and did not send
    goes back to pending for the next run; the interruption itself is what the caller sees.
    """
    outgoing = [OutgoingMessage(key=c.message_key, sender=envelope_sender(c.body), recipients=c.recipients,
                                raw=c.body) for c in claimed]
    last_refresh = time.monotonic()

    def record(result: DeliveryResult) -> None:
        nonlocal last_refresh
        if not store.mark_message(result.key, ok=result.ok, attempts=result.attempts, transport=result.transport,
                                  location=result.location, error=result.error, run_id=run_id):
            LOG.warning("Message %s was taken over by another run before this one recorded it", result.key)
        if time.monotonic() - last_refresh > REFRESH_CLAIMS_EVERY:  # still alive: not taken over as stale
            last_refresh = time.monotonic()
            try:
                store.refresh_claims(run_id)
            except StoreError as error:
                LOG.warning("Could not refresh this run's claims: %s", error)

    try:
        return deliver_messages(outgoing, smtp=transport.smtp, outbox_dir=transport.outbox_dir,
                                concurrency=transport.concurrency, retries=transport.retries, on_result=record)
    except BaseException:
        try:
            store.release_claims(run_id)
        except StoreError as error:  # the interruption matters more; the claims go stale and are taken over
            LOG.warning("Could not give back this run's claims: %s", error)
        raise


def retry_unsent(store: Store, *, transport: Transport) -> list[DeliveryResult]:
    """Send every message of the ledger not yet sent, whichever run wrote it; one result per message claimed."""
    retry_id = str(uuid.uuid4())
    claimed = store.claim_messages(store.unsent_message_keys(), run_id=retry_id)
    return send_claimed(store, retry_id, claimed, transport=transport)


def envelope_sender(body: bytes) -> str:
    """The address in the From header of a stored message (its headers are read; its body is not parsed)."""
    return parseaddr(str(BytesHeaderParser().parsebytes(body)["From"] or ""))[1]
