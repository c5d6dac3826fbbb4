"""The Prefect flows ``nightly`` and ``adhoc``: a task per stage, each a thin shell over a pure function.

sources → validate → metrics → score → decide → store → render → deliver. Retries only on the I/O tasks
(reading sources, the store), and never for a user error; the pure stages fail fast with the error that
explains them. Delivery retries per message inside ``deliver_messages``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from pydantic import BaseModel

from flows.params import RunParameters
from flows.runtime import hide_user_error_tracebacks
from flows.settings import Settings, load_settings
from reports.context import band_counts, digest_context, quarantine_summary_with_reasons, supplier_context
from reports.delivery import DeliveryResult, OutgoingMessage, deliver_messages
from reports.mail import compose_message
from reports.render import digest_subject, render_digest, render_supplier_report, supplier_report_subject
from rules.decide import assemble_evaluations, status_changes
from rules.loader import load_rule_set
from rules.metrics import measure_suppliers, window_start
from rules.model import RuleSet
from rules.scoring import CURRENT_STATUS, score_suppliers
from suppliers.errors import ConfigError, DeliveryError, StoreError, SupplierEvalError
from suppliers.files import csv_bytes, write_csv_safely
from suppliers.sources import Source, discover_sources, fingerprint_sources, read_source
from suppliers.store import STALE_CLAIM, PendingMessage, RunRecord, Store
from suppliers.validate import ValidatedInputs, validate_inputs

LOG = logging.getLogger(__name__)
REFRESH_CLAIMS_EVERY = STALE_CLAIM.total_seconds() / 10


def code_version() -> str:
    try:
        return version("supplier-eval")
    except PackageNotFoundError:
        return "unknown"


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


@dataclass(frozen=True)
class Loaded:
    raw: dict[str, tuple[Source, pl.DataFrame]]
    fingerprint: str  # of the very bytes parsed


@dataclass(frozen=True)
class History:
    current_statuses: pl.DataFrame
    previous: pl.DataFrame
    official_as_of: pl.DataFrame


def _retry_unless_user_error(_task: Any, _task_run: Any, state: Any) -> bool:
    """A missing column stays missing: retry only what may be passing (a file being written, a locked store)."""
    error = state.data
    return not isinstance(error, SupplierEvalError) or getattr(error, "transient", False)


IO_RETRIES: dict[str, Any] = {"retries": 2, "retry_delay_seconds": 1, "retry_condition_fn": _retry_unless_user_error,
                              "cache_policy": NO_CACHE}


# tasks --------------------------------------------------------------------------------------------------------

@task(name="load sources", **IO_RETRIES)
def load_sources(data_dir: Path) -> Loaded:
    raw: dict[str, tuple[Source, pl.DataFrame]] = {}
    digests: dict[str, str] = {}
    for kind, source in discover_sources(data_dir).items():
        frame, digests[kind] = read_source(source)
        raw[kind] = (source, frame)
    get_run_logger().info("Read %s", ", ".join(f"{s.path.name} ({f.height:,} rows)" for s, f in raw.values()))
    return Loaded(raw=raw, fingerprint=fingerprint_sources(digests))


@task(name="validate", cache_policy=NO_CACHE)
def validate(loaded: Loaded, max_quarantine_share: float, failed_quarantine_path: Path) -> ValidatedInputs:
    validated = validate_inputs(loaded.raw, max_quarantine_share=max_quarantine_share,
                                quarantine_path=failed_quarantine_path)
    quarantined = int(validated.summary["rows_quarantined"].sum())
    get_run_logger().info("Validated: %s rows quarantined of %s read", f"{quarantined:,}",
                          f"{int(validated.summary['rows_read'].sum()):,}")
    return validated


@task(name="read history", **IO_RETRIES)
def read_history(store_url: str, run_key: str, as_of: date) -> History:
    with Store(store_url) as store:
        return History(
            current_statuses=store.current_statuses(excluding_run_key=run_key),
            previous=store.previous_evaluations(as_of=as_of, excluding_run_key=run_key),
            official_as_of=store.latest_official_as_of(excluding_run_key=run_key),
        )


@task(name="compute metrics", cache_policy=NO_CACHE)
def compute_metrics(validated: ValidatedInputs, selected: pl.DataFrame, rule_set: RuleSet, as_of: date,
                    window_days: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    tolerance = rule_set.evaluation.on_time_tolerance_days
    lines = validated.purchase_order_lines.join(selected.select("supplier_id"), on="supplier_id", how="semi")
    performance = measure_suppliers(selected, lines, validated.receipts, validated.nonconformances,
                                    validated.feedback, as_of=as_of, window_days=window_days,
                                    tolerance_days=tolerance)
    return performance.metrics, performance.late_lines


@task(name="score", cache_policy=NO_CACHE)
def score(selected: pl.DataFrame, metrics: pl.DataFrame, rule_set: RuleSet, as_of: date) -> pl.DataFrame:
    return score_suppliers(selected, metrics, rule_set, as_of=as_of)


@task(name="decide", cache_policy=NO_CACHE)
def decide(selected: pl.DataFrame, scored: pl.DataFrame, rule_set: RuleSet, history: History, as_of: date,
           changes_asl: bool) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Evaluations plus the ASL changes they make: none for a what-if, none where a later evaluation decided."""
    evaluated = assemble_evaluations(scored, rule_set, history.previous).join(
        selected.select("supplier_id", "name", "category", "criticality", "owner_email"), on="supplier_id"
    )
    changes = status_changes(evaluated)
    if not changes_asl:
        return evaluated, changes.clear()
    decided_later = history.official_as_of.filter(pl.col("official_as_of") > as_of).select("supplier_id")
    return evaluated, changes.join(decided_later, on="supplier_id", how="anti")


