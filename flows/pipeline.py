"""The Prefect flows ``nightly`` and ``adhoc``: a task per stage, each a thin shell over a pure function.

sources → validate → metrics → score → decide → store → render → deliver. Retries only on the I/O tasks
(reading sources, the store, delivery); the pure stages fail fast with the error that explains them.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
from reports.render import render_digest, render_supplier_report
from rules.decide import assemble_evaluations, status_changes
from rules.loader import load_rule_set
from rules.metrics import measure_suppliers, window_start
from rules.model import RuleSet
from rules.scoring import CURRENT_STATUS, score_suppliers
from suppliers.errors import ConfigError, DeliveryError
from suppliers.sources import Source, discover_sources, fingerprint_sources, read_source
from suppliers.store import PendingMessage, RunRecord, Store
from suppliers.validate import ValidatedInputs, validate_inputs


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
    suppliers_evaluated: int
    evaluations_added: int
    bands: dict[str, int]
    status_changes: int
    quarantined_rows: int
    reports_dir: str
    messages: int
    messages_delivered_now: int
    transport: str
    delivery_location: str
    already_recorded: bool


@dataclass(frozen=True)
class Loaded:
    sources: dict[str, Source]
    raw: dict[str, tuple[Source, pl.DataFrame]]
    fingerprint: str


@dataclass(frozen=True)
class History:
    current_statuses: pl.DataFrame
    previous: pl.DataFrame


# tasks --------------------------------------------------------------------------------------------------------

@task(name="load sources", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def load_sources(data_dir: Path) -> Loaded:
    sources = discover_sources(data_dir)
    raw = {kind: (source, read_source(source)) for kind, source in sources.items()}
    get_run_logger().info("Read %s", ", ".join(f"{s.path.name} ({f.height:,} rows)" for s, f in raw.values()))
    return Loaded(sources=sources, raw=raw, fingerprint=fingerprint_sources(sources))


@task(name="validate", cache_policy=NO_CACHE)
def validate(loaded: Loaded, max_quarantine_share: float) -> ValidatedInputs:
    validated = validate_inputs(loaded.raw, max_quarantine_share=max_quarantine_share)
    quarantined = int(validated.summary["rows_quarantined"].sum())
    get_run_logger().info("Validated: %s rows quarantined of %s read", f"{quarantined:,}",
                          f"{int(validated.summary['rows_read'].sum()):,}")
    return validated


@task(name="read history", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def read_history(store_url: str, run_key: str, as_of: date) -> History:
    store = Store(store_url)
    try:
        return History(
            current_statuses=store.current_statuses(excluding_run_key=run_key),
            previous=store.previous_evaluations(as_of=as_of, excluding_run_key=run_key),
        )
    finally:
        store.close()


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
def decide(selected: pl.DataFrame, scored: pl.DataFrame, rule_set: RuleSet,
           history: History) -> tuple[pl.DataFrame, pl.DataFrame]:
    evaluated = assemble_evaluations(scored, rule_set, history.previous).join(
        selected.select("supplier_id", "name", "category", "criticality", "owner_email"), on="supplier_id"
    )
    return evaluated, status_changes(evaluated)


@task(name="store results", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def store_results(store_url: str, run: RunRecord, evaluated: pl.DataFrame, changes: pl.DataFrame,
                  quarantine_summary: pl.DataFrame, window_first_day: date) -> int:
    store = Store(store_url)
    try:
        added = store.save_evaluations(run.run_key, run.run_id, evaluated, as_of=run.as_of,
                                       window_start=window_first_day, rule_set_hash=run.rule_set_hash)
        store.save_status_changes(run.run_key, run.run_id, changes, as_of=run.as_of,
                                  approved_by=f"supplier-eval {run.trigger} run ({run.requested_by})")
        store.save_quarantine_summary(run.run_key, run.run_id, quarantine_summary)
    finally:
        store.close()
    get_run_logger().info("Stored %s new evaluations (%s already recorded)", added, evaluated.height - added)
    return added


@task(name="render reports", cache_policy=NO_CACHE)
def render_reports(settings: Settings, params: RunParameters, run: RunRecord, rule_set: RuleSet,
                   evaluated: pl.DataFrame, changes: pl.DataFrame, late: pl.DataFrame, validated: ValidatedInputs,
                   quarantine_summary: pl.DataFrame, window_first_day: date) -> tuple[Path, list[PendingMessage]]:
    out_dir = settings.output_dir / f"{run.as_of.isoformat()}_{run.run_key[:12]}"
    (out_dir / "suppliers").mkdir(parents=True, exist_ok=True)
    run_info = {"run_id": run.run_id, "trigger": run.trigger, "requested_by": run.requested_by,
                "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "code_version": run.code_version}
    rules_info = {"name": rule_set.name, "version": rule_set.version, "content_hash": rule_set.content_hash}

    evaluations_csv = evaluations_table(evaluated).write_csv()
    (out_dir / "evaluations.csv").write_text(evaluations_csv, encoding="utf-8")
    validated.quarantine.write_csv(out_dir / "quarantine.csv")

    messages: list[PendingMessage] = []
    sender = settings.mail.sender
    digest = render_digest(digest_context(run=run_info, rule_set=rules_info, evaluated=evaluated, changes=changes,
                                          quarantine_summary=quarantine_summary, window_start=window_first_day,
                                          as_of=run.as_of))
    (out_dir / "digest.html").write_text(digest.html, encoding="utf-8")
    (out_dir / "digest.txt").write_text(digest.text, encoding="utf-8")
    digest_to = list(params.recipients or settings.mail.officers)
    if digest_to:
        subject = f"Supplier evaluation digest as of {run.as_of.isoformat()}: {evaluated.height} suppliers"
        messages.append(_pending(run, "digest", None, digest_to, subject, sender, digest,
                                 [("evaluations.csv", evaluations_csv.encode(), "text/csv")]))

    late_by_supplier = late.partition_by("supplier_id", as_dict=True)
    empty_late = late.clear()
    for row in evaluated.iter_rows(named=True):
        supplier_late = late_by_supplier.get((row["supplier_id"],), empty_late)
        rendered = render_supplier_report(supplier_context(run=run_info, rule_set=rules_info, evaluation=row,
                                                           window_start=window_first_day, as_of=run.as_of,
                                                           late_lines=supplier_late))
        stem = _safe_file_name(row["supplier_id"])
        (out_dir / "suppliers" / f"{stem}.html").write_text(rendered.html, encoding="utf-8")
        (out_dir / "suppliers" / f"{stem}.txt").write_text(rendered.text, encoding="utf-8")
        to = list(params.recipients) or [row["owner_email"]]
        outcome = f"band {row['band']}" if row["band"] else "insufficient data"
        subject = f"Supplier evaluation: {row['name']} ({row['supplier_id']}) as of {run.as_of.isoformat()}: {outcome}"
        attachments = []
        if supplier_late.height:
            csv = supplier_late.drop("supplier_id").write_csv().encode()
            attachments.append((f"late-lines-{stem}.csv", csv, "text/csv"))
        messages.append(_pending(run, "supplier", row["supplier_id"], to, subject, sender, rendered, attachments))
    get_run_logger().info("Rendered %s supplier reports and the digest into %s", evaluated.height, out_dir)
    return out_dir, messages if params.send_email else []


@task(name="deliver", cache_policy=NO_CACHE)
def deliver(settings: Settings, run: RunRecord, messages: list[PendingMessage]) -> tuple[int, int]:
    """Ledger first, then send what the ledger says is unsent: a crash or re-run never duplicates a message."""
    store = Store(settings.store_url)
    try:
        store.enqueue_messages(run.run_key, run.run_id, messages)
        wanted = {m.message_key for m in messages}
        unsent = [(key, body) for key, body in store.unsent_messages(run.run_key) if key in wanted]
        outgoing = [OutgoingMessage(key=key, message=message_from_bytes(body, policy=policy.default), raw=body)
                    for key, body in unsent]

        def record(result: DeliveryResult) -> None:
            store.mark_message(result.key, ok=result.ok, attempts=result.attempts, transport=result.transport,
                               location=result.location, error=result.error)

        results = deliver_messages(outgoing, smtp=settings.mail.smtp, outbox_dir=settings.outbox_dir,
                                   concurrency=settings.mail.concurrency, retries=settings.mail.retries,
                                   on_result=record)
    finally:
        store.close()
    failed = [r for r in results if not r.ok]
    if failed:
        raise DeliveryError(
            f"{len(failed)} of {len(results)} messages were not delivered (first: {failed[0].error})",
            where=settings.mail.smtp.host if settings.mail.smtp else str(settings.outbox_dir),
            fix="They stay in the outbox ledger; run the same evaluation again to retry them.",
        )
    sent = len(results)
    get_run_logger().info("Delivered %s messages (%s were already sent)", sent, len(messages) - sent)
    return len(messages), sent


# helpers ------------------------------------------------------------------------------------------------------

def _pending(run: RunRecord, kind: str, supplier_id: str | None, to: list[str], subject: str, sender: str,
             rendered: Any, attachments: list[tuple[str, bytes, str]]) -> PendingMessage:
    identity = json.dumps([run.run_key, kind, supplier_id, sorted(to)])
    key = f"{kind}-{hashlib.sha256(identity.encode()).hexdigest()[:32]}"
    message = compose_message(sender=sender, to=to, subject=subject, rendered=rendered, message_key=key,
                              attachments=attachments)
    return PendingMessage(message_key=key, kind=kind, supplier_id=supplier_id, recipients=to,
                          subject=str(message["Subject"]), body=message.as_bytes())


def _safe_file_name(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", value).strip("._") or "supplier"


def evaluations_table(evaluated: pl.DataFrame) -> pl.DataFrame:
    """The flat CSV view of a run's evaluations."""
    return evaluated.select(
        "supplier_id", "name", "category", "criticality", "score", "band", "status",
        pl.col(CURRENT_STATUS).alias("previous_status"), "score_change",
        pl.col("gates_hit").list.join("; "), "insufficient_reason",
        pl.col("metrics").struct.field("order_lines", "on_time_rate", "in_full_rate", "otif_rate",
                                       "mean_days_late", "receipts", "acceptance_rate", "ppm_rejected"),
    ).sort("supplier_id")


