"""A run's reports on disk: the officer digest, one report per supplier, the evaluations and the quarantine.

Everything is rendered once and written to the run's folder; mail is composed from these renderings later,
and only for messages that are really going out.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from reports.context import (
    asl_follow_up_context,
    digest_context,
    records_summary,
    supplier_asl_context,
    supplier_context,
)
from reports.quality import (
    QUALITY_FILE_NAME,
    quality_attachment,
    quality_context,
    quality_subject,
    render_quality_report,
    with_quality_report,
)
from reports.quality import write_quality_report as write_quality_files
from reports.render import Rendered, digest_subject, render_digest, render_supplier_report, supplier_report_subject
from rules.metrics import RECORD_SCHEMA
from rules.model import RuleSet
from suppliers.errors import ConfigError
from suppliers.files import csv_bytes, write_csv_safely
from suppliers.runs import CURRENT_STATUS, RunRecord

__all__ = ["Attachment", "Report", "RunReports", "DataQuality", "AslFollowUp", "run_folder", "failed_run_folder",
           "write_run_reports", "write_quality_report",
           "evaluations_table", "records_file_name", "safe_file_name"]

Attachment = tuple[str, bytes, str]  # file name, content, MIME type


@dataclass(frozen=True)
class Report:
    """One rendered report and what goes with it when it is mailed."""

    kind: str  # "digest" | "supplier"
    supplier_id: str | None
    owner_email: str | None  # the buyer responsible for the supplier; None for the digest
    subject: str
    rendered: Rendered
    attachments: tuple[Attachment, ...]


@dataclass(frozen=True)
class RunReports:
    out_dir: Path
    digest: Report
    suppliers: tuple[Report, ...]


def run_folder(output_dir: Path, run: RunRecord) -> Path:
    """Where a run's reports go: one folder per evaluation (as-of date and run key), shared by its re-runs."""
    return output_dir / f"{run.as_of.isoformat()}_{run.run_key[:12]}"


def failed_run_folder(output_dir: Path, run: RunRecord) -> Path:
    """Where a run stopped for bad data leaves its quarantine: one folder per attempt."""
    return output_dir / f"{run.as_of.isoformat()}_failed_{run.run_id[:8]}"


@dataclass(frozen=True)
class DataQuality:
    """What validation found, for the data-quality report: the per-source summary, every quarantined row, the
    previous run's summary (for the trend), the threshold, and where the records came from."""

    summary: pl.DataFrame
    quarantine: pl.DataFrame
    previous: pl.DataFrame | None
    max_share: float
    read_from: str


@dataclass(frozen=True)
class AslFollowUp:
    """What the reports tell beyond this run's evaluations: every change awaiting approval and every open action
    in the store (this run's included), the suppliers overdue for re-evaluation, and why the run changed no
    status its scores would have (what-if, back-dated)."""

    proposals: pl.DataFrame  # Store.open_proposals
    actions: pl.DataFrame  # Store.actions_frame(open_only=True)
    overdue: pl.DataFrame  # rules.asl.overdue_suppliers
    unchanged_reason: str | None = None


def write_quality_report(out_dir: Path, run: RunRecord, quality: DataQuality, *, stopped: bool = False) -> Report:
    """Render the data-quality report into ``out_dir`` (``data-quality.html`` and ``.txt``); return it as a report
    that can be mailed (to the data owner when the run stopped for bad data)."""
    context = quality_context(quality.summary, quality.quarantine, quality.previous,
                              run={**asdict(run), "read_from": quality.read_from}, stopped=stopped,
                              max_share=quality.max_share)
    rendered = render_quality_report(context)
    write_quality_files(out_dir / QUALITY_FILE_NAME, rendered)
    return Report("data-quality", None, None, quality_subject(context), rendered, (quality_attachment(rendered),))


def write_run_reports(out_dir: Path, *, run: RunRecord, rule_set: RuleSet, evaluated: pl.DataFrame,
                      changes: pl.DataFrame, late_lines: pl.DataFrame, quality: DataQuality,
                      quarantine_summary: pl.DataFrame, window_start: date,
                      follow_up: AslFollowUp | None = None, records: pl.DataFrame | None = None) -> RunReports:
    """Render the digest (the data-quality report attached) and every supplier's report into ``out_dir``.

    ``late_lines`` are the lines not on time and ``records`` the records behind the metrics
    (``rules.metrics.SupplierPerformance``), of every supplier evaluated. A supplier with records gets them as
    ``suppliers/records-<supplier>.csv`` next to its report and attached to its mail (:func:`records_file_name`).
    """
    try:
        return _write(out_dir, run, rule_set, evaluated, changes, late_lines, quality, quarantine_summary,
                      window_start, follow_up, records)
    except OSError as exc:
        raise ConfigError(f"cannot write the reports ({exc.strerror or exc})", where=str(out_dir),
                          fix="Check output.dir in the settings: it must be a folder you can write to.") from None