@task(name="store results", **IO_RETRIES)
def store_results(store_url: str, run: RunRecord, evaluated: pl.DataFrame, changes: pl.DataFrame,
                  quarantine_summary: pl.DataFrame, window_first_day: date) -> int:
    with Store(store_url) as store:
        added = store.save_results(run.run_key, run.run_id, evaluated=evaluated, changes=changes,
                                   quarantine_summary=quarantine_summary, as_of=run.as_of,
                                   window_start=window_first_day, rule_set_hash=run.rule_set_hash,
                                   approved_by=f"supplier-eval {run.trigger} run ({run.requested_by})")
    get_run_logger().info("Stored %s new evaluations (%s already recorded)", added, evaluated.height - added)
    return added


@task(name="render reports", cache_policy=NO_CACHE)
def render_reports(settings: Settings, params: RunParameters, run: RunRecord, rule_set: RuleSet,
                   evaluated: pl.DataFrame, changes: pl.DataFrame, late: pl.DataFrame, validated: ValidatedInputs,
                   quarantine_summary: pl.DataFrame, window_first_day: date) -> tuple[Path, list[PendingMessage]]:
    out_dir = settings.output_dir / f"{run.as_of.isoformat()}_{run.run_key[:12]}"
    try:
        return _render_reports(out_dir, settings, params, run, rule_set, evaluated, changes, late, validated,
                               quarantine_summary, window_first_day)
    except OSError as exc:
        raise ConfigError(f"cannot write the reports ({exc.strerror or exc})", where=str(out_dir),
                          fix="Check output.dir in the settings: it must be a folder you can write to.") from None