def select_suppliers(suppliers: pl.DataFrame, params: RunParameters, current: pl.DataFrame) -> pl.DataFrame:
    """The suppliers this run evaluates, with their current ASL status (the store's, else the record's)."""
    if params.trigger == "nightly" or not params.suppliers:
        chosen = suppliers.filter(pl.col("active"))
    else:
        known = set(suppliers["supplier_id"].to_list())
        unknown = [s for s in params.suppliers if s not in known]
        if unknown:
            raise ConfigError(f"unknown supplier id {', '.join(map(repr, unknown))}", where="--supplier",
                              fix="Use ids from the suppliers source (supplier-eval asl lists them).")
        chosen = suppliers.filter(pl.col("supplier_id").is_in(list(params.suppliers)))
    return (
        chosen.join(current.rename({"status": "recorded_status"}), on="supplier_id", how="left")
        .with_columns(pl.coalesce("recorded_status", "status").alias(CURRENT_STATUS))
        .drop("recorded_status")
        .sort("supplier_id")
    )


def compute_run_key(*, as_of: date, window_days: int, tolerance_days: int, selection: list[str], rule_hash: str,
                    fingerprint: str) -> str:
    identity = json.dumps({"as_of": as_of.isoformat(), "window_days": window_days, "tolerance": tolerance_days,
                           "selection": selection, "rules": rule_hash, "inputs": fingerprint}, sort_keys=True)
    return hashlib.sha256(identity.encode()).hexdigest()


