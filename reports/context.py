"""Build the template contexts (plain dicts) for the supplier report and the officer digest from frames.

Band names come from the rule set (``A``..``D``, ``Gold``/``Silver``, any number of them), never from a
hard-coded list. Callers pass the rule set's bands best first, each ``{"band", "status", "action"}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import polars as pl

from reports.render import MAX_LATE_LINES, _signed, band_colour, format_value
from rules.asl import BLOCK, SCAR, action_ids
from rules.metrics import EARLY, LATE, NOT_DELIVERED, SHORT
from suppliers.validate import reason_family

INSUFFICIENT = "insufficient data"


def _text(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _band_names(bands: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(band["band"]) for band in bands]


MAX_SCORE_CHANGES = 10  # the digest's largest score changes
MAX_DIGEST_ROWS = 10  # rows of each list in the digest (per band for the suppliers by band); the rest are counted
DELIVERY_FAILURE_SCHEMA = {"message_key": pl.String, "kind": pl.String, "supplier_id": pl.String,
                           "recipients": pl.List(pl.String), "subject": pl.String, "attempts": pl.Int64,
                           "last_error": pl.String, "last_attempt_at": pl.Datetime("us", "UTC")}


def _criterion_value(value: Any, measured: bool | None, unit: str | None) -> str:
    if measured is None:
        return "not in the rules"
    return format_value(value, unit or "") if measured else "not measured"


def _cause(cause: Mapping[str, Any]) -> dict[str, Any]:
    """One cause of a score change (``rules.decide.CHANGE_CAUSE``) in words: ``On-time delivery (−9.0 points:
    91.0 % → 84.0 %)``; a value that did not move says so, with the weight it counted with then and now."""
    was = _criterion_value(cause["previous_value"], cause["previous_measured"], cause["unit"])
    now = _criterion_value(cause["value"], cause["measured"], cause["unit"])
    points = f"{_signed(cause['points_change'])} points"
    if was == now and cause["measured"]:
        moved = f"{now} both times, weight counted {format_value(cause['previous_weight'], 'score')} → " \
                f"{format_value(cause['weight'], 'score')}"
    else:
        moved = f"{was} → {now}"
    return {"name": cause["name"], "points_change": cause["points_change"], "was": was, "now": now,
            "text": f"{cause['name']} ({points}: {moved})"}


def change_context(evaluation: Mapping[str, Any]) -> dict[str, Any] | None:
    """The change since the previous evaluation and its main causes, or None without a score then and now.

    ``summary`` is one sentence: ``−12.4 since 2026-03-31, mostly On-time delivery (−9.0 points: 91.0 % →
    84.0 %)``, ``explanation`` the same without the change itself (``since 2026-03-31, mostly ...``). ``lead``
    says ``mostly`` when the largest cause moved the score the way it went (else ``largest moves:``),
    ``causes`` (see ``rules.decide.change_causes``) each have ``text``. ``since`` is the previous evaluation's
    as-of date (None when not known).
    """
    change = evaluation.get("score_change")
    if change is None:
        return None
    since = _text(evaluation.get("previous_as_of"))
    causes = [_cause(cause) for cause in evaluation.get("change_causes") or ()]
    lead = None
    if causes:
        same_way = change != 0 and (causes[0]["points_change"] < 0) == (change < 0)
        lead = "mostly" if same_way else "largest moves:"
    explanation = f"since {since or 'the previous evaluation'}"
    if causes:
        explanation += f", {lead} " + " and ".join(cause["text"] for cause in causes)
    return {"score_change": change, "since": since, "lead": lead, "causes": causes,
            "summary": f"{_signed(change)} {explanation}", "explanation": explanation}


def supplier_context(
    *,
    run: Mapping[str, Any],
    rule_set: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    window_start: date,
    as_of: date,
    late_lines: pl.DataFrame,
    bands: Sequence[Mapping[str, Any]] | None = None,
    records: Mapping[str, Any] | None = None,
    trend: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Context for one supplier's report; ``evaluation`` is one row of the assembled evaluations.

    ``late_lines`` are the supplier's lines not on time (``rules.metrics.SupplierPerformance.late_lines``), each
    shown with why it is not on time. ``records`` says what the records attachment holds: ``file`` (its name,
    None when there is nothing to attach) and ``counts`` (rows per metric, in order), see
    :func:`records_summary`. ``evaluation.change`` is :func:`change_context`.

    ``evaluation["band_rank"]`` is the band's position in the rule set (0 = best band, None when there is no
    band); ``bands`` (the rule set's bands, best first), when given, takes precedence over it and also supplies
    the number of bands, so a custom band name is coloured by its position from green to red. Only the first
    ``MAX_LATE_LINES`` late lines become dicts; ``late_lines_total`` counts them all.

    ``evaluation.not_measured`` lists the criteria not measured (``name``, ``reason``); ``measured_weight`` and
    ``total_weight`` are Σ weight of the measured and of all criteria, and ``renormalised`` says the score is
    over the measured criteria only.

    ``trend`` are the supplier's previous scored official evaluations (``as_of``, ``score``, ``band``; oldest
    first); ``evaluation.trend`` is them and this one as chart points (see :func:`trend_points`). With
    ``bands``, ``legend`` lists every band with its score range, status and action.
    """
    late = late_lines.head(MAX_LATE_LINES).select(_late_line_columns(late_lines.columns)).to_dicts()
    return build_supplier_context(run=run, rule_set=rule_set, evaluation=evaluation, window_start=window_start,
                                  as_of=as_of, late=late, late_total=late_lines.height,
                                  late_kinds=_late_kinds(late_lines), bands=bands, records=records, trend=trend)


