"""The audit evidence pack for ISO 9001:2015 clause 8.4: what the store holds about a date range, as one
printable, self-contained HTML document and an Excel workbook of the same tables.

``collect_evidence`` reads the store once and shapes its records into ordered tables (the same store and range
give the same tables); ``render_evidence_html`` and ``write_evidence_workbook`` write them. The HTML is
autoescaped and needs nothing from outside the file; every text cell of the workbook is spreadsheet-safe.
A store with more evaluations than ``HTML_ROWS`` gets a per-supplier summary in the HTML (the workbook has
every row), so the document stays usable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path

import jinja2
import polars as pl

from rules.asl import action_ids
from rules.loader import default_rules_path
from suppliers.errors import ConfigError
from suppliers.files import spreadsheet_safe, write_atomically
from suppliers.store import Store

__all__ = ["Evidence", "TABLES", "HTML_ROWS", "collect_evidence", "render_evidence_html", "write_evidence_workbook",
           "evidence_file_names", "known_rule_texts",
           "describe_counts"]

TEMPLATE_DIR = Path(__file__).parent / "templates"
HTML_ROWS = 2000  # above this many rows a table is summarised (evaluations) or cut (others) in the HTML only
DASH = "—"

# name, title, what it holds: the order of the document, its contents and the workbook's sheets
TABLES: tuple[tuple[str, str, str], ...] = (
    ("rule_sets", "Rule sets used", "Each rule set a run in the range used, with its sha256 and full text; "
                                    "in force = used by official runs (a what-if run's rules are not in force)."),
    ("asl", "Approved supplier list", "Each supplier's status at the end of the range, since when and why, who "
                                      "approved it, and its latest official evaluation up to then."),
    ("status_history", "ASL status changes", "Every status change that took effect in the range, with its reason "
                                             "and approver."),
    ("proposals", "Proposed changes", "Changes that needed a person's approval, proposed or decided in the range."),
    ("manual_decisions", "Manual decisions", "Statuses set by a person, dated or recorded in the range."),
    ("evaluations", "Evaluations", "Every evaluation as of a date in the range: score, band, status, the points "
                                   "of each criterion (points × weight), gates hit, rule set and run."),
    ("actions", "Actions", "Corrective action requests (SCAR) and block-orders recommendations raised or closed in "
                           "the range, with who closed them and whether they were effective."),
    ("runs", "Runs", "Every run as of a date in the range: who asked, its parameters, rule set, input fingerprint "
                     "(sha256 of the records read), code version and outcome."),
    ("data_quality", "Data quality", "Per run and source: rows read, rows quarantined and the main reasons."),
)

LABELS = {
    "rule_set_hash": "rule set sha256", "in_force": "in force", "first_as_of": "first as of",
    "last_as_of": "last as of", "text_source": "text", "supplier_id": "supplier", "as_of": "as of",
    "approved_by": "approved by", "evaluated_as_of": "evaluated as of", "from_status": "from", "to_status": "to",
    "changed_at": "recorded at", "proposal_id": "proposal", "decided_by": "decided by",
    "decision_reason": "decision reason", "decided_at": "decided at", "decision_id": "decision",
    "recorded_at": "recorded at", "window_start": "window from", "previous_status": "status before",
    "insufficient_reason": "insufficient data", "gates_hit": "gates hit", "run_id": "run", "raised_on": "raised",
    "closed_on": "closed", "closed_by": "closed by", "raised_by": "raised by", "requested_by": "requested by",
    "window_days": "window (days)", "rule_set_name": "rule set", "rule_set_version": "version",
    "input_fingerprint": "input fingerprint (sha256)", "code_version": "supplier-eval",
    "evaluations_added": "evaluations added", "started_at": "started", "finished_at": "finished",
    "rows_read": "rows read", "rows_quarantined": "quarantined", "top_reasons": "main reasons",
    "min_score": "lowest score", "max_score": "highest score", "last_score": "last score", "last_band": "last band",
    "last_status": "last status",
}
MONO = {"rule_set_hash", "run_id", "input_fingerprint"}  # identifiers, in a fixed-width font
LONG = {"reason", "criteria", "description", "note", "top_reasons", "decision_reason", "insufficient_reason",
        "text_source", "error", "selection"}  # sentences: kept readable on a narrow screen


@dataclass(frozen=True)
class Evidence:
    """The evidence pack's tables (``TABLES``, in order) and its cover facts."""

    start: date
    end: date
    generated_at: datetime
    code_version: str
    organisation: str | None
    scope: str | None
    store: str
    rule_sets: pl.DataFrame
    asl: pl.DataFrame
    status_history: pl.DataFrame
    proposals: pl.DataFrame
    manual_decisions: pl.DataFrame
    evaluations: pl.DataFrame
    actions: pl.DataFrame
    runs: pl.DataFrame
    data_quality: pl.DataFrame

    def table(self, name: str) -> pl.DataFrame:
        return getattr(self, name)

    def counts(self) -> dict[str, int]:
        return {name: self.table(name).height for name, _, _ in TABLES}

    def is_empty(self) -> bool:
        return not any(self.counts().values())


def collect_evidence(store: Store, start: date, end: date, *, organisation: str | None = None,
                     scope: str | None = None, rule_texts: Mapping[str, tuple[str, str]] | None = None,
                     code_version: str = "unknown", generated_at: datetime | None = None,
                     store_name: str = "") -> Evidence:
    """Everything the store holds about ``start``..``end`` (both included), as ordered tables.

    ``rule_texts`` maps a rule set's sha256 to (text, where it was read): the text of a rule set used before the
    store kept rule texts, when a file with that very hash is at hand (the settings' rule file).
    """
    if start > end:
        raise ConfigError(f"the range ends ({end}) before it starts ({start})", where="--from/--to",
                          fix="Give --from on or before --to.")
    records = store.evidence_records(start, end)
    return Evidence(
        start=start, end=end, generated_at=generated_at or datetime.now(UTC), code_version=code_version,
        organisation=organisation, scope=scope, store=store_name,
        rule_sets=_rule_sets(records.runs, records.evaluations, records.rule_texts, rule_texts or {}),
        asl=_asl(records.asl),
        status_history=_status_history(records.status_changes),
        proposals=records.proposals.select(
            "proposal_id", "as_of", "supplier_id", "name", "from_status", "to_status", "reason", "state",
            "decided_by", "decision_reason", "decided_at", "run_id").sort("as_of", "proposal_id"),
        manual_decisions=records.manual_decisions.select(
            "decision_id", "as_of", "supplier_id", "name", "from_status", "status", "decided_by", "reason",
            "until", "recorded_at").sort("as_of", "decision_id"),
        evaluations=_evaluations(records.evaluations),
        actions=_actions(records.actions),
        runs=_runs(records.runs),
        data_quality=_data_quality(records.quality),
    )


def _rule_sets(runs: pl.DataFrame, evaluations: pl.DataFrame, recorded: pl.DataFrame,
               known: Mapping[str, tuple[str, str]]) -> pl.DataFrame:
    per_run = runs.group_by("rule_set_hash").agg(
        name=pl.col("rule_set_name").sort().first(), version=pl.col("rule_set_version").sort().first(),
        in_force=pl.col("changes_asl").any(), runs=pl.len().cast(pl.Int64),
        first_as_of=pl.col("as_of").min(), last_as_of=pl.col("as_of").max())
    per_evaluation = evaluations.group_by("rule_set_hash").agg(evaluations=pl.len().cast(pl.Int64))
    files = pl.DataFrame({"rule_set_hash": list(known), "file_text": [text for text, _ in known.values()],
                          "file": [where for _, where in known.values()]},
                         schema={"rule_set_hash": pl.String, "file_text": pl.String, "file": pl.String})
    return (
        per_run.join(per_evaluation, on="rule_set_hash", how="full", coalesce=True)
        .join(recorded.select(rule_set_hash="hash", recorded_text="text", recorded_at="first_seen_at"),
              on="rule_set_hash", how="left")
        .join(files, on="rule_set_hash", how="left")
        .with_columns(
            runs=pl.col("runs").fill_null(0), evaluations=pl.col("evaluations").fill_null(0),
            in_force=pl.col("in_force").fill_null(False),
            text=pl.coalesce("recorded_text", "file_text"),
            text_source=pl.when(pl.col("recorded_text").is_not_null())
            .then(pl.format("recorded by the run that first used it ({} UTC)",
                            pl.col("recorded_at").dt.strftime("%Y-%m-%d %H:%M")))
            .when(pl.col("file_text").is_not_null())
            .then(pl.format("read from {} (same sha256)", pl.col("file")))
            .otherwise(pl.lit("not recorded: used before supplier-eval kept rule texts, and no file with this "
                              "sha256 is at hand")))
        .select("rule_set_hash", "name", "version", "in_force", "runs", "evaluations", "first_as_of", "last_as_of",
                "text_source", "text")
        .sort("first_as_of", "rule_set_hash", nulls_last=True)
    )


def _asl(asl: pl.DataFrame) -> pl.DataFrame:
    kept = pl.col("status").is_null()
    return asl.with_columns(
        reason=pl.when(kept & pl.col("score").is_null()).then(pl.lit("not scored yet: insufficient data"))
        .when(kept).then(pl.lit("no change recorded: the status its evaluations kept"))
        .otherwise(pl.col("reason")),
        since=pl.when(kept).then(pl.col("evaluated_as_of")).otherwise(pl.col("since")),
        status=pl.coalesce("status", "evaluated_status"),
    ).select("supplier_id", "name", "status", "since", "reason", "approved_by", "evaluated_as_of", "score", "band"
             ).sort("supplier_id")


def _status_history(changes: pl.DataFrame) -> pl.DataFrame:
    source = (pl.when(pl.col("run_id").str.starts_with("approval-")).then(pl.lit("approved proposal"))
              .when(pl.col("run_id").str.starts_with("manual-")).then(pl.lit("manual decision"))
              .otherwise(pl.lit("evaluation run")))
    return changes.with_columns(source=source).select(
        "as_of", "supplier_id", "name", "from_status", "to_status", "reason", "approved_by", "source", "run_id",
        "changed_at").sort("as_of", "supplier_id", "changed_at", "run_id")


CRITERION = pl.Struct({"name": pl.String, "measured": pl.Boolean, "points": pl.Float64,
                       "effective_weight": pl.Float64})


def _evaluations(evaluations: pl.DataFrame) -> pl.DataFrame:
    """One row per evaluation; ``criteria`` reads ``On-time delivery 91.9 × 30; OTIF not measured; ...``."""
    criterion = pl.element()
    summary = (
        pl.when(criterion.struct.field("points").is_not_null())
        .then(pl.format("{} {} × {}", criterion.struct.field("name"),
                        criterion.struct.field("points").round(1).cast(pl.String),
                        criterion.struct.field("effective_weight").round(1).cast(pl.String).str.replace(r"\.0$", "")))
        .otherwise(pl.format("{} not measured", criterion.struct.field("name")))
    )
    return evaluations.with_columns(
        criteria=pl.col("criteria").str.json_decode(pl.List(CRITERION)).list.eval(summary).list.join("; "),
        gates_hit=pl.col("gates_hit").str.json_decode(pl.List(pl.String)).list.join(", "),
        kind=pl.when(pl.col("official")).then(pl.lit("official")).otherwise(pl.lit("what-if")),
    ).select("as_of", "supplier_id", "name", "window_start", "score", "band", "status", "previous_status",
             "insufficient_reason", "gates_hit", "criteria", "kind", "rule_set_hash", "run_id"
             ).sort("as_of", "supplier_id", "run_id")


def _actions(actions: pl.DataFrame) -> pl.DataFrame:
    return actions.sort("number").with_columns(
        action=action_ids(pl.col("kind"), pl.col("number")),
        kind=pl.col("kind").replace_strict({"scar": "corrective action request", "block_orders": "block new orders"},
                                           default=pl.col("kind"), return_dtype=pl.String),
        effective=pl.when(pl.col("state") == "closed")
        .then(pl.when(pl.col("effective")).then(pl.lit("yes")).otherwise(pl.lit("no"))),
        raised_by=pl.when(pl.col("source_key").str.starts_with("approval-")).then(pl.lit("approved proposal"))
        .when(pl.col("source_key").str.starts_with("manual-")).then(pl.lit("manual decision"))
        .otherwise(pl.lit("evaluation run")),
    ).select("action", "kind", "supplier_id", "name", "raised_on", "due", "owner", "description", "state",
             "closed_on", "closed_by", "effective", "note", "raised_by")


def _runs(runs: pl.DataFrame) -> pl.DataFrame:
    return runs.with_columns(
        selection=pl.col("selection").str.json_decode(pl.List(pl.String)).list.join(", ")
        .str.replace_all(r"\*active\*", "every active supplier").str.replace_all(r"\*due\*", "the suppliers due"),
        kind=pl.when(pl.col("changes_asl")).then(pl.lit("official")).otherwise(pl.lit("what-if")),
    ).select("run_id", "as_of", "trigger", "requested_by", "kind", "window_days", "selection", "rule_set_name",
             "rule_set_version", "rule_set_hash", "input_fingerprint", "code_version", "status", "evaluations_added",
             "error", "started_at", "finished_at").sort("as_of", "started_at", "run_id")


def _data_quality(quality: pl.DataFrame) -> pl.DataFrame:
    return quality.with_columns(
        share=pl.when(pl.col("rows_read") > 0).then(pl.col("rows_quarantined") / pl.col("rows_read")),
        top_reasons=pl.col("top_reasons").str.json_decode(pl.List(pl.String)).list.join("; "),
    ).select("as_of", "run_id", "kind", "source", "rows_read", "rows_quarantined", "share", "top_reasons"
             ).sort("as_of", "run_id", "kind")


