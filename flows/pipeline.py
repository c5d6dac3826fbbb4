"""The Prefect flows ``nightly`` and ``adhoc``: each task is a thin shell over one core function.

sources → validate → schedule → metrics → score → decide → store → render → deliver. The nightly run evaluates
the active suppliers due for re-evaluation (or every active one, ``[schedule] evaluate = "all"``); an ad-hoc
run what it is asked. The policies live in the core
(``suppliers/``, ``rules/``, ``reports/``); here they are only put in order. One store session serves the
whole run. Only the store tasks retry, and only on an error that says a retry may succeed (a locked SQLite
file, a lost PostgreSQL connection); delivery retries per message inside ``deliver_messages``.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from flows.measuring import measure_and_score_in_shards
from flows.params import RunParameters, RunSummary
from flows.runtime import fast_flow_runs
from flows.settings import Settings, load_settings, routing_of, transport_of
from reports.bundle import AslFollowUp, DataQuality, RunReports, failed_run_folder, run_folder, write_run_reports
from reports.context import quarantine_summary_with_reasons
from reports.outbox import DeliveryOutcome, deliver_run_messages, deliver_stopped_run_report, failures_to_report
from reports.routing import Routing
from rules.asl import overdue_suppliers, schedule, suppliers_to_evaluate, with_asl_facts
from rules.decide import Decisions, changes_asl, decide
from rules.loader import load_rule_set, rule_file_text
from rules.metrics import SupplierPerformance, window_start
from rules.model import RuleSet
from suppliers.errors import DataQualityError, SupplierEvalError
from suppliers.mapping import load_inputs
from suppliers.runs import (
    RunReading,
    RunRecord,
    keyed,
    new_run,
    requested_suppliers,
    run_reading,
    with_current_status,
)
from suppliers.sources import LoadedSources
from suppliers.store import AslResults, FollowUp, History, Store, hold_run_lock
from suppliers.validate import ValidatedInputs, validate_inputs

__all__ = ["nightly", "adhoc", "run_evaluation", "fast_flow_runs", "NIGHTLY_DEFAULTS"]


def retry_if_transient(_task: Any, _task_run: Any, state: Any) -> bool:
    """Retry only what may pass: a locked store, a dropped connection — never a user error or a bug."""
    error = state.data
    return isinstance(error, SupplierEvalError) and error.transient


STORE_RETRIES: dict[str, Any] = {"retries": 2, "retry_delay_seconds": 1, "retry_condition_fn": retry_if_transient}


@task(name="load sources", cache_policy=NO_CACHE)
def load(data_dir: Path, mapping_file: Path | None, reading: RunReading) -> LoadedSources:
    loaded = load_inputs(data_dir, mapping_file, reading.fields)
    get_run_logger().info("Read %s", loaded.describe())
    return loaded


@task(name="validate", cache_policy=NO_CACHE)
def validate(loaded: LoadedSources, as_of: date, max_quarantine_share: float,
             failed_quarantine_path: Path, window: tuple[date, date], reading: RunReading) -> ValidatedInputs:
    """Validate the rows the run's window (first day, as-of date) can score, as the run reads them."""
    validated = validate_inputs(loaded.raw, as_of=as_of, max_quarantine_share=max_quarantine_share,
                                quarantine_path=failed_quarantine_path, formats=loaded.formats, window=window,
                                with_receipt_lines=reading.receipt_lines, columns=reading.columns)
    get_run_logger().info("Validated: %s", validated.describe(window))
    return validated


@task(name="record rule text", cache_policy=NO_CACHE, **STORE_RETRIES)
def record_rule_text(store: Store, rule_set: RuleSet, path: Path | str | None) -> None:
    """Keep the full text of the rule set this run uses, for the audit evidence (once per sha256)."""
    text = rule_file_text(path, rule_set.content_hash)
    if text is not None:
        store.record_rule_set(name=rule_set.name, version=rule_set.version, content_hash=rule_set.content_hash,
                              text=text)


