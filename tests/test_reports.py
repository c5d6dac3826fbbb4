"""Report rendering: autoescaping, inlined CSS, number formats, insufficient data, the digest, strict keys."""

from __future__ import annotations

import copy
import math
import re
from datetime import date, timedelta

import jinja2
import polars as pl
import pytest

from reports.context import band_counts, digest_context, supplier_context
from reports.render import (
    Rendered,
    band_colour,
    digest_subject,
    format_value,
    render_digest,
    render_supplier_report,
    supplier_report_subject,
)

NAME = "Smith & Sons <Precision> Ltd"
NAME_HTML = "Smith &amp; Sons &lt;Precision&gt; Ltd"
SCRIPT = "<script>alert('x')</script>"
DASH = "—"

RUN = {
    "run_id": "run-2026-11-24-001",
    "trigger": "nightly",
    "requested_by": None,
    "generated_at": "2026-11-24T02:00:00+00:00",
    "code_version": "0.1.0",
}
RULE_SET = {
    "name": "ISO 9001:2015 clause 8.4 supplier evaluation",
    "version": "2026.1",
    "content_hash": "sha256:9f2c1e0d4b7a",
}


def criterion(name, metric, value, unit, evidence, label, weight, points, low=None, high=None):
    measured = value is not None
    return {
        "name": name,
        "metric": metric,
        "metric_label": name.lower(),
        "value": value,
        "measured": measured,
        "not_measured_reason": None if measured else "no order lines due in the window",
        "unit": unit,
        "evidence": evidence,
        "evidence_label": label,
        "weight": weight,
        "effective_weight": weight if measured else None,
        "points": points,
        "weighted_points": None if points is None else points * weight / 100,
        "confidence_low": low,
        "confidence_high": high,
    }


def with_not_measured(context: dict) -> dict:
    """The evaluation's summary of its criteria not measured, as ``supplier_context`` gives it."""
    criteria, evaluation = context["criteria"], context["evaluation"]
    not_measured = [{"name": c["name"], "reason": c["not_measured_reason"]} for c in criteria if not c["measured"]]
    evaluation.update(
        not_measured=not_measured,
        measured_weight=sum(c["weight"] for c in criteria if c["measured"]),
        total_weight=sum(c["weight"] for c in criteria),
        renormalised=bool(not_measured) and evaluation["score"] is not None,
    )
    return context


def late_line(i: int) -> dict:
    return {
        "po_id": f"PO-{i:05d}",
        "line_no": 1 + i % 3,
        "promised_date": "2026-03-01",
        "completed_date": None if i == 0 else "2026-03-09",
        "days_late": 8 + i,
        "why": "short: 5 of 10 units received (5 missing)" if i == 0 else f"late: {8 + i} days after the promised date",
    }


def report(**evaluation) -> dict:
    context = {
        "run": dict(RUN),
        "rule_set": dict(RULE_SET),
        "supplier": {
            "supplier_id": "S-001",
            "name": NAME,
            "category": "fasteners",
            "criticality": "major",
            "owner_email": "buyer@example.com",
        },
        "evaluation": {
            "as_of": "2026-11-24",
            "window_start": "2025-11-24",
            "window_end": "2026-11-24",
            "score": 78.44,
            "band": "B",
            "band_rank": 1,
            "band_count": 4,
            "status": "conditional",
            "previous_status": "approved",
            "previous_score": 81.6,
            "score_change": -3.16,
            "insufficient_data": False,
            "insufficient_reason": None,
            "gates_hit": ["Quality certificate expired"],
            "action": "Approved with conditions; agree an improvement plan with the supplier.",
            "change": None,
        },
        "criteria": [
            criterion(
                "On-time delivery", "on_time_rate", 0.935, "rate", 1412, "order lines", 30, 84.0, 0.907, 0.955
            ),
            criterion("Rejects per million", "ppm_rejected", 12345.4, "ppm", 40, "receipts", 30, 20.0),
            criterion("Mean days late", "mean_days_late", None, "days", 0, "late lines", 20, None),
            criterion("Open nonconformances", "open_ncrs", 2, "count", 2, "NCRs", 20, 60.0),
        ],
        "late_lines": [late_line(i) for i in range(3)],
        "late_lines_total": 3,
        "late_kinds": [{"kind": "late", "lines": 2}, {"kind": "short", "lines": 1}],
        "records": {"file": "records-S-001.csv", "counts": [{"metric": "On-time delivery rate", "rows": 3}]},
    }
    context["evaluation"].update(evaluation)
    return with_not_measured(context)