def _late_line_columns(present: Sequence[str]) -> list[pl.Expr]:
    """A late line as the reports show it: its dates as ISO text, ``why`` in words (None where not known)."""
    def column(name: str, dtype: pl.DataType) -> pl.Expr:
        return pl.col(name).cast(dtype) if name in present else pl.lit(None, dtype).alias(name)

    return [column("po_id", pl.String()), column("line_no", pl.Int64()),
            *(column(name, pl.Date()).dt.to_string("%Y-%m-%d") for name in ("promised_date", "completed_date")),
            column("days_late", pl.Int64()), column("why", pl.String())]


def build_supplier_context(
    *,
    run: Mapping[str, Any],
    rule_set: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    window_start: date,
    as_of: date,
    late: list[dict[str, Any]],
    late_total: int,
    late_kinds: list[dict[str, Any]],
    bands: Sequence[Mapping[str, Any]] | None = None,
    records: Mapping[str, Any] | None = None,
    trend: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """:func:`supplier_context` from the late lines already cut (at most ``MAX_LATE_LINES`` dicts, dates as
    text), counted (``late_total``) and grouped by kind (``late_kinds``): what a run prepares for every supplier
    at once (:func:`supplier_pieces`)."""
    band = evaluation["band"]
    if bands is not None:
        names = _band_names(bands)
        band_rank = names.index(band) if band in names else None
        band_count: int | None = len(names)
    else:
        band_rank = evaluation.get("band_rank")
        band_count = evaluation.get("band_count")
    if band is None:
        band_rank = None
    criteria = [dict(item) for item in evaluation["criteria"]]
    not_measured = [{"name": c["name"], "reason": c["not_measured_reason"]} for c in criteria if not c["measured"]]
    return {
        "run": dict(run),
        "rule_set": dict(rule_set),
        "supplier": {k: evaluation[k] for k in ("supplier_id", "name", "category", "criticality", "owner_email")},
        "evaluation": {
            "as_of": as_of.isoformat(),
            "window_start": window_start.isoformat(),
            "window_end": as_of.isoformat(),
            "score": evaluation["score"],
            "band": band,
            "band_rank": None if band_rank is None else int(band_rank),
            "band_count": None if band_count is None else int(band_count),
            "status": evaluation["status"],
            "previous_status": evaluation["current_status"],
            "previous_score": evaluation["previous_score"],
            "score_change": evaluation["score_change"],
            "insufficient_data": evaluation["insufficient_data"],
            "insufficient_reason": evaluation["insufficient_reason"],
            "gates_hit": list(evaluation["gates_hit"]),
            "action": evaluation["action"],
            "not_measured": not_measured,
            "measured_weight": sum(c["weight"] for c in criteria if c["measured"]),
            "total_weight": sum(c["weight"] for c in criteria),
            "renormalised": bool(not_measured) and evaluation["score"] is not None,
            "change": change_context(evaluation),
            "trend": trend_points(trend or (), current={"as_of": as_of.isoformat(), "score": evaluation["score"],
                                                        "band": band}, bands=bands),
        },
        "criteria": criteria,
        "late_lines": late,
        "late_lines_total": late_total,
        "late_kinds": late_kinds,
        "records": dict(records) if records is not None else {"file": None, "counts": []},
        "legend": _legend(bands, band_count) if bands is not None else [],
    }


MAX_TREND = 8  # evaluations in a supplier report's score chart, this one included
CHART_HEIGHT = 60  # pixels of a score of 100 in the charts


def trend_points(previous: Sequence[Mapping[str, Any]], *, current: Mapping[str, Any],
                 bands: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """The score chart's columns: the last ``MAX_TREND - 1`` previous scored evaluations (oldest first) and this
    one when it has a score; each ``as_of``, ``score``, ``band``, ``colour`` (see ``band_colour``), ``height``
    (pixels, at least 2 so a score of 0 still shows) and ``current``."""
    names = _band_names(bands) if bands is not None else []
    points = [dict(point, current=False) for point in previous if point.get("score") is not None]
    points = points[-(MAX_TREND - 1):]
    if current.get("score") is not None:
        points.append(dict(current, current=True))
    for point in points:
        band = point.get("band")
        point["as_of"] = point["as_of"] if isinstance(point["as_of"], str) else point["as_of"].isoformat()
        point["colour"] = band_colour(band, names.index(band) if band in names else None, len(names) or None)
        point["height"] = max(2, round(float(point["score"]) * CHART_HEIGHT / 100))
    return points


def _legend(bands: Sequence[Mapping[str, Any]], count: int | None) -> list[dict[str, Any]]:
    return [{"band": band["band"], "status": band.get("status"), "action": band.get("action"),
             "lower": band.get("lower"), "upper": band.get("upper"),
             "colour": band_colour(band["band"], rank, count)} for rank, band in enumerate(bands)]


# How reports name the reasons a line is not on time (rules.metrics.NOT_ON_TIME_REASONS), in the order they list them.
LATE_KINDS = {LATE: "late", SHORT: "short", NOT_DELIVERED: "not yet delivered", EARLY: "early"}


def _late_kinds(late_lines: pl.DataFrame) -> list[dict[str, Any]]:
    """How many lines not on time are of each kind (late, short, not yet delivered, early): ``kind``, ``lines``."""
    if "reason" not in late_lines.columns:
        return []
    counts = dict(late_lines.group_by("reason").len().iter_rows())
    return [{"kind": label, "lines": counts[reason]} for reason, label in LATE_KINDS.items() if counts.get(reason)]


def records_summary(records: pl.DataFrame, file_name: str | None) -> dict[str, Any]:
    """What a supplier's records attachment holds (``rules.metrics.records_behind_metrics`` rows of one supplier):
    ``file`` (None when there are no records: nothing is attached) and ``counts``, one ``{"metric", "rows"}`` per
    metric in the order of the rows."""
    counts = records.group_by("metric", maintain_order=True).len().rows()
    return {"file": file_name if records.height else None,
            "counts": [{"metric": metric, "rows": rows} for metric, rows in counts]}


def digest_context(
    *,
    run: Mapping[str, Any],
    rule_set: Mapping[str, Any],
    evaluated: pl.DataFrame,
    changes: pl.DataFrame,
    quarantine_summary: pl.DataFrame,
    window_start: date,
    as_of: date,
    bands: Sequence[Mapping[str, Any]],
    delivery_failures: pl.DataFrame | None = None,
) -> dict[str, Any]:
    """Context for the officer digest: everyone by band, status changes, the largest score changes, insufficient
    data, criteria not measured, data quality.

    ``bands`` are the rule set's bands best first, each ``{"band": str, "status": str, "action": str}``. Every
    band is listed in that order, with its own status from the rule set (not a member's status, which a gate
    may have capped) and ``rank`` (0 = best) for its colour. A band found in ``evaluated`` but not in ``bands``
    is listed after them (status and rank None) rather than silently dropped. A member scored over part of
    the criteria is ``partial``; ``totals.partially_scored`` counts them. ``not_measured`` has one entry per
    criterion and reason: ``name``, ``reason`` and the number of ``suppliers``, in the rule set's order.
    ``score_changes`` are the largest score changes since the previous evaluations (at most
    ``MAX_SCORE_CHANGES``); they and ``status_changes`` each have ``change``, the change and its main causes in
    one sentence, and ``change_explained``, the same without the change itself (both None without a score then
    and now, see :func:`change_context`).

    ``band_chart`` is the band distribution (each band and then insufficient data: ``band``, ``status``,
    ``count``, ``share`` 0-1, ``width`` of its bar in percent of the largest, ``colour``); ``new_cases`` the
    status changes into probation or disqualification; ``delivery_failures`` the messages the ledger gave up on
    (at most ``MAX_DIGEST_ROWS``; ``totals.delivery_failures`` counts them all). Every list the digest shows
    is cut to ``limit`` rows by the template, which says how many more there are.
    """
    names = evaluated.select("supplier_id", "name")
    criterion = pl.element().struct
    partial = pl.col("criteria").list.eval(~criterion.field("measured")).list.any()
    banded = evaluated.filter(pl.col("band").is_not_null()).sort("score", "supplier_id", descending=[True, False])
    members = {
        key[0]: frame.select("supplier_id", "name", "score", "status", "score_change", partial=partial,
                             on_time_rate=pl.col("metrics").struct.field("on_time_rate") if "metrics" in frame.columns
                             else pl.lit(None, pl.Float64)).to_dicts()
        for key, frame in banded.partition_by("band", as_dict=True, maintain_order=True).items()
    }
    entries: list[dict[str, Any]] = [
        {
            "band": str(band["band"]),
            "status": band.get("status"),
            "action": band.get("action"),
            "rank": rank,
            "suppliers": members.pop(str(band["band"]), []),
        }
        for rank, band in enumerate(bands)
    ]
    for unknown in sorted(members):
        entries.append({"band": unknown, "status": None, "action": None, "rank": None, "suppliers": members[unknown]})
    insufficient = (
        evaluated.filter(pl.col("insufficient_data"))
        .sort("supplier_id")
        .select("supplier_id", "name", reason=pl.col("insufficient_reason"))
        .to_dicts()
    )
    status_rows = changes.join(names, on="supplier_id", how="left").select(
        "supplier_id", "name", "from_status", "to_status", "reason"
    ).to_dicts()
    movers = _largest_changes(evaluated)
    explained = _change_summaries(evaluated, {row["supplier_id"] for row in status_rows}
                                  | {row["supplier_id"] for row in movers})
    for row in (*status_rows, *movers):
        row["change"], row["change_explained"] = explained.get(row["supplier_id"], (None, None))
    not_measured = _not_measured(evaluated)
    quarantine_rows = quarantine_summary.to_dicts()
    failures = delivery_failures if delivery_failures is not None else pl.DataFrame(schema=DELIVERY_FAILURE_SCHEMA)
    counts = [len(entry["suppliers"]) for entry in entries] + [len(insufficient)]
    widest = max(counts, default=0) or 1
    chart = [{"band": entry["band"], "status": entry["status"], "count": count,
              "share": count / evaluated.height if evaluated.height else 0.0,
              "width": max(1, round(100 * count / widest)) if count else 0,
              "colour": band_colour(entry["band"], entry["rank"], len(bands))}
             for entry, count in zip([*entries, {"band": None, "status": INSUFFICIENT, "rank": None}], counts,
                                     strict=True)]
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
            "partially_scored": evaluated.select((partial & pl.col("score").is_not_null()).sum()).item()
            if evaluated.height else 0,
            "delivery_failures": failures.height,
        },
        "limit": MAX_DIGEST_ROWS,
        "band_chart": chart,
        "new_cases": [row for row in status_rows if row["to_status"] in ATTENTION_STATUSES],
        "delivery_failures": failures.head(MAX_DIGEST_ROWS).with_columns(
            pl.col("recipients").cast(pl.List(pl.String)).list.join(", ")
            if failures.schema["recipients"] != pl.String else pl.col("recipients"),
            pl.col("last_attempt_at").cast(pl.String).str.slice(0, 16)).to_dicts(),
        "band_count": len(bands),
        "bands": entries,
        "insufficient": insufficient,
        "not_measured": not_measured,
        "status_changes": status_rows,
        "score_changes": movers,
        "quarantine": quarantine_rows,
    }


