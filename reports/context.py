"""Build the template contexts (plain dicts) for the supplier report and the officer digest from frames."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

import polars as pl

from suppliers.validate import reason_family

BAND_ORDER = ("A", "B", "C", "D")


def _text(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def supplier_context(
    *,
    run: Mapping[str, Any],
    rule_set: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    window_start: date,
    as_of: date,
    late_lines: pl.DataFrame,
) -> dict[str, Any]:
    """Context for one supplier's report; ``evaluation`` is one row of the assembled evaluations."""
    return {
        "run": dict(run),
        "rule_set": dict(rule_set),
        "supplier": {k: evaluation[k] for k in ("supplier_id", "name", "category", "criticality", "owner_email")},
        "evaluation": {
            "as_of": as_of.isoformat(),
            "window_start": window_start.isoformat(),
            "window_end": as_of.isoformat(),
            "score": evaluation["score"],
            "band": evaluation["band"],
            "status": evaluation["status"],
            "previous_status": evaluation["current_status"],
            "previous_score": evaluation["previous_score"],
            "score_change": evaluation["score_change"],
            "insufficient_data": evaluation["insufficient_data"],
            "insufficient_reason": evaluation["insufficient_reason"],
            "gates_hit": list(evaluation["gates_hit"]),
            "action": evaluation["action"],
        },
        "criteria": [dict(item) for item in evaluation["criteria"]],
        "late_lines": [
            {
                "po_id": row["po_id"],
                "line_no": row["line_no"],
                "promised_date": _text(row["promised_date"]),
                "completed_date": _text(row["completed_date"]),
                "days_late": row["days_late"],
            }
            for row in late_lines.iter_rows(named=True)
        ],
    }


def digest_context(
    *,
    run: Mapping[str, Any],
    rule_set: Mapping[str, Any],
    evaluated: pl.DataFrame,
    changes: pl.DataFrame,
    quarantine_summary: pl.DataFrame,
    window_start: date,
    as_of: date,
) -> dict[str, Any]:
    """Context for the officer digest: everyone by band, status changes, insufficient data, data quality."""
    names = evaluated.select("supplier_id", "name")
    bands = []
    for band in BAND_ORDER:
        members = evaluated.filter(pl.col("band") == band).sort("score", "supplier_id", descending=[True, False])
        status = members["status"].first() if members.height else None
        bands.append({
            "band": band,
            "status": status,
            "suppliers": members.select("supplier_id", "name", "score", "status", "score_change").to_dicts(),
        })
    insufficient = (
        evaluated.filter(pl.col("insufficient_data"))
        .sort("supplier_id")
        .select("supplier_id", "name", reason=pl.col("insufficient_reason"))
        .to_dicts()
    )
    status_rows = changes.join(names, on="supplier_id", how="left").select(
        "supplier_id", "name", "from_status", "to_status", "reason"
    ).to_dicts()
    quarantine_rows = quarantine_summary.to_dicts()
    return {
        "run": dict(run),
        "rule_set": dict(rule_set),
        "as_of": as_of.isoformat(),
        "window_start": window_start.isoformat(),
        "window_end": as_of.isoformat(),
        "totals": {
            "suppliers_evaluated": evaluated.height,
            "insufficient_data": len(insufficient),
            "status_changes": len(status_rows),
            "quarantined_rows": int(sum(row["rows_quarantined"] for row in quarantine_rows)),
        },
        "bands": bands,
        "insufficient": insufficient,
        "status_changes": status_rows,
        "quarantine": quarantine_rows,
    }


def band_counts(evaluated: pl.DataFrame) -> dict[str, int]:
    """Suppliers per band, plus 'insufficient data'."""
    counts = {band: 0 for band in BAND_ORDER}
    for band, count in evaluated.group_by("band").len().iter_rows():
        counts[band if band is not None else "insufficient data"] = count
    counts.setdefault("insufficient data", 0)
    return counts


def quarantine_summary_with_reasons(summary: pl.DataFrame, quarantine: pl.DataFrame, top: int = 3) -> pl.DataFrame:
    """The validation summary plus each source's most frequent quarantine reasons."""
    reasons = (
        quarantine.with_columns(reason=reason_family())
        .group_by("kind", "reason").len()
        .sort("len", "reason", descending=[True, False])
        .group_by("kind", maintain_order=True)
        .agg(top_reasons=pl.format("{} ({} rows)", pl.col("reason"), pl.col("len")).head(top))
    )
    return summary.join(reasons, on="kind", how="left").with_columns(
        pl.col("top_reasons").fill_null(pl.lit([], dtype=pl.List(pl.String)))
    )

