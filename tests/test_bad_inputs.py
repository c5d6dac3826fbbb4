"""Bad inputs, one at a time: each is quarantined with its reason code, reason, row, column and value alone.

Every case starts from the same small good data set (below, as CSV text) and changes one cell or adds one row.
A case asserts the whole quarantine, so a bad input that is not caught, caught twice or caught with the wrong
code fails, and it asserts the number of good rows left of every kind, so a check that throws out good rows
with the bad one fails too. Row numbers are data rows: the file's line number minus the header. The receipts
file has a blank line (row 5), which is skipped but still counted.

Then a property: whatever text is in the cells, validation does not raise, and every row read ends either good
or quarantined.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suppliers.records import RECORDS
from suppliers.schemas import CANONICAL
from suppliers.sources import Source, discover_sources, read_source
from suppliers.validate import QUARANTINE_CODES, QUARANTINE_SCHEMA, ValidatedInputs, validate_inputs

TODAY = dt.date.today()
TOMORROW = (TODAY + dt.timedelta(days=1)).isoformat()

GOOD: dict[str, str] = {
    # S4 has no lines, NCRs or feedback: a bad S4 takes nothing else with it.
    "suppliers": """\
supplier_id,name,category,criticality,contact_email,owner_email,status,certificate_expiry,active
S1,Acme Metals,metal,critical,sales@acme.example,ann@buyer.example,approved,2999-06-30,true
S2,Bolt & Co,metal,minor,sales@bolt.example,bob@buyer.example,conditional,,yes
S3,Cog Plastics,plastic,major,sales@cog.example,ann@buyer.example,approved,2026-01-01,true
S4,Dull Ltd,paper,minor,sales@dull.example,bob@buyer.example,pending,,false
""",
    # P4 (open, promised far ahead) and P5 have no receipts: a bad one takes nothing else with it.
    "purchase_order_lines": """\
po_id,line_no,supplier_id,item_id,category,order_date,promised_date,quantity_ordered,unit_price,currency
P1,1,S1,I1,metal,2026-03-01,2026-03-15,100,2.50,EUR
P1,2,S1,I2,metal,2026-03-01,2026-03-20,50,1,EUR
P2,1,S2,I3,metal,2026-04-01,2026-04-15,10,1.25,USD
P3,1,S3,I4,plastic,2026-05-01,2026-05-10,20,3,EUR
P4,1,S2,I5,metal,2026-06-01,2999-02-01,5,1,EUR
P5,1,S3,I6,plastic,2026-06-01,2026-06-15,8,2,GBP
""",
    "receipts": """\
receipt_id,po_id,line_no,received_date,quantity_received,quantity_accepted,quantity_rejected
R1,P1,1,2026-03-14,100,98,2
R2,P1,2,2026-03-22,30,30,0
R3,P1,2,2026-03-25,20,19,1
R4,P2,1,2026-04-01,10,10,0

R5,P3,1,2026-05-09,20,18.5,1.5
""",
    "nonconformances": """\
ncr_id,supplier_id,raised_date,severity,closed_date
N1,S1,2026-03-15,major,2026-04-01
N2,S2,2026-04-21,minor,
N3,S3,2026-05-12,critical,2026-05-20
""",
    "feedback": """\