def digest() -> dict:
    return {
        "run": dict(RUN),
        "rule_set": dict(RULE_SET),
        "as_of": "2026-11-24",
        "window_start": "2025-11-24",
        "window_end": "2026-11-24",
        "totals": {
            "suppliers_evaluated": 1234,
            "insufficient_data": 1,
            "status_changes": 2,
            "quarantined_rows": 17,
            "partially_scored": 1,
            "delivery_failures": 0,
        },
        "limit": 15,
        "band_chart": [
            {"band": "A", "status": "approved", "count": 1, "share": 0.25, "width": 100, "colour": "0"},
            {"band": "B", "status": "conditional", "count": 1, "share": 0.25, "width": 100, "colour": "1"},
            {"band": "C", "status": "probation", "count": 0, "share": 0.0, "width": 0, "colour": "2"},
            {"band": "D", "status": "disqualified", "count": 1, "share": 0.25, "width": 100, "colour": "3"},
            {"band": None, "status": "insufficient data", "count": 1, "share": 0.25, "width": 100, "colour": "none"},
        ],
        "new_cases": [],
        "delivery_failures": [],
        "band_count": 4,
        "bands": [
            {
                "band": "A",
                "status": "approved",
                "action": "Keep approved.",
                "rank": 0,
                "suppliers": [
                    {
                        "supplier_id": "S-002",
                        "on_time_rate": 0.97,
                        "name": "Acme Components",
                        "score": 91.25,
                        "status": "approved",
                        "score_change": 1.04,
                        "partial": False,
                    }
                ],
            },
            {
                "band": "B",
                "status": "conditional",
                "action": "Agree an improvement plan.",
                "rank": 1,
                "suppliers": [
                    {
                        "supplier_id": "S-001",
                        "on_time_rate": 0.915,
                        "name": NAME,
                        "score": 78.44,
                        "status": "conditional",
                        "score_change": -3.16,
                        "partial": True,
                    }
                ],
            },
            {"band": "C", "status": "probation", "action": "Put on probation.", "rank": 2, "suppliers": []},
            {
                "band": "D",
                "status": "disqualified",
                "action": "Stop ordering.",
                "rank": 3,
                "suppliers": [
                    {
                        "supplier_id": "S-009",
                        "on_time_rate": 0.41,
                        "name": "Brittle Castings",
                        "score": 31.0,
                        "status": "disqualified",
                        "score_change": None,
                        "partial": False,
                    }
                ],
            },
        ],
        "insufficient": [
            {
                "supplier_id": "S-010",
                "name": "New Vendor GmbH",
                "reason": "3 order lines due in the window; at least 5 needed",
            }
        ],
        "not_measured": [
            {"name": "Mean days late", "suppliers": 1, "reason": "no order lines due in the window"},
        ],
        "status_changes": [
            {
                "supplier_id": "S-001",
                "name": NAME,
                "from_status": "approved",
                "to_status": "conditional",
                "reason": "Score fell into band B",
                "change": "−3.2 since 2026-05-31, mostly On-time delivery (−3.0 points: 93.5 % → 91.5 %)",
                "change_explained": "since 2026-05-31, mostly On-time delivery (−3.0 points: 93.5 % → 91.5 %)",
            },
            {
                "supplier_id": "S-009",
                "name": "Brittle Castings",
                "from_status": "probation",
                "to_status": "disqualified",
                "reason": "Score fell into band D",
                "change": None,
                "change_explained": None,
            },
        ],
        "score_changes": [
            {
                "supplier_id": "S-001",
                "name": NAME,
                "score": 78.44,
                "score_change": -3.16,
                "change": "−3.2 since 2026-05-31, mostly On-time delivery (−3.0 points: 93.5 % → 91.5 %)",
                "change_explained": "since 2026-05-31, mostly On-time delivery (−3.0 points: 93.5 % → 91.5 %)",
            },
        ],
        "quarantine": [
            {
                "kind": "receipts",
                "source": "data/receipts.csv",
                "rows_read": 120000,
                "rows_quarantined": 17,
                "share": 17 / 120000,
                "top_reasons": ["quantity_received below 0 (12 rows)", "unknown PO line (5 rows)"],
            },
            {
                "kind": "purchase order lines",
                "source": "erp.sqlite",
                "rows_read": 50000,
                "rows_quarantined": 0,
                "share": 0.0,
                "top_reasons": [],
            },
        ],
    }


def tag_with(html: str, text: str) -> str:
    """The opening tag of the innermost element whose text starts with ``text``."""
    match = re.search(r"<(\w+)[^<>]*>" + re.escape(text), html)
    assert match, f"{text!r} not found"
    return match.group(0)


# ---- autoescape ---------------------------------------------------------------------------------------


def test_names_are_escaped_in_html_and_raw_in_text():
    out = render_supplier_report(report())
    assert isinstance(out, Rendered)
    assert NAME_HTML in out.html and NAME not in out.html
    assert NAME in out.text and "&amp;" not in out.text and "&lt;" not in out.text


def test_digest_text_part_is_not_html_escaped():
    out = render_digest(digest())
    assert NAME_HTML in out.html and NAME not in out.html
    assert NAME in out.text and "&amp;" not in out.text


@pytest.mark.parametrize("place", ["supplier name", "action", "gate", "criterion", "late line", "reason"])
def test_script_in_any_field_never_reaches_the_html_raw(place):
    context = report(insufficient_data=True, score=None, band=None)
    if place == "supplier name":
        context["supplier"]["name"] = SCRIPT
    elif place == "action":
        context["evaluation"]["action"] = SCRIPT
    elif place == "gate":
        context["evaluation"]["gates_hit"] = [SCRIPT]
    elif place == "criterion":
        context["criteria"][0]["name"] = SCRIPT
    elif place == "late line":
        context["late_lines"][0]["po_id"] = SCRIPT
    else:
        context["evaluation"]["insufficient_reason"] = SCRIPT
    out = render_supplier_report(context)
    assert "<script" not in out.html.lower()
    assert "&lt;script&gt;" in out.html
    assert SCRIPT in out.text