def _render_reports(out_dir: Path, settings: Settings, params: RunParameters, run: RunRecord, rule_set: RuleSet,
                    evaluated: pl.DataFrame, changes: pl.DataFrame, late: pl.DataFrame,
                    validated: ValidatedInputs, quarantine_summary: pl.DataFrame,
                    window_first_day: date) -> tuple[Path, list[PendingMessage]]:
    (out_dir / "suppliers").mkdir(parents=True, exist_ok=True)
    run_info = {"run_id": run.run_id, "trigger": run.trigger, "requested_by": run.requested_by,
                "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "code_version": run.code_version,
                "what_if": not run.changes_asl}
    # A what-if goes only to whoever asked for it (--to): owners and officers act on the rules in force.
    officers = params.recipients or (settings.mail.officers if run.changes_asl else ())
    rules_info = {"name": rule_set.name, "version": rule_set.version, "content_hash": rule_set.content_hash}
    bands = [{"band": b.band, "status": b.status, "action": b.action} for b in rule_set.bands]

    evaluations_csv = csv_bytes(evaluations_table(evaluated))
    (out_dir / "evaluations.csv").write_bytes(evaluations_csv)
    write_csv_safely(validated.quarantine, out_dir / "quarantine.csv")

    messages: list[PendingMessage] = []
    context = digest_context(run=run_info, rule_set=rules_info, bands=bands, evaluated=evaluated, changes=changes,
                             quarantine_summary=quarantine_summary, window_start=window_first_day, as_of=run.as_of)
    digest = render_digest(context)
    (out_dir / "digest.html").write_text(digest.html, encoding="utf-8")
    (out_dir / "digest.txt").write_text(digest.text, encoding="utf-8")
    for officer in officers:
        messages.append(_pending(run, settings, "digest", None, officer, digest_subject(context), digest,
                                 [("evaluations.csv", evaluations_csv, "text/csv")]))

    late_by_supplier = late.partition_by("supplier_id", as_dict=True)
    empty_late = late.clear()
    for row in evaluated.iter_rows(named=True):
        supplier_late = late_by_supplier.get((row["supplier_id"],), empty_late)
        context = supplier_context(run=run_info, rule_set=rules_info, evaluation=row, window_start=window_first_day,
                                   as_of=run.as_of, late_lines=supplier_late, bands=bands)
        rendered = render_supplier_report(context)
        stem = safe_file_name(row["supplier_id"])
        (out_dir / "suppliers" / f"{stem}.html").write_text(rendered.html, encoding="utf-8")
        (out_dir / "suppliers" / f"{stem}.txt").write_text(rendered.text, encoding="utf-8")
        attachments = []
        if supplier_late.height:
            attachments.append((f"late-lines-{stem}.csv", csv_bytes(supplier_late.drop("supplier_id")), "text/csv"))
        for recipient in params.recipients or ((row["owner_email"],) if run.changes_asl else ()):
            messages.append(_pending(run, settings, "supplier", row["supplier_id"], recipient,
                                     supplier_report_subject(context), rendered, attachments))
    get_run_logger().info("Rendered %s supplier reports and the digest into %s", evaluated.height, out_dir)
    return out_dir, messages if params.send_email else []


@task(name="deliver", cache_policy=NO_CACHE)
def deliver(settings: Settings, run: RunRecord, messages: list[PendingMessage]) -> tuple[int, int, int]:
    """Ledger first, then send what this run could claim: a crash, a re-run or a second run never sends twice.

    Returns (messages of this evaluation, sent now, being sent by another run).
    """
    keys = [m.message_key for m in messages]
    with Store(settings.store_url) as store:
        store.enqueue_messages(run.run_key, run.run_id, messages)
        claimed = store.claim_messages(keys, run_id=run.run_id)
        results = send_claimed(store, settings, run.run_id, claimed)
        elsewhere = store.outbox_counts(keys).get("sending", 0)
    failed = [r for r in results if not r.ok]
    if failed:
        raise DeliveryError(
            f"{len(failed)} of {len(results)} messages were not delivered (first: {failed[0].error})",
            where=settings.mail.smtp.location if settings.mail.smtp else str(settings.outbox_dir),
            fix="They stay in the outbox ledger; run the same evaluation again to retry them.",
        )
    get_run_logger().info("Delivered %s messages (%s sent before, %s being sent by another run)", len(results),
                          len(messages) - len(results) - elsewhere, elsewhere)
    return len(messages), len(results), elsewhere


def send_claimed(store: Store, settings: Settings, run_id: str,
                 claimed: list[tuple[str, bytes]]) -> list[DeliveryResult]:
    """Send the ledger's bytes of each claimed message and record each outcome as it comes.

    If sending is interrupted (Ctrl-C, a bug), what this run claimed and did not send goes back to pending
    for the next run; the interruption itself is what the caller sees.
    """
    outgoing = [OutgoingMessage(key=key, message=message_from_bytes(body, policy=policy.default), raw=body)
                for key, body in claimed]
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
        return deliver_messages(outgoing, smtp=settings.mail.smtp, outbox_dir=settings.outbox_dir,
                                concurrency=settings.mail.concurrency, retries=settings.mail.retries,
                                on_result=record)
    except BaseException:
        try:
            store.release_claims(run_id)
        except StoreError as error:  # the interruption matters more; the claims go stale and are taken over
            LOG.warning("Could not give back this run's claims: %s", error)
        raise


# helpers ------------------------------------------------------------------------------------------------------