def _largest_changes(evaluated: pl.DataFrame, top: int = MAX_SCORE_CHANGES) -> list[dict[str, Any]]:
    """The ``top`` suppliers whose score moved most since their previous evaluation (by at least 0.1), largest
    first: supplier_id, name, score, score_change."""
    if "score_change" not in evaluated.columns:
        return []
    return (
        evaluated.filter(pl.col("score_change").abs() >= 0.1)
        .sort(pl.col("score_change").abs(), pl.col("supplier_id"), descending=[True, False])
        .head(top)
        .select("supplier_id", "name", "score", "score_change")
        .to_dicts()
    )


def _change_summaries(evaluated: pl.DataFrame, supplier_ids: set[str]) -> dict[str, tuple[str, str]]:
    """Each chosen supplier's change since its previous evaluation in one sentence, with and without the change
    itself (:func:`change_context`'s summary and explanation)."""
    wanted = [c for c in ("supplier_id", "score_change", "previous_as_of", "change_causes") if c in evaluated.columns]
    summaries = {}
    for row in evaluated.filter(pl.col("supplier_id").is_in(list(supplier_ids))).select(wanted).iter_rows(named=True):
        change = change_context(row)
        if change is not None:
            summaries[row["supplier_id"]] = (change["summary"], change["explanation"])
    return summaries


