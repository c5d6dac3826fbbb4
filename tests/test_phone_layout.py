"""Every report reads on a phone: the phone rules of _email.css reach the head of each rendered document, and the
columns they hide on a small screen are the ones marked for it, never a value, points, status or band.

The rules cannot be inlined (they are @media rules), so they must survive into a <style> block of the document
a mail client receives; the inlined desktop styles stay on every element for clients that drop that block.
"""

from __future__ import annotations

import re
from datetime import date
from html.parser import HTMLParser
from typing import Any

import pytest
from markupsafe import Markup
from test_quality_report import context as quality_report
from test_templates import digest, supplier_report

from reports.context import buyer_context
from reports.evidence import _environment as evidence_environment
from reports.quality import render_quality_report
from reports.render import (
    render_buyer_message,
    render_digest,
    render_supplier_html,
    render_supplier_report,
    supplier_sections_html,
)

PHONE = "@media only screen and (max-width: 480px)"


class Tables(HTMLParser):
    """The head's <style> text, and each data table's header row: (header text, classes) per column."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.head_style, self.tables = "", []
        self._in: str | None = None
        self._cell: list[Any] | None = None
        self._head = True
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if tag == "body":
            self._head = False
        elif tag == "style":
            self._in = "style"
        elif tag == "table" and "data" in classes:
            self.tables.append([])
            self._in = "header"
        elif tag == "th" and self._in == "header":
            self._cell = ["", set(classes)]

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in = None
        elif tag == "th" and self._cell is not None:
            self.tables[-1].append((self._cell[0].strip(), self._cell[1]))
            self._cell = None
        elif tag == "tr" and self._in == "header":
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "style" and self._head:
            self.head_style += data
        elif self._cell is not None:
            self._cell[0] += data

    def on_a_phone(self) -> dict[tuple[str, ...], tuple[str, ...]]:
        """Each data table's columns (by their headers) and those a phone shows."""
        return {tuple(text for text, _ in table): tuple(text for text, classes in table if "wide-only" not in classes)
                for table in self.tables}


def with_actions(context: dict[str, Any]) -> dict[str, Any]:
    action = {"action_id": "SCAR-0001", "label": "Corrective action request", "description": "Find the cause.",
              "raised_on": "2026-11-24", "due": "2026-12-24", "overdue": False, "owner": "buyer@example.org"}
    return {**context, "asl": {"profile": "critical", "reevaluate_every_days": 90, "next_due": "2027-02-22",
                               "proposal": None, "actions": [action]}}


def buyer_message() -> str:
    report = with_actions(supplier_report(False))
    report["evaluation"] = {**report["evaluation"], "band_rank": 0}
    context = buyer_context("buyer@example.org", [report], run=report["run"], rule_set=report["rule_set"],
                            bands=[{"band": "A", "status": "approved"}, {"band": "B", "status": "conditional"}],
                            as_of=date(2026, 11, 24))
    section = Markup(supplier_sections_html(render_supplier_html(report)))
    return render_buyer_message({**context, "sections": [{**context["sections"][0], "html": section, "text": ""}],
                                 "more": []}).html


REPORTS = {
    "supplier report": lambda: render_supplier_report(with_actions(supplier_report(False))).html,
    "digest": lambda: render_digest(digest(False)).html,
    "buyer message": buyer_message,
    "data-quality report": lambda: render_quality_report(quality_report()).html,
}


@pytest.mark.parametrize("kind", REPORTS)
def test_the_phone_rules_are_kept_in_the_head_of_every_report(kind: str) -> None:
    html = REPORTS[kind]()
    page = Tables(html)
    assert page.head_style.strip().startswith(PHONE), "one @media block in the head's <style>"
    assert html.count("<style") == 1 and html.index("<style") < html.index("</head>")
    rules = " ".join(page.head_style.split())
    for rule in (".scorecell { display: block !important; width: 100% !important;",
                 ".wide-only { display: none !important; }"):
        assert rule in rules
    # Each declaration must beat the inlined style="" of the desktop layout, which only !important does.
    declarations = [d for d in re.findall(r"\{([^{}]*)\}", page.head_style) for d in d.split(";") if d.strip()]
    assert declarations and all(d.strip().endswith("!important") for d in declarations)
    # The desktop layout is still inlined on the elements themselves, for clients that drop <style>.
    assert re.search(r'<td class="scorecell" width="25%" style="[^"]*padding: 12px 16px;', html)


