"""How a source writes a field's values, and turning such cells into the field's declared dtype.

A canonical file writes ISO dates, plain numbers and true/false; a real export writes ``2-Jun-06`` and
``Sept 3, 2014`` in one column, ``$244,000.00``, ``1.234,5``, ``Y``/``N`` and "Date Not Captured". A
:class:`ColumnFormat` (from the mapping file; the defaults describe a canonical file) says how, and the two
steps here apply it as Polars expressions:

1. :func:`clean_cell`: text trimmed; an empty cell or a missing-value token (``N/A``) is null; a value map
   (``Y`` → ``true``, ``A`` → ``critical``) is applied; a default fills what is still empty;
2. :func:`parse_cell`: the cleaned value cast to the dtype, null where it does not parse — validation then
   quarantines that cell with its original text and :meth:`ColumnFormat.failure_reason`.

Words follow Frictionless Table Schema: ``missingValues``, ``format``, ``decimalChar``, ``groupChar``,
``bareNumber``, ``trueValues``, ``falseValues``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

__all__ = [
    "ColumnFormat", "CANONICAL_FORMAT", "clean_cell", "changed_by_cleaning", "has_words", "parse_cell",
    "parse_text_quickly", "is_text",
]

# Spellings strptime's %b does not know, written as the abbreviation it does.
# (Its parser accepts full month names too, so only the in-between "Sept" needs help.)
_MONTH_SPELLINGS = {r"(?i)\bsept\b": "Sep"}
_CURRENCY_SIGNS = r"[$€£¥₹]|\b[A-Z]{3}\b"


@dataclass(frozen=True)
class ColumnFormat:
    """How one source writes one field (every default is what a canonical file writes)."""

    missing_values: tuple[str, ...] = ()  # cell texts that mean "no value", besides an empty cell
    values: tuple[tuple[str, str], ...] = ()  # value map: (text as written, text as the record kind spells it)
    default: str | None = None  # the text a still-empty cell gets, e.g. a criticality the export lacks
    date_formats: tuple[str, ...] = ("%Y-%m-%d",)  # strptime formats, tried in order
    decimal_char: str = "."
    group_char: str | None = None  # thousands separator, removed before parsing: "," in 1,234.5
    bare_number: bool = True  # False: a currency sign or code around the number is allowed ($244,000.00)
    true_values: tuple[str, ...] = ("true", "yes", "1")
    false_values: tuple[str, ...] = ("false", "no", "0")

    def failure_reason(self, dtype: pl.DataType) -> str:
        """Why a cell that had a value did not parse as ``dtype``: what was expected, in the file's terms."""
        if dtype == pl.Date:
            expected = " or ".join(_example_date(pattern) for pattern in self.date_formats)
            return f"not a date (expected {expected})"
        if dtype == pl.Int64:
            return "not a whole number"
        if dtype == pl.Float64:
            return "not a number" if self == CANONICAL_FORMAT else f"not a number (expected e.g. {self._example()})"
        if dtype == pl.Boolean:
            pairs = len(self.true_values) == len(self.false_values)
            allowed = ([value for pair in zip(self.true_values, self.false_values, strict=True) for value in pair]
                       if pairs else [*self.true_values, *self.false_values])
            return f"not a true/false value (expected {', '.join(allowed[:-1])} or {allowed[-1]})"
        return f"not a {dtype} value"

    def _example(self) -> str:
        group = self.group_char or ""
        return f"{'$' if not self.bare_number else ''}1{group}234{self.decimal_char}5"


CANONICAL_FORMAT = ColumnFormat()


def is_text(dtype: pl.DataType) -> bool:
    """Columns read as text: String, and anything that is neither a number, a date/time nor a boolean."""
    return dtype == pl.String or not (dtype.is_numeric() or dtype.is_temporal() or dtype == pl.Boolean)


def clean_cell(expr: pl.Expr, source: pl.DataType, target: pl.DataType, fmt: ColumnFormat) -> pl.Expr:
    """The cell before parsing: trimmed text, empty or missing tokens as null, the value map, the default.

    Typed (Parquet, SQL) values are left as they are, except that a text field stored as numbers (a Parquet
    ``item_id`` of integers) becomes text here, and so does a typed cell the format has words for.
    """
    if not (is_text(source) or target == pl.String or fmt.missing_values or fmt.values or fmt.default is not None):
        return expr
    # A typed (Parquet, SQL) cell with a value map, missing values or a default goes through its text too:
    # parse_cell then reads that text as the field's type.
    text = expr.cast(pl.String).str.strip_chars()
    missing = text.str.len_bytes() == 0
    if fmt.missing_values:
        missing = missing | text.is_in(list(fmt.missing_values))
    cleaned = pl.when(~missing).then(text)
    if fmt.values:
        cleaned = cleaned.replace(dict(fmt.values))
    if fmt.default is not None:
        cleaned = cleaned.fill_null(pl.lit(fmt.default))
    return cleaned