def test_script_in_digest_fields_is_escaped():
    context = digest()
    context["bands"][0]["suppliers"][0]["name"] = SCRIPT
    context["status_changes"][0]["reason"] = SCRIPT
    context["quarantine"][0]["top_reasons"] = [SCRIPT]
    context["insufficient"][0]["reason"] = SCRIPT
    out = render_digest(context)
    assert "<script" not in out.html.lower()
    assert out.html.count("&lt;script&gt;") == 4


# ---- CSS inlined --------------------------------------------------------------------------------------


def test_css_is_inlined_and_no_style_block_is_needed():
    for out in (render_supplier_report(report()), render_digest(digest())):
        # The one <style> block is the phone layout (@media, cannot be inlined); without it the report is complete.
        head, style, rest = out.html.lower().partition("<style>\n@media only screen and (max-width: 480px)")
        assert style and "</head>" in rest and "<style" not in head + rest
        assert out.html.count('style="') > 20
        assert "<link" not in out.html.lower()
        assert out.html.count("<table") == out.html.count("</table>")


@pytest.mark.parametrize(
    "band, colour", [("A", "#dff3e4"), ("B", "#eef6d5"), ("C", "#fff0d1"), ("D", "#fbe1e1")]
)
def test_band_badge_is_coloured_per_band(band, colour):
    html = render_supplier_report(report(band=band, band_rank="ABCD".index(band))).html
    badge = tag_with(html, f"{band}</span>")
    assert f"background-color: {colour}" in badge


GREEN, LIME, AMBER, RED, GREY = "#dff3e4", "#eef6d5", "#fff0d1", "#fbe1e1", "#eceff1"


@pytest.mark.parametrize("band, rank, colour", [("Gold", 0, GREEN), ("Silver", 1, AMBER), ("Bronze", 2, RED)])
def test_custom_band_badge_is_coloured_by_position(band, rank, colour):
    html = render_supplier_report(report(band=band, band_rank=rank, band_count=3)).html
    assert f"background-color: {colour}" in tag_with(html, f"{band}</span>")


def test_unknown_band_name_renders_grey_instead_of_failing():
    out = render_supplier_report(report(band="Platinum", band_rank=None, band_count=None))
    assert f"background-color: {GREY}" in tag_with(out.html, "Platinum</span>")
    assert re.search(r"Band\s+Platinum", out.text)


def test_band_count_is_optional_in_a_supplier_report():
    context = report(band="Gold", band_rank=0)
    del context["evaluation"]["band_count"]
    assert f"background-color: {GREEN}" in tag_with(render_supplier_report(context).html, "Gold</span>")


@pytest.mark.parametrize(
    "band, rank, count, key",
    [
        ("A", 0, 4, "0"),
        ("D", 3, 4, "3"),
        ("C", 2, 3, "2"),  # A-D keep their colours: C stays amber even as the worst of three
        ("C", None, None, "2"),
        ("Gold", 0, 3, "0"),
        ("Silver", 1, 3, "2"),
        ("Bronze", 2, 3, "3"),
        ("Top", 0, 1, "0"),
        ("P1", 0, 6, "0"),
        ("P6", 5, 6, "3"),
        ("B", 1, 6, "1"),  # six bands A-F: coloured by position, not by letter
        ("Gold", None, 3, "none"),
        ("Gold", 1, None, "1"),
        (None, None, None, "none"),
    ],
)
def test_band_colour(band, rank, count, key):
    assert band_colour(band, rank, count) == key


# ---- numbers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, unit, expected",
    [
        (0.935, "rate", "93.5 %"),
        (1.0, "rate", "100.0 %"),
        (0.0, "rate", "0.0 %"),
        (0.91255, "rate", "91.3 %"),
        (12345.4, "ppm", "12,345 ppm"),
        (1234567.5, "ppm", "1,234,568 ppm"),
        (0, "ppm", "0 ppm"),
        (3.44, "days", "3.4 days"),
        (2.25, "days", "2.3 days"),  # half up, as people round, not banker's rounding
        (1234, "count", "1,234"),
        (4.25, "score", "4.3"),
        (None, "rate", DASH),
        (None, "ppm", DASH),
        (math.nan, "days", DASH),
    ],
)
def test_format_value(value, unit, expected):
    assert format_value(value, unit) == expected


def test_report_shows_values_evidence_weights_points_and_change():
    out = render_supplier_report(report())
    for html_or_text in (out.html, out.text):
        assert "78.4" in html_or_text  # score, one decimal
        assert "93.5 %" in html_or_text and "90.7–95.5 %" in html_or_text  # value and confidence range
        assert "12,345 ppm" in html_or_text
        assert "1,412 order lines" in html_or_text  # evidence with its label
        assert "25.2" in html_or_text  # weighted points 84 x 30 %
        assert "\u22123.2" in html_or_text  # change since the previous evaluation, true minus sign
        assert "81.6" in html_or_text and "approved" in html_or_text  # previous score and status
        assert "Quality certificate expired" in html_or_text
        assert "agree an improvement plan" in html_or_text
    row = re.search(r"Mean days late\s+(.*)", out.text).group(1)
    assert row.split() == [DASH, "20", DASH, DASH]  # value, weight, points, weighted: missing shown as a dash


def test_none_values_render_as_a_dash_not_none():
    context = report(previous_status=None, previous_score=None, score_change=None, action=None, gates_hit=[])
    context["supplier"]["category"] = None
    out = render_supplier_report(context)
    for part in (out.html, out.text):
        assert "None" not in part
        assert DASH in part
        assert "first evaluation" in part


# ---- insufficient data --------------------------------------------------------------------------------


def test_insufficient_data_report_renders_without_a_score():
    reason = "3 order lines due in the window; at least 5 are needed"
    context = report(
        score=None,
        band=None,
        status="pending",
        insufficient_data=True,
        insufficient_reason=reason,
        previous_score=None,
        score_change=None,
        previous_status=None,
        action=None,
        gates_hit=[],
    )
    for c in context["criteria"]:
        c.update(points=None, weighted_points=None)
    out = render_supplier_report(context)
    assert "Insufficient data" in out.html and reason in out.html
    assert "INSUFFICIENT DATA" in out.text and reason in out.text
    assert "/ 100" not in out.text
    assert re.search(r"Score\s+—", out.text)
    assert "background-color: #eceff1" in tag_with(
        out.html, "Insufficient data</span>"
    )  # grey, not a band colour
    assert supplier_report_subject(context).endswith("insufficient data")


# ---- late lines ---------------------------------------------------------------------------------------


def late_frame(count: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "supplier_id": ["S-001"] * count,
            "po_id": [f"PO-{i:05d}" for i in range(count)],
            "line_no": [1 + i % 3 for i in range(count)],
            "promised_date": [date(2026, 3, 1)] * count,
            "completed_date": [None if i == 0 else date(2026, 3, 9) for i in range(count)],
            "days_late": [8 + i for i in range(count)],
            "reason": ["short" if i == 0 else "late" for i in range(count)],
            "why": ["short: 5 of 10 units received (5 missing), the last 8 days after the promised date" if i == 0
                    else f"late: {8 + i} days after the promised date" for i in range(count)],
        },
        schema_overrides={"completed_date": pl.Date, "reason": pl.String, "why": pl.String},
    )


def evaluation_row(**overrides) -> dict:
    """One row of the assembled evaluations, as the pipeline passes it to ``supplier_context``."""
    e = report()["evaluation"]
    row = {
        "supplier_id": "S-001",
        "name": NAME,
        "category": "fasteners",
        "criticality": "major",
        "owner_email": "buyer@example.com",
        "score": e["score"],
        "band": "Silver",
        "status": e["status"],
        "current_status": e["previous_status"],
        "previous_score": e["previous_score"],
        "score_change": e["score_change"],
        "insufficient_data": False,
        "insufficient_reason": None,
        "gates_hit": e["gates_hit"],
        "action": e["action"],
        "criteria": report()["criteria"],
    }
    row.update(overrides)
    return row


def built_report(late: pl.DataFrame, **overrides) -> dict:
    return supplier_context(
        run=RUN,
        rule_set=RULE_SET,
        evaluation=evaluation_row(**overrides),
        window_start=date(2025, 11, 24),
        as_of=date(2026, 11, 24),
        late_lines=late,
        bands=RULE_BANDS,
    )


def test_supplier_context_turns_only_the_first_25_late_lines_into_dicts():
    context = built_report(late_frame(30))
    assert len(context["late_lines"]) == 25 and context["late_lines_total"] == 30
    assert context["late_lines"][0] == {
        "po_id": "PO-00000",
        "line_no": 1,
        "promised_date": "2026-03-01",
        "completed_date": None,
        "days_late": 8,
        "why": "short: 5 of 10 units received (5 missing), the last 8 days after the promised date",
    }
    assert context["late_kinds"] == [{"kind": "late", "lines": 29}, {"kind": "short", "lines": 1}]
    empty = built_report(late_frame(0))
    assert empty["late_lines"] == [] and empty["late_lines_total"] == 0 and empty["late_kinds"] == []


def test_late_lines_are_capped_at_25_with_a_count_of_the_rest():
    context = built_report(late_frame(30))
    out = render_supplier_report(context)
    for part in (out.html, out.text):
        assert "PO-00024" in part and "PO-00025" not in part
        assert "5 more not shown" in part
        assert "30 order lines were not on time in this period: 29 late, 1 short." in part
        assert "not complete" in part  # the line with no completion date
        assert "short: 5 of 10 units received (5 missing), the last 8 days after the promised date" in part


def test_late_line_count_comes_from_the_total_not_the_shown_rows():
    context = report()
    context["late_lines"] = [late_line(i) for i in range(25)]
    context["late_lines_total"] = 1000
    out = render_supplier_report(context)
    for part in (out.html, out.text):
        assert "1,000 order lines were not on time in this period" in part
        assert "975 more not shown; every one is in records-S-001.csv" in part


def test_one_late_line_is_singular():
    context = built_report(late_frame(1))
    out = render_supplier_report(context)
    assert "1 order line was not on time in this period: 1 short." in out.text
    assert "more not shown" not in out.text


def test_no_late_lines():
    context = built_report(late_frame(0))
    out = render_supplier_report(context)
    for part in (out.html, out.text):
        assert "No order line due in this period was late, short or not yet delivered." in part
        assert "nothing is attached" in part
    assert "more not shown" not in out.text


# ---- digest -------------------------------------------------------------------------------------------


def test_digest_groups_suppliers_by_band_in_order():
    text = render_digest(digest()).text
    positions = [text.index(f"Band {band} - ") for band in "ABCD"]
    assert positions == sorted(positions)
    assert (
        positions[0]
        < text.index("Acme Components")
        < positions[1]
        < text.index(NAME, positions[1])
        < positions[2]
    )
    assert (
        positions[2]
        < text.index("No suppliers in this band.")
        < positions[3]
        < text.index("Brittle Castings", positions[3])
    )
    html = render_digest(digest()).html
    heads = [m.start() for m in re.finditer(r">Band [ABCD] ·", html)]
    assert len(heads) == 4 and html.index("Acme Components") > heads[0]


def test_digest_lists_status_changes_insufficient_data_and_quarantine():
    out = render_digest(digest())
    for part in (out.html, out.text):
        assert "1,234" in part  # suppliers evaluated
        assert "Score fell into band D" in part and "disqualified" in part
        assert "New Vendor GmbH" in part and "at least 5 needed" in part
        assert "120,000" in part and "0.01 %" in part and "unknown PO line (5 rows)" in part
        assert "91.3" in part and "+1.0" in part  # half-up score, signed change
    assert "probation -> disqualified" in out.text


# ---- subjects -----------------------------------------------------------------------------------------


def test_supplier_report_subject():
    assert supplier_report_subject(report()) == (
        f"Supplier evaluation: {NAME} (S-001) as of 2026-11-24: band B"
    )
    assert supplier_report_subject(built_report(late_frame(0), band="Gold", status="conditional")) == (
        f"Supplier evaluation: {NAME} (S-001) as of 2026-11-24: band Gold"
    )


def test_supplier_report_subject_without_a_band():
    context = report(score=None, band=None, band_rank=None, insufficient_data=True)
    assert supplier_report_subject(context) == (
        f"Supplier evaluation: {NAME} (S-001) as of 2026-11-24: insufficient data"
    )


def test_digest_subject():
    assert digest_subject(digest()) == "Supplier evaluation digest as of 2026-11-24: 1234 suppliers"


def test_subjects_are_one_line():
    context = report()
    context["supplier"]["name"] = "Evil\r\nBcc: victim@example.com\u2028Ltd\x00"
    subject = supplier_report_subject(context)
    assert subject == "Supplier evaluation: Evil Bcc: victim@example.com Ltd (S-001) as of 2026-11-24: band B"
    context = digest()
    context["as_of"] = "2026-11-24\r\nX-Injected: 1"
    assert "\r" not in digest_subject(context) and "\n" not in digest_subject(context)


RULE_BANDS = [
    {"band": "Gold", "status": "approved", "action": "Keep approved."},
    {"band": "Silver", "status": "conditional", "action": "Agree an improvement plan."},
    {"band": "Bronze", "status": "disqualified", "action": "Stop ordering."},
]


def evaluated_frame() -> pl.DataFrame:
    rows = [
        # supplier_id, name, score, band, status (S-04 is in Gold but a gate capped it to probation)
        ("S-01", "Aurum Metals", 95.0, "Gold", "approved", 1.0, False, None),
        ("S-04", "Capped Gold Ltd", 97.5, "Gold", "probation", None, False, None),
        ("S-02", "Argent Parts", 75.0, "Silver", "conditional", -2.0, False, None),
        ("S-03", "Copper Works", 40.0, "Bronze", "disqualified", 0.0, False, None),
        ("S-05", "New Vendor GmbH", None, None, "pending", None, True, "too few order lines"),
    ]
    columns = ["supplier_id", "name", "score", "band", "status", "score_change", "insufficient_data",
               "insufficient_reason"]
    frame = pl.DataFrame(rows, schema=columns, orient="row",
                         schema_overrides={"score": pl.Float64, "score_change": pl.Float64})
    # Every criterion measured, except quality for S-02 (no inspection results) and everything for S-05.
    def criteria(quality: bool, delivery: bool) -> list[dict]:
        return [
            {"name": "On-time delivery", "measured": delivery,
             "not_measured_reason": None if delivery else "no order lines due in the window"},
            {"name": "Quality of goods received", "measured": quality,
             "not_measured_reason": None if quality else "no inspection results in the data"},
        ]
    measured = {"S-02": criteria(False, True), "S-05": criteria(False, False)}
    dtype = pl.List(pl.Struct({"name": pl.String, "measured": pl.Boolean, "not_measured_reason": pl.String}))
    return frame.with_columns(criteria=pl.Series(
        [measured.get(supplier, criteria(True, True)) for supplier in frame["supplier_id"]], dtype=dtype))