@task(name="read history", cache_policy=NO_CACHE, **STORE_RETRIES)
def read_history(store: Store, run_key: str, run_id: str, as_of: date) -> History:
    return store.read_history(run_key=run_key, run_id=run_id, as_of=as_of)


@task(name="read schedule", cache_policy=NO_CACHE, **STORE_RETRIES)
def read_schedule(store: Store, as_of: date) -> pl.DataFrame:
    return store.last_scored(as_of=as_of)


@task(name="decide", cache_policy=NO_CACHE)
def decide_statuses(selected: pl.DataFrame, scored: pl.DataFrame, rule_set: RuleSet, history: History,
                    as_of: date, official: bool, officers: tuple[str, ...]) -> Decisions:
    return decide(selected, scored, rule_set, previous=history.previous, official_as_of=history.official_as_of,
                  as_of=as_of, official=official, officers=officers)


@task(name="store results", cache_policy=NO_CACHE, **STORE_RETRIES)
def store_results(store: Store, run: RunRecord, decisions: Decisions, quarantine_summary: pl.DataFrame,
                  window_first_day: date, asl: AslResults) -> int:
    added = store.save_results(run.run_key, run.run_id, evaluated=decisions.evaluated, changes=decisions.changes,
                               quarantine_summary=quarantine_summary, as_of=run.as_of, window_start=window_first_day,
                               rule_set_hash=run.rule_set_hash, approved_by=run.approver, asl=asl)
    get_run_logger().info("Stored %s new evaluations (%s already recorded)", added,
                          decisions.evaluated.height - added)
    return added


@task(name="read follow-up", cache_policy=NO_CACHE, **STORE_RETRIES)
def read_follow_up(store: Store) -> FollowUp:
    return store.open_follow_up()


@task(name="report bad data", cache_policy=NO_CACHE)
def report_bad_data(store: Store, run: RunRecord, settings: Settings, error: DataQualityError, read_from: str,
                    send_email: bool) -> None:
    quality = DataQuality(summary=error.summary, quarantine=error.quarantine, read_from=read_from,
                          previous=store.previous_quarantine_summary(before_run_id=run.run_id),
                          max_share=settings.validation.max_quarantine_share)
    out_dir = failed_run_folder(settings.output_dir, run)
    owner = settings.mail.data_owner if send_email else None
    outcome = deliver_stopped_run_report(store, run, quality, out_dir=out_dir, owner=owner,
                                         sender=settings.mail.sender, transport=transport_of(settings))
    get_run_logger().info("Data-quality report written to %s%s", out_dir,
                          f" and sent to {owner}" if outcome.sent_now else "")


@task(name="read score history", cache_policy=NO_CACHE, **STORE_RETRIES)
def read_score_history(store: Store, run_key: str, as_of: date) -> pl.DataFrame:
    return store.score_history(as_of=as_of, excluding_run_key=run_key)


@task(name="read delivery failures", cache_policy=NO_CACHE, **STORE_RETRIES)
def read_delivery_failures(store: Store, run: RunRecord) -> pl.DataFrame | None:
    return failures_to_report(store, run)


@task(name="render reports", cache_policy=NO_CACHE)
def render_reports(out_dir: Path, run: RunRecord, rule_set: RuleSet, decisions: Decisions,
                   performance: SupplierPerformance, quality: DataQuality, quarantine_summary: pl.DataFrame,
                   window_first_day: date, follow_up: AslFollowUp, history: pl.DataFrame | None = None,
                   contacts: pl.DataFrame | None = None, routing: Routing | None = None,
                   delivery_failures: pl.DataFrame | None = None) -> RunReports:
    reports = write_run_reports(out_dir, run=run, rule_set=rule_set, evaluated=decisions.evaluated,
                                changes=decisions.changes, late_lines=performance.late_lines, quality=quality,
                                quarantine_summary=quarantine_summary, window_start=window_first_day,
                                follow_up=follow_up, records=performance.records, history=history,
                                contacts=contacts, routing=routing, delivery_failures=delivery_failures)
    get_run_logger().info("Rendered %s supplier reports and the digest into %s", len(reports.suppliers), out_dir)
    return reports