# the evaluation, shared by both flows -------------------------------------------------------------------------

def run_evaluation(params: RunParameters) -> RunSummary:
    settings = load_settings(params.config_file)
    rule_set = load_rule_set(params.rules_file or settings.rules_file)
    as_of = params.effective_as_of()
    window_days = params.window_days or rule_set.evaluation.window_days
    first_day = window_start(as_of, window_days)
    store_url = settings.store_url
    run_id = str(uuid.uuid4())
    store = Store(store_url)
    run: RunRecord | None = None
    try:
        loaded = load_sources(settings.data_dir)
        validated = validate(loaded, settings.validation.max_quarantine_share)
        selection_probe = select_suppliers(validated.suppliers, params, pl.DataFrame(
            schema={"supplier_id": pl.String, "status": pl.String}))
        run_key = compute_run_key(as_of=as_of, window_days=window_days,
                                  tolerance_days=rule_set.evaluation.on_time_tolerance_days,
                                  selection=selection_probe["supplier_id"].to_list(),
                                  rule_hash=rule_set.content_hash, fingerprint=loaded.fingerprint)
        run = _run_record(run_id, run_key, params, as_of, window_days, selection_probe, rule_set, loaded.fingerprint)
        store.start_run(run)
        history = read_history(store_url, run_key, as_of)
        selected = select_suppliers(validated.suppliers, params, history.current_statuses)
        metrics, late = compute_metrics(validated, selected, rule_set, as_of, window_days)
        scored = score(selected, metrics, rule_set, as_of)
        evaluated, changes = decide(selected, scored, rule_set, history)
        quarantine_summary = quarantine_summary_with_reasons(validated.summary, validated.quarantine)
        added = store_results(store_url, run, evaluated, changes, quarantine_summary, first_day)
        out_dir, messages = render_reports(settings, params, run, rule_set, evaluated, changes, late, validated,
                                           quarantine_summary, first_day)
        total, sent = deliver(settings, run, messages) if messages else (0, 0)
        store.finish_run(run_id, status="succeeded", evaluations_added=added)
    except Exception as error:
        if run is None:
            run = _run_record(run_id, "", params, as_of, window_days, None, rule_set, "")
            store.start_run(run)
        store.finish_run(run_id, status="failed", error=str(error))
        raise
    finally:
        store.close()
    return RunSummary(
        run_id=run_id, run_key=run_key, as_of=as_of, window_days=window_days,
        suppliers_evaluated=evaluated.height, evaluations_added=added, bands=band_counts(evaluated),
        status_changes=changes.height, quarantined_rows=int(validated.summary["rows_quarantined"].sum()),
        reports_dir=str(out_dir), messages=total, messages_delivered_now=sent,
        transport="smtp" if settings.mail.smtp else "outbox",
        delivery_location=(f"{settings.mail.smtp.host}:{settings.mail.smtp.port}" if settings.mail.smtp
                           else str(settings.outbox_dir)),
        already_recorded=added == 0 and evaluated.height > 0,
    )


def _run_record(run_id: str, run_key: str, params: RunParameters, as_of: date, window_days: int,
                selected: pl.DataFrame | None, rule_set: RuleSet, fingerprint: str) -> RunRecord:
    selection = list(params.suppliers) if params.suppliers and params.trigger == "adhoc" else ["*active*"]
    return RunRecord(
        run_id=run_id, run_key=run_key, trigger=params.trigger, requested_by=params.requested_by, as_of=as_of,
        window_days=window_days, selection=selection, rule_set_name=rule_set.name,
        rule_set_version=rule_set.version, rule_set_hash=rule_set.content_hash, input_fingerprint=fingerprint,
        code_version=code_version(),
    )


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