def built_digest(evaluated: pl.DataFrame | None = None, bands=RULE_BANDS) -> dict:
    return digest_context(
        run=RUN,
        rule_set=RULE_SET,
        evaluated=evaluated_frame() if evaluated is None else evaluated,
        changes=pl.DataFrame(
            {"supplier_id": ["S-04"], "from_status": ["approved"], "to_status": ["probation"],
             "reason": ["Gate: quality certificate expired"]}
        ),
        quarantine_summary=pl.DataFrame(
            {"kind": ["receipts"], "source": ["receipts.csv"], "rows_read": [10], "rows_quarantined": [1],
             "share": [0.1], "top_reasons": [["bad quantity (1 rows)"]]}
        ),
        window_start=date(2026, 11, 24) - timedelta(days=365),
        as_of=date(2026, 11, 24),
        bands=bands,
    )


def test_digest_context_uses_the_rule_sets_band_names_order_and_statuses():
    context = built_digest()
    assert [(b["band"], b["status"], b["action"], b["rank"]) for b in context["bands"]] == [
        ("Gold", "approved", "Keep approved.", 0),
        ("Silver", "conditional", "Agree an improvement plan.", 1),
        ("Bronze", "disqualified", "Stop ordering.", 2),
    ]
    members = {b["band"]: [s["supplier_id"] for s in b["suppliers"]] for b in context["bands"]}
    assert members == {"Gold": ["S-04", "S-01"], "Silver": ["S-02"], "Bronze": ["S-03"]}  # best score first
    assert context["band_count"] == 3
    assert context["totals"]["suppliers_evaluated"] == 5 and context["totals"]["insufficient_data"] == 1


def test_a_gate_capped_top_scorer_does_not_change_the_bands_status():
    context = built_digest()
    gold = context["bands"][0]
    assert gold["suppliers"][0]["status"] == "probation"  # the top scorer was capped by a gate
    assert gold["status"] == "approved"  # the band still shows the rule set's status
    out = render_digest(context)
    assert "Band Gold - approved (2 suppliers)" in out.text
    assert re.search(r">Band Gold · approved · 2 suppliers<", out.html)
    assert re.search(r"Capped Gold Ltd\s+S-04\s+97.5\s+probation", out.text)


def test_digest_with_custom_bands_lists_suppliers_under_each_band():
    out = render_digest(built_digest())
    text = out.text
    text = text[text.index("Suppliers by band"):]  # the largest score changes name some of them before
    heads = [text.index(f"Band {name} - {status} ") for name, status in
             [("Gold", "approved"), ("Silver", "conditional"), ("Bronze", "disqualified")]]
    assert heads == sorted(heads)
    assert heads[0] < text.index("Aurum Metals") < heads[1] < text.index("Argent Parts") < heads[2]
    assert heads[2] < text.index("Copper Works")
    assert "New Vendor GmbH" in text and "too few order lines" in text
    for name, status, colour in [("Gold", "approved", GREEN), ("Silver", "conditional", AMBER),
                                 ("Bronze", "disqualified", RED)]:
        assert f"background-color: {colour}" in tag_with(out.html, f"{name}</span>")
        assert f"background-color: {colour}" in tag_with(out.html, f"Band {name} · {status}")
        assert re.search(rf">{name}</span> {status}</td>", out.html)  # its bar in the band distribution


def test_digest_lists_every_band_even_when_empty_and_never_drops_an_unknown_band():
    evaluated = evaluated_frame().with_columns(
        band=pl.when(pl.col("supplier_id") == "S-03").then(pl.lit("Tin")).otherwise(pl.col("band"))
    )
    context = built_digest(evaluated)
    assert [(b["band"], b["status"], b["rank"], len(b["suppliers"])) for b in context["bands"]] == [
        ("Gold", "approved", 0, 2),
        ("Silver", "conditional", 1, 1),
        ("Bronze", "disqualified", 2, 0),
        ("Tin", None, None, 1),
    ]
    out = render_digest(context)
    assert "No suppliers in this band." in out.text and "Copper Works" in out.text
    assert f"background-color: {GREY}" in tag_with(out.html, "Tin</span>")


def test_digest_keeps_letter_band_colours():
    letters = [{"band": b, "status": s, "action": ""} for b, s in
               zip("ABCD", ["approved", "conditional", "probation", "disqualified"], strict=True)]
    evaluated = evaluated_frame().with_columns(pl.col("band").replace({"Gold": "A", "Silver": "B", "Bronze": "D"}))
    html = render_digest(built_digest(evaluated, letters)).html
    for band, colour in zip("ABCD", [GREEN, LIME, AMBER, RED], strict=True):
        assert f"background-color: {colour}" in tag_with(html, f"{band}</span>")