def _not_measured(evaluated: pl.DataFrame) -> list[dict[str, Any]]:
    """Criteria not measured, each with its reason and how many suppliers, in the rule set's order of criteria."""
    return (
        evaluated.select("supplier_id", pl.col("criteria").list.eval(pl.element().struct.with_fields(
            position=pl.int_range(pl.len()))))
        .explode("criteria")
        .unnest("criteria")
        .filter(pl.col("measured").not_())
        .group_by("name", "not_measured_reason")
        .agg(suppliers=pl.col("supplier_id").n_unique(), position=pl.col("position").min())
        .sort("position", "suppliers", "not_measured_reason", descending=[False, True, False])
        .select("name", "suppliers", reason=pl.col("not_measured_reason"))
        .to_dicts()
    )


ACTION_LABELS = {SCAR: "Corrective action request (SCAR)", BLOCK: "Block new orders"}
_ACTION_SCHEMA = {"number": pl.Int64, "kind": pl.String, "supplier_id": pl.String, "name": pl.String,
                  "raised_on": pl.Date, "due": pl.Date, "owner": pl.String, "description": pl.String}


def actions_context(actions: pl.DataFrame, *, as_of: date) -> list[dict[str, Any]]:
    """Open actions for the reports, overdue first, then by due date and number: ``action_id`` (SCAR-0001),
    ``label``, supplier, ``raised_on``, ``due`` (ISO dates or None), ``owner``, ``description``, ``overdue``."""
    return (
        actions.select(*_ACTION_SCHEMA).with_columns(
            action_id=action_ids(pl.col("kind"), pl.col("number")),
            label=pl.col("kind").replace_strict(ACTION_LABELS, default=pl.col("kind"), return_dtype=pl.String),
            overdue=(pl.col("due") < as_of).fill_null(False),
        )
        .sort("overdue", "due", "number", descending=[True, False, False], nulls_last=True)
        .with_columns(pl.col("raised_on", "due").dt.to_string("%Y-%m-%d"))
        .select("action_id", "label", "kind", "supplier_id", "name", "raised_on", "due", "owner", "description",
                "overdue")
        .to_dicts()
    )


