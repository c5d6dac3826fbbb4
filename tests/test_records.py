"""The record declaration: what it promises is what validation enforces, the generator produces and the README says."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from suppliers.errors import SourceError
from suppliers.generate import generate_frames, write_sample_data
from suppliers.records import (
    RECORDS,
    Constraints,
    CrossColumnRule,
    Field,
    ForeignKey,
    RecordKind,
    Reference,
    _check_references,
    records_table_markdown,
)
from suppliers.sources import Source, discover_sources, read_source
from suppliers.validate import validate_frame, validate_inputs

README = Path(__file__).resolve().parents[1] / "README.md"
END = dt.date(2026, 6, 30)

# One good row per kind, as text (as a CSV gives it), with values at the edges of what is allowed.
GOOD_ROWS: dict[str, dict[str, str]] = {
    "suppliers": {
        "supplier_id": "S1",
        "name": "Acme Metals",
        "category": "metal",
        "criticality": "critical",
        "contact_email": "sales@acme.example",
        "owner_email": "ann@buyer.example",
        "status": "approved",
        "certificate_expiry": "2026-06-30",
        "active": "true",
    },
    "purchase_order_lines": {
        "po_id": "P1",
        "line_no": "1",
        "supplier_id": "S1",
        "item_id": "I1",
        "category": "metal",
        "order_date": "2024-03-01",
        "promised_date": "2024-03-01",
        "quantity_ordered": "0.5",
        "unit_price": "0",
        "currency": "EUR",
    },
    "receipts": {
        "receipt_id": "R1",
        "po_id": "P1",
        "line_no": "1",
        "received_date": "2024-03-14",
        "quantity_received": "0.3",
        "quantity_accepted": "0.1",
        "quantity_rejected": "0.2",
    },
    "nonconformances": {
        "ncr_id": "N1",
        "supplier_id": "S1",
        "raised_date": "2024-03-20",
        "severity": "minor",
        "closed_date": "2024-03-20",
    },
    "feedback": {"supplier_id": "S1", "date": "2024-03-01", "score": "5"},
}

# Bad values written by hand, with the reason a user sees and its code: every declared enum, bound, pattern and
# rule is here. A quantity is changed with its partner where the receipt's quantities must still add up.
BAD_VALUES = [
    (
        "suppliers",
        {"criticality": "urgent"},
        "criticality",
        "criticality must be one of critical, major, minor",
        "not_allowed",
    ),
    (
        "suppliers",
        {"status": "approved?"},
        "status",
        "status must be one of pending, approved, conditional, probation, disqualified",
        "not_allowed",
    ),
    (
        "suppliers",
        {"contact_email": "acme.example"},
        "contact_email",
        "contact_email is not a valid email address",
        "bad_format",
    ),
    ("suppliers", {"owner_email": "ann@"}, "owner_email", "owner_email is not a valid email address", "bad_format"),
    ("purchase_order_lines", {"line_no": "0"}, "line_no", "line_no must be >= 1", "out_of_range"),
    (
        "purchase_order_lines",
        {"quantity_ordered": "0"},
        "quantity_ordered",
        "quantity_ordered must be > 0",
        "out_of_range",
    ),
    ("purchase_order_lines", {"unit_price": "-0.01"}, "unit_price", "unit_price must be >= 0", "out_of_range"),
    (
        "purchase_order_lines",
        {"currency": "eur"},
        "currency",
        "currency must be a 3-letter upper-case currency code (e.g. EUR)",
        "bad_format",
    ),
    (
        "purchase_order_lines",
        {"promised_date": "2024-02-29"},
        "promised_date",
        "promised_date is before order_date",
        "promised_before_ordered",
    ),
    ("receipts", {"line_no": "-1"}, "line_no", "line_no must be >= 1", "out_of_range"),
    (
        "receipts",
        {"quantity_received": "0", "quantity_accepted": "0", "quantity_rejected": "0"},
        "quantity_received",
        "quantity_received must be > 0",
        "out_of_range",
    ),
    (
        "receipts",
        {"quantity_accepted": "-0.1", "quantity_rejected": "0.4"},
        "quantity_accepted",
        "quantity_accepted must be >= 0",
        "out_of_range",
    ),
    (
        "receipts",
        {"quantity_rejected": "-1", "quantity_accepted": "1.3"},
        "quantity_rejected",
        "quantity_rejected must be >= 0",
        "out_of_range",
    ),
    (
        "receipts",
        {"quantity_rejected": ""},
        "quantity_accepted",
        "quantity_accepted and quantity_rejected must be given together (or both left empty)",
        "half_inspected",
    ),
    (
        "receipts",
        {"quantity_accepted": "0.2"},
        "quantity_accepted",
        "quantity_accepted + quantity_rejected differs from quantity_received",
        "quantities_do_not_add_up",
    ),
    (
        "receipts",
        {"quantity_accepted": "0"},
        "quantity_accepted",
        "quantity_accepted + quantity_rejected differs from quantity_received",
        "quantities_do_not_add_up",
    ),
    (
        "nonconformances",
        {"severity": "Minor"},
        "severity",
        "severity must be one of critical, major, minor",
        "not_allowed",
    ),
    (
        "nonconformances",
        {"closed_date": "2024-03-19"},
        "closed_date",
        "closed_date is before raised_date",
        "closed_before_raised",
    ),
    ("feedback", {"score": "0"}, "score", "score must be between 1 and 5", "out_of_range"),
    ("feedback", {"score": "6"}, "score", "score must be between 1 and 5", "out_of_range"),
]


def _frame(kind: str, changes: dict[str, str | None] | None = None) -> pl.DataFrame:
    row = {**GOOD_ROWS[kind], **(changes or {})}
    return pl.DataFrame({column: [value] for column, value in row.items()}, schema=dict.fromkeys(row, pl.String))


# --- validation enforces the declaration


@pytest.mark.parametrize("kind", list(RECORDS))
def test_the_good_rows_pass_in_the_declared_dtypes(kind: str):
    good, quarantine = validate_frame(kind, _frame(kind), f"{kind}.csv")
    assert quarantine.height == 0, quarantine.to_dicts()
    assert good.schema == RECORDS[kind].schema
    assert good.height == 1


@pytest.mark.parametrize(("kind", "changes", "column", "reason", "code"), BAD_VALUES)
def test_a_value_the_declaration_forbids_is_quarantined_with_its_reason_and_code(
    kind: str, changes: dict[str, str], column: str, reason: str, code: str
):
    good, quarantine = validate_frame(kind, _frame(kind, changes), f"{kind}.csv")
    assert good.height == 0
    assert quarantine.select("source", "row", "column", "code", "reason").rows() == [
        (f"{kind}.csv", 1, column, code, reason)
    ]


def test_the_bad_values_cover_every_declared_enum_bound_and_pattern():
    constrained = {
        (kind.name, f.name)
        for kind in RECORDS.values()
        for f in kind.fields
        if f.constraints.enum
        or f.constraints.pattern
        or any(b is not None for b in (f.constraints.minimum, f.constraints.exclusive_minimum, f.constraints.maximum))
    }
    covered = {(kind, column) for kind, changes, _, _, _ in BAD_VALUES for column in changes}
    assert constrained <= covered, f"add a hand-written bad value to BAD_VALUES for {sorted(constrained - covered)}"
    rules = {(kind.name, rule.reason, rule.code) for kind in RECORDS.values() for rule in kind.rules}
    assert rules <= {(kind, reason, code) for kind, _, _, reason, code in BAD_VALUES}


@pytest.mark.parametrize(
    ("kind", "column"),
    [(kind.name, f.name) for kind in RECORDS.values() for f in kind.fields],
)
def test_an_empty_cell_is_quarantined_exactly_where_the_declaration_requires_a_value(kind: str, column: str):
    good, quarantine = validate_frame(kind, _frame(kind, {column: ""}), f"{kind}.csv")
    if RECORDS[kind].field(column).constraints.required:
        assert quarantine.select("column", "reason").rows() == [(column, "required value is missing")]
    elif column in ("quantity_accepted", "quantity_rejected"):  # optional as a pair, not one without the other
        assert quarantine.select("column", "code").rows() == [("quantity_accepted", "half_inspected")]
    else:
        assert quarantine.height == 0
        assert good.get_column(column).to_list() == [None]


def test_foreign_keys_are_enforced_with_their_declared_reasons(tmp_path: Path):
    raw = {kind: _frame(kind, {"supplier_id": "S9"} if kind == "feedback" else None) for kind in RECORDS}
    raw["receipts"] = _frame("receipts", {"po_id": "P2"})
    inputs = {kind: (Source(kind, tmp_path / f"{kind}.csv", "csv"), frame) for kind, frame in raw.items()}
    result = validate_inputs(inputs, max_quarantine_share=1.0)
    assert result.quarantine.select("kind", "column", "code", "reason").rows() == [
        (
            "receipts",
            "po_id, line_no",
            "unknown_line",
            "unknown purchase order line: po_id 'P2' line_no 1 (not in purchase_order_lines.csv)",
        ),
        ("feedback", "supplier_id", "unknown_supplier", "unknown supplier_id 'S9' (not in suppliers.csv)"),
    ]


def test_a_rule_over_a_row_and_the_row_it_refers_to_is_enforced_with_its_code(tmp_path: Path):
    raw = {kind: _frame(kind) for kind in RECORDS}
    raw["receipts"] = _frame("receipts", {"received_date": "2024-02-29"})  # ordered 2024-03-01
    inputs = {kind: (Source(kind, tmp_path / f"{kind}.csv", "csv"), frame) for kind, frame in raw.items()}
    result = validate_inputs(inputs, max_quarantine_share=1.0)
    assert result.quarantine.select("kind", "row", "column", "value", "code", "reason").rows() == [
        (  # the line the receipt delivers cannot be judged without it
            "purchase_order_lines",
            1,
            "po_id, line_no",
            "P1, 1",
            "delivery_quarantined",
            "a receipt of this line is quarantined (row 1 of receipts.csv): its delivery cannot be judged",
        ),
        (
            "receipts",
            1,
            "received_date",
            "received_date=2024-02-29, order_date=2024-03-01",
            "received_before_ordered",
            "received_date is before the order line's order_date",
        ),
    ]


@pytest.mark.parametrize(
    ("kind", "column"), [(kind.name, column) for kind in RECORDS.values() for column in kind.past_dates]
)
def test_a_date_of_something_that_happened_may_not_be_in_the_future(kind: str, column: str):
    # the one other change keeps the row's other rules: promised not before ordered, an NCR raised later is open
    also = {"order_date": {"promised_date": "2999-12-31"}, "raised_date": {"closed_date": ""}}.get(column, {})
    changes = {column: "2999-12-31", **also}
    good, quarantine = validate_frame(kind, _frame(kind, changes), f"{kind}.csv", as_of=dt.date(2024, 6, 30))
    assert good.height == 0
    assert quarantine.select("row", "column", "value", "code").rows() == [(1, column, "2999-12-31", "in_the_future")]


def test_the_dates_that_may_be_in_the_future_are_promised_dates_and_certificate_expiry():
    dates = {(kind.name, f.name) for kind in RECORDS.values() for f in kind.fields if f.dtype == pl.Date}
    past = {(kind.name, column) for kind in RECORDS.values() for column in kind.past_dates}
    assert dates - past == {("suppliers", "certificate_expiry"), ("purchase_order_lines", "promised_date")}


# --- optional fields: the value may be empty and the column may be left out


OPTIONAL_COLUMNS = {
    "suppliers": ["contact_email", "owner_email", "certificate_expiry"],
    "purchase_order_lines": ["item_id", "category", "order_date", "unit_price", "currency"],
    "receipts": ["quantity_accepted", "quantity_rejected"],
    "nonconformances": [],
    "feedback": [],
}


def test_the_optional_columns_are_the_ones_the_scoring_does_not_need():
    declared = {kind.name: [f.name for f in kind.fields if f.constraints.column_optional] for kind in RECORDS.values()}
    assert declared == OPTIONAL_COLUMNS
    assert RECORDS["receipts"].field("receipt_id").constraints.required  # the key stays required
    closed = RECORDS["nonconformances"].field("closed_date").constraints
    assert not closed.required and not closed.column_optional  # empty means open, so the column must be there


@pytest.mark.parametrize("kind", [kind for kind, columns in OPTIONAL_COLUMNS.items() if columns])
def test_a_file_without_its_optional_columns_validates_with_them_empty_in_the_declared_dtype(kind: str):
    without = _frame(kind).drop(OPTIONAL_COLUMNS[kind])
    good, quarantine = validate_frame(kind, without, f"{kind}.csv")
    assert quarantine.height == 0, quarantine.to_dicts()
    assert good.schema == RECORDS[kind].schema  # every declared column, in file order and declared dtype
    assert good.select(OPTIONAL_COLUMNS[kind]).row(0) == (None,) * len(OPTIONAL_COLUMNS[kind])
    kept = [c for c in RECORDS[kind].columns if c not in OPTIONAL_COLUMNS[kind]]
    assert good.select(kept).equals(validate_frame(kind, _frame(kind), f"{kind}.csv")[0].select(kept))


def test_a_csv_without_the_optional_columns_validates_from_the_file(tmp_path: Path):
    texts = {
        "suppliers": "supplier_id,name,category,criticality,status,active\nS1,Acme,metal,major,approved,true\n",
        "purchase_order_lines": "po_id,line_no,supplier_id,promised_date,quantity_ordered\nP1,1,S1,2024-03-01,10\n",
        "receipts": "receipt_id,po_id,line_no,received_date,quantity_received\nR1,P1,1,2024-03-02,10\n",
    }
    for kind, text in texts.items():
        (tmp_path / f"{kind}.csv").write_text(text, encoding="utf-8")
    sources = discover_sources(tmp_path)
    result = validate_inputs({kind: (src, read_source(src)[0]) for kind, src in sources.items()})
    assert result.quarantine.height == 0, result.quarantine.to_dicts()
    assert result.receipts.row(0, named=True) == {
        "receipt_id": "R1", "po_id": "P1", "line_no": 1, "received_date": dt.date(2024, 3, 2),
        "quantity_received": 10.0, "quantity_accepted": None, "quantity_rejected": None,
    }
    assert result.suppliers.select("contact_email", "owner_email", "certificate_expiry").row(0) == (None,) * 3
    assert result.purchase_order_lines.schema == RECORDS["purchase_order_lines"].schema


def test_a_missing_required_column_still_fails_with_the_close_match_hint():
    uninspected = _frame("receipts").drop("quantity_accepted", "quantity_rejected")
    misspelt = uninspected.rename({"quantity_received": "quantity_recieved"})
    with pytest.raises(SourceError) as caught:
        validate_frame("receipts", misspelt, "receipts.csv")
    assert str(caught.value).startswith(
        "receipts.csv: missing column 'quantity_received' (found 'quantity_recieved' — did you mean it?)"
    )
    assert "optional: quantity_accepted, quantity_rejected" in (caught.value.fix or "")


def test_half_of_a_pair_of_optional_columns_is_a_missing_column():
    # A misnamed quantity_accepted must not silently turn every receipt into an uninspected one.
    misnamed = _frame("receipts").rename({"quantity_accepted": "qty_ok"})
    with pytest.raises(SourceError) as caught:
        validate_frame("receipts", misnamed, "receipts.csv")
    assert str(caught.value).startswith(
        "receipts.csv: missing column 'quantity_accepted' (it comes with 'quantity_rejected', which is there: "
        "give both or neither)"
    )
    close = _frame("receipts").rename({"quantity_rejected": "quantity_reject"})
    with pytest.raises(SourceError, match="'quantity_rejected' \\(found 'quantity_reject' — did you mean it\\?\\)"):
        validate_frame("receipts", close, "receipts.csv")


def test_a_column_that_may_be_empty_but_not_left_out_is_still_required_as_a_column():
    with pytest.raises(SourceError, match="missing column 'closed_date'"):
        validate_frame("nonconformances", _frame("nonconformances").drop("closed_date"), "nonconformances.csv")


def test_a_column_that_may_be_left_out_must_not_require_a_value():
    with pytest.raises(ValueError, match="cannot require a value"):
        Constraints(required=True, column_required=False)
    with pytest.raises(ValueError, match="only a column that may be left out"):
        Constraints(together_with=("b",))
    with pytest.raises(ValueError, match="does not declare: b"):
        RecordKind("things", "a thing", True, (Field("a", pl.String(), "a", Constraints(False, together_with=("b",))),))


# --- the generator produces what is declared


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_generated_data_passes_validation_unchanged_in_the_declared_dtypes(tmp_path: Path, fmt: str):
    frames = generate_frames(suppliers=20, lines=1500, seed=3, end_date=END)
    write_sample_data(frames, tmp_path, fmt)
    sources = discover_sources(tmp_path)
    assert list(sources) == list(RECORDS)
    result = validate_inputs({kind: (src, read_source(src)[0]) for kind, src in sources.items()})
    assert result.quarantine.height == 0, result.quarantine.head(5).to_dicts()
    for kind, declared in RECORDS.items():
        validated = getattr(result, kind)
        assert validated.schema == declared.schema, kind
        assert validated.equals(frames[kind]), kind


# --- the README says what is declared


def _readme_table() -> str:
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index("## Input records")
    table: list[str] = []
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    return "\n".join(table) + "\n"


def test_readme_input_records_table_is_the_declared_one():
    assert _readme_table() == records_table_markdown(), (
        "README.md's '## Input records' table differs from suppliers/records.py: run "
        "`.venv/bin/python -m suppliers.records` and paste its output over the table"
    )


def test_running_the_module_prints_the_table():
    printed = subprocess.run(
        [sys.executable, "-m", "suppliers.records"], capture_output=True, text=True, check=True, cwd=README.parent
    ).stdout
    assert printed == records_table_markdown()


# --- a declaration that cannot be enforced is refused


@pytest.mark.parametrize(
    "build",
    [
        lambda: Constraints(minimum=0, exclusive_minimum=0),
        lambda: Constraints(maximum=5),
        lambda: Constraints(minimum=5, maximum=1),
        lambda: Constraints(enum=("a", "a")),
        lambda: Field("score", pl.String(), "text", Constraints(minimum=1)),
        lambda: Field("when", pl.Date(), "a date", Constraints(enum=("today",))),
        lambda: RecordKind("things", "a thing", True, (Field("a", pl.String(), "a"),), primary_key=("b",)),
        lambda: ForeignKey(("a",), Reference("things", ("a", "b")), unknown="{a}", quarantined="{a}", unknown_code="x"),
        lambda: ForeignKey(("a",), Reference("things", ("a",)), unknown="{b}", quarantined="{a}", unknown_code="x"),
        lambda: ForeignKey(("a",), Reference("things", ("a",)), unknown="{a}", quarantined="{a}", unknown_code="Not x"),
        lambda: CrossColumnRule("a is before b", "a-before-b", "a", ("a", "b"), pl.col("a") >= pl.col("b")),
        lambda: RecordKind(
            "things",
            "a thing",
            True,
            (Field("a", pl.Date(), "a"),),
            rules=(CrossColumnRule("a is before b", "a_before_b", "a", ("a",), pl.col("a") >= pl.col("b")),),
        ),
        lambda: RecordKind("things", "a thing", True, (Field("a", pl.String(), "a"),), past_dates=("a",)),
        lambda: RecordKind("things", "a thing", True, (Field("a", pl.Date(), "a"),), past_dates=("b",)),
    ],
)
def test_a_declaration_validation_could_not_enforce_is_refused(build):
    with pytest.raises(ValueError):
        build()


def test_a_foreign_key_must_refer_to_a_required_kind_declared_before_it():
    child = RecordKind(
        "children",
        "a child",
        True,
        (Field("parent_id", pl.String(), "the parent"),),
        foreign_keys=(
            ForeignKey(("parent_id",), Reference("parents", ("parent_id",)), "{source}", "{source}", "unknown_parent"),
        ),
    )
    parent = RecordKind("parents", "a parent", True, (Field("parent_id", pl.String(), "the parent"),))
    optional_parent = RecordKind("parents", "a parent", False, parent.fields)
    _check_references((parent, child))
    with pytest.raises(ValueError, match="declared before"):
        _check_references((child, parent))
    with pytest.raises(ValueError, match="required"):
        _check_references((optional_parent, child))


def _parent_and_child(rule: CrossColumnRule, primary_key: tuple[str, ...]) -> tuple[RecordKind, RecordKind]:
    parent = RecordKind(
        "parents",
        "a parent",
        True,
        (Field("parent_id", pl.String(), "the parent"), Field("born", pl.Date(), "when")),
        primary_key=primary_key,
    )
    key = ForeignKey(("parent_id",), Reference("parents", ("parent_id",)), "{source}", "{source}", "x", (rule,))
    child = RecordKind(
        "children",
        "a child",
        True,
        (Field("parent_id", pl.String(), "the parent"), Field("born", pl.Date(), "when"), Field("d", pl.Date(), "")),
        foreign_keys=(key,),
    )
    return parent, child


def test_a_rule_of_a_foreign_key_must_use_the_referenced_primary_key_and_declared_fields():
    good = CrossColumnRule("d is before born", "d_before_born", "d", ("d", "born"), pl.col("d") >= pl.col("born"))
    _check_references(_parent_and_child(good, ("parent_id",)))
    with pytest.raises(ValueError, match="primary key"):
        _check_references(_parent_and_child(good, ()))
    unknown = CrossColumnRule("d is before e", "d_before_e", "d", ("d", "e"), pl.col("d") >= pl.col("e"))
    with pytest.raises(ValueError, match="name fields neither it nor parents declares: e"):
        _check_references(_parent_and_child(unknown, ("parent_id",)))