def test_band_counts_follow_the_rule_set():
    counts = band_counts(evaluated_frame(), ["Gold", "Silver", "Bronze", "Tin"])
    assert list(counts.items()) == [
        ("Gold", 2), ("Silver", 1), ("Bronze", 1), ("Tin", 0), ("insufficient data", 1)
    ]
    assert band_counts(evaluated_frame().clear(), ["A", "B"]) == {"A": 0, "B": 0, "insufficient data": 0}
    assert band_counts(evaluated_frame(), ["Gold"]) == {
        "Gold": 2, "Bronze": 1, "Silver": 1, "insufficient data": 1
    }


def test_empty_digest_renders():
    context = digest()
    context.update(bands=[], insufficient=[], status_changes=[], quarantine=[])
    out = render_digest(context)
    assert "No supplier changed status" in out.text and "No supplier changed status" in out.html


# ---- audit trail and strictness -----------------------------------------------------------------------


@pytest.mark.parametrize("render, context", [(render_supplier_report, report), (render_digest, digest)])
def test_audit_trail_shows_rule_set_and_run(render, context):
    out = render(context())
    for part in (out.html, out.text):
        for value in ("run-2026-11-24-001", RULE_SET["name"], "2026.1", "sha256:9f2c1e0d4b7a", "0.1.0"):
            assert value in part


@pytest.mark.parametrize(
    "path",
    [
        ("evaluation", "band"),
        ("evaluation", "score_change"),
        ("supplier", "owner_email"),
        ("run", "run_id"),
        ("rule_set", "content_hash"),
        ("late_lines", 0, "days_late"),
        ("criteria", 1, "unit"),
        ("late_lines",),
        ("late_lines_total",),
        ("evaluation", "band_rank"),
    ],
)
def test_strict_undefined_catches_a_missing_key(path):
    context = copy.deepcopy(report())
    target = context
    for step in path[:-1]:
        target = target[step]
    del target[path[-1]]
    with pytest.raises(jinja2.UndefinedError):
        render_supplier_report(context)


def test_strict_undefined_in_digest():
    context = digest()
    del context["bands"][0]["suppliers"][0]["score_change"]
    with pytest.raises(jinja2.UndefinedError):
        render_digest(context)


# ---- criteria not measured ----------------------------------------------------------------------------
#
# Supplier N of tests/test_scoring.py, through the real scoring and decisions: no inspection results, so OTIF
# and quality are not measured; on time 71.43 points and lateness 66.67 points, weights 30 and 20 counted as
# 60 and 40: 42.86 + 26.67 = 69.5, band C. Supplier S1 has every criterion measured.


def not_measured_evaluations() -> pl.DataFrame:
    from test_scoring import WITHOUT_MINIMUM_EVIDENCE as SHIPPED  # hand-computed over its one late line
    from test_scoring import metrics_row, uninspected_supplier

    from rules.decide import decide
    from rules.scoring import score_suppliers

    suppliers, measured = uninspected_supplier()
    complete = pl.DataFrame([metrics_row("S1")], infer_schema_length=None).select(measured.columns)
    metrics = pl.concat([measured, complete.cast(measured.schema)])
    selected = pl.DataFrame({
        "supplier_id": ["N", "S1"], "name": ["No Inspection Ltd", "Complete Co"], "category": ["parts"] * 2,
        "criticality": ["major"] * 2, "owner_email": [None, "buyer@example.com"], "certificate_expiry": [None, None],
        "current_status": ["approved"] * 2,
    }, schema_overrides={"certificate_expiry": pl.Date, "owner_email": pl.String})
    scored = score_suppliers(selected, metrics, SHIPPED, as_of=date(2026, 6, 30))
    none = pl.DataFrame(schema={"supplier_id": pl.String, "previous_as_of": pl.Date, "previous_score": pl.Float64,
                                "previous_band": pl.String})
    official = pl.DataFrame(schema={"supplier_id": pl.String, "official_as_of": pl.Date})
    return decide(selected, scored, SHIPPED, previous=none, official_as_of=official, as_of=date(2026, 6, 30),
                  official=True).evaluated.sort("supplier_id")