def asl_follow_up_context(follow_up: Any, *, as_of: date, evaluated: pl.DataFrame | None = None) -> dict[str, Any]:
    """The digest's ASL part (``reports.bundle.AslFollowUp``): ``proposals`` awaiting approval (oldest first),
    ``overdue`` suppliers (never evaluated first, then by due date), open ``actions`` (overdue first) and how many
    are overdue, and ``unchanged_reason`` (what-if or back-dated: why no status changed).

    Each proposal of a supplier in ``evaluated`` (this run's evaluations) has ``change``: its score change since
    the previous evaluation and the main causes, in one sentence (:func:`change_context`); None otherwise."""
    actions = actions_context(follow_up.actions, as_of=as_of)
    proposals = follow_up.proposals.select(
        "supplier_id", "name", pl.col("as_of").dt.to_string("%Y-%m-%d"), "from_status", "to_status", "reason",
    ).to_dicts()
    explained = (_change_summaries(evaluated, {row["supplier_id"] for row in proposals})
                 if evaluated is not None else {})
    for row in proposals:
        row["change"] = explained.get(row["supplier_id"], (None, None))[0]
    return {
        "unchanged_reason": follow_up.unchanged_reason,
        "proposals": proposals,
        "overdue": follow_up.overdue.select(
            "supplier_id", "name", "profile", pl.col("last_scored", "next_due").dt.to_string("%Y-%m-%d"),
        ).to_dicts(),
        "actions": actions,
        "actions_overdue": sum(1 for action in actions if action["overdue"]),
    }