def _pending(run: RunRecord, settings: Settings, kind: str, supplier_id: str | None, recipient: str, subject: str,
             rendered: Any, attachments: list[tuple[str, bytes, str]]) -> PendingMessage:
    """One message per recipient, keyed by what it says and to whom: a new recipient gets it, no one twice."""
    identity = json.dumps([run.run_key, kind, supplier_id, recipient.strip().lower()])
    key = f"{kind}-{hashlib.sha256(identity.encode()).hexdigest()[:32]}"
    message = compose_message(sender=settings.mail.sender, to=[recipient], subject=subject, rendered=rendered,
                              message_key=key, attachments=attachments)
    return PendingMessage(message_key=key, kind=kind, supplier_id=supplier_id, recipients=[recipient],
                          subject=str(message["Subject"]), body=message.as_bytes())


_RESERVED_NAMES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}


def safe_file_name(value: str) -> str:
    """A file name for an id on any file system; a hash suffix keeps changed or reserved ids distinct."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", value).strip("._") or "supplier"
    if cleaned != value or cleaned.lower() in _RESERVED_NAMES:
        cleaned = f"{cleaned}-{hashlib.sha256(value.encode()).hexdigest()[:8]}"
    return cleaned


def evaluations_table(evaluated: pl.DataFrame) -> pl.DataFrame:
    """The flat CSV view of a run's evaluations."""
    return evaluated.select(
        "supplier_id", "name", "category", "criticality", "score", "band", "status",
        pl.col(CURRENT_STATUS).alias("previous_status"), "score_change",
        pl.col("gates_hit").list.join("; "), "insufficient_reason",
        pl.col("metrics").struct.field("order_lines", "on_time_rate", "in_full_rate", "otif_rate",
                                       "mean_days_late", "receipts", "acceptance_rate", "ppm_rejected"),
    ).sort("supplier_id")


def choose_suppliers(suppliers: pl.DataFrame, params: RunParameters) -> pl.DataFrame:
    """The suppliers this run evaluates: the chosen ids, or every active supplier."""
    if params.trigger == "nightly" or not params.suppliers:
        return suppliers.filter(pl.col("active")).sort("supplier_id")
    known = set(suppliers["supplier_id"].to_list())
    unknown = [s for s in params.suppliers if s not in known]
    if unknown:
        raise ConfigError(f"unknown supplier id {', '.join(map(repr, unknown))}", where="--supplier",
                          fix="Use ids from the suppliers source (supplier-eval asl lists them).")
    return suppliers.filter(pl.col("supplier_id").is_in(list(params.suppliers))).sort("supplier_id")


def with_current_status(chosen: pl.DataFrame, current: pl.DataFrame) -> pl.DataFrame:
    """The chosen suppliers with their ASL status before this run: the store's, else the supplier record's."""
    return (
        chosen.join(current.select("supplier_id", recorded_status="status"), on="supplier_id", how="left")
        .with_columns(pl.coalesce("recorded_status", "status").alias(CURRENT_STATUS))
        .drop("recorded_status")
    )


def compute_run_key(*, as_of: date, window_days: int, tolerance_days: int, selection: list[str], rule_hash: str,
                    fingerprint: str, code: str, changes_asl: bool) -> str:
    """The identity of an evaluation: same inputs, rules, date, window, selection, code and kind → same records."""
    identity = json.dumps({"as_of": as_of.isoformat(), "window_days": window_days, "tolerance": tolerance_days,
                           "selection": selection, "rules": rule_hash, "inputs": fingerprint, "code": code,
                           "official": changes_asl}, sort_keys=True)
    return hashlib.sha256(identity.encode()).hexdigest()


# the evaluation, shared by both flows -------------------------------------------------------------------------