@task(name="deliver", cache_policy=NO_CACHE)
def deliver(store: Store, run: RunRecord, reports: RunReports, settings: Settings,
            requested: tuple[str, ...]) -> DeliveryOutcome:
    outcome = deliver_run_messages(store, run, reports, sender=settings.mail.sender, officers=settings.mail.officers,
                                   requested=requested, transport=transport_of(settings))
    get_run_logger().info("Delivered %s messages (%s sent before, %s being sent by another run)", outcome.sent_now,
                          outcome.messages - outcome.sent_now - outcome.elsewhere, outcome.elsewhere)
    if outcome.refused_before:
        get_run_logger().warning("%s messages were refused for good by an earlier run and are not tried again: "
                                 "`supplier-eval outbox` lists them", outcome.refused_before)
    return outcome


def run_evaluation(params: RunParameters) -> RunSummary:
    """The evaluation both flows run: one store session, every stage a task, the run recorded either way."""
    settings = load_settings(params.config_file)
    in_force = load_rule_set(settings.rules_file)
    rule_set = load_rule_set(params.rules_file) if params.rules_file else in_force
    as_of = params.effective_as_of()
    window_days = params.window_days or rule_set.evaluation.window_days
    official = changes_asl(rule_set, in_force, window_days)
    first_day = window_start(as_of, window_days)
    read_from = str(settings.mapping_file or settings.data_dir)  # for the data-quality report
    requested = requested_suppliers(params.trigger, params.suppliers)
    due_only = params.trigger == "nightly" and settings.schedule.evaluate == "due"
    run = new_run(trigger=params.trigger, requested_by=params.requested_by, requested=requested, due_only=due_only,
                  as_of=as_of, window_days=window_days, rule_set=rule_set, changes_asl=official)
    with Store(settings.store_url) as store, hold_run_lock(
            store, run_id=run.run_id, trigger=run.trigger, wait_seconds=settings.store.lock_wait_seconds,
            on_wait=lambda held: get_run_logger().info("Waiting for %s to finish", held.describe())):
        started = False
        try:
            reading = run_reading(requested, params.shards)
            loaded = load(settings.data_dir, settings.mapping_file, reading)
            tolerance = rule_set.evaluation.on_time_tolerance_days
            run = keyed(run, selection=run.selection, fingerprint=loaded.fingerprint, tolerance_days=tolerance)
            try:
                validated = validate(loaded, as_of, settings.validation.max_quarantine_share,
                                     failed_run_folder(settings.output_dir, run) / "quarantine.csv", (first_day, as_of),
                                     reading)
            except DataQualityError as bad_data:
                try:
                    report_bad_data(store, run, settings, bad_data, read_from, params.send_email)
                except SupplierEvalError as unreported:  # the bad data is what the user must hear about first
                    get_run_logger().warning("The data-quality report could not be sent: %s", unreported)
                raise
            loaded.raw.clear()  # every later step reads the validated frames: the raw ones need not stay in memory
            plan = schedule(validated.suppliers, read_schedule(store, as_of), in_force, as_of=as_of)
            chosen = suppliers_to_evaluate(validated.suppliers, requested, plan, due_only=due_only)
            run = keyed(run, selection=chosen["supplier_id"].to_list(), fingerprint=loaded.fingerprint,
                        tolerance_days=tolerance)
            store.start_run(run)
            started = True
            record_rule_text(store, rule_set, params.rules_file or settings.rules_file)
            history = read_history(store, run.run_key, run.run_id, as_of)
            selected = with_asl_facts(with_current_status(chosen, history.current_statuses), manual=history.manual,
                                      previous_bands=history.recent_bands,
                                      nonconformances=validated.nonconformances, as_of=as_of)
            performance, scored = measure_and_score_in_shards(validated, selected, rule_set, as_of, window_days,
                                                              params.shards)
            validated = validated.measured()  # the order lines and receipts are let go of before rendering
            decisions = decide_statuses(selected, scored, rule_set, history, as_of, official, settings.mail.officers)
            quarantine_summary = quarantine_summary_with_reasons(validated.summary, validated.quarantine)
            added = store_results(store, run, decisions, quarantine_summary, first_day,
                                  AslResults.of(decisions, chosen, official=official))
            follow_up = read_follow_up(store)
            asl_report = AslFollowUp(proposals=follow_up.proposals, actions=follow_up.actions,
                                     overdue=overdue_suppliers(plan, validated.suppliers, chosen["supplier_id"]),
                                     unchanged_reason=decisions.unchanged_reason)
            quality = DataQuality(summary=validated.summary, quarantine=validated.quarantine,
                                  previous=history.previous_quality, read_from=read_from,
                                  max_share=settings.validation.max_quarantine_share)
            reports = render_reports(run_folder(settings.output_dir, run), run, rule_set, decisions, performance,
                                     quality, quarantine_summary, first_day, asl_report,
                                     history=read_score_history(store, run.run_key, as_of),
                                     contacts=chosen.select("supplier_id", "contact_email")
                                     if "contact_email" in chosen.columns else None,
                                     routing=routing_of(settings),
                                     delivery_failures=read_delivery_failures(store, run))
            # quote: Prefect would otherwise walk every supplier's report context looking for futures to wait on,
            # at 50,000 suppliers half a minute and gigabytes for nothing.
            delivered = (deliver(store, run, quote(reports), settings, params.recipients) if params.send_email
                         else DeliveryOutcome())
            store.finish_run(run.run_id, status="succeeded", evaluations_added=added)
        except BaseException as error:  # Ctrl-C too: the run must not stay "running" in the records
            _record_failure(store, run, started, error)
            raise
    return RunSummary.of(run, rule_set, decisions, added=added, reports_dir=str(reports.out_dir),
                         quarantined_rows=int(validated.summary["rows_quarantined"].sum()), delivered=delivered,
                         transport=transport_of(settings), follow_up=asl_report,
                         selection="due" if due_only else ("chosen" if requested else "all active"))