supplier_id,date,score
S1,2026-04-01,4
S2,2026-04-01,3
S3,2026-06-01,5
""",
}
GOOD_ROWS = {"suppliers": 4, "purchase_order_lines": 6, "receipts": 5, "nonconformances": 3, "feedback": 3}


@dataclass(frozen=True)
class Case:
    """One bad input: ``cell`` sets (row, column) to a value, or ``append`` adds a CSV line at the end."""

    kind: str
    expected: list[tuple[str, int, str, str | None, str, str]]  # (kind, row, column, value, code, reason start)
    cell: tuple[int, str, str] | None = None
    append: str | None = None
    lost: dict[str, int] = field(default_factory=dict)  # good rows lost per kind; default: the changed row

    def files(self) -> dict[str, str]:
        files = dict(GOOD)
        if self.cell is not None:
            row, column, value = self.cell
            lines = files[self.kind].splitlines()
            header = lines[0].split(",")
            cells = lines[row].split(",")
            cells[header.index(column)] = value
            lines[row] = ",".join(cells)
            files[self.kind] = "\n".join(lines) + "\n"
        if self.append is not None:
            files[self.kind] += self.append + "\n"
        return files

    def good_rows(self) -> dict[str, int]:
        lost = self.lost or ({self.kind: 1} if self.cell is not None else {})
        return {kind: count - lost.get(kind, 0) for kind, count in GOOD_ROWS.items()}


_AS_WRITTEN = object()


# A receipt set aside for what it says leaves its order line's delivery unknown: the line is set aside too
# (not for a copy of another receipt, nor when the receipt's own line reference is what is wrong).
_NO_KNOCK_ON = {"duplicate_key", "duplicate_row", "unknown_line", "reference_quarantined"}


def _line_of_receipt(row: int) -> tuple[int, str]:
    """The row in GOOD's order lines of the line GOOD's receipt ``row`` delivers, and its key as written."""
    receipt = GOOD["receipts"].splitlines()[row].split(",")
    key = (receipt[1], receipt[2])
    lines = [line.split(",") for line in GOOD["purchase_order_lines"].splitlines()[1:]]
    return next(n for n, line in enumerate(lines, start=1) if (line[0], line[1]) == key), ", ".join(key)


def one(kind: str, row: int, column: str, raw: str, code: str, reason: str, value: Any = _AS_WRITTEN) -> Case:
    """A cell set to ``raw`` and caught at that cell; ``value`` when the quarantine shows other than the cell."""
    shown = raw if value is _AS_WRITTEN else value
    caught = (kind, row, column, shown, code, reason)
    if kind == "receipts" and code not in _NO_KNOCK_ON and column not in ("po_id", "line_no"):
        line_row, key = _line_of_receipt(row)
        knock_on = ("purchase_order_lines", line_row, "po_id, line_no", key, "delivery_quarantined",
                    f"a receipt of this line is quarantined (row {row} of receipts.csv)")
        return Case(kind, [knock_on, caught], cell=(row, column, raw), lost={"receipts": 1, "purchase_order_lines": 1})
    return Case(kind, [caught], cell=(row, column, raw))


CASES = {
    # unparseable
    "date not ISO": one(
        "purchase_order_lines", 6, "order_date", "01/06/2026", "unparseable", "not a date (expected YYYY-MM-DD)"
    ),
    "date that does not exist": one("feedback", 2, "date", "2026-02-30", "unparseable", "not a date"),
    "text for a number": one("receipts", 6, "quantity_received", "twenty", "unparseable", "not a number"),
    "number too big for a float": one("receipts", 6, "quantity_received", "1e400", "unparseable", "not a number"),
    "fraction for a whole number": one("feedback", 3, "score", "4.5", "unparseable", "not a whole number"),
    "whole number too big": one(
        "purchase_order_lines", 6, "line_no", "99999999999999999999", "unparseable", "not a whole number"
    ),
    "not a boolean": one("suppliers", 4, "active", "maybe", "unparseable", "not a true/false value"),
    # missing
    # (an empty CSV cell is read as no value at all: the quarantine shows none)
    "empty text": one("suppliers", 4, "name", "", "missing", "required value is missing", value=None),
    "blank date": one("purchase_order_lines", 6, "promised_date", "   ", "missing", "required value is missing"),
    "empty number": one("receipts", 6, "quantity_received", "", "missing", "required value is missing", value=None),
    "empty date": one("receipts", 1, "received_date", "", "missing", "required value is missing", value=None),
    # bounds
    "negative quantity ordered": one(
        "purchase_order_lines", 6, "quantity_ordered", "-8", "out_of_range", "quantity_ordered must be > 0"
    ),
    "zero quantity ordered": one(
        "purchase_order_lines", 6, "quantity_ordered", "0", "out_of_range", "quantity_ordered must be > 0"
    ),
    "negative price": one("purchase_order_lines", 5, "unit_price", "-1", "out_of_range", "unit_price must be >= 0"),
    "line number zero": one("receipts", 6, "line_no", "0", "out_of_range", "line_no must be >= 1"),
    "score above 5": one("feedback", 1, "score", "6", "out_of_range", "score must be between 1 and 5"),
    "score below 1": one("feedback", 1, "score", "0", "out_of_range", "score must be between 1 and 5"),
    # enumerations and formats
    "criticality in capitals": one(
        "suppliers", 4, "criticality", "Minor", "not_allowed", "criticality must be one of critical, major, minor"
    ),
    "unknown status": one("suppliers", 4, "status", "active", "not_allowed", "status must be one of pending,"),
    "unknown severity": one("nonconformances", 2, "severity", "high", "not_allowed", "severity must be one of"),
    "currency in lower case": one(
        "purchase_order_lines", 6, "currency", "gbp", "bad_format", "currency must be a 3-letter upper-case"
    ),
    "currency as a symbol": one(
        "purchase_order_lines", 6, "currency", "£", "bad_format", "currency must be a 3-letter upper-case"
    ),
    "email without @": one(
        "suppliers", 4, "contact_email", "sales(at)dull.example", "bad_format", "contact_email is not a valid email"
    ),
    # cross-column rules
    "promised before ordered": one(
        "purchase_order_lines",
        6,
        "promised_date",
        "2026-05-31",
        "promised_before_ordered",
        "promised_date is before order_date",
        value="promised_date=2026-05-31, order_date=2026-06-01",
    ),
    "accepted + rejected exceeds received": one(
        "receipts",
        6,
        "quantity_accepted",
        "19",
        "quantities_do_not_add_up",
        "quantity_accepted + quantity_rejected differs from quantity_received",
        value="quantity_accepted=19, quantity_rejected=1.5, quantity_received=20",
    ),
    "accepted + rejected short of received": one(
        "receipts",
        6,
        "quantity_accepted",
        "10",
        "quantities_do_not_add_up",
        "quantity_accepted + quantity_rejected differs from quantity_received",
        value="quantity_accepted=10, quantity_rejected=1.5, quantity_received=20",
    ),
    "accepted given without rejected": Case(
        "receipts",
        [("purchase_order_lines", _line_of_receipt(6)[0], "po_id, line_no", _line_of_receipt(6)[1],
          "delivery_quarantined", "a receipt of this line is quarantined (row 6 of receipts.csv)"),
         ("receipts", 6, "quantity_accepted", "quantity_accepted=18.5, quantity_rejected=", "half_inspected",
          "quantity_accepted and quantity_rejected must be given together (or both left empty)")],
        cell=(6, "quantity_rejected", ""),
        lost={"receipts": 1, "purchase_order_lines": 1},
    ),
    "closed before raised": one(
        "nonconformances",
        3,
        "closed_date",
        "2026-05-11",
        "closed_before_raised",
        "closed_date is before raised_date",
        value="closed_date=2026-05-11, raised_date=2026-05-12",
    ),
    "received before ordered": one(
        "receipts",
        6,
        "received_date",
        "2026-04-30",
        "received_before_ordered",
        "received_date is before the order line's order_date",
        value="received_date=2026-04-30, order_date=2026-05-01",
    ),
    # in the future
    "received tomorrow": one("receipts", 6, "received_date", TOMORROW, "in_the_future", "received_date is in the f"),
    "ordered tomorrow": one(
        "purchase_order_lines", 5, "order_date", TOMORROW, "in_the_future", "order_date is in the future"
    ),
    "raised tomorrow": one("nonconformances", 2, "raised_date", TOMORROW, "in_the_future", "raised_date is in the f"),
    "closed tomorrow": one("nonconformances", 3, "closed_date", TOMORROW, "in_the_future", "closed_date is in the f"),
    "feedback from the year 2999": one("feedback", 3, "date", "2999-01-01", "in_the_future", "date is in the future"),
    # references
    "line for an unknown supplier": one(
        "purchase_order_lines", 6, "supplier_id", "S9", "unknown_supplier", "unknown supplier_id 'S9' (not in supp"
    ),
    "NCR for an unknown supplier": one(
        "nonconformances", 2, "supplier_id", "S404", "unknown_supplier", "unknown supplier_id 'S404'"
    ),
    "receipt for an unknown line": Case(
        "receipts",
        [
            (
                "receipts",
                6,
                "po_id, line_no",
                "P3, 2",
                "unknown_line",
                "unknown purchase order line: po_id 'P3' line_no 2 (not in purchase_order_lines.csv)",
            )
        ],
        cell=(6, "line_no", "2"),
    ),
    "receipt for a quarantined line": Case(
        "purchase_order_lines",
        [
            ("purchase_order_lines", 4, "quantity_ordered", "-20", "out_of_range", "quantity_ordered must be > 0"),
            (
                "receipts",
                6,
                "po_id, line_no",
                "P3, 1",
                "reference_quarantined",
                "purchase order line po_id 'P3' line_no 1 is quarantined in purchase_order_lines.csv",
            ),
        ],
        cell=(4, "quantity_ordered", "-20"),
        lost={"purchase_order_lines": 1, "receipts": 1},
    ),
    # duplicates: row 7 of receipts because the blank line (row 5) counts
    "repeated receipt id": Case(
        "receipts",
        [("receipts", 7, "receipt_id", "R1", "duplicate_key", "duplicate of row 1")],
        append="R1,P1,2,2026-03-26,1,1,0",
    ),
    "receipt copied": Case(
        "receipts",
        [("receipts", 7, "receipt_id", "R2", "duplicate_row", "exact copy of row 2")],
        append="R2,P1,2,2026-03-22,30,30,0",
    ),
    "repeated order line": Case(
        "purchase_order_lines",
        [("purchase_order_lines", 7, "po_id, line_no", "P1, 2", "duplicate_key", "duplicate of row 2")],
        append="P1,2,S1,I9,metal,2026-03-01,2026-03-20,5,1,EUR",
    ),
    "supplier copied": Case(
        "suppliers",
        [("suppliers", 5, "supplier_id", "S4", "duplicate_row", "exact copy of row 4")],
        append=GOOD["suppliers"].splitlines()[4],
    ),
    "NCR copied": Case(
        "nonconformances",
        [("nonconformances", 4, "ncr_id", "N2", "duplicate_row", "exact copy of row 2")],
        append="N2,S2,2026-04-21,minor,",
    ),
}


def validate_texts(folder: Path, files: dict[str, str], **kwargs) -> ValidatedInputs:
    for kind, text in files.items():
        (folder / f"{kind}.csv").write_text(text, encoding="utf-8")
    sources = discover_sources(folder)
    raw = {kind: (source, read_source(source)[0]) for kind, source in sources.items()}
    return validate_inputs(raw, max_quarantine_share=1.0, **kwargs)


def good_counts(result: ValidatedInputs) -> dict[str, int]:
    return {kind: getattr(result, kind).height for kind in RECORDS}


def test_the_good_data_set_is_good(tmp_path: Path):
    result = validate_texts(tmp_path, GOOD)
    assert result.quarantine.height == 0, result.quarantine.to_dicts()
    assert good_counts(result) == GOOD_ROWS
    assert result.summary.filter(pl.col("kind") == "receipts").get_column("rows_read").item() == 5  # blank skipped


def test_the_table_has_at_least_25_cases_and_every_code_of_the_vocabulary_but_one():
    assert len(CASES) >= 25
    covered = {code for case in CASES.values() for _, _, _, _, code, _ in case.expected}
    # check_failed is for a check the declaration does not know; test_validate.py gives it one
    assert covered == set(QUARANTINE_CODES) - {"check_failed"}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_a_bad_input_is_quarantined_alone_with_its_code_reason_row_column_and_value(tmp_path: Path, case: Case):
    result = validate_texts(tmp_path, case.files())
    got = result.quarantine.select("kind", "row", "column", "value", "code", "reason").rows()
    assert len(got) == len(case.expected), got
    for (kind, row, column, value, code, reason), expected in zip(got, case.expected, strict=True):
        want_kind, want_row, want_column, want_value, want_code, want_reason = expected
        assert (kind, row, column, value, code) == (want_kind, want_row, want_column, want_value, want_code)
        assert reason.startswith(want_reason), (reason, want_reason)
    assert result.quarantine.schema == pl.Schema(QUARANTINE_SCHEMA)
    assert good_counts(result) == case.good_rows()


def test_the_future_starts_after_today_even_when_as_of_is_back_dated(tmp_path: Path):
    # R5 (2026-05-09) happened after this as-of date but before today: not an error, the metrics skip it
    result = validate_texts(tmp_path, GOOD, as_of=dt.date(2026, 4, 1))
    assert result.quarantine.height == 0
    assert good_counts(result) == GOOD_ROWS


def test_the_future_starts_after_a_forward_as_of_date(tmp_path: Path):
    as_of = TODAY + dt.timedelta(days=30)
    soon, later = (TODAY + dt.timedelta(days=10)).isoformat(), (TODAY + dt.timedelta(days=40)).isoformat()
    feedback = GOOD["feedback"] + f"S1,{soon},4\nS2,{later},4\n"
    result = validate_texts(tmp_path, {**GOOD, "feedback": feedback}, as_of=as_of)
    assert result.quarantine.select("kind", "row", "column", "value", "code", "reason").rows() == [
        ("feedback", 5, "date", later, "in_the_future", f"date is in the future (after {as_of.isoformat()})")
    ]


def test_the_reason_for_a_future_date_names_today_by_default(tmp_path: Path):
    result = validate_texts(tmp_path, CASES["received tomorrow"].files())
    assert result.quarantine.filter(pl.col("kind") == "receipts").get_column("reason").to_list() == [
        f"received_date is in the future (after {TODAY.isoformat()})"
    ]


def test_a_copied_row_of_a_kind_without_a_key_is_kept(tmp_path: Path):
    # feedback has no key: two people may give the same score on the same day
    feedback = GOOD["feedback"] + "S1,2026-04-01,4\n"
    result = validate_texts(tmp_path, {**GOOD, "feedback": feedback})
    assert result.quarantine.height == 0
    assert result.feedback.height == 4


def test_a_copy_of_a_repeated_key_is_a_copy_of_the_row_it_copies(tmp_path: Path):
    receipts = GOOD["receipts"] + "R1,P1,2,2026-03-26,1,1,0\nR1,P1,2,2026-03-26,1,1,0\nR1,P1,1,2026-03-14,100,98,2\n"
    result = validate_texts(tmp_path, {**GOOD, "receipts": receipts})
    assert result.quarantine.select("row", "code", "reason").rows() == [
        (7, "duplicate_key", "duplicate of row 1"),
        (8, "duplicate_row", "exact copy of row 7"),
        (9, "duplicate_row", "exact copy of row 1"),
    ]


def test_a_receipt_of_a_line_without_an_order_date_is_not_judged_against_it(tmp_path: Path):
    """order_date may become optional: an empty one is "missing" today, and never "received before ordered"."""
    lines = GOOD["purchase_order_lines"].replace("P3,1,S3,I4,plastic,2026-05-01", "P3,1,S3,I4,plastic,")
    receipts = GOOD["receipts"].replace("R5,P3,1,2026-05-09", "R5,P3,1,2026-01-01")
    result = validate_texts(tmp_path, {**GOOD, "purchase_order_lines": lines, "receipts": receipts})
    codes = result.quarantine.select("kind", "code").rows()
    assert ("receipts", "received_before_ordered") not in codes


def test_the_quantity_rule_does_not_judge_a_receipt_without_both_accepted_and_rejected():
    """An empty accepted/rejected pair is a receipt not inspected (yet): the rule's expression is null for it."""
    rules = {rule.code: rule for rule in RECORDS["receipts"].rules}
    frame = pl.DataFrame(
        {
            "quantity_received": [10.0, 10.0, 10.0, 10.0, 0.3],
            "quantity_accepted": [None, 4.0, None, 4.0, 0.1],
            "quantity_rejected": [None, None, 1.0, 1.0, 0.2],
        }
    )
    assert frame.select(rules["quantities_do_not_add_up"].holds).to_series().to_list() == [
        None, None, None, False, True]
    # half a pair is its own mistake: not "not inspected", not "does not add up"
    assert frame.select(rules["half_inspected"].holds).to_series().to_list() == [True, False, False, True, True]