def supplier_asl_context(evaluation: Mapping[str, Any], *, proposals: pl.DataFrame, actions: pl.DataFrame,
                         as_of: date) -> dict[str, Any]:
    """A supplier report's ASL part: its profile, re-evaluation interval and next due date, what this evaluation
    did (``outcome``, ``proposed_status``, ``note``), a change of it awaiting approval, and its open actions."""
    next_due = evaluation.get("next_due")
    proposal = proposals.select("as_of", "from_status", "to_status", "reason").with_columns(
        pl.col("as_of").dt.to_string("%Y-%m-%d")).to_dicts()
    return {
        "profile": evaluation.get("profile"),
        "reevaluate_every_days": evaluation.get("reevaluate_every_days"),
        "next_due": _text(next_due),
        "outcome": evaluation.get("outcome"),
        "proposed_status": evaluation.get("proposed_status"),
        "note": evaluation.get("status_note"),
        "proposal": proposal[-1] if proposal else None,
        "actions": actions_context(actions, as_of=as_of),
    }


def band_counts(evaluated: pl.DataFrame, band_names: Sequence[str]) -> dict[str, int]:
    """Suppliers per band: every band in ``band_names`` order (zero if empty), then 'insufficient data'.

    A band in ``evaluated`` that is not in ``band_names`` is counted after the named bands, never dropped.
    """
    counts = {str(band): 0 for band in band_names}
    unknown: dict[str, int] = {}
    insufficient = 0
    for band, count in evaluated.group_by("band").len().sort("band", nulls_last=True).iter_rows():
        if band is None:
            insufficient = count
        elif band in counts:
            counts[band] = count
        else:
            unknown[band] = count
    counts.update(unknown)
    counts[INSUFFICIENT] = insufficient
    return counts