def _record_failure(store: Store, run: RunRecord, started: bool, error: BaseException) -> None:
    """Record the failed run; if the store itself is what failed, say so without hiding the original error."""
    try:
        if not started:
            store.start_run(run)
        store.finish_run(run.run_id, status="failed", error=str(error) or type(error).__name__)
    except Exception as bookkeeping:  # noqa: BLE001 - the original error is what the user must see
        get_run_logger().warning("Could not record the failed run in the store: %s", bookkeeping)


NIGHTLY_DEFAULTS = RunParameters(trigger="nightly", requested_by="schedule")


@flow(name="nightly", log_prints=True, validate_parameters=True)
def nightly(params: RunParameters = NIGHTLY_DEFAULTS) -> RunSummary:
    """Evaluate the active suppliers due for re-evaluation (or every active one, by the settings) as of today
    (or the given date), store the results, email the reports."""
    return _published(run_evaluation(params.model_copy(update={"trigger": "nightly", "suppliers": ()})))


@flow(name="adhoc", log_prints=True, validate_parameters=True)
def adhoc(params: RunParameters) -> RunSummary:
    """Evaluate chosen suppliers (or everyone active) for a chosen date and window; report to whoever asked."""
    return _published(run_evaluation(params.model_copy(update={"trigger": "adhoc"})))


def _published(summary: RunSummary) -> RunSummary:
    """A run of a served deployment leaves its summary in Prefect, for the UI and `supplier-eval trigger`."""
    from prefect.context import FlowRunContext

    # Read from the run's own record: prefect.runtime.deployment.id asks the API again in every run that has no
    # deployment (an evaluate, a cron nightly), about 80 ms a run for nothing.
    context = FlowRunContext.get()
    if context is not None and context.flow_run is not None and context.flow_run.deployment_id:
        from flows.serve import publish_summary

        publish_summary(summary)
    return summary