def run_evaluation(params: RunParameters) -> RunSummary:
    settings = load_settings(params.config_file)
    in_force = load_rule_set(settings.rules_file)
    rule_set = load_rule_set(params.rules_file) if params.rules_file else in_force
    as_of = params.effective_as_of()
    window_days = params.window_days or rule_set.evaluation.window_days
    # Another rule set or window is a what-if: recorded and reported, but the ASL follows the rules in force.
    changes_asl = rule_set.content_hash == in_force.content_hash and window_days == in_force.evaluation.window_days
    first_day = window_start(as_of, window_days)
    store_url = settings.store_url
    run = RunRecord(
        run_id=str(uuid.uuid4()), run_key="", trigger=params.trigger, requested_by=params.requested_by,
        as_of=as_of, window_days=window_days,
        selection=list(params.suppliers) if params.suppliers and params.trigger == "adhoc" else ["*active*"],
        rule_set_name=rule_set.name, rule_set_version=rule_set.version, rule_set_hash=rule_set.content_hash,
        input_fingerprint="", code_version=code_version(), changes_asl=changes_asl,
    )
    started = False
    try:
        loaded = load_sources(settings.data_dir)
        failed_dir = settings.output_dir / f"{as_of.isoformat()}_failed_{run.run_id[:8]}"
        validated = validate(loaded, settings.validation.max_quarantine_share, failed_dir / "quarantine.csv")
        chosen = choose_suppliers(validated.suppliers, params)
        run = replace(run, input_fingerprint=loaded.fingerprint, run_key=compute_run_key(
            as_of=as_of, window_days=window_days, tolerance_days=rule_set.evaluation.on_time_tolerance_days,
            selection=chosen["supplier_id"].to_list(), rule_hash=rule_set.content_hash, fingerprint=loaded.fingerprint,
            code=run.code_version, changes_asl=changes_asl))
        with Store(store_url) as store:
            store.start_run(run)
        started = True
        history = read_history(store_url, run.run_key, as_of)
        selected = with_current_status(chosen, history.current_statuses)
        metrics, late = compute_metrics(validated, selected, rule_set, as_of, window_days)
        scored = score(selected, metrics, rule_set, as_of)
        evaluated, changes = decide(selected, scored, rule_set, history, as_of, changes_asl)
        quarantine_summary = quarantine_summary_with_reasons(validated.summary, validated.quarantine)
        added = store_results(store_url, run, evaluated, changes, quarantine_summary, first_day)
        out_dir, messages = render_reports(settings, params, run, rule_set, evaluated, changes, late, validated,
                                           quarantine_summary, first_day)
        total, sent, elsewhere = deliver(settings, run, messages) if messages else (0, 0, 0)
        with Store(store_url) as store:
            store.finish_run(run.run_id, status="succeeded", evaluations_added=added)
    except BaseException as error:  # Ctrl-C too: the run must not stay "running" in the records
        _record_failure(store_url, run, started, error)
        raise
    return RunSummary(
        run_id=run.run_id, run_key=run.run_key, as_of=as_of, window_days=window_days, changes_asl=changes_asl,
        suppliers_evaluated=evaluated.height, evaluations_added=added,
        bands=band_counts(evaluated, [b.band for b in rule_set.bands]),
        band_statuses={b.band: b.status for b in rule_set.bands},
        status_changes=changes.height, quarantined_rows=int(validated.summary["rows_quarantined"].sum()),
        reports_dir=str(out_dir), messages=total, messages_delivered_now=sent, messages_in_progress_elsewhere=elsewhere,
        transport="smtp" if settings.mail.smtp else "outbox",
        delivery_location=settings.mail.smtp.location if settings.mail.smtp else str(settings.outbox_dir),
        already_recorded=added == 0 and evaluated.height > 0,
    )


def _record_failure(store_url: str, run: RunRecord, started: bool, error: BaseException) -> None:
    """Record the failed run; if the store itself is what failed, say so without hiding the original error."""
    try:
        with Store(store_url) as store:
            if not started:
                store.start_run(run)
            store.finish_run(run.run_id, status="failed", error=str(error) or type(error).__name__)
    except Exception as bookkeeping:  # noqa: BLE001 - the original error is what the user must see
        get_run_logger().warning("Could not record the failed run in the store: %s", bookkeeping)


NIGHTLY_DEFAULTS = RunParameters(trigger="nightly", requested_by="schedule")


@flow(name="nightly", log_prints=True, validate_parameters=True)
def nightly(params: RunParameters = NIGHTLY_DEFAULTS) -> RunSummary:
    """Evaluate every active supplier as of today (or the given date), store the results, email the reports."""
    return run_evaluation(params.model_copy(update={"trigger": "nightly", "suppliers": ()}))


@flow(name="adhoc", log_prints=True, validate_parameters=True)
def adhoc(params: RunParameters) -> RunSummary:
    """Evaluate chosen suppliers (or everyone active) for a chosen date and window; report to whoever asked."""
    return run_evaluation(params.model_copy(update={"trigger": "adhoc"}))


@contextmanager
def fast_flow_runs() -> Iterator[None]:
    """Skip the flow heartbeat thread (about a second a run); the run records are unchanged."""
    hide_user_error_tracebacks()
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield
