"""The data-quality report: what was read, which rows were set aside and why, and the change since the last run.

Pure functions, frames in and text out, like the other reports: :func:`quality_context` builds the template
context from the validation's summary (``SUMMARY_SCHEMA``), its quarantine (``QUARANTINE_SCHEMA``) and the
previous run's summary (:meth:`suppliers.store.Store.previous_quarantine_summary`);
:func:`render_quality_report` renders it (HTML autoescaped with its CSS inlined, plus the plain text);
:func:`quality_subject` is its one-line mail subject; :func:`quality_attachment` turns the rendering into the
attachment the officer digest carries, and :func:`with_quality_report` makes the digest say it is attached.

Counting: a quarantined *row* may have several *problems* (one per failed cell or rule). A source's
``rows_quarantined`` counts rows; a reason counts the rows it was given to, so a source's reasons can add up
to more than its quarantined rows. Reasons are grouped by source, reason ``code`` and
:func:`~suppliers.validate.reason_family` (the reason with its values folded away); each keeps its first
:data:`MAX_EXAMPLES` rows by row number as examples, with the value exactly as written (at most
:data:`MAX_VALUE_CHARS` characters of it, the rest counted).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from reports.render import Rendered, _one_line, _pct, _render, _thousands
from suppliers.errors import ConfigError
from suppliers.runs import RunRecord, code_version
from suppliers.validate import QUARANTINE_CODES, SUMMARY_SCHEMA, reason_family

__all__ = [
    "QUALITY_FILE_NAME",
    "MAX_EXAMPLES",
    "quality_context",
    "render_quality_report",
    "quality_subject",
    "quality_attachment",
    "with_quality_report",
    "write_quality_report",
]

QUALITY_FILE_NAME = "data-quality.html"
MAX_EXAMPLES = 5
MAX_VALUE_CHARS = 200
CHECK_TRIGGER = "validate"  # a check of the records (supplier-eval validate): nothing is scored or recorded


def quality_context(
    summary: pl.DataFrame,
    quarantine: pl.DataFrame,
    previous: pl.DataFrame | None = None,
    *,
    run: RunRecord | Mapping[str, Any],
    stopped: bool = False,
    max_share: float,
    previous_unavailable: str | None = None,
) -> dict[str, Any]:
    """Context for the data-quality report.

    ``summary`` and ``quarantine`` are the validation's (``ValidatedInputs`` or the ``DataQualityError`` of a
    run that stopped); extra summary columns such as ``top_reasons`` are ignored. ``previous`` is the previous
    run's summary from :meth:`~suppliers.store.Store.previous_quarantine_summary`; None or empty means there
    is none (the first run), unless ``previous_unavailable`` says why it could not be read.

    ``run`` is the :class:`~suppliers.runs.RunRecord`, or a mapping with any of ``run_id``, ``trigger``
    (``"validate"`` for a check that scores nothing), ``requested_by``, ``as_of``, ``code_version``,
    ``input_fingerprint``, ``read_from`` (where the records came from, in words) and ``read_at`` (a datetime
    or text; default now). ``stopped`` says the run stopped because a source's quarantined share was over
    ``max_share`` (``validation.max_quarantine_share``).
    """
    info = _run_info(run)
    summary = summary.select(list(SUMMARY_SCHEMA)).cast(SUMMARY_SCHEMA)
    order = summary.select("kind").with_row_index("_order")
    problems = quarantine.with_columns(
        family=reason_family(),
        shown=pl.col("value").str.slice(0, MAX_VALUE_CHARS),
        more_chars=(pl.col("value").str.len_chars().cast(pl.Int64) - MAX_VALUE_CHARS).clip(lower_bound=0).fill_null(0),
    )

    per_source = problems.group_by("kind").agg(problems=pl.len().cast(pl.Int64))
    sources = (
        summary.join(per_source, on="kind", how="left")
        .with_columns(pl.col("problems").fill_null(0), over=pl.col("share") > max_share)
        .to_dicts()
    )
    reasons = (
        problems.group_by("kind", "code", "family")
        .agg(
            source=pl.col("source").first(),
            rows=pl.col("row").n_unique().cast(pl.Int64),
            problems=pl.len().cast(pl.Int64),
            examples=pl.struct(row="row", column="column", value="shown", more_chars="more_chars",
                               reason="reason").sort_by("row").head(MAX_EXAMPLES),
        )
        .join(order, on="kind", how="left")
        .sort(["_order", "rows", "family"], descending=[False, True, False], nulls_last=True)
        .select("kind", "source", "code", "family", "rows", "problems", "examples")
        .with_columns(more=pl.col("problems") - pl.col("examples").list.len())
        .to_dicts()
    )
    codes = (
        problems.group_by("code")
        .agg(rows=pl.struct("kind", "row").n_unique().cast(pl.Int64), problems=pl.len().cast(pl.Int64),
             sources=pl.col("source").unique(maintain_order=True))
        .with_columns(meaning=pl.col("code").replace_strict(QUARANTINE_CODES, default=None, return_dtype=pl.String))
        .sort(["rows", "code"], descending=[True, False], nulls_last=True)
        .select("code", "meaning", "rows", "problems", "sources")
        .to_dicts()
    )
    rows_read = int(summary["rows_read"].sum())
    rows_quarantined = int(summary["rows_quarantined"].sum())
    return {
        "run": info,
        "stopped": bool(stopped),
        "check_only": info["trigger"] == CHECK_TRIGGER,
        "max_share": float(max_share),
        "totals": {
            "sources": summary.height,  # one per record kind read
            "files": summary.get_column("source").n_unique(),  # one export may feed several record kinds
            "rows_read": rows_read,
            "rows_quarantined": rows_quarantined,
            "rows_kept": rows_read - rows_quarantined,
            "share": rows_quarantined / rows_read if rows_read else 0.0,
            "problems": quarantine.height,
            "reasons": len(reasons),
        },
        "sources": sources,
        "source_names": summary.get_column("source").unique(maintain_order=True).to_list(),
        "over": [source for source in sources if source["over"]],
        "codes": codes,
        "reasons": reasons,
        "max_examples": MAX_EXAMPLES,
        "trend": _trend(summary, previous, previous_unavailable),
    }


def _run_info(run: RunRecord | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(run, RunRecord):
        run = {"run_id": run.run_id, "trigger": run.trigger, "requested_by": run.requested_by, "as_of": run.as_of,
               "code_version": run.code_version, "input_fingerprint": run.input_fingerprint}
    as_of, read_at = run.get("as_of"), run.get("read_at") or datetime.now(UTC)
    return {
        "run_id": run.get("run_id") or None,
        "trigger": run.get("trigger") or None,
        "requested_by": run.get("requested_by") or None,
        "as_of": as_of.isoformat() if isinstance(as_of, date) else (as_of or None),
        "read_at": _when(read_at),
        "read_from": run.get("read_from") or None,
        "code_version": run.get("code_version") or code_version(),
        "input_fingerprint": run.get("input_fingerprint") or None,
    }


def _when(moment: Any) -> str | None:
    if isinstance(moment, datetime):
        moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
        return moment.strftime("%Y-%m-%d %H:%M UTC")
    return str(moment) if moment is not None else None


def _signed_count(change: int | None) -> str | None:
    if change is None:
        return None
    return "±0" if change == 0 else (f"+{change:,}" if change > 0 else f"\u2212{-change:,}")


def _trend(summary: pl.DataFrame, previous: pl.DataFrame | None, unavailable: str | None) -> dict[str, Any]:
    """Per record kind, rows quarantined now and in the previous run, and the change (more is worse)."""
    if previous is None or previous.is_empty():
        return {"available": False, "unavailable": unavailable, "run_id": None, "as_of": None, "recorded_at": None,
                "rows": [], "total": None}
    first = previous.row(0, named=True)
    before = previous.select(
        "kind",
        previous_source="source",
        previous_rows_read=pl.col("rows_read").cast(pl.Int64),
        previous_rows_quarantined=pl.col("rows_quarantined").cast(pl.Int64),
    ).with_columns(
        previous_share=pl.when(pl.col("previous_rows_read") > 0)
        .then(pl.col("previous_rows_quarantined") / pl.col("previous_rows_read")).otherwise(0.0)
    )
    rows = (
        summary.with_row_index("_order")
        .join(before, on="kind", how="full", coalesce=True)
        .sort("_order", nulls_last=True, maintain_order=True)
        .with_columns(change=pl.col("rows_quarantined") - pl.col("previous_rows_quarantined"))
        .drop("_order")
        .to_dicts()
    )
    for row in rows:  # one per record kind (five at most)
        row["change_text"] = _signed_count(row["change"])
        row["direction"] = _direction(row["change"])
    now_total = int(summary["rows_quarantined"].sum())
    before_total = int(before["previous_rows_quarantined"].sum())
    as_of = first["as_of"]
    return {
        "available": True,
        "unavailable": None,
        "run_id": first["run_id"],
        "as_of": as_of.isoformat() if isinstance(as_of, date) else as_of,
        "recorded_at": _when(first["started_at"]),
        "rows": rows,
        "total": {"now": now_total, "previous": before_total, "change_text": _signed_count(now_total - before_total),
                  "direction": _direction(now_total - before_total)},
    }


def _direction(change: int | None) -> str | None:
    """``worse`` (more rows quarantined), ``better`` (fewer), ``same``; None when either run lacks the source."""
    if change is None:
        return None
    return "same" if change == 0 else ("worse" if change > 0 else "better")


def render_quality_report(context: Mapping[str, Any]) -> Rendered:
    """Render the data-quality report: HTML (autoescaped, CSS inlined) and its plain-text part."""
    return _render("data_quality", context)


def quality_subject(context: Mapping[str, Any]) -> str:
    """The mail subject, one line, e.g. ``Data quality as of 2026-06-30: 7 of 5,505 rows quarantined (0.13 %)``.

    A run stopped for bad data says so first: ``Data quality as of 2026-06-30: run stopped for bad data,
    receipts.csv 31.00 % quarantined (limit 20.00 %)``.
    """
    run, totals = context["run"], context["totals"]
    when = f" as of {run['as_of']}" if run["as_of"] else (" check" if context["check_only"] else "")
    if context["stopped"] and context["over"]:
        worst = max(context["over"], key=lambda source: source["share"])
        others = len(context["over"]) - 1
        outcome = (f"{'too many bad rows' if context['check_only'] else 'run stopped for bad data'}, "
                   f"{worst['source']} {_pct(worst['share'], 2)} quarantined (limit {_pct(context['max_share'], 2)})"
                   + (f" and {others} more {'source' if others == 1 else 'sources'}" if others else ""))
    else:
        outcome = (f"{_thousands(totals['rows_quarantined'])} of {_thousands(totals['rows_read'])} rows quarantined "
                   f"({_pct(totals['share'], 2)})")
    return _one_line(f"Data quality{when}: {outcome}")


def quality_attachment(rendered: Rendered, file_name: str = QUALITY_FILE_NAME) -> tuple[str, bytes, str]:
    """The report as a mail attachment ``(file name, bytes, MIME type)``: the HTML file, UTF-8."""
    return (file_name, rendered.html.encode("utf-8"), "text/html")


def with_quality_report(digest: Mapping[str, Any], file_name: str = QUALITY_FILE_NAME) -> dict[str, Any]:
    """The digest context saying, in its data-quality section, that the full report is attached as ``file_name``."""
    return {**digest, "quality_report": file_name}


def write_quality_report(path: Path, rendered: Rendered) -> Path:
    """Write the HTML to ``path`` and the text part next to it with a ``.txt`` suffix; return the text file's path.

    The folder is created if needed; a file that cannot be written is a :class:`ConfigError` naming it.
    """
    text_path = path.with_suffix(".txt")
    if text_path == path:
        text_path = path.with_name(path.name + ".txt")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered.html, encoding="utf-8")
        text_path.write_text(rendered.text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the data-quality report ({exc.strerror or exc})", where=str(path),
                          fix="Give --report a file in a folder you can write to.") from None
    return text_path