# --- property: arbitrary cell text never raises, and every row read ends good or quarantined

_SAMPLES: dict[str, list[str]] = {
    column: sorted({line.split(",")[i] for line in text.splitlines()[1:] if line})
    for kind, text in GOOD.items()
    for i, column in enumerate(text.splitlines()[0].split(","))
}
_ODD = st.sampled_from(
    ["", " ", "\x00", "\x1b[31m", "\t\r\n", "1e400", "1e308", "-1e308", "-0", "NaN", "inf", "9" * 40, "2026-13-01",
     "9999-12-31", "ä€😀", '"', "{}", "{source}"]
)
_CELL = st.one_of(st.text(max_size=12), _ODD)


@st.composite
def _frames(draw) -> dict[str, pl.DataFrame]:
    frames = {}
    for kind, columns in CANONICAL.items():
        height = draw(st.integers(min_value=0, max_value=4))
        frames[kind] = pl.DataFrame(
            {
                column: [draw(st.one_of(st.sampled_from(_SAMPLES[column]), _CELL)) for _ in range(height)]
                for column in columns
            },
            schema=dict.fromkeys(columns, pl.String),
        )
    return frames


@settings(max_examples=20, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=_frames())
def test_any_cell_text_is_validated_without_raising_and_every_row_ends_good_or_quarantined(frames):
    raw = {kind: (Source(kind, Path(f"{kind}.csv"), "csv"), frame) for kind, frame in frames.items()}
    result = validate_inputs(raw, max_quarantine_share=1.0)
    assert result.quarantine.schema == pl.Schema(QUARANTINE_SCHEMA)
    assert set(result.quarantine.get_column("code")) <= set(QUARANTINE_CODES)
    assert result.quarantine.get_column("row").null_count() == 0
    for summary in result.summary.iter_rows(named=True):
        kind = summary["kind"]
        good = getattr(result, kind)
        assert good.schema == pl.Schema(CANONICAL[kind])
        rows = result.quarantine.filter(pl.col("kind") == kind).get_column("row")
        assert rows.is_between(1, frames[kind].height).all()
        assert summary["rows_read"] <= frames[kind].height
        assert good.height + rows.n_unique() == summary["rows_read"], kind
        assert summary["rows_quarantined"] == rows.n_unique()


def test_quarantine_codes_are_snake_case_words():
    assert all(re.fullmatch(r"[a-z][a-z_]*", code) for code in QUARANTINE_CODES)