# ---- HTML -----------------------------------------------------------------------------------------------------


def evidence_file_names(start: date, end: date) -> tuple[str, str]:
    """``evidence_2026-01-01_2026-06-30.html`` and ``.xlsx``: made of dates only, so nothing from data."""
    stem = f"evidence_{start.isoformat()}_{end.isoformat()}"
    return f"{stem}.html", f"{stem}.xlsx"


def render_evidence_html(evidence: Evidence) -> str:
    """The evidence pack as one HTML document: no script, no external file, printable (see the template)."""
    sections = []
    for name, title, about in TABLES:
        frame, note = evidence.table(name), None
        if name == "evaluations" and frame.height > HTML_ROWS:
            frame, note = _evaluations_by_supplier(frame)
        elif frame.height > HTML_ROWS:
            note = (f"The first {HTML_ROWS:,} of {frame.height:,} rows, in order; the workbook has every row "
                    f"(sheet “{title}”).")
            frame = frame.head(HTML_ROWS)
        shown = frame.drop("text") if name == "rule_sets" else frame
        if name == "evaluations" and "run_id" in shown.columns:
            shown = shown.with_columns(_shortened("rule_set_hash", 12), _shortened("run_id", 8))
            about += " Rule set and run ids are shortened here; the Runs table and the workbook have them whole."
        sections.append({
            "id": name.replace("_", "-"), "title": title, "about": about, "count": evidence.table(name).height,
            "note": note, "columns": [{"label": LABELS.get(c, c.replace("_", " ")), "mono": c in MONO,
                                       "number": shown.schema[c].is_numeric(),
                                       "date": shown.schema[c].is_temporal(), "long": c in LONG}
                        for c in shown.columns],
            "rows": _cells(shown).rows(),
        })
    context = {
        "start": evidence.start.isoformat(), "end": evidence.end.isoformat(),
        "generated_at": evidence.generated_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "code_version": evidence.code_version, "organisation": evidence.organisation, "scope": evidence.scope,
        "store": evidence.store, "sections": sections, "empty": evidence.is_empty(),
        "rule_texts": evidence.rule_sets.select("rule_set_hash", "name", "version", "text").to_dicts(),
    }
    return _environment().get_template("evidence.html.j2").render(context)


COUNTED = {"rule_sets": ("rule set", "rule sets"), "asl": ("supplier on the ASL", "suppliers on the ASL"),
           "status_history": ("status change", "status changes"), "proposals": ("proposal", "proposals"),
           "manual_decisions": ("manual decision", "manual decisions"), "evaluations": ("evaluation", "evaluations"),
           "actions": ("action", "actions"), "runs": ("run", "runs"),
           "data_quality": ("data-quality summary", "data-quality summaries")}


def describe_counts(evidence: Evidence) -> str:
    """``1 rule set, 39 suppliers on the ASL, 37 status changes, ...``."""
    return ", ".join(f"{count} {COUNTED[name][count != 1]}" for name, count in evidence.counts().items())


def _shortened(name: str, length: int) -> pl.Expr:
    column = pl.col(name)
    return (pl.when(column.str.len_chars() > length).then(column.str.slice(0, length) + "…").otherwise(column)
            .alias(name))


def _evaluations_by_supplier(evaluations: pl.DataFrame) -> tuple[pl.DataFrame, str]:
    """Too many evaluations to print: one row per supplier (or per as-of date and band when even those are many)."""
    by_supplier = evaluations.group_by("supplier_id").agg(
        name=pl.col("name").last(), evaluations=pl.len().cast(pl.Int64), first_as_of=pl.col("as_of").min(),
        last_as_of=pl.col("as_of").max(), min_score=pl.col("score").min(), max_score=pl.col("score").max(),
        last_score=pl.col("score").last(), last_band=pl.col("band").last(), last_status=pl.col("status").last(),
    ).sort("supplier_id")
    if by_supplier.height <= HTML_ROWS:
        return by_supplier, (f"{evaluations.height:,} evaluations are too many to print: one row per supplier "
                             "here (last = its latest evaluation in the range); the workbook has every evaluation "
                             "(sheet “Evaluations”).")
    by_date = evaluations.group_by("as_of", "kind", "band", "status").agg(
        evaluations=pl.len().cast(pl.Int64), suppliers=pl.col("supplier_id").n_unique().cast(pl.Int64),
        mean_score=pl.col("score").mean()).sort("as_of", "kind", "band", "status", nulls_last=True)
    return by_date, (f"{evaluations.height:,} evaluations of {by_supplier.height:,} suppliers are too many to print: "
                     "counts per as-of date, band and status here; the workbook has every evaluation "
                     "(sheet “Evaluations”).")