def quarantine_summary_with_reasons(summary: pl.DataFrame, quarantine: pl.DataFrame, top: int = 3) -> pl.DataFrame:
    """The validation summary plus each source's most frequent quarantine reasons, e.g. ``not a number (3 rows)``.

    A reason counts the rows it was given to (as the data-quality report does), not its problems: a row that
    fails the same way twice is one row.
    """
    reasons = (
        quarantine.with_columns(reason=reason_family())
        .group_by("kind", "reason").agg(len=pl.col("row").n_unique())
        .sort("len", "reason", descending=[True, False])
        .group_by("kind", maintain_order=True)
        .agg(top_reasons=pl.format("{} ({} rows)", pl.col("reason"), pl.col("len")).head(top))
    )
    return summary.join(reasons, on="kind", how="left").with_columns(
        pl.col("top_reasons").fill_null(pl.lit([], dtype=pl.List(pl.String)))
    )



def supplier_pieces(supplier_ids: pl.Series, *, late_lines: pl.DataFrame, records: pl.DataFrame,
                    proposals: pl.DataFrame | None, actions: pl.DataFrame | None, history: pl.DataFrame | None,
                    as_of: date) -> dict[str, dict[str, Any]]:
    """What each supplier's report shows beyond its evaluation row, for every supplier at once (a few group-bys,
    not a filter per supplier): ``late`` (the first ``MAX_LATE_LINES`` lines not on time, as
    :func:`supplier_context` shows them), ``late_total``, ``late_kinds``, ``record_counts`` (rows per metric of
    its records attachment), ``actions`` (open, as :func:`actions_context`), ``proposal`` (the latest awaiting
    approval, or None) and ``trend`` (previous scored evaluations, oldest first: ``as_of``, ``score``, ``band``).
    """
    ids = pl.DataFrame({"supplier_id": supplier_ids.cast(pl.String)})
    kinds = pl.DataFrame({"reason": list(LATE_KINDS), "kind": list(LATE_KINDS.values()),
                          "kind_order": list(range(len(LATE_KINDS)))})
    parts = [
        late_lines.group_by("supplier_id", maintain_order=True).agg(
            late=pl.struct(_late_line_columns(late_lines.columns)).head(MAX_LATE_LINES), late_total=pl.len()),
        late_lines.group_by("supplier_id", "reason").len().join(kinds, on="reason").sort("kind_order")
        .group_by("supplier_id", maintain_order=True).agg(late_kinds=pl.struct("kind", lines="len"))
        if "reason" in late_lines.columns else None,
        records.group_by("supplier_id", "metric", maintain_order=True).len()
        .group_by("supplier_id", maintain_order=True).agg(record_counts=pl.struct("metric", rows="len")),
    ]
    if actions is not None and actions.height:
        shown = pl.DataFrame(actions_context(actions, as_of=as_of))
        parts.append(shown.group_by("supplier_id", maintain_order=True).agg(actions=pl.struct(shown.columns)))
    if proposals is not None and proposals.height:
        parts.append(proposals.group_by("supplier_id", maintain_order=True).agg(proposal=pl.struct(
            pl.col("as_of").cast(pl.Date).dt.to_string("%Y-%m-%d"), "from_status", "to_status", "reason").last()))
    if history is not None and history.height:
        parts.append(history.filter(pl.col("score").is_not_null()).sort("supplier_id", "as_of")
                     .group_by("supplier_id", maintain_order=True).agg(trend=pl.struct(
                         pl.col("as_of").dt.to_string("%Y-%m-%d"), "score", "band").tail(MAX_TREND - 1)))
    joined = ids
    for part in parts:
        if part is not None:
            joined = joined.join(part, on="supplier_id", how="left")
    by_supplier = {}
    for row in joined.iter_rows(named=True):
        by_supplier[row["supplier_id"]] = {
            "late": row.get("late") or [], "late_total": row.get("late_total") or 0,
            "late_kinds": row.get("late_kinds") or [], "record_counts": row.get("record_counts") or [],
            "actions": row.get("actions") or [], "proposal": row.get("proposal"), "trend": row.get("trend") or [],
        }
    return by_supplier


MAX_BUYER_ROWS = 25  # suppliers in a buyer message's summary table; every one is in its attached CSV
MAX_BUYER_SECTIONS = 5  # supplier reports shown in full in a buyer message, at most (the rest are attached)
ATTENTION_STATUSES = ("probation", "disqualified")


def _attention(context: Mapping[str, Any]) -> str | None:
    """Why a supplier in a buyer's message needs attention first, in words, or None."""
    e, asl = context["evaluation"], context.get("asl") or {}
    reasons = []
    if e["previous_status"] is not None and e["previous_status"] != e["status"]:
        reasons.append(f"now {e['status']}")
    elif e["status"] in ATTENTION_STATUSES:
        reasons.append(f"on {e['status']}" if e["status"] == "probation" else str(e["status"]))
    if asl.get("proposal"):
        reasons.append(f"{asl['proposal']['to_status']} awaiting approval")
    overdue = sum(1 for action in asl.get("actions") or () if action["overdue"])
    if overdue:
        reasons.append(f"{overdue} overdue {'action' if overdue == 1 else 'actions'}")
    return "; ".join(reasons) or None


def buyer_context(buyer: str, entries: Sequence[Mapping[str, Any]], *, run: Mapping[str, Any],
                  rule_set: Mapping[str, Any], bands: Sequence[Mapping[str, Any]], as_of: date) -> dict[str, Any]:
    """Context for one buyer's message; ``entries`` are the report contexts of each of their suppliers. Those
    needing attention (a status change, probation or disqualification, a change awaiting approval, an overdue
    action) come first, then the lowest scores.

    ``summary`` has at most ``MAX_BUYER_ROWS`` rows (``summary_more`` counts the others, ``summary_rows`` are
    all of them, for the attached CSV); ``sections`` are the suppliers whose report is shown in full, the first
    ``MAX_BUYER_SECTIONS``, each still to be given its ``html`` and ``text``; ``more`` the others.
    """
    names = _band_names(bands)
    rows = []
    for context in entries:
        s, e = context["supplier"], context["evaluation"]
        colour = band_colour(e["band"], names.index(e["band"]) if e["band"] in names else None, len(names))
        rows.append({"supplier_id": s["supplier_id"], "name": s["name"], "score": e["score"], "band": e["band"],
                     "colour": colour, "status": e["status"], "previous_status": e["previous_status"],
                     "score_change": e["score_change"], "next_due": (context.get("asl") or {}).get("next_due"),
                     "attention": _attention(context)})
    rows.sort(key=lambda r: (r["attention"] is None, r["score"] is None, r["score"] or 0, r["supplier_id"]))
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", buyer.split("@")[0]).strip("._") or "buyer"
    counts = {name: 0 for name in names}
    for row in rows:
        if row["band"] in counts:
            counts[row["band"]] += 1
    return {
        "run": dict(run), "rule_set": dict(rule_set), "buyer": buyer, "as_of": as_of.isoformat(),
        "window_start": entries[0]["evaluation"]["window_start"], "window_end": as_of.isoformat(),
        "attachment": False,
        "totals": {"suppliers": len(rows), "attention": sum(1 for row in rows if row["attention"]),
                   "bands": [{"band": name, "count": counts[name], "colour": band_colour(name, rank, len(names))}
                             for rank, name in enumerate(names)]},
        "summary": rows[:MAX_BUYER_ROWS], "summary_more": max(0, len(rows) - MAX_BUYER_ROWS),
        "summary_rows": rows, "summary_file": f"suppliers-{stem}.csv",
        "sections": rows[:MAX_BUYER_SECTIONS], "more": rows[MAX_BUYER_SECTIONS:],
        "more_file": f"more-reports-{stem}.zip",
        # What the message could not attach (see reports.bundle): set when its attachments are made.
        "more_zipped": len(rows[MAX_BUYER_SECTIONS:]), "left_out": 0, "records_left_out": False, "report_folder": "",
        "legend": _legend(bands, len(names)),
    }