def changed_by_cleaning(text: pl.Expr, fmt: ColumnFormat) -> pl.Expr:
    """True where :func:`clean_cell` would change a String cell, false where it returns the cell as it is.

    A cell is changed when it is empty, has whitespace at either end, is a missing-value token or a key of the
    value map, or is null and the format has a default. Validation reads every other cell as it is, without
    building a cleaned copy of the column; keep this in step with :func:`clean_cell`.
    """
    length = text.str.len_bytes()
    changed = (length == 0) | (text.str.strip_chars().str.len_bytes() != length)  # cheaper than a regular expression
    words = [*fmt.missing_values, *(written for written, _ in fmt.values)]
    if words:
        changed = changed | text.is_in(words)
    if fmt.default is not None:
        changed = changed | text.is_null()
    return changed.fill_null(False)


def parse_text_quickly(text: pl.Expr, target: pl.DataType, fmt: ColumnFormat) -> pl.Expr:
    """:func:`parse_cell` of a cleaned text cell, the quick way: equal to it wherever this is not null (and, for
    a number, finite); null or not finite where only :func:`parse_cell` can tell (``"12.0"`` as a whole number,
    ``"inf"``, ``"1,5"``). A whole column of plain numbers is read by one cast instead of several passes.
    """
    plain = fmt.bare_number and fmt.group_char is None and fmt.decimal_char == "."
    if plain and target in (pl.Int64, pl.Float64):
        return text.cast(target, strict=False)  # parse_cell tries this cast first, then looks harder
    return parse_cell(text, pl.String(), target, fmt)


def has_words(fmt: ColumnFormat) -> bool:
    """Whether the format has missing-value tokens, a value map or a default (a canonical file has none)."""
    return bool(fmt.missing_values or fmt.values or fmt.default is not None)


def parse_cell(expr: pl.Expr, source: pl.DataType, target: pl.DataType, fmt: ColumnFormat) -> pl.Expr:
    """The cleaned cell (see :func:`clean_cell`) as ``target``, null where it does not parse."""
    if is_text(source):
        source = pl.String()
    if target == pl.String:
        return expr if source == pl.String else expr.cast(pl.String)
    if source == target:
        return pl.when(expr.is_finite()).then(expr) if target == pl.Float64 else expr
    if target == pl.Date:
        if source == pl.String:
            return _parse_date(expr, fmt.date_formats)
        if isinstance(source, pl.Datetime):
            return expr.dt.date()
        return pl.lit(None, pl.Date)  # a number, a boolean or a time of day is not a date
    if source.is_temporal() or (source == pl.Boolean and target != pl.Boolean):
        return pl.lit(None, target)  # a date is not a number, nor true/false a quantity
    if target in (pl.Float64, pl.Int64):
        text_number = _plain_number(expr, fmt) if source == pl.String else expr
        number = text_number.cast(pl.Float64, strict=False)
        if target == pl.Float64:
            return pl.when(number.is_finite()).then(number)
        whole = pl.when(number.is_finite() & (number == number.floor())).then(number).cast(pl.Int64, strict=False)
        if source.is_float():
            return whole
        return pl.coalesce(text_number.cast(pl.Int64, strict=False), whole)  # "12", then "12.0" and "1e3"
    if target == pl.Boolean:
        if source == pl.String:
            lowered = expr.str.to_lowercase()
            truth = {**{v.lower(): True for v in fmt.true_values}, **{v.lower(): False for v in fmt.false_values}}
            return lowered.replace_strict(truth, default=None, return_dtype=pl.Boolean)
        if source.is_integer():
            return pl.when(expr == 1).then(True).when(expr == 0).then(False)
        return pl.lit(None, pl.Boolean)
    raise AssertionError(f"no cast to {target}")  # pragma: no cover - records declare only the dtypes above


def _parse_date(text: pl.Expr, formats: tuple[str, ...]) -> pl.Expr:
    """The first format that parses wins; month spellings such as "Sept" are read as "Sep" first."""
    if any("%b" in pattern or "%B" in pattern for pattern in formats):
        for spelling, abbreviation in _MONTH_SPELLINGS.items():
            text = text.str.replace_all(spelling, abbreviation)
    return pl.coalesce([text.str.to_date(pattern, strict=False) for pattern in formats])


def _plain_number(text: pl.Expr, fmt: ColumnFormat) -> pl.Expr:
    """Text as a plain number: currency signs (if allowed) and group separators removed, "." as decimal."""
    if fmt.bare_number and fmt.group_char is None and fmt.decimal_char == ".":
        return text
    if not fmt.bare_number:
        text = text.str.replace_all(_CURRENCY_SIGNS, "").str.strip_chars()
        text = pl.when(text.str.contains(r"^\(.*\)$")).then("-" + text.str.strip_chars("()")).otherwise(text)
    if fmt.group_char is not None:
        text = text.str.replace_all(fmt.group_char, "", literal=True)
    if fmt.decimal_char != ".":
        text = text.str.replace_all(fmt.decimal_char, ".", literal=True)
    return text


def _example_date(pattern: str) -> str:
    """A date written in ``pattern``, to show what was expected (2026-06-30 as 30-Jun-26 for %d-%b-%y)."""
    return date(2026, 6, 30).strftime(pattern) if pattern != "%Y-%m-%d" else "YYYY-MM-DD"