def _cells(frame: pl.DataFrame) -> pl.DataFrame:
    """Every cell as the text a reader sees: dates ISO, times UTC to the minute, scores to one decimal, shares as
    percentages, yes/no, a dash for nothing."""
    def text(name: str, dtype: pl.DataType) -> pl.Expr:
        column = pl.col(name)
        if name == "share":
            shown = pl.format("{} %", (column * 100).round(1).cast(pl.String))
        elif dtype == pl.Boolean:
            shown = pl.when(column).then(pl.lit("yes")).otherwise(pl.lit("no"))
        elif isinstance(dtype, pl.Datetime):
            shown = column.dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%d %H:%M")
        elif dtype.is_float():
            shown = column.round(1).cast(pl.String)
        else:
            shown = column.cast(pl.String)
        return pl.when(column.is_null() | (shown == "")).then(pl.lit(DASH)).otherwise(shown).alias(name)

    return frame.select(text(name, dtype) for name, dtype in frame.schema.items())


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


# ---- workbook -------------------------------------------------------------------------------------------------


def write_evidence_workbook(evidence: Evidence, path: Path) -> None:
    """The same tables as an Excel workbook, one sheet per table (whole or not at all), every text cell
    spreadsheet-safe; a cover sheet first, and the rule sets' full text one line per row (a cell holds at most
    32,767 characters)."""
    cover = pl.DataFrame({"item": [row[0] for row in _cover_rows(evidence)],
                          "value": [row[1] for row in _cover_rows(evidence)]})
    rule_text = evidence.rule_sets.select(
        "rule_set_hash", line=pl.col("text").fill_null(pl.col("text_source")).str.split("\n")
    ).explode("line").with_columns(line_no=pl.int_range(1, pl.len() + 1).over("rule_set_hash")).select(
        "rule_set_hash", "line_no", "line")
    sheets = [("Cover", cover)]
    for name, title, _ in TABLES:
        frame = evidence.table(name)
        sheets.append((title, frame.drop("text") if name == "rule_sets" else frame))
        if name == "rule_sets":
            sheets.append(("Rule set text", rule_text))

    def write(target: Path) -> None:
        import xlsxwriter

        with xlsxwriter.Workbook(target) as workbook:
            for title, frame in sheets:
                spreadsheet_safe(_naive_times(frame)).write_excel(
                    workbook, worksheet=title[:31], autofit=frame.height <= HTML_ROWS, freeze_panes=(1, 0),
                    table_style="Table Style Light 9", dtype_formats={pl.Date: "yyyy-mm-dd",
                                                                      pl.Datetime: "yyyy-mm-dd hh:mm"})

    write_atomically(path, write)


def _naive_times(frame: pl.DataFrame) -> pl.DataFrame:
    """Excel has no time zones: times are written as UTC wall-clock times (the cover sheet says so)."""
    zoned = [name for name, dtype in frame.schema.items() if isinstance(dtype, pl.Datetime) and dtype.time_zone]
    return frame.with_columns(pl.col(zoned).dt.convert_time_zone("UTC").dt.replace_time_zone(None)) if zoned else frame


def _cover_rows(evidence: Evidence) -> list[tuple[str, str]]:
    rows = [("document", "Supplier evaluation audit evidence (ISO 9001:2015 clause 8.4)"),
            ("organisation", evidence.organisation or DASH), ("scope", evidence.scope or DASH),
            ("from", evidence.start.isoformat()), ("to", evidence.end.isoformat()),
            ("generated", evidence.generated_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")),
            ("supplier-eval version", evidence.code_version), ("store", evidence.store or DASH),
            ("times", "all times are UTC")]
    rows += [(title, f"{evidence.table(name).height} rows") for name, title, _ in TABLES]
    return rows



def known_rule_texts(*paths: Path | None) -> dict[str, tuple[str, str]]:
    """sha256 → (text, file) of the rule files at hand (None: the shipped rules): the text of a rule set used
    before the store kept rule texts, when one of them has its very hash."""
    texts: dict[str, tuple[str, str]] = {}
    for path in paths:
        file = path if path is not None else default_rules_path()
        try:
            raw = file.read_bytes()
        except OSError:
            continue
        texts[hashlib.sha256(raw).hexdigest()] = (raw.decode("utf-8", errors="replace"), str(file))
    return texts
