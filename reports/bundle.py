"""A run's reports on disk: the officer digest, one report per supplier, the evaluations and the quarantine.

Everything is rendered once; mail is composed from these renderings later, and only for messages that are really
going out. A run's folder holds what a person opens: ``digest.html`` and ``digest.txt``, ``suppliers/<id>.html``
(one report per supplier), ``evaluations.csv`` (every evaluation, the digest's full table), ``records.csv``
(every supplier's records behind its metrics), ``quarantine.csv`` and the data-quality report. The plain-text
part of each supplier report, its records attachment and the buyers' messages are not written: they exist only
in the mail (and its ledger), cut from the renderings and frames when a message is composed.

Supplier reports are rendered in worker processes (fork) when there are enough of them to pay for it: the
contexts are prepared in this process (Polars) and the workers only run Jinja and write files.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import re
import signal
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
from markupsafe import Markup

from reports.context import (
    asl_follow_up_context,
    build_supplier_context,
    buyer_context,
    digest_context,
    supplier_pieces,
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
from reports.render import (
    LazyRendered,
    Rendered,
    buyer_subject,
    digest_subject,
    render_buyer_message,
    render_digest,
    render_supplier_html,
    render_supplier_text,
    supplier_report_subject,
    supplier_sections_html,
)
from reports.routing import PER_BUYER, Routing
from rules.metrics import RECORD_SCHEMA
from rules.model import RuleSet
from suppliers.errors import ConfigError
from suppliers.files import csv_bytes, write_csv_safely
from suppliers.runs import CURRENT_STATUS, RunRecord

__all__ = ["Attachment", "Report", "RunReports", "DataQuality", "AslFollowUp", "run_folder", "failed_run_folder",
           "write_run_reports", "write_quality_report",
           "evaluations_table", "records_file_name", "safe_file_name", "RECORDS_FILE_NAME"]

Attachment = tuple[str, bytes, str]  # file name, content, MIME type
RECORDS_FILE_NAME = "records.csv"
PARALLEL_FROM = 400  # suppliers: below this, starting worker processes costs more than it saves
CHUNKS_PER_WORKER = 4
MAX_BUYER_SECTION_BYTES = 50_000  # supplier sections in a buyer's message: with its summary, under mail clipping
# A buyer message's zipped reports and records, before base64 adds a third: the message stays under the 10 MB that
# many mail servers accept. A buyer of thousands of suppliers got one 140 MB message (and the run 8 GB to make it).
MAX_BUYER_ATTACHMENT_BYTES = 5_500_000
BUYER_SUMMARY_COLUMNS = {"supplier_id": pl.String, "name": pl.String, "score": pl.Float64, "band": pl.String,
                         "status": pl.String, "previous_status": pl.String, "score_change": pl.Float64,
                         "next_due": pl.String, "attention": pl.String}


@dataclass(frozen=True)
class Report:
    """One rendered report and what goes with it when it is mailed.

    ``attached`` is the attachments, or a function that makes them: a supplier's records are cut into CSV only
    when its report is really mailed on its own. ``supplier_ids`` are the suppliers a buyer's message covers.
    """

    kind: str  # "digest" | "supplier" | "buyer" | "data-quality"
    supplier_id: str | None
    owner_email: str | None  # the supplier's buyer (a buyer message's buyer); None for the digest
    subject: str
    rendered: Rendered
    attached: tuple[Attachment, ...] | Callable[[], tuple[Attachment, ...]] = ()
    contact_email: str | None = None  # the supplier's own contact (routing.supplier_contact)
    supplier_ids: tuple[str, ...] = ()

    @property
    def attachments(self) -> tuple[Attachment, ...]:
        return self.attached() if callable(self.attached) else self.attached


@dataclass(frozen=True)
class RunReports:
    out_dir: Path
    digest: Report
    suppliers: tuple[Report, ...]
    buyers: tuple[Report, ...] = ()  # one message per buyer with all their suppliers (routing per_buyer)
    routing: Routing = Routing()  # what the reports were rendered for; reports.routing.plan_messages follows it
    failures_shown: tuple[str, ...] = ()  # message keys of the ledger's permanent failures the digest lists


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
                      follow_up: AslFollowUp | None = None, records: pl.DataFrame | None = None,
                      history: pl.DataFrame | None = None, contacts: pl.DataFrame | None = None,
                      delivery_failures: pl.DataFrame | None = None, routing: Routing | None = None,
                      processes: int | None = None) -> RunReports:
    """Render the digest (the data-quality report attached) and every supplier's report into ``out_dir``.

    ``late_lines`` are the lines not on time and ``records`` the records behind the metrics
    (``rules.metrics.SupplierPerformance``), of every supplier evaluated; a supplier with records gets them
    attached to its own mail as ``records-<supplier>.csv`` (:func:`records_file_name`), and the run's folder
    holds them all in ``records.csv``. ``history`` are earlier scored official evaluations (supplier_id, as_of,
    score, band) for each report's score chart; ``contacts`` (supplier_id, contact_email) the suppliers' own
    addresses; ``delivery_failures`` the messages the ledger gave up on, for the digest (empty by default).
    ``routing`` (default :class:`~reports.routing.Routing`: per buyer) says whether one message per buyer
    (owner_email) with all their suppliers is made. ``processes`` bounds the worker processes (default: the CPUs
    this process may use).
    """
    try:
        return _write(out_dir, run, rule_set, evaluated, changes, late_lines, quality, quarantine_summary,
                      window_start, follow_up, records, history=history, contacts=contacts,
                      delivery_failures=delivery_failures, routing=routing or Routing(), processes=processes)
    except OSError as exc:
        raise ConfigError(f"cannot write the reports ({exc.strerror or exc})", where=str(out_dir),
                          fix="Check output.dir in the settings: it must be a folder you can write to.") from None


def _write(out_dir: Path, run: RunRecord, rule_set: RuleSet, evaluated: pl.DataFrame, changes: pl.DataFrame,
           late_lines: pl.DataFrame, quality: DataQuality, quarantine_summary: pl.DataFrame,
           window_start: date, follow_up: AslFollowUp | None, records: pl.DataFrame | None, *,
           history: pl.DataFrame | None, contacts: pl.DataFrame | None, delivery_failures: pl.DataFrame | None,
           routing: Routing, processes: int | None) -> RunReports:
    (out_dir / "suppliers").mkdir(parents=True, exist_ok=True)
    run_info = {"run_id": run.run_id, "trigger": run.trigger, "requested_by": run.requested_by,
                "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "code_version": run.code_version,
                "what_if": not run.changes_asl}
    rules_info = {"name": rule_set.name, "version": rule_set.version, "content_hash": rule_set.content_hash}
    bands: list[dict[str, Any]] = [{"band": b.band, "status": b.status, "action": rule_set.action_for(b.status),
                                    "lower": b.lower, "upper": b.upper} for b in rule_set.bands]
    follow = (asl_follow_up_context(follow_up, as_of=run.as_of, evaluated=evaluated) if follow_up is not None
              else None)

    evaluations_csv = csv_bytes(evaluations_table(evaluated))
    (out_dir / "evaluations.csv").write_bytes(evaluations_csv)
    write_csv_safely(quality.quarantine, out_dir / "quarantine.csv")
    quality_report = write_quality_report(out_dir, run, quality)
    if records is None:
        records = pl.DataFrame(schema=RECORD_SCHEMA)
    write_csv_safely(records, out_dir / RECORDS_FILE_NAME)

    context = with_quality_report(digest_context(
        run=run_info, rule_set=rules_info, bands=bands, evaluated=evaluated, changes=changes,
        quarantine_summary=quarantine_summary, window_start=window_start, as_of=run.as_of,
        delivery_failures=delivery_failures))
    if follow is not None:
        context["asl"] = follow
    rendered = render_digest(context)
    (out_dir / "digest.html").write_text(rendered.html, encoding="utf-8")
    (out_dir / "digest.txt").write_text(rendered.text, encoding="utf-8")
    digest = Report("digest", None, None, digest_subject(context), rendered,
                    (("evaluations.csv", evaluations_csv, "text/csv"), *quality_report.attachments))

    pieces = supplier_pieces(evaluated["supplier_id"], late_lines=late_lines, records=records,
                             proposals=follow_up.proposals if follow_up is not None else None,
                             actions=follow_up.actions if follow_up is not None else None,
                             history=history, as_of=run.as_of)
    contact_of = dict(contacts.select("supplier_id", "contact_email").iter_rows()) if contacts is not None else {}
    jobs: list[tuple[str, dict[str, Any]]] = []
    for row in evaluated.iter_rows(named=True):
        piece = pieces[row["supplier_id"]]
        stem = safe_file_name(row["supplier_id"])
        counts = [{"metric": c["metric"], "rows": c["rows"]} for c in piece["record_counts"]]
        supplier = build_supplier_context(
            run=run_info, rule_set=rules_info, evaluation=row, window_start=window_start, as_of=run.as_of,
            late=piece["late"], late_total=piece["late_total"], late_kinds=piece["late_kinds"], bands=bands,
            records={"file": records_file_name(stem) if counts else None, "counts": counts}, trend=piece["trend"])
        if follow_up is not None:
            supplier["asl"] = {
                "profile": row.get("profile"), "reevaluate_every_days": row.get("reevaluate_every_days"),
                "next_due": row["next_due"].isoformat() if row.get("next_due") is not None else None,
                "outcome": row.get("outcome"), "proposed_status": row.get("proposed_status"),
                "note": row.get("status_note"), "proposal": piece["proposal"], "actions": piece["actions"]}
        jobs.append((stem, supplier))
    _render_suppliers(jobs, out_dir / "suppliers", processes=processes)

    records_of = _records_by_supplier(records)
    reports = []
    for stem, supplier in jobs:
        supplier_id = supplier["supplier"]["supplier_id"]
        reports.append(Report(
            "supplier", supplier_id, supplier["supplier"]["owner_email"], supplier_report_subject(supplier),
            _supplier_rendering(out_dir / "suppliers" / f"{stem}.html", supplier),
            _records_attachment(records_of, (supplier_id,), records_file_name(stem), drop_supplier=True)
            if supplier["records"]["file"] else (),
            contact_email=contact_of.get(supplier_id)))
    buyers = (_buyer_reports(jobs, out_dir / "suppliers", records_of, run_info=run_info, rules_info=rules_info,
                             bands=bands, as_of=run.as_of) if routing.supplier_reports == PER_BUYER else ())
    shown = tuple(delivery_failures["message_key"].to_list()) if delivery_failures is not None else ()
    return RunReports(out_dir=out_dir, digest=digest, suppliers=tuple(reports), buyers=buyers, routing=routing,
                      failures_shown=shown)


def _supplier_rendering(path: Path, context: dict[str, Any]) -> Rendered:
    """A supplier report as mailed: its HTML is the file written, its text part is rendered when it is mailed."""
    return LazyRendered(lambda: Rendered(html=path.read_text(encoding="utf-8"), text=render_supplier_text(context)))


def _records_by_supplier(records: pl.DataFrame) -> Callable[[Sequence[str]], pl.DataFrame]:
    """The records of some suppliers, in the order of ``supplier_ids`` (each supplier's in their own order).

    The metrics list the records by supplier id: one supplier's are a slice found by two binary searches, no copy,
    so mailing each supplier its own costs next to nothing. Several suppliers' are filtered out in one pass: cut
    into a frame per supplier first, 50,000 suppliers' records took gigabytes and a buyer's thousands of them
    seconds to put together again.
    """
    ids = records.get_column("supplier_id")
    by_supplier = ids.is_sorted()

    def of(supplier_ids: Sequence[str]) -> pl.DataFrame:
        if len(supplier_ids) == 1 and by_supplier:
            first, after = (ids.search_sorted(supplier_ids[0], side=side) for side in ("left", "right"))
            return records.slice(first, after - first)
        wanted = pl.Series("supplier_id", supplier_ids, dtype=pl.String)
        mine = records.filter(pl.col("supplier_id").is_in(wanted.implode()))
        if list(supplier_ids) == sorted(supplier_ids) and by_supplier:
            return mine
        order = pl.DataFrame({"supplier_id": wanted}).with_row_index("_place")
        return mine.join(order, on="supplier_id", how="left").sort("_place", maintain_order=True).drop("_place")

    return of


def _records_attachment(records_of: Callable[[Sequence[str]], pl.DataFrame], supplier_ids: Sequence[str],
                        name: str, *, drop_supplier: bool) -> Callable[[], tuple[Attachment, ...]]:
    def attachment() -> tuple[Attachment, ...]:
        frame = records_of(supplier_ids)
        if not frame.height:
            return ()
        return ((name, csv_bytes(frame.drop("supplier_id") if drop_supplier else frame), "text/csv"),)

    return attachment


# ---- rendering the supplier reports, in worker processes when it pays -----------------------------------------

_JOBS: Sequence[tuple[str, dict[str, Any]]] = ()
_FOLDER: Path = Path()


def _render_range(bounds: tuple[int, int]) -> int:
    start, end = bounds
    for stem, context in _JOBS[start:end]:
        (_FOLDER / f"{stem}.html").write_text(render_supplier_html(context), encoding="utf-8")
    return end - start


def _quiet_worker() -> None:
    """A worker ends when its pool stops it (SIGTERM) and leaves Ctrl-C to the run: a worker forked from a
    Prefect run would otherwise inherit its SIGTERM handler, which raises, and print that in the run's log."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _render_suppliers(jobs: Sequence[tuple[str, dict[str, Any]]], folder: Path, *, processes: int | None) -> None:
    """Render and write every supplier's report file.

    Workers are forked, so the prepared contexts reach them without being copied, and they send nothing back:
    what is mailed is read from the files. They use no Polars (whose thread pool does not survive a fork) and
    no store, only Jinja and the file system.
    """
    global _JOBS, _FOLDER
    workers = min(processes or len(os.sched_getaffinity(0)), max(1, len(jobs) // (PARALLEL_FROM // 2)))
    _JOBS, _FOLDER = jobs, folder
    try:
        if workers <= 1 or len(jobs) < PARALLEL_FROM or "fork" not in multiprocessing.get_all_start_methods():
            _render_range((0, len(jobs)))
            return
        step = -(-len(jobs) // (workers * CHUNKS_PER_WORKER))
        with multiprocessing.get_context("fork").Pool(workers, initializer=_quiet_worker) as pool:
            rendered = pool.map_async(_render_range, [(start, start + step) for start in range(0, len(jobs), step)])
            while not rendered.ready():  # waited for in short steps: Ctrl-C stops the run at once, even in a task
                rendered.wait(0.2)
            rendered.get()  # a worker's error, raised here
    finally:
        _JOBS, _FOLDER = (), Path()


def _buyer_reports(jobs: Sequence[tuple[str, dict[str, Any]]], folder: Path,
                   records_of: Callable[[Sequence[str]], pl.DataFrame], *, run_info: dict[str, Any],
                   rules_info: dict[str, Any], bands: list[dict[str, Any]], as_of: date) -> tuple[Report, ...]:
    """One message per buyer (owner_email) with all their suppliers; suppliers without a buyer get none. Each is
    rendered only when it is mailed, from the supplier report files already written."""
    by_buyer: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for stem, supplier in jobs:
        buyer = supplier["supplier"]["owner_email"]
        if buyer:
            by_buyer.setdefault(buyer, []).append((stem, supplier))
    reports = []
    for buyer in sorted(by_buyer):
        entries = by_buyer[buyer]
        context = buyer_context(buyer, [supplier for _, supplier in entries], run=run_info, rule_set=rules_info,
                                bands=bands, as_of=as_of)
        stems = {supplier["supplier"]["supplier_id"]: stem for stem, supplier in entries}
        contexts = {supplier["supplier"]["supplier_id"]: supplier for _, supplier in entries}
        ids = tuple(sorted(stems))
        records = _records_attachment(records_of, ids, context["summary_file"].replace("suppliers-", "records-", 1),
                                      drop_supplier=False)
        make = _BuyerMessage(context, folder, stems, contexts, records)
        reports.append(Report("buyer", None, buyer, buyer_subject(context), LazyRendered(make.rendered),
                              make.attachments, supplier_ids=ids))
    return tuple(reports)


class _BuyerMessage:
    """A buyer's message and its attachments, made from the written report files when it is first mailed."""

    def __init__(self, context: dict[str, Any], folder: Path, stems: dict[str, str], contexts: dict[str, Any],
                 records: Callable[[], tuple[Attachment, ...]]) -> None:
        self.context, self.folder, self.stems, self.contexts, self.records = context, folder, stems, contexts, records
        self._shown: list[dict[str, Any]] | None = None
        self._packed: tuple[bytes | None, int, tuple[Attachment, ...], bool] | None = None

    def _html(self, supplier_id: str) -> Markup:
        path = self.folder / f"{self.stems[supplier_id]}.html"
        return Markup(supplier_sections_html(path.read_text(encoding="utf-8")))

    def _split(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The suppliers shown in full (the first always, the next while the message stays small) and the rest."""
        if self._shown is None:
            shown, size = [], 0
            for row in self.context["sections"]:
                html = self._html(row["supplier_id"])
                size += len(html)
                if shown and size > MAX_BUYER_SECTION_BYTES:
                    break
                shown.append({**row, "html": html,
                              "text": render_supplier_text(self.contexts[row["supplier_id"]], sections_only=True)})
            self._shown = shown
        return self._shown, [*self.context["sections"][len(self._shown):], *self.context["more"]]

    def _pack(self) -> tuple[bytes | None, int, tuple[Attachment, ...], bool]:
        """The zip of the other reports (None: no other), how many of them it holds, the records attachment, and
        whether the records were left out: reports in the message's order while the zip stays within
        :data:`MAX_BUYER_ATTACHMENT_BYTES`, then the records if they fit in what is left. What does not fit stays
        in the run's report folder."""
        if self._packed is None:
            _, more = self._split()
            zipped, count = self._zip(more, MAX_BUYER_ATTACHMENT_BYTES) if more else (None, 0)
            records = self.records()
            fits = sum(len(content) for _, content, _ in records) + len(zipped or b"") <= MAX_BUYER_ATTACHMENT_BYTES
            self._packed = (zipped, count, records if fits else (), not fits)
        return self._packed

    def rendered(self) -> Rendered:
        shown, more = self._split()
        _, count, _, records_left_out = self._pack()
        return render_buyer_message({**self.context, "sections": shown, "more": more, "more_zipped": count,
                                     "left_out": len(more) - count, "records_left_out": records_left_out,
                                     "report_folder": str(self.folder.parent)})

    def attachments(self) -> tuple[Attachment, ...]:
        context = self.context
        summary = pl.DataFrame([{key: row[key] for key in BUYER_SUMMARY_COLUMNS} for row in context["summary_rows"]],
                               schema=BUYER_SUMMARY_COLUMNS)
        attached: tuple[Attachment, ...] = ((context["summary_file"], csv_bytes(summary), "text/csv"),)
        zipped, count, records, _ = self._pack()
        if count:
            attached += ((context["more_file"], zipped, "application/zip"),)
        return (*attached, *records)

    def _zip(self, rows: Sequence[dict[str, Any]], limit: int) -> tuple[bytes, int]:
        """The report files of the first of ``rows`` that keep the zip within ``limit`` bytes, and how many: their
        inline styles repeat, so about a seventh of the bytes to mail."""
        buffer = io.BytesIO()
        stamp = date.fromisoformat(self.context["as_of"]).timetuple()[:6]
        directory, count = _ZIP_END_BYTES, 0  # what the zip's end adds: a central-directory entry per file
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for row in rows:
                name = f"{self.stems[row['supplier_id']]}.html"
                data = (self.folder / name).read_bytes()
                so_far = buffer.tell() + directory
                if (so_far + _zip_entry_bytes(name, data, exact=False) > limit
                        and so_far + _zip_entry_bytes(name, data, exact=True) > limit):
                    break  # only near the limit is the file deflated twice, to know its exact size
                archive.writestr(zipfile.ZipInfo(name, date_time=stamp),  # the same bytes for the same reports
                                 data, compress_type=zipfile.ZIP_DEFLATED)
                directory += _ZIP_CENTRAL_BYTES + len(name.encode())
                count += 1
        return buffer.getvalue(), count


_ZIP_END_BYTES = 22  # a zip's end-of-central-directory record, without a comment
_ZIP_LOCAL_BYTES, _ZIP_CENTRAL_BYTES = 30, 46  # a file's local header and central-directory entry, without its name


def _zip_entry_bytes(name: str, data: bytes, *, exact: bool) -> int:
    """What one file adds to a zip written as ``_BuyerMessage._zip`` writes it: its local header and its
    central-directory entry, each with the name, and its data deflated at level 1 (``exact``) or at most that
    (deflate's worst case: a thousandth more than the data, and a few bytes)."""
    if exact:
        deflate = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
        deflated = len(deflate.compress(data) + deflate.flush())
    else:
        deflated = len(data) + len(data) // 1000 + 64
    return _ZIP_LOCAL_BYTES + _ZIP_CENTRAL_BYTES + 2 * len(name.encode()) + deflated


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