def cells(html: str, row_start: str) -> list[str]:
    """The text of each cell of the table row that begins with ``row_start``, tags removed."""
    row = next(r for r in html.split("<tr") if row_start in r)
    return [" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


def test_a_report_shows_a_criterion_not_measured_with_no_points_and_the_weights_counted():
    evaluation = not_measured_evaluations().row(0, named=True)
    context = supplier_context(run=RUN, rule_set=RULE_SET, evaluation=evaluation, window_start=date(2025, 7, 1),
                               as_of=date(2026, 6, 30), late_lines=late_frame(0), bands=RULE_BANDS)
    assert context["evaluation"]["not_measured"] == [
        {"name": "Delivered on time and in full (OTIF)", "reason": "no inspection results in the data"},
        {"name": "Quality of goods received (rejects per million)", "reason": "no inspection results in the data"},
    ]
    assert (context["evaluation"]["measured_weight"], context["evaluation"]["total_weight"]) == (50.0, 100.0)
    out = render_supplier_report(context)

    assert "Score          69.5 / 100, over the measured criteria (50 of 100 weight)" in out.text
    assert ("Not measured   Delivered on time and in full (OTIF): no inspection results in the data; "
            "Quality of goods received (rejects per million): no inspection results in the data") in out.text
    quality = re.search(r"^Quality of goods received \(rejects per million\)\s+(.*)$", out.text, re.M).group(1)
    assert quality.split() == [DASH, "30", DASH, DASH]  # value, weight, no points, no weighted points
    assert "    NOT MEASURED, no points: no inspection results in the data;" in out.text
    on_time = re.search(r"^On-time delivery\s+(.*)$", out.text, re.M).group(1)
    assert on_time.split() == ["90.0", "%", "30", "71.4", "42.9"]
    assert "weight counted 60" in out.text and "weight counted 40" in out.text
    assert re.search(r"Total score over the measured criteria\s+69.5", out.text)
    assert "Buyer          — (none on record)" in out.text

    assert cells(out.html, "<strong>Quality of goods received") == [
        "Quality of goods received (rejects per million) Rejected parts per million",
        "not measured no inspection results in the data", "0 units inspected", "30 not counted", DASH, DASH]
    assert cells(out.html, "On-time delivery</strong>")[3:] == ["30 counts 60", "71.4", "42.9"]
    assert ("<strong>Not measured:</strong> Delivered on time and in full (OTIF): no inspection results in the "
            "data; Quality of goods received (rejects per million): no inspection results in the data.") in out.html
    assert "over the measured criteria (50 of 100 weight), their weights scaled up to add to 100" in out.html
    assert "out of 100, over the measured criteria (50 of 100 weight)" in out.html


def test_a_report_with_every_criterion_measured_says_nothing_of_it():
    evaluation = not_measured_evaluations().row(1, named=True)
    context = supplier_context(run=RUN, rule_set=RULE_SET, evaluation=evaluation, window_start=date(2025, 7, 1),
                               as_of=date(2026, 6, 30), late_lines=late_frame(0), bands=RULE_BANDS)
    assert context["evaluation"]["not_measured"] == [] and not context["evaluation"]["renormalised"]
    out = render_supplier_report(context)
    for part in (out.html, out.text):
        assert "not measured" not in part.lower() and "counted" not in part and "over the measured" not in part


def test_the_digest_lists_the_criteria_not_measured_and_marks_scores_over_part_of_them():
    evaluated = not_measured_evaluations()
    context = digest_context(run=RUN, rule_set=RULE_SET, evaluated=evaluated, changes=evaluated.clear().select(
        "supplier_id", from_status=pl.col("current_status"), to_status="status", reason="name"),
        quarantine_summary=pl.DataFrame(schema={"kind": pl.String, "source": pl.String, "rows_read": pl.Int64,
                                                "rows_quarantined": pl.Int64, "share": pl.Float64,
                                                "top_reasons": pl.List(pl.String)}),
        window_start=date(2025, 7, 1), as_of=date(2026, 6, 30),
        bands=[{"band": b, "status": s, "action": ""} for b, s in
               zip("ABCD", ["approved", "conditional", "probation", "disqualified"], strict=True)])
    assert context["not_measured"] == [
        {"name": "Delivered on time and in full (OTIF)", "suppliers": 1, "reason": "no inspection results in the data"},
        {"name": "Quality of goods received (rejects per million)", "suppliers": 1,
         "reason": "no inspection results in the data"},
    ]
    assert context["totals"]["partially_scored"] == 1
    members = {s["supplier_id"]: s["partial"] for b in context["bands"] for s in b["suppliers"]}
    assert members == {"N": True, "S1": False}
    out = render_digest(context)
    assert ("- Delivered on time and in full (OTIF): 1 supplier, no inspection results in the data\n"
            "- Quality of goods received (rejects per million): 1 supplier, no inspection results in the data\n"
            ) in out.text
    assert "1 supplier was scored over the measured criteria only (marked * below)." in out.text
    assert re.search(r"No Inspection Ltd\s+N\s+69.5\*\s+probation", out.text)
    assert re.search(r"Complete Co\s+S1\s+100.0\s+approved", out.text)
    assert cells(out.html, "Quality of goods received") == [
        "Quality of goods received (rejects per million)", "1", "no inspection results in the data"]
    assert ">Criteria not measured</h2>" in out.html and "69.5<span" in out.html


def test_the_digest_counts_each_criterion_and_reason_in_the_rule_sets_order():
    context = built_digest()
    assert context["not_measured"] == [
        {"name": "On-time delivery", "suppliers": 1, "reason": "no order lines due in the window"},
        {"name": "Quality of goods received", "suppliers": 2, "reason": "no inspection results in the data"},
    ]
    assert context["totals"]["partially_scored"] == 1  # S-02; S-05 is insufficient data, not scored
    out = render_digest(context)
    assert "- On-time delivery: 1 supplier, no order lines due in the window" in out.text
    assert "Every criterion was measured" not in out.text


def test_a_digest_with_every_criterion_measured_says_so():
    context = digest()
    context["not_measured"] = []
    out = render_digest(context)
    assert "Every criterion was measured for every supplier." in out.text
    assert "Every criterion was measured for every supplier." in out.html