def _write(out_dir: Path, run: RunRecord, rule_set: RuleSet, evaluated: pl.DataFrame, changes: pl.DataFrame,
           late_lines: pl.DataFrame, quality: DataQuality, quarantine_summary: pl.DataFrame,
           window_start: date, follow_up: AslFollowUp | None, records: pl.DataFrame | None) -> RunReports:
    (out_dir / "suppliers").mkdir(parents=True, exist_ok=True)
    run_info = {"run_id": run.run_id, "trigger": run.trigger, "requested_by": run.requested_by,
                "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "code_version": run.code_version,
                "what_if": not run.changes_asl}
    rules_info = {"name": rule_set.name, "version": rule_set.version, "content_hash": rule_set.content_hash}
    bands: list[dict[str, Any]] = [{"band": b.band, "status": b.status, "action": rule_set.action_for(b.status)}
                                   for b in rule_set.bands]
    follow = (asl_follow_up_context(follow_up, as_of=run.as_of, evaluated=evaluated) if follow_up is not None
              else None)

    evaluations_csv = csv_bytes(evaluations_table(evaluated))
    (out_dir / "evaluations.csv").write_bytes(evaluations_csv)
    write_csv_safely(quality.quarantine, out_dir / "quarantine.csv")
    quality_report = write_quality_report(out_dir, run, quality)

    context = with_quality_report(digest_context(
        run=run_info, rule_set=rules_info, bands=bands, evaluated=evaluated, changes=changes,
        quarantine_summary=quarantine_summary, window_start=window_start, as_of=run.as_of))
    if follow is not None:
        context["asl"] = follow
    rendered = render_digest(context)
    (out_dir / "digest.html").write_text(rendered.html, encoding="utf-8")
    (out_dir / "digest.txt").write_text(rendered.text, encoding="utf-8")
    digest = Report("digest", None, None, digest_subject(context), rendered,
                    (("evaluations.csv", evaluations_csv, "text/csv"), *quality_report.attachments))

    late_by_supplier = late_lines.partition_by("supplier_id", as_dict=True)
    no_late_lines = late_lines.clear()
    if records is None:
        records = pl.DataFrame(schema=RECORD_SCHEMA)
    records_by_supplier = records.partition_by("supplier_id", as_dict=True)
    no_records = records.clear()
    if follow_up is not None:
        proposals_of = follow_up.proposals.partition_by("supplier_id", as_dict=True)
        actions_of = follow_up.actions.partition_by("supplier_id", as_dict=True)
    reports = []
    for row in evaluated.iter_rows(named=True):
        supplier_late = late_by_supplier.get((row["supplier_id"],), no_late_lines)
        stem = safe_file_name(row["supplier_id"])
        supplier_records = records_by_supplier.get((row["supplier_id"],), no_records)
        records_name = records_file_name(stem)
        context = supplier_context(run=run_info, rule_set=rules_info, evaluation=row, window_start=window_start,
                                   as_of=run.as_of, late_lines=supplier_late, bands=bands,
                                   records=records_summary(supplier_records, records_name))
        if follow_up is not None:
            key = (row["supplier_id"],)
            context["asl"] = supplier_asl_context(
                row, proposals=proposals_of.get(key, follow_up.proposals.clear()),
                actions=actions_of.get(key, follow_up.actions.clear()), as_of=run.as_of)
        rendered = render_supplier_report(context)
        (out_dir / "suppliers" / f"{stem}.html").write_text(rendered.html, encoding="utf-8")
        (out_dir / "suppliers" / f"{stem}.txt").write_text(rendered.text, encoding="utf-8")
        attachments: tuple[Attachment, ...] = ()
        if supplier_records.height:
            content = csv_bytes(supplier_records.drop("supplier_id"))
            (out_dir / "suppliers" / records_name).write_bytes(content)
            attachments = ((records_name, content, "text/csv"),)
        reports.append(Report("supplier", row["supplier_id"], row["owner_email"], supplier_report_subject(context),
                              rendered, attachments))
    return RunReports(out_dir=out_dir, digest=digest, suppliers=tuple(reports))


def records_file_name(stem: str) -> str:
    """The name of a supplier's records attachment (``stem`` is its :func:`safe_file_name`): the late, short and
    not-yet-delivered lines, and the rejected receipts, behind its metrics."""
    return f"records-{stem}.csv"


def evaluations_table(evaluated: pl.DataFrame) -> pl.DataFrame:
    """The flat CSV view of a run's evaluations."""
    asl = [c for c in ("profile", "next_due", "proposed_status", "outcome", "status_note") if c in evaluated.columns]
    return evaluated.select(
        "supplier_id", "name", "category", "criticality", "score", "band", "status",
        pl.col(CURRENT_STATUS).alias("previous_status"), "score_change", *asl,
        pl.col("gates_hit").list.join("; "), "insufficient_reason",
        pl.col("metrics").struct.field("order_lines", "on_time_rate", "in_full_rate", "otif_rate",
                                       "mean_days_late", "receipts", "acceptance_rate", "ppm_rejected"),
    ).sort("supplier_id")


_RESERVED_NAMES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}


def safe_file_name(value: str) -> str:
    """A file name for an id on any file system; a hash suffix keeps changed or reserved ids distinct."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", value).strip("._") or "supplier"
    if cleaned != value or cleaned.lower() in _RESERVED_NAMES:
        cleaned = f"{cleaned}-{hashlib.sha256(value.encode()).hexdigest()[:8]}"
    return cleaned