# Per report, each data table's columns and those a phone shows: what a reader needs to judge a supplier (value,
# points, weighted points, score, band, status, change, due date) is always among them.
CRITERIA = ("Criterion", "Value", "Evidence", "Weight", "Points", "Weighted")
ACTIONS = ("Action", "What", "Raised", "Due", "Owner")
LATE = ("PO", "Line", "Promised", "Completed", "Days late", "Why")
BY_BAND = ("Supplier", "ID", "Score", "On time", "Status", "Change")
SUMMARY = ("Supplier", "Score", "Band", "Status", "Change", "Next due")
ON_A_PHONE = {
    "supplier report": {ACTIONS: ("Action", "What", "Due", "Owner"),
                        CRITERIA: ("Criterion", "Value", "Points", "Weighted"),
                        LATE: ("PO", "Line", "Completed", "Days late", "Why")},
    "digest": {
        ("Supplier", "From", "To", "Reason"): ("Supplier", "From", "To", "Reason"),
        ("Supplier", "Score", "Change"): ("Supplier", "Score", "Change"),
        ("Criterion", "Suppliers", "Why not measured"): ("Criterion", "Suppliers", "Why not measured"),
        BY_BAND: ("Supplier", "Score", "On time", "Status", "Change"),
        ("Supplier", "ID", "Reason"): ("Supplier", "ID", "Reason"),
        ("Records", "Source", "Rows read", "Quarantined", "Share", "Top reasons"): ("Records", "Quarantined", "Share",
                                                                                   "Top reasons")},
    "buyer message": {
        SUMMARY: ("Supplier", "Score", "Band", "Status", "Change"),
        ACTIONS: ("Action", "What", "Due", "Owner"),
        CRITERIA: ("Criterion", "Value", "Points", "Weighted"),
        LATE: ("PO", "Line", "Completed", "Days late", "Why"),
        ("Band", "Score", "Status", "What it means"): ("Band", "Score", "Status", "What it means")},
    "data-quality report": {
        ("Records", "Source", "Rows read", "Quarantined", "Share"): ("Records", "Quarantined", "Share"),
        ("Reason code", "What it means", "Rows"): ("Reason code", "What it means", "Rows"),
        ("Row", "Column", "Value as written", "Reason"): ("Row", "Column", "Value as written", "Reason")},
}


@pytest.mark.parametrize("kind", REPORTS)
def test_only_the_columns_a_phone_can_do_without_are_hidden_on_one(kind: str) -> None:
    assert Tables(REPORTS[kind]()).on_a_phone() == ON_A_PHONE[kind]


def test_a_hidden_column_is_hidden_in_every_row_so_the_other_columns_stay_in_line() -> None:
    html = render_supplier_report(with_actions(supplier_report(False))).html
    criteria = html[html.index(">Criteria</h2>"):]
    criteria = criteria[:criteria.index("</table>")]
    rows = re.findall(r"<tr>(.*?)</tr>", criteria, re.S)
    assert len(rows) == 4  # header, two criteria, total
    for row in rows:
        cells = re.findall(r"<t[hd]([^>]*)>", row)
        colspans = [int(m[1]) if (m := re.search(r'colspan="(\d+)"', c)) else 1 for c in cells]
        hidden = [i for i, c in enumerate(cells) if "wide-only" in c]
        assert sum(colspans) == 6, row  # every row spans the six columns on a desktop
        # ... and on a phone the same four: the 3rd and 4th columns (evidence, weight) are hidden in every row.
        starts = [sum(colspans[:i]) for i in range(len(cells))]
        assert [starts[i] for i in hidden] == [2, 3], row


def evidence_page(columns: int) -> str:
    section = {"id": "asl", "title": "Approved supplier list", "about": "", "count": 1, "note": None,
               "columns": [{"label": f"c{i}", "mono": False, "number": False, "date": False, "long": False}
                           for i in range(columns)], "rows": [tuple(f"v{i}" for i in range(columns))]}
    return evidence_environment().get_template("evidence.html.j2").render(
        start="2026-01-01", end="2026-06-30", generated_at="2026-07-01 00:00 UTC", code_version="0", organisation=None,
        scope=None, store="the store", sections=[section], empty=False, rule_texts=[])


def test_a_wide_evidence_table_says_on_a_phone_that_it_scrolls_and_keeps_its_first_column_in_view() -> None:
    wide, narrow = evidence_page(9), evidence_page(3)
    assert "9 columns: the table scrolls sideways, its first column stays." in wide
    assert "scrolls sideways" not in narrow.split("</style>")[1]
    phone = " ".join(wide[wide.index("@media (max-width: 640px)"):wide.index("@page")].split())
    assert ".swipe { display: block; }" in phone and "position: sticky; left: 0;" in phone
    assert ".swipe { display: none;" in wide.split("@media")[0], "hidden on a wider screen and in print"
