"""The HTML reports are tables that browsers and mail clients lay out as written.

A block element placed directly in a <table> or <tr> is invalid HTML: browsers move it out of the table
("foster parenting"), so a banner meant for the top of the sheet shows above the masthead instead. The CSS
inliner re-parses the page the same way a browser does, so the nesting is checked on the templates' own output
(before inlining) and the banner's place on the finished HTML a mail client receives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from html.parser import HTMLParser
from typing import Any

import pytest

from reports.render import Rendered, _environment, render_digest, render_supplier_report

# What each table-structure element may hold directly; anything else is moved out of the table by the browser.
ALLOWED_CHILDREN = {
    "table": {"caption", "colgroup", "thead", "tbody", "tfoot", "tr", "script", "template"},
    "thead": {"tr", "script", "template"},
    "tbody": {"tr", "script", "template"},
    "tfoot": {"tr", "script", "template"},
    "tr": {"td", "th", "script", "template"},
}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Element:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: _Element | None, line: int) -> None:
        self.tag, self.attrs, self.parent, self.line = tag, attrs, parent, line

    def ancestors(self) -> list[_Element]:
        chain, node = [], self.parent
        while node is not None:
            chain.append(node)
            node = node.parent
        return chain

    def nearest(self, tag: str) -> _Element | None:
        return next((a for a in self.ancestors() if a.tag == tag), None)

    def has_class(self, name: str) -> bool:
        return name in (self.attrs.get("class") or "").split()


class _Tree(HTMLParser):
    """Every element with its parent, as written (html.parser does no foster parenting), and misplaced text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[_Element] = []
        self.stray_text: list[str] = []
        self._open: list[_Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = _Element(tag, dict(attrs), self._open[-1] if self._open else None, self.getpos()[0])
        self.elements.append(element)
        if tag not in VOID:
            self._open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(_Element(tag, dict(attrs), self._open[-1] if self._open else None, self.getpos()[0]))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        assert self._open and self._open[-1].tag == tag, (
            f"line {self.getpos()[0]}: </{tag}> closes <{self._open[-1].tag if self._open else 'nothing'}>")
        self._open.pop()

    def handle_data(self, data: str) -> None:
        if self._open and self._open[-1].tag in ALLOWED_CHILDREN and data.strip():
            self.stray_text.append(f"line {self.getpos()[0]}: {data.strip()[:60]!r} in <{self._open[-1].tag}>")


def parse(html: str) -> _Tree:
    tree = _Tree()
    tree.feed(html)
    tree.close()
    return tree


RUN = {"run_id": "run-1", "trigger": "nightly", "requested_by": "qa@example.org",
       "generated_at": "2026-11-24T02:00:00+00:00", "code_version": "0.1.0"}
RULE_SET = {"name": "ISO 9001:2015 clause 8.4 supplier evaluation", "version": "2026.1", "content_hash": "ab12"}


def supplier_report(what_if: bool, *, insufficient: bool = False) -> dict[str, Any]:
    criterion = {"name": "On-time delivery", "metric": "on_time_rate", "metric_label": "on-time delivery",
                 "value": 0.935, "unit": "rate", "evidence": 1412, "evidence_label": "order lines", "weight": 60,
                 "points": 84.0, "weighted_points": 84.0, "confidence_low": 0.9, "confidence_high": 0.95,
                 "measured": True, "not_measured_reason": None, "effective_weight": 100}
    not_measured = {**criterion, "name": "Quality", "metric": "ppm_rejected", "metric_label": "rejects per million",
                    "value": None, "unit": "ppm", "evidence": 0, "evidence_label": "units inspected", "weight": 40,
                    "points": None, "weighted_points": None, "confidence_low": None, "confidence_high": None,
                    "measured": False, "not_measured_reason": "no inspection results in the data",
                    "effective_weight": None}
    late = [{"po_id": f"PO-{i}", "line_no": 1, "promised_date": "2026-03-01", "completed_date": "2026-03-09",
             "days_late": 8, "why": "late: 8 days after the promised date"} for i in range(30)]
    change = {"score_change": -3.0, "since": "2026-05-31", "lead": "mostly",
              "causes": [{"text": "On-time delivery (−3.0 points: 93.5 % → 91.5 %)"}],
              "summary": "−3.0 since 2026-05-31, mostly On-time delivery (−3.0 points: 93.5 % → 91.5 %)"}
    return {
        "run": {**RUN, "what_if": what_if},
        "rule_set": RULE_SET,
        "supplier": {"supplier_id": "S-001", "name": "Acme", "category": "fasteners", "criticality": "major",
                     "owner_email": "buyer@example.org"},
        "evaluation": {"as_of": "2026-11-24", "window_start": "2025-11-24", "window_end": "2026-11-24",
                       "score": None if insufficient else 84.0, "band": None if insufficient else "A",
                       "band_rank": 0, "band_count": 4, "status": "approved", "previous_status": None,
                       "previous_score": None, "score_change": None, "insufficient_data": insufficient,
                       "insufficient_reason": "2 order lines; at least 5 needed" if insufficient else None,
                       "gates_hit": [] if insufficient else ["Quality certificate expired"], "action": "Keep.",
                       "not_measured": [] if insufficient else [{"name": "Quality",
                                                                 "reason": "no inspection results in the data"}],
                       "measured_weight": 60, "total_weight": 100, "renormalised": not insufficient,
                       "change": None if insufficient else change},
        "criteria": [] if insufficient else [criterion, not_measured],
        "late_lines": [] if insufficient else late[:25],
        "late_lines_total": 0 if insufficient else len(late),
        "late_kinds": [] if insufficient else [{"kind": "late", "lines": len(late)}],
        "records": {"file": None if insufficient else "records-S-001.csv",
                    "counts": [] if insufficient else [{"metric": "On-time delivery rate", "rows": len(late)}]},
    }


def digest(what_if: bool, *, empty: bool = False) -> dict[str, Any]:
    supplier = {"supplier_id": "S-001", "name": "Acme", "score": 91.0, "status": "approved", "score_change": 1.0,
                "partial": True, "on_time_rate": 0.95}
    return {
        "run": {**RUN, "what_if": what_if},
        "rule_set": RULE_SET,
        "as_of": "2026-11-24", "window_start": "2025-11-24", "window_end": "2026-11-24",
        "totals": {"suppliers_evaluated": 0 if empty else 2, "insufficient_data": 0 if empty else 1,
                   "status_changes": 0 if empty else 1, "quarantined_rows": 0 if empty else 3,
                   "partially_scored": 0 if empty else 1, "delivery_failures": 0},
        "limit": 15,
        "band_chart": [] if empty else [
            {"band": "A", "status": "approved", "count": 1, "share": 0.5, "width": 100, "colour": "0"},
            {"band": "B", "status": "disqualified", "count": 0, "share": 0.0, "width": 0, "colour": "3"},
            {"band": None, "status": "insufficient data", "count": 1, "share": 0.5, "width": 100, "colour": "none"}],
        "new_cases": [],
        "delivery_failures": [],
        "band_count": 2,
        "bands": [] if empty else [
            {"band": "A", "status": "approved", "action": "Keep.", "rank": 0, "suppliers": [supplier]},
            {"band": "B", "status": "disqualified", "action": "Stop.", "rank": 1, "suppliers": []},
        ],
        "insufficient": [] if empty else [{"supplier_id": "S-002", "name": "New", "reason": "too little evidence"}],
        "not_measured": [] if empty else [{"name": "Quality", "suppliers": 1,
                                           "reason": "no inspection results in the data"}],
        "status_changes": [] if empty else [{"supplier_id": "S-001", "name": "Acme", "from_status": "conditional",
                                             "to_status": "approved", "reason": "Score rose into band A",
                                             "change": "+1.0 since 2026-05-31",
                                             "change_explained": "since 2026-05-31"}],
        "score_changes": [] if empty else [{"supplier_id": "S-001", "name": "Acme", "score": 91.0, "score_change": 1.0,
                                            "change": "+1.0 since 2026-05-31",
                                            "change_explained": "since 2026-05-31"}],
        "quarantine": [] if empty else [{"kind": "receipts", "source": "receipts.csv", "rows_read": 100,
                                         "rows_quarantined": 3, "share": 0.03, "top_reasons": ["bad date (3 rows)"]}],
    }


CASES: dict[str, tuple[str, Callable[[Mapping[str, Any]], Rendered], Callable[[bool], dict[str, Any]]]] = {
    "supplier report": ("supplier_report", render_supplier_report, lambda what_if: supplier_report(what_if)),
    "supplier report, insufficient data": ("supplier_report", render_supplier_report,
                                           lambda what_if: supplier_report(what_if, insufficient=True)),
    "digest": ("digest", render_digest, lambda what_if: digest(what_if)),
    "empty digest": ("digest", render_digest, lambda what_if: digest(what_if, empty=True)),
}


@pytest.mark.parametrize("what_if", [False, True], ids=["official", "what-if"])
@pytest.mark.parametrize("case", list(CASES))
def test_nothing_sits_directly_in_a_table_or_row_where_browsers_would_move_it_out(case: str, what_if: bool) -> None:
    name, _, context = CASES[case]
    written = _environment().get_template(f"{name}.html.j2").render(context(what_if))  # as written, not inlined
    tree = parse(written)
    misplaced = [
        f"line {e.line}: <{e.tag}> directly in <{e.parent.tag}>"
        for e in tree.elements
        if e.parent is not None and e.parent.tag in ALLOWED_CHILDREN and e.tag not in ALLOWED_CHILDREN[e.parent.tag]
    ]
    assert misplaced == []
    assert tree.stray_text == []


@pytest.mark.parametrize("case", list(CASES))
def test_what_if_banner_is_a_row_of_the_sheet_right_below_the_masthead(case: str) -> None:
    _, render, context = CASES[case]
    html = render(context(True)).html
    tree = parse(html)
    banners = [e for e in tree.elements if e.has_class("what-if")]
    assert len(banners) == 1 and "What-if evaluation" in html
    banner = banners[0]
    sheet = banner.nearest("table")
    assert sheet is not None and sheet.has_class("sheet"), "the banner must be inside the report's sheet"
    sheet_rows = [e for e in tree.elements if e.tag == "tr" and e.nearest("table") is sheet]
    masthead = next(e for e in tree.elements if e.has_class("masthead"))
    assert sheet_rows.index(banner.nearest("tr")) == sheet_rows.index(masthead.nearest("tr")) + 1


@pytest.mark.parametrize("case", list(CASES))
def test_official_run_has_no_what_if_banner(case: str) -> None:
    _, render, context = CASES[case]
    html = render(context(False)).html
    assert "What-if evaluation" not in html
    assert not [e for e in parse(html).elements if e.has_class("what-if")]
