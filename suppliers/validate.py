"""Validation with quarantine: good rows go on in canonical dtypes, bad rows are set aside with reasons.

For each source (:func:`validate_frame`):

1. every canonical column must be present, else :class:`SourceError` naming it (with ``coerce=True``
   Pandera raises a raw Polars ``ColumnNotFoundError`` for a missing column, and without it a
   ``SchemaErrors`` with no hint at a misspelt header, so we check columns first);
2. each column is cast here, not by Pandera: text is trimmed, an empty cell is a null, dates are ISO
   ``YYYY-MM-DD``, booleans true/false/yes/no/1/0; a cell that had a value but does not cast is quarantined
   with its original text (Pandera's own coercion reports such a cell without its column and then fails the
   whole column's dtype, so it could not be set aside alone);
3. the cast rows are checked with the Pandera schemas of :mod:`suppliers.schemas` on a ``DataFrame``, not a
   ``LazyFrame`` (on a LazyFrame Pandera checks only columns and dtypes, never values), ``lazy=True`` to
   collect every failure; ``SchemaErrors.failure_cases`` gives each failure's position in the validated
   frame (``index``), which is mapped back to the file's row number;
4. a repeated key keeps its first row; the later ones are quarantined as duplicates, and a later row that is an
   exact copy of an earlier one (every field an evaluation reads as written) as a copy of it. A kind without a
   key (feedback) keeps copies: two people may give a supplier the same score on the same day;
5. a date of something that has happened (:attr:`~suppliers.records.RecordKind.past_dates`: a receipt, an
   order placed, an NCR raised or closed, a score given) must not be in the future, see below.

:func:`validate_inputs` then checks the foreign keys declared in :mod:`suppliers.records` (lines →
suppliers, receipts → lines, nonconformances and feedback → suppliers), and the rules over a row and the row it
refers to (a receipt is not received before its line was ordered), and stops the run when a source's
quarantined share is over the threshold. All of it is vectorised: loops run over columns and checks, never
over rows.

A run validates the rows its window can score (``validate_inputs(window=...)``, see :func:`_window_rows`): the
order lines promised or ordered in it and those its receipts and previous prices need, every receipt of those
lines, the nonconformances open or raised in it, the feedback given in it, every supplier. Every row is still
cast (a row's dates decide), and a repeated key is still found against every row read; what a run scores is what
validating the whole history would give it, and what it quarantines is what that would quarantine of those rows.

Every quarantined row has a reason ``code`` next to its readable ``reason``, from this closed vocabulary
(:data:`QUARANTINE_CODES`; the codes of rules and foreign keys are declared with them in :mod:`suppliers.records`):

=========================== ===========================================================================
code                        the row is set aside because
=========================== ===========================================================================
``unparseable``             a cell has a value that is not of its column's type: not a date, a number, a
                            whole number or true/false (also a number too big, or not finite)
``missing``                 a cell that needs a value is empty
``not_allowed``             a value is not one of its column's allowed values (criticality, status, severity)
``out_of_range``            a number is outside its bounds: a quantity that is zero or negative, a negative
                            price, a line number below 1, a score outside 1-5
``bad_format``              a text does not have its column's format: an email address, a currency code
``promised_before_ordered`` an order line's promised_date is before its order_date
``quantities_do_not_add_up`` a receipt's quantity_accepted + quantity_rejected is not its quantity_received
                            (judged only when both are given: an empty pair is a receipt not inspected)
``half_inspected``          a receipt gives one of quantity_accepted and quantity_rejected but not the other
``closed_before_raised``    a nonconformance's closed_date is before its raised_date
``received_before_ordered`` a receipt's received_date is before its order line's order_date (judged only
                            when the order_date is given)
``in_the_future``           a date of something that has happened is after the run's date
``duplicate_key``           a row repeats the key of an earlier row, which is kept
``duplicate_row``           a row is an exact copy of an earlier row, which is kept
``unknown_supplier``        a supplier_id is not in the suppliers
``unknown_line``            a receipt's po_id and line_no are not an order line
``reference_quarantined``   the supplier or order line a row refers to is itself quarantined
``delivery_quarantined``    an order line one of whose receipts is quarantined: when and how much it delivered
                            cannot be judged, so it is not counted late (nor on time)
``check_failed``            a check the declaration has no code for failed (a schema put in by a test)
=========================== ===========================================================================

In the future means after the later of the run's as-of date and today. A record dated after a back-dated as-of
date but not after today is not an error: it had not happened yet as of that date, and the metrics leave it out
(they count receipts, NCRs and scores dated up to the as-of date), so an evaluation re-run for last quarter
from this week's export gives last quarter's answer. A record dated after today cannot be right on any as-of
date: it is a typing error or a planned date in a column for events.

Blank lines (every cell empty) are skipped and not counted as rows read: spreadsheet exports often end
with a few, and they hold no record to quarantine. Row numbers still count them, so ``row`` is always the
file's line number minus the header line.
"""

from __future__ import annotations

import difflib
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import polars as pl
from pandera.errors import SchemaErrors

from suppliers.errors import ConfigError, DataQualityError, SourceError
from suppliers.files import write_csv_safely
from suppliers.formats import (
    CANONICAL_FORMAT,
    ColumnFormat,
    changed_by_cleaning,
    clean_cell,
    has_words,
    parse_cell,
    parse_text_quickly,
)
from suppliers.readers import aligned, numbered_rows
from suppliers.records import RECORD_KINDS, RECORDS, REQUIRED_KINDS, ForeignKey
from suppliers.schemas import (
    BAD_FORMAT,
    CANONICAL,
    FRAME_RULES,
    KEYS,
    MISSING,
    MODELS,
    NOT_ALLOWED,
    OUT_OF_RANGE,
    check_reasons,
    empty_frame,
)
from suppliers.sources import Source

__all__ = [
    "QUARANTINE_CODES",
    "QUARANTINE_SCHEMA",
    "SUMMARY_SCHEMA",
    "ValidatedInputs",
    "reason_family",
    "validate_frame",
    "validate_inputs",
]

QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(),
    "kind": pl.String(),
    "row": pl.Int64(),  # 1-based data row (file line minus the header); null for a whole-file failure
    "column": pl.String(),  # null for a row-level reason
    "value": pl.String(),  # the cell as written in the file
    "code": pl.String(),  # the reason's code, one of QUARANTINE_CODES
    "reason": pl.String(),
}
SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "kind": pl.String(),
    "source": pl.String(),
    "rows_read": pl.Int64(),
    "rows_quarantined": pl.Int64(),
    "share": pl.Float64(),
}

_ROW = "__row__"  # internal row-number column; never a canonical name
_FILE, _FILE_ROW = "__file__", "__file_row__"  # a source of several files: each row's file and its row there
_PARENT_ROW, _HASH, _FOUND = "__parent_row__", "__key_hash__", "__found__"  # internal columns of reference checks
_PARENTS_PER_JOIN = 1_000_000  # a reference check joins this many parents at a time at most
# The reference whose matches validation hands on (see ValidatedInputs.receipt_lines): child kind, parent kind.
_MATCH_HANDED_ON = ("receipts", "purchase_order_lines")
# Internal quarantine parts carry the row and leave source/kind to the end.
_PART_SCHEMA: dict[str, pl.DataType] = {
    _ROW: pl.Int64(),
    "column": pl.String(),
    "value": pl.String(),
    "code": pl.String(),
    "reason": pl.String(),
}

def _part(rows: pl.Series, column: str, value: pl.Series, code: str | pl.Series,
          reason: str | pl.Series) -> pl.DataFrame:
    """Quarantine rows in ``_PART_SCHEMA``: one column name for all; a code and a reason for all, or one per row."""
    def each(text: str | pl.Series) -> pl.Series:
        return text if isinstance(text, pl.Series) else pl.repeat(text, rows.len(), dtype=pl.String, eager=True)

    return pl.DataFrame({_ROW: rows, "column": each(column), "value": value, "code": each(code),
                         "reason": each(reason)})


# Reason codes validation gives itself; those of the declared constraints are in suppliers.schemas, those of the
# declared rules and foreign keys in suppliers.records.
UNPARSEABLE = "unparseable"
IN_THE_FUTURE = "in_the_future"
DUPLICATE_KEY = "duplicate_key"
DUPLICATE_ROW = "duplicate_row"
REFERENCE_QUARANTINED = "reference_quarantined"
DELIVERY_QUARANTINED = "delivery_quarantined"
CHECK_FAILED = "check_failed"


def _quarantine_codes() -> dict[str, str]:
    """Every reason code, with what it means: the fixed ones, then those declared with rules and foreign keys."""
    codes = {
        UNPARSEABLE: "a cell's value is not of its column's type",
        MISSING: "a cell that needs a value is empty",
        NOT_ALLOWED: "a value is not one of its column's allowed values",
        OUT_OF_RANGE: "a number is outside its column's bounds",
        BAD_FORMAT: "a text does not have its column's format",
    }
    fixed_after = {
        IN_THE_FUTURE: "a date of something that has happened is after the run's date",
        DUPLICATE_KEY: "a row repeats the key of an earlier row",
        DUPLICATE_ROW: "a row is an exact copy of an earlier row",
        REFERENCE_QUARANTINED: "the row a row refers to is quarantined",
        DELIVERY_QUARANTINED: "an order line one of whose receipts is quarantined: its delivery cannot be judged",
        CHECK_FAILED: "a check without a declared code failed",
    }
    declared: dict[str, str] = {}
    for kind in RECORDS.values():
        for rule in (*kind.rules, *(rule for key in kind.foreign_keys for rule in key.rules)):
            declared.setdefault(rule.code, f"{kind.name}: {rule.reason}")
        for key in kind.foreign_keys:
            declared.setdefault(
                key.unknown_code, f"{kind.name}: {', '.join(key.fields)} not in {key.reference.resource}"
            )
    clash = sorted(set(declared) & {*codes, *fixed_after})
    if clash:
        raise ValueError(f"suppliers.records declares reason codes validation gives itself: {', '.join(clash)}")
    return {**codes, **declared, **fixed_after}


#: The closed vocabulary of the quarantine's ``code`` column: code → what it means (see the module docstring).
QUARANTINE_CODES: dict[str, str] = _quarantine_codes()



@dataclass(frozen=True)
class ValidatedInputs:
    """The good rows of every record kind, in canonical dtypes, plus what was set aside and why."""

    suppliers: pl.DataFrame
    purchase_order_lines: pl.DataFrame
    receipts: pl.DataFrame
    nonconformances: pl.DataFrame  # empty with the canonical schema when the source is absent
    feedback: pl.DataFrame  # empty with the canonical schema when the source is absent
    quarantine: pl.DataFrame  # QUARANTINE_SCHEMA, one row per failure
    summary: pl.DataFrame  # SUMMARY_SCHEMA, one row per source read
    # Per row of receipts, the row number (from 0) of its order line in purchase_order_lines; null when that line
    # is not among them (set aside after its receipts were checked). Validation matches every receipt to its line
    # to check it; the metrics read it here rather than match them again (rules.metrics.measure_suppliers).
    # None when not known: the metrics then match them themselves.
    receipt_lines: pl.Series | None = None

    def measured(self) -> ValidatedInputs:
        """These inputs once the metrics are measured: without the order lines and receipts (and the receipts'
        lines), which no later step of a run reads. A run keeps this instead, so that rendering the reports does
        not hold the largest frames beside the ones it builds."""
        return replace(self, purchase_order_lines=self.purchase_order_lines.clear(),
                       receipts=self.receipts.clear(), receipt_lines=None)

    def describe(self, window: tuple[date, date] | None = None) -> str:
        """E.g. "12 rows quarantined of 6,372 read" for the run's log; of what ``window`` needs when given."""
        rows = "read" if window is None else f"the window {window[0]} to {window[1]} needs"
        return (f"{int(self.summary['rows_quarantined'].sum()):,} rows quarantined of "
                f"{int(self.summary['rows_read'].sum()):,} {rows}")


@dataclass
class _Checked:
    """One source part-way through validation (internal).

    ``raw`` is the caller's frame, not a copy: a cell as written is looked up by row when a quarantined row
    shows it (:meth:`raw_text`). ``cast`` holds only what validation made: a column that needed no change (text
    that is already clean, a typed Parquet column already of its type) is the raw column itself.
    """

    kind: str
    source_name: str
    raw: pl.DataFrame  # _ROW + canonical columns as read (the caller's columns)
    cast: pl.DataFrame  # rows validated (non-blank, in the window): _ROW + canonical columns in canonical dtypes
    parts: list[pl.DataFrame] = field(default_factory=list)  # quarantine parts, _PART_SCHEMA
    # Receipts only: the order line each row was found to belong to, by the reference check (_ROW, _PARENT_ROW).
    matched: pl.DataFrame | None = None
    origins: pl.DataFrame | None = None  # several files: _ROW -> the file and its row there
    by_position: bool = False  # raw's _ROW is 1, 2, 3, ...: row r is at position r - 1
    unparseable: list[pl.DataFrame] = field(default_factory=list)  # cast failures, quarantined by keep()
    _good: pl.DataFrame | None = None

    @property
    def rows_read(self) -> int:
        return self.cast.height

    @property
    def good(self) -> pl.DataFrame:
        """_ROW + canonical columns of the rows not quarantined so far (one anti-join, cached)."""
        if self._good is None:
            bad = [p.select(_ROW) for p in self.parts]
            self._good = (
                self.cast.join(pl.concat(bad).drop_nulls().unique(), on=_ROW, how="anti")
                if bad
                else self.cast
            )
        return self._good

    def add(self, part: pl.DataFrame) -> None:
        """Quarantine ``part``'s rows (``_PART_SCHEMA`` columns)."""
        if part.height:
            self.parts.append(part.select(list(_PART_SCHEMA)).cast(_PART_SCHEMA))
            self._good = None

    def keep(self, rows: pl.Series | None) -> None:
        """Validate only the cast rows where ``rows`` is true (None: every row), then quarantine the cells of
        those rows that did not parse."""
        if rows is not None:
            self.cast = self.cast.filter(rows)
            self._good = None
            self.unparseable = [_kept(part, self) for part in self.unparseable]
        for part in self.unparseable:
            self.add(part)
        self.unparseable = []

    def quarantine(self) -> pl.DataFrame:
        parts = pl.concat(self.parts, how="vertical") if self.parts else pl.DataFrame(schema=_PART_SCHEMA)
        parts = parts.sort(_ROW, nulls_last=False, maintain_order=True)
        source, row = pl.lit(self.source_name, pl.String), pl.col(_ROW)
        if self.origins is not None:  # name the file and its own row, not the row through all the files
            parts = parts.join(self.origins, on=_ROW, how="left", maintain_order="left")
            source, row = pl.coalesce(_FILE, source), pl.coalesce(_FILE_ROW, row)
        return parts.select(
            source.alias("source"),
            pl.lit(self.kind, pl.String).alias("kind"),
            row.alias("row"),
            "column",
            "value",
            "code",
            "reason",
        )

    def raw_text(self, column: str, rows: pl.Series) -> pl.Series:
        """The cells of ``column`` at ``rows`` (row numbers), as text, as they were in the source."""
        if self.by_position:
            return self.raw.get_column(column).gather(rows.cast(pl.Int64) - 1).cast(pl.String).rename(column)
        wanted = rows.rename(_ROW).cast(pl.Int64)
        cells = self.raw.select(_ROW, column).filter(pl.col(_ROW).is_in(wanted.implode()))
        at = wanted.to_frame().join(cells, on=_ROW, how="left", maintain_order="left")
        return at.get_column(column).cast(pl.String)


def _kept(part: pl.DataFrame, checked: _Checked) -> pl.DataFrame:
    """The rows of a quarantine part that are still validated (``checked.cast``), after a window dropped some."""
    if not part.height:
        return part
    return part.filter(pl.col(_ROW).is_in(checked.cast.get_column(_ROW).implode()))


# --- columns


def _check_columns(kind: str, raw: pl.DataFrame, source_name: str) -> pl.DataFrame:
    """Trim header whitespace and make sure every required column is present, naming any that is not.

    An optional column (:attr:`~suppliers.records.Constraints.column_optional`) that is absent is added, empty in
    every row, in its declared dtype, unless a column it comes together with is there: half of a pair (an
    accepted quantity without the rejected one) is a missing column, most likely a misnamed header.
    """
    wanted = list(CANONICAL[kind])
    renames = {
        c: c.strip()
        for c in raw.columns
        if c != c.strip() and c.strip() in wanted and c.strip() not in raw.columns
    }
    if renames:
        raw = raw.rename(renames)
    fields = RECORDS[kind].fields

    def partners_present(name: str) -> list[str]:
        return [p for p in RECORDS[kind].field(name).constraints.together_with if p in raw.columns]

    absent = [
        f for f in fields
        if f.name not in raw.columns and f.constraints.column_optional and not partners_present(f.name)
    ]
    if absent:
        raw = raw.with_columns(pl.lit(None, f.dtype).alias(f.name) for f in absent)
    missing = [c for c in wanted if c not in raw.columns]
    if not missing:
        return raw
    spare = [c for c in raw.columns if c not in wanted]
    described = []
    for column in missing:
        close = [c for c in spare if c.strip().lower() == column] or difflib.get_close_matches(
            column, spare, n=1, cutoff=0.6
        )
        hint = f" (found '{close[0]}' — did you mean it?)" if close else ""
        partners = partners_present(column)
        if partners:
            hint += f" (it comes with {', '.join(map(repr, partners))}, which is there: give both or neither)"
        described.append(f"'{column}'{hint}")
    noun = "column" if len(missing) == 1 else "columns"
    raise SourceError(
        f"missing {noun} {', '.join(described)}",
        where=source_name,
        fix=f"Add the {noun} to the header row, or rename the column that holds "
        f"{'it' if len(missing) == 1 else 'them'} (expected: {', '.join(wanted)}; "
        f"optional: {', '.join(f.name for f in fields if f.constraints.column_optional) or 'none'})",
    )


# --- cast


@dataclass(frozen=True)
class _ColumnCast:
    """How one column is cast: a quick value for every cell, and which cells only the full clean-and-parse decides.

    The full path (:func:`~suppliers.formats.clean_cell`, then :func:`~suppliers.formats.parse_cell`) builds a
    cleaned copy of the column; the quick value does not (it is the column itself when that is already right),
    and it equals the full path's value wherever ``suspect`` is false. The suspect cells (usually none: a bad or
    padded cell, a missing-value token) go through the full path, on those rows only.
    """

    quick: pl.Expr
    suspect: Callable[[pl.Expr], pl.Expr]  # given the quick value: true where the full path must decide the cell
    cleaned: pl.Expr
    parsed: pl.Expr


def _column_cast(column: str, source: pl.DataType, target: pl.DataType, fmt: ColumnFormat) -> _ColumnCast:
    cell = pl.col(column)
    texts = None
    if isinstance(source, pl.Categorical):  # text kept compact (suppliers.sources): cast as the text it holds
        texts = source.categories.to_series()
        cell, source = cell.cast(pl.String), pl.String()
    cleaned = clean_cell(cell, source, target, fmt)
    untouched = cleaned.meta.eq(cell)  # a typed (Parquet, SQL) cell cleaning leaves as it is
    parsed = parse_cell(cleaned, source if untouched else pl.String(), target, fmt)

    def unsure(quick: pl.Expr, present: pl.Expr) -> pl.Expr:  # a cell with a value whose quick value is not sure
        if target == pl.Float64:
            return present & ~quick.is_finite().fill_null(False)
        return present & quick.is_null()

    if untouched and source == target:
        # parse_cell of a cell already of its type is the cell itself, or null for a float that is not finite
        return _ColumnCast(cell, lambda q: unsure(q, cell.is_not_null()), cleaned, parsed)
    if source != pl.String:
        return _ColumnCast(parsed, lambda q: cleaned.is_not_null() & q.is_null(), cleaned, parsed)
    if target == pl.String:  # parse_cell returns the cleaned text: a cell cleaning does not change is its value
        return _ColumnCast(cell, lambda _: changed_by_cleaning(cell, fmt), cleaned, parsed)
    quick = parse_text_quickly(cell, target, fmt)
    if texts is not None and not has_words(fmt):  # each distinct text parsed once, looked up by the cell's code
        quick = pl.lit(pl.select(parse_text_quickly(pl.lit(texts), target, fmt)).to_series()).gather(
            pl.col(column).to_physical())
    present = pl.col(column).is_not_null()
    if has_words(fmt):
        return _ColumnCast(quick, lambda q: changed_by_cleaning(cell, fmt) | unsure(q, present), cleaned, parsed)
    # Without words, cleaning only trims the cell or makes an empty one null: a cell that parses as it is parses
    # to the same value trimmed (a parser takes no whitespace, or skips it at the start), and one that does not
    # parse as it is goes the full way.
    return _ColumnCast(quick, lambda q: unsure(q, present), cleaned, parsed)


def _cast_frame(kind: str, raw: pl.DataFrame, source_name: str, formats: Mapping[str, ColumnFormat]) -> _Checked:
    """Number the rows, clean and parse every cell (see :mod:`suppliers.formats`), set aside what does not parse.

    A frame from a mapped source brings its own row numbers (``__row__``: the row in the source file, after
    its header) and has had its blank lines dropped already; a canonical file is numbered here, and a line with
    nothing in the fields an evaluation reads is skipped (spreadsheet exports end with a few). The cells that do
    not parse are kept in ``unparseable`` until :meth:`_Checked.keep` says which rows are validated.
    """
    schema = CANONICAL[kind]
    for column, dtype in schema.items():
        if raw.schema[column].is_nested() or raw.schema[column] == pl.Object:
            raise SourceError(
                f"column '{column}' holds {raw.schema[column]} values, which cannot be read as {dtype}",
                where=source_name,
                fix=f"Export '{column}' as plain values",
            )
    numbered = _ROW in raw.columns
    # Columns are taken as they are, not selected: see suppliers.readers.aligned.
    columns = [raw.get_column(c) for c in schema]
    raw_canonical = (aligned(pl.DataFrame([raw.get_column(_ROW).cast(pl.Int64), *columns])) if numbered
                     else numbered_rows(pl.DataFrame(columns), _ROW))
    casts = {c: _column_cast(c, raw.schema[c], dtype, formats.get(c, CANONICAL_FORMAT)) for c, dtype in schema.items()}
    quick = {c: f"_quick_{i}" for i, c in enumerate(schema)}
    suspect = {c: f"_suspect_{i}" for i, c in enumerate(schema)}
    # Eager selects of an aligned frame keep its chunks: a column passed through is not copied.
    # Cut like the columns read: a column computed whole is sliced, never a column read copied whole.
    cast = aligned(raw_canonical.select(_ROW, *[casts[c].quick.alias(c) for c in schema]), raw_canonical)
    both = aligned(pl.DataFrame([*raw_canonical.get_columns(), *[cast.get_column(c).alias(quick[c]) for c in schema]]))
    # A line can be blank only where every quick value is null or suspect; the full path decides those rows. Only
    # the fields an evaluation reads count: a line with nothing in them is none of its records, whichever other
    # columns were read (a run reads no others, see suppliers.runs.RunReading).
    read = RECORDS[kind].fields_read_by_runs
    maybe_blank = [] if numbered else [
        pl.all_horizontal([pl.col(quick[c]).is_null() | pl.col(suspect[c]) for c in read]).alias("_maybe_blank")]
    flags = both.select(*[casts[c].suspect(pl.col(quick[c])).alias(suspect[c]) for c in schema])
    if maybe_blank:
        blank = pl.DataFrame([*both.get_columns(), *flags.get_columns()]).select(maybe_blank).to_series()
        flags = pl.DataFrame([*flags.get_columns(), blank])
    del both
    at = flags.select(pl.any_horizontal(flags.columns)).to_series().arg_true()
    origins = (pl.DataFrame([raw.get_column(c) for c in (_ROW, _FILE, _FILE_ROW)])
               if {_FILE, _FILE_ROW} <= set(raw.columns) else None)
    checked = _Checked(kind=kind, source_name=source_name, raw=raw_canonical, cast=cast, origins=origins,
                       by_position=not numbered)
    if not at.len():
        return checked
    # The full path, on the rows that need it only.
    flags = flags.gather(at)
    written = raw_canonical.gather(at)
    full = written.select(
        _ROW,
        *[casts[c].parsed.alias(c) for c in schema],
        *[(casts[c].cleaned.is_not_null() & casts[c].parsed.is_null()).alias(f"_failed_{i}")
          for i, c in enumerate(schema)],
        pl.all_horizontal([casts[c].cleaned.is_null() for c in read]).alias("_blank"),
    )
    values = []
    for c in schema:
        mask = flags.get_column(suspect[c])
        value = cast.get_column(c)
        if mask.any():
            value = value.clone().scatter(at.filter(mask), full.get_column(c).filter(mask))
        values.append(value)
    cast = aligned(pl.DataFrame([cast.get_column(_ROW), *values]))
    if not numbered:
        blank = full.filter("_blank").get_column(_ROW)
        if blank.len():
            cast = cast.filter(~pl.col(_ROW).is_in(blank.implode()))
    checked.cast = cast
    for i, (column, dtype) in enumerate(schema.items()):
        failed = full.get_column(f"_failed_{i}") & flags.get_column(suspect[column])
        if not failed.any():
            continue
        rows = full.get_column(_ROW).filter(failed)
        checked.unparseable.append(_part(rows, column, written.get_column(column).filter(failed).cast(pl.String),
                                         UNPARSEABLE, formats.get(column, CANONICAL_FORMAT).failure_reason(dtype)))
    return checked


# --- pandera


def _schema_failures(checked: _Checked) -> None:
    """Run the Pandera schema on the cast rows and quarantine every failure with a readable reason and its code."""
    schema = MODELS[checked.kind]
    frame = checked.cast  # a DataFrame: on a LazyFrame Pandera would skip every value check
    try:
        schema.validate(frame, lazy=True)
        return
    except SchemaErrors as exc:
        failures = exc.failure_cases
    failures = failures.select(
        pl.col("failure_case").cast(pl.String),
        pl.col("column").cast(pl.String),
        pl.col("check").cast(pl.String),
        pl.col("index").cast(pl.Int64),
    )
    lookup = check_reasons(checked.kind)
    canonical = list(CANONICAL[checked.kind])
    failures = failures.join(lookup, on=["column", "check"], how="left").with_columns(
        pl.col("target").fill_null(pl.col("column")),
        pl.col("reason").fill_null(pl.format("{} failed check {}", pl.col("column"), pl.col("check"))),
        pl.col("code").fill_null(pl.lit(CHECK_FAILED)),
    )

    # Frame-level failures (no row index) are not lost: they are reported against the whole source.
    whole = failures.filter(pl.col("index").is_null())
    if whole.height:
        checked.parts.append(
            whole.select(
                pl.lit(None, pl.Int64).alias(_ROW),
                pl.when(pl.col("target").is_in(canonical)).then(pl.col("target")).alias("column"),
                pl.col("failure_case").alias("value"),
                "code",
                pl.format("whole file: {}", pl.col("reason")).alias("reason"),
            ).cast(_PART_SCHEMA)
        )

    located = failures.filter(pl.col("index").is_not_null())
    located = located.with_columns(frame.get_column(_ROW).gather(located.get_column("index")).alias(_ROW))
    # A cell that failed its cast is null now: "required value is missing" would be a second, wrong reason.
    cast_failed = (
        pl.concat(checked.parts).select(_ROW, pl.col("column").alias("target"))
        if checked.parts
        else pl.DataFrame(schema={_ROW: pl.Int64, "target": pl.String})
    )
    located = located.join(cast_failed, on=[_ROW, "target"], how="anti")
    for target in located.get_column("target").unique(maintain_order=True).to_list():
        for reason in (
            located.filter(pl.col("target") == target).get_column("reason").unique(maintain_order=True)
        ):
            part = located.filter((pl.col("target") == target) & (pl.col("reason") == reason))
            part_rows = part.get_column(_ROW)
            rule = FRAME_RULES.get(reason)
            if rule is not None:  # cross-column: show every value involved
                value = _shown({c: checked.raw_text(c, part_rows) for c in rule.value_columns})
            elif target in checked.raw.columns:
                value = checked.raw_text(target, part_rows)
            else:
                value = part.get_column("failure_case")
            checked.add(
                pl.DataFrame(
                    {
                        _ROW: part_rows,
                        "column": part.get_column("target")
                        if target in canonical
                        else pl.repeat(None, part.height, dtype=pl.String, eager=True),
                        "value": value,
                        "code": part.get_column("code"),
                        "reason": part.get_column("reason"),
                    }
                )
            )


def _duplicates(checked: _Checked) -> list[pl.DataFrame]:
    """A repeated key keeps its first row; later rows are quarantined as "duplicate of row N", or as "exact copy
    of row N" when every field an evaluation reads is as written in an earlier row N (the earliest such row):
    whether the others were read or not, the same rows are copies.

    Returns the quarantine parts, for the caller to add once it knows which rows are validated: the first row of
    a key is the first in the whole file, whether or not it is validated itself.
    """
    keys = list(KEYS.get(checked.kind, ()))
    if not keys:
        return []
    key = pl.struct(keys) if len(keys) > 1 else pl.col(keys[0])
    frame = checked.cast.select(_ROW, *keys)
    if any(frame.get_column(k).null_count() for k in keys):
        frame = frame.filter(pl.all_horizontal([pl.col(k).is_not_null() for k in keys]))
    if not _repeats(frame, keys):  # the common case, and the cheap test
        return []
    first = key.is_first_distinct()
    dupes = frame.filter(~first)
    repeated = frame.join(dupes.select(keys).unique(), on=keys, how="semi").sort(_ROW)  # firsts and repeats
    rows = repeated.get_column(_ROW)
    # Exact copies: compare the cells as written, only among rows that share a key (a copy shares its key).
    columns = list(RECORDS[checked.kind].fields_read_by_runs)
    written = pl.DataFrame({_ROW: rows, **{f"_{i}": checked.raw_text(c, rows) for i, c in enumerate(columns)}})
    whole_row = pl.struct([f"_{i}" for i in range(len(columns))])
    copies = written.select(_ROW, pl.col(_ROW).min().over(whole_row).alias("_first")).filter(
        pl.col(_ROW) != pl.col("_first")
    )
    firsts = frame.filter(first).join(dupes.select(keys).unique(), on=keys, how="semi").rename({_ROW: "_first"})
    dupes = dupes.join(copies, on=_ROW, how="anti").join(firsts, on=keys, how="left")
    found_by_code = ((dupes, DUPLICATE_KEY, "duplicate of row {}"), (copies, DUPLICATE_ROW, "exact copy of row {}"))
    parts = []
    for found, code, reason in found_by_code:
        if not found.height:
            continue
        found = found.sort(_ROW)
        found_rows = found.get_column(_ROW)
        parts.append(_part(found_rows, ", ".join(keys), _joined_raw_text(checked, found_rows, keys), code,
                           found.select(pl.format(reason, pl.col("_first"))).to_series()))
    return parts


def _repeats(frame: pl.DataFrame, keys: list[str]) -> bool:
    """Whether some key (no null in it) repeats: True may also mean two keys share a hash (then no part is found).

    Keys in strictly increasing order (an export sorted by its key) do not repeat; otherwise distinct hashes mean
    distinct keys (the hash of a row of several columns costs far less than comparing the rows themselves).
    """
    if frame.height < 2:
        return False
    after, same = pl.lit(False), pl.lit(True)
    for name in keys:  # each row against the one before it: two views of the column, no copy of it
        value, before = pl.col(name).slice(1), pl.col(name).slice(0, frame.height - 1)
        after, same = after | (same & (value > before)), same & (value == before)
    if frame.select(after.all()).item():
        return False
    return frame.select(_key_hash(keys, keys).n_unique()).item() != frame.height


def _key_hash(columns: list[str], names: list[str]) -> pl.Expr:
    """One 64-bit hash of a row's ``columns``, named ``names`` (equal keys, equal hashes; the converse is checked)."""
    if len(columns) == 1:
        return pl.col(columns[0]).hash()
    return pl.struct([pl.col(c).alias(n) for c, n in zip(columns, names, strict=True)]).hash()


def _join_hash(columns: list[str], names: list[str]) -> pl.Expr:
    """:func:`_key_hash` in 32 bits, to join on: half the memory, and every match is compared key by key anyway
    (a shared hash brings a false match, found as such, about once in 4 billion pairs of keys)."""
    return (_key_hash(columns, names) % 2**32).cast(pl.UInt32)


def _future(checked: _Checked, after: date) -> None:
    """Quarantine a row whose date of something that has happened is after ``after`` (see the module docstring)."""
    for column in RECORDS[checked.kind].past_dates:
        rows = checked.cast.get_column(_ROW).filter(checked.cast.get_column(column) > after)
        if rows.len():
            checked.add(_part(rows, column, checked.raw_text(column, rows), IN_THE_FUTURE,
                              f"{column} is in the future (after {after.isoformat()})"))


def _future_after(as_of: date | None) -> date:
    """The last day that is not in the future: the later of ``as_of`` and today."""
    today = date.today()
    return today if as_of is None else max(as_of, today)


def _check(kind: str, raw: pl.DataFrame, source_name: str,
           formats: Mapping[str, ColumnFormat] | None = None) -> _Checked:
    checked = _cast_source(kind, raw, source_name, formats)
    _checks(checked, None)
    return checked


def _cast_source(kind: str, raw: pl.DataFrame, source_name: str,
                 formats: Mapping[str, ColumnFormat] | None = None) -> _Checked:
    if kind not in CANONICAL:
        raise SourceError(
            f"unknown record kind '{kind}'", where=source_name, fix=f"Use one of {', '.join(RECORD_KINDS)}"
        )
    raw = _check_columns(kind, raw, source_name)
    return _cast_frame(kind, raw, source_name, formats or {})


def _checks(checked: _Checked, rows: pl.Series | None) -> None:
    """Keep the cast rows where ``rows`` is true (None: all), then check them: cast failures, the Pandera schema,
    repeated keys (found among every row read: a kept row repeating an earlier row is a duplicate of it)."""
    duplicates = _duplicates(checked)
    checked.keep(rows)
    _schema_failures(checked)
    for part in duplicates:
        checked.add(_kept(part, checked) if rows is not None else part)


def validate_frame(
    kind: str, raw: pl.DataFrame, source_name: str, *, as_of: date | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Validate one source: (good rows in canonical dtypes and column order, quarantine rows).

    Raises :class:`SourceError` when a canonical column is missing. Extra columns are dropped. A check that
    fails for the frame as a whole (no row to blame) appears in the quarantine with ``row`` null;
    :func:`validate_inputs` turns such a failure into a :class:`SourceError`. ``as_of`` is as there: a date of
    something that has happened may not be after the later of ``as_of`` and today.
    """
    checked = _check(kind, raw, source_name)
    _future(checked, _future_after(as_of))
    return checked.good.select(list(CANONICAL[kind])), checked.quarantine()


# --- references


def _reason(template: str, parent: _Checked) -> pl.Expr:
    """A foreign key's reason template as an expression over the child's key columns."""
    named = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    placeholders = {name: "{}" for name in named if name != "source"}
    text = template.format(source=_escape(parent.source_name), **placeholders)
    return pl.format(text, *[pl.col(name) for name in named if name != "source"])


def _reference(child: _Checked, key: ForeignKey, parent: _Checked, *, keep_matches: bool = False) -> None:
    """Quarantine ``child`` good rows whose ``key`` is not a good row of ``parent``, then those that break a rule
    of the key over the row and its ``parent`` row.

    One left join finds both, streamed: only the rows it finds are kept. A name a rule uses that the child
    declares is the child's column, any other the parent's; a key with rules refers to the parent's primary key
    (checked in :mod:`suppliers.records`), so a row joins one parent row at most. Rules are judged in order, each
    over the rows no earlier one set aside.
    """
    columns = list(key.fields)
    own = set(CANONICAL[child.kind])
    named = {name for rule in key.rules for name in rule.names}
    theirs = sorted(named - own)
    parent_keys = [f"_parent_key_{i}" for i in range(len(columns))]
    handed_on = keep_matches and (child.kind, key.reference.resource) == _MATCH_HANDED_ON
    parents = parent.good.select(
        *[pl.col(p).alias(k) for p, k in zip(key.reference.fields, parent_keys, strict=True)], *theirs,
        *([pl.col(_ROW).alias(_PARENT_ROW)] if handed_on else []),
    )
    if set(key.reference.fields) != set(KEYS.get(parent.kind, ())):  # no rules then: any row of a key will do
        parents = parents.unique(subset=parent_keys, keep="first", maintain_order=True)
    children = child.good.select(_ROW, *columns, *sorted(named & own - set(columns)))
    found = pl.col(_FOUND)
    broken = [(found & ~rule.holds).fill_null(False).alias(f"_broken_{i}") for i, rule in enumerate(key.rules)]
    if len(columns) == 1 and not broken:  # only whether the key is there: a look-up, not a join
        flagged = children.select(
            _ROW, *columns, pl.col(columns[0]).is_in(parents.get_column(parent_keys[0]).implode())
            .fill_null(False).alias(_FOUND)).filter(~found)
    else:
        failing = ~found | pl.any_horizontal(pl.lit(False), *[pl.col(f"_broken_{i}") for i in range(len(broken))])
        flagged_parts, matched_parts = [], []
        for joined in _with_parents(children, parents, columns, parent_keys):
            if handed_on:  # every row's match is kept: the rows found are the pairs handed on
                rows = joined.select(_ROW, *columns, _FOUND, _PARENT_ROW, *broken).collect(engine="streaming")
                matched_parts.append(rows.filter(found).select(pl.col(_ROW, _PARENT_ROW).cast(pl.UInt32)))
                flagged_parts.append(rows.filter(failing).drop(_PARENT_ROW))
                del rows
            else:  # the join's rows are looked at as they come, never held all at once
                flagged_parts.append(joined.select(_ROW, *columns, _FOUND, *broken).filter(failing)
                                     .collect(engine="streaming"))
        flagged = pl.concat(flagged_parts)
        if handed_on:
            child.matched = pl.concat(matched_parts)
    flagged = flagged.sort(_ROW)
    missing = flagged.filter(~found).unique(_ROW, keep="first", maintain_order=True)
    # A row whose key shares its hash with another parent's has a row of its own parent too: not missing.
    missing = missing.join(_good_keys(parent, key, missing.select(columns)), on=columns, how="anti")
    if missing.height:
        _orphans(child, key, parent, missing.select(_ROW, *columns))
    judged = flagged.filter(found)
    for i, rule in enumerate(key.rules):
        failing = judged.filter(f"_broken_{i}")
        judged = judged.filter(~pl.col(f"_broken_{i}"))
        if not failing.height:
            continue
        rows = failing.get_column(_ROW)
        parent_rows = failing.select(columns).join(
            _good_keys(parent, key, failing.select(columns), with_rows=True), on=columns, how="left",
            maintain_order="left").get_column(_PARENT_ROW)
        shown = _shown({c: child.raw_text(c, rows) if c in own else parent.raw_text(c, parent_rows)
                        for c in rule.value_columns})
        child.add(_part(rows, rule.column, shown, rule.code, rule.reason))


def _with_parents(children: pl.DataFrame, parents: pl.DataFrame, columns: list[str],
                  parent_keys: list[str]) -> list[pl.LazyFrame]:
    """``children`` left-joined to the ``parents`` rows of the same key (``parent_keys``): ``_FOUND`` is true for
    a row joined to its parent, false for a row without one. In parts, each a share of the keys.

    A key of several columns is joined on one 64-bit hash of it and each match is then compared column by
    column: joining on the columns themselves costs several times more. Two keys that share a hash may give a
    row a second, false match (not found); :func:`_reference` looks such rows up again. A join holds its parents
    while the children stream past, so many parents are joined a share of the hashes at a time.
    """
    parents = parents.with_columns(pl.lit(True).alias(_FOUND))
    hashed = len(columns) > 1 and all(
        children.schema[c] == parents.schema[k] for c, k in zip(columns, parent_keys, strict=True))
    if not hashed:
        joined = children.lazy().join(parents.lazy(), left_on=columns, right_on=parent_keys, how="left")
        return [joined.with_columns(pl.col(_FOUND).fill_null(False))]
    same_key = pl.all_horizontal([pl.col(c) == pl.col(k) for c, k in zip(columns, parent_keys, strict=True)])
    parts = max(1, -(-parents.height // _PARENTS_PER_JOIN))
    children = children.with_columns(_join_hash(columns, columns).alias(_HASH))
    parents = parents.with_columns(_join_hash(parent_keys, columns).alias(_HASH))
    plans = []
    for part in range(parts):
        share = (pl.col(_HASH) % parts == part) if parts > 1 else pl.lit(True)
        plans.append(
            children.lazy().filter(share)
            .join(parents.lazy().filter(share), on=_HASH, how="left")
            .with_columns((pl.col(_FOUND) & same_key).fill_null(False).alias(_FOUND))
        )
    return plans


def _good_keys(parent: _Checked, key: ForeignKey, wanted: pl.DataFrame, *, with_rows: bool = False) -> pl.DataFrame:
    """The keys among ``wanted`` (named as the child names them) that are good rows of ``parent``, with their
    rows (``_PARENT_ROW``) if asked: a look-up of a few keys."""
    columns, parent_columns = list(key.fields), list(key.reference.fields)
    wanted = wanted.drop_nulls().unique()
    good = parent.good.select(
        *([pl.col(_ROW).alias(_PARENT_ROW)] if with_rows else []),
        *[pl.col(p).alias(c) for p, c in zip(parent_columns, columns, strict=True)],
    )
    if not wanted.height:
        return good.clear()
    good = good.filter(pl.col(columns[0]).is_in(wanted.get_column(columns[0]).implode()))
    return good.join(wanted, on=columns, how="semi").unique(columns, keep="first", maintain_order=True)


def _orphans(child: _Checked, key: ForeignKey, parent: _Checked, orphans: pl.DataFrame) -> None:
    """Quarantine ``orphans`` (``_ROW`` + key columns): unknown in ``parent``, or known there but quarantined."""
    columns = list(key.fields)
    parent_columns = list(key.reference.fields)
    renamed = dict(zip(parent_columns, columns, strict=True))
    all_keys = (
        parent.cast.select(parent_columns)
        .rename(renamed)
        .join(orphans.select(columns).drop_nulls().unique(), on=columns, how="semi")
        .unique()
        .with_columns(pl.lit(True).alias("_known"))
    )
    orphans = orphans.join(all_keys, on=columns, how="left").sort(_ROW)
    rows = orphans.get_column(_ROW)
    known = pl.col("_known").fill_null(False)
    reasons = orphans.select(
        pl.when(known).then(_reason(key.quarantined, parent)).otherwise(_reason(key.unknown, parent)).alias("reason"),
        pl.when(known).then(pl.lit(REFERENCE_QUARANTINED)).otherwise(pl.lit(key.unknown_code)).alias("code"),
    )
    value = _joined_raw_text(child, rows, columns)
    child.add(_part(rows, ", ".join(columns), value, reasons.get_column("code"), reasons.get_column("reason")))


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _references(checked: dict[str, _Checked], *, keep_matches: bool = False) -> None:
    """Check every declared foreign key of every source read.

    Kinds are checked in declaration order, and a referenced kind is declared first: its good rows already
    exclude those it quarantined for references of its own (a receipt of a line whose supplier is unknown is
    a receipt of a quarantined line).
    """
    for kind in (kind for kind in RECORD_KINDS if kind in checked):
        for key in RECORDS[kind].foreign_keys:
            _reference(checked[kind], key, checked[key.reference.resource], keep_matches=keep_matches)


def _lines_with_a_quarantined_receipt(checked: dict[str, _Checked]) -> None:
    """Set aside the good order lines one of whose receipts was quarantined for what it says.

    Without the receipt the line would look undelivered and count as late until the as-of date: data invented
    against the supplier. A receipt set aside as a copy of another, or for a line that is unknown or itself set
    aside, says nothing new about a good line.
    """
    receipts, lines = checked.get("receipts"), checked.get("purchase_order_lines")
    if receipts is None or lines is None or not receipts.parts:
        return
    keys = ["po_id", "line_no"]
    ignored = [DUPLICATE_KEY, DUPLICATE_ROW, REFERENCE_QUARANTINED,
               *(key.unknown_code for key in RECORDS["receipts"].foreign_keys)]
    bad = (
        pl.concat(receipts.parts).filter(~pl.col("code").is_in(ignored)).select(_ROW).drop_nulls().unique()
        .join(receipts.cast.select(_ROW, *keys), on=_ROW).drop_nulls(keys)
        .group_by(keys).agg(pl.col(_ROW).min().alias("_receipt_row"))
    )
    hit = lines.good.select(_ROW, *keys).join(bad, on=keys, how="inner").sort(_ROW)
    if not hit.height:
        return
    rows = hit.get_column(_ROW)
    reasons = hit.select(pl.format(f"a receipt of this line is quarantined (row {{}} of "
                                   f"{_escape(receipts.source_name)}): its delivery cannot be judged",
                                   pl.col("_receipt_row"))).to_series()
    lines.add(_part(rows, ", ".join(keys), _joined_raw_text(lines, rows, keys), DELIVERY_QUARANTINED, reasons))


# --- summary


def _summary(checked: dict[str, _Checked], quarantine: pl.DataFrame) -> pl.DataFrame:
    read = pl.DataFrame(
        {
            "kind": [c.kind for c in checked.values()],
            "source": [c.source_name for c in checked.values()],
            "rows_read": [c.rows_read for c in checked.values()],
        },
        schema={"kind": pl.String, "source": pl.String, "rows_read": pl.Int64},
    )
    bad = (
        quarantine.filter(pl.col("row").is_not_null())
        .group_by("kind")
        .agg(pl.col("row").n_unique().cast(pl.Int64).alias("rows_quarantined"))
    )
    return (
        read.join(bad, on="kind", how="left")
        .with_columns(pl.col("rows_quarantined").fill_null(0))
        .with_columns(
            pl.when(pl.col("rows_read") > 0)
            .then(pl.col("rows_quarantined") / pl.col("rows_read"))
            .otherwise(0.0)
            .cast(pl.Float64)
            .alias("share")
        )
        .select(list(SUMMARY_SCHEMA))
    )


def reason_family() -> pl.Expr:
    """An expression over a quarantine frame that folds alike reasons into one family for counting.

    Reasons carry values ("unknown supplier_id 'S9999' ...", "duplicate of row 12"); the family drops them
    ("unknown supplier_id '…' ...", "supplier_id: duplicate of an earlier row") and names the column where
    the reason alone would not ("item_id: required value is missing").
    """
    folded = (
        pl.col("reason")
        .str.replace_all(r"'[^']*'", "'…'")
        .str.replace_all(r"line_no -?\d+", "line_no …")
        .str.replace(r"^duplicate of row \d+$", "duplicate of an earlier row")
        .str.replace(r"^exact copy of row \d+$", "exact copy of an earlier row")
        .str.replace(r"\(row \d+ of ", "(row … of ")
    )
    bare = pl.col("column").is_not_null() & folded.str.contains(
        r"^(required value is missing|not a |duplicate of|exact copy of)"
    )
    return pl.when(bare).then(pl.format("{}: {}", pl.col("column"), folded)).otherwise(folded)


def _top_reasons(quarantine: pl.DataFrame, kind: str, n: int = 3) -> str:
    """The commonest reason families of one source, e.g. "quantity_ordered must be > 0 (12), ..."."""
    top = (
        quarantine.filter(pl.col("kind") == kind)
        .group_by(reason_family().alias("_family"))
        .agg(pl.len().alias("_n"))
        .sort(["_n", "_family"], descending=[True, False])
        .head(n)
    )
    return ", ".join(f"{family} ({count})" for family, count in top.iter_rows())


def _check_threshold(
    summary: pl.DataFrame, quarantine: pl.DataFrame, max_share: float, quarantine_path: Path | None
) -> None:
    over = summary.filter(pl.col("share") > max_share).sort("share", descending=True)
    if not over.height:
        return
    described = [
        (
            row["source"],
            f"{row['share']:.1%} of rows quarantined ({row['rows_quarantined']} of {row['rows_read']}), "
            f"over the {max_share:.1%} threshold; top reasons: {_top_reasons(quarantine, row['kind'])}",
        )
        for row in over.iter_rows(named=True)
    ]
    (where, what), rest = described[0], described[1:]
    if rest:
        what += "; also " + "; ".join(f"{source}: {text}" for source, text in rest)
    raise_instead = f"raise validation.max_quarantine_share in the settings (now {max_share:g})"
    written: OSError | None = None
    if quarantine_path is None:
        fix = f"Fix the quarantined rows, or {raise_instead}"
    else:
        try:
            _write_quarantine(quarantine, Path(quarantine_path))
            fix = f"Fix the quarantined rows (the rows are listed in {quarantine_path}), or {raise_instead}"
        except OSError as exc:
            written = exc
            fix = (
                f"Fix the quarantined rows (they could not be listed in {quarantine_path}: "
                f"{exc.strerror or type(exc).__name__}), or {raise_instead}"
            )
    raise DataQualityError(what, where=where, fix=fix, quarantine=quarantine, summary=summary) from written


def _write_quarantine(quarantine: pl.DataFrame, path: Path) -> None:
    """Write every quarantined row to ``path`` (spreadsheet-safe CSV), creating its folder; whole or not at all."""
    write_csv_safely(quarantine, path)


def _shown(values: dict[str, pl.Series]) -> pl.Series:
    """Several cells shown as one text per row: "promised_date=2024-03-01, order_date=2024-03-10"."""
    return (
        pl.DataFrame(values)
        .select(
            pl.concat_str([pl.format(f"{c}={{}}", pl.col(c).fill_null("")) for c in values], separator=", ")
        )
        .to_series()
    )


def _joined_raw_text(checked: _Checked, rows: pl.Series, columns: list[str]) -> pl.Series:
    """The cells of ``columns`` as written in the file, one "a, b" text per row (the value a reason shows)."""
    return (
        pl.DataFrame({c: checked.raw_text(c, rows) for c in columns})
        .select(pl.concat_str([pl.col(c).str.strip_chars() for c in columns], separator=", "))
        .to_series()
    )


# --- all


def validate_inputs(
    raw: dict[str, tuple[Source, pl.DataFrame]],
    *,
    max_quarantine_share: float = 0.2,
    quarantine_path: Path | None = None,
    as_of: date | None = None,
    formats: Mapping[str, Mapping[str, ColumnFormat]] | None = None,
    window: tuple[date, date] | None = None,
    with_receipt_lines: bool = False,
    columns: Mapping[str, Sequence[str]] | None = None,
) -> ValidatedInputs:
    """Validate every source, check references between them, and enforce the quarantine threshold.

    ``as_of`` is the run's date (None: today). A date of something that has happened (a receipt, an order
    placed, an NCR raised or closed, a score given) after the later of ``as_of`` and today is in the future and
    quarantined; one after a back-dated ``as_of`` but not after today is not an error (see the module docstring).

    ``formats`` say how a mapped source writes each field (kind -> field -> format); a canonical file needs none.

    ``window`` (first day, last day: a run's window and its as-of date) validates only the rows the metrics of
    that window can read (see :func:`_window_rows`); every cell is still cast, so a row whose dates do not parse
    is validated. The summary then counts those rows, the threshold is over them, and the good rows returned are
    those rows' good ones: scoring them gives every supplier the metrics the whole history gives. None: every row.

    ``with_receipt_lines`` also gives ``receipt_lines``, each good receipt's order line as the reference check
    found it, for the metrics to read rather than match them again; it holds a pair of row numbers per receipt
    while validating, so a validation on its own leaves it out.

    ``columns`` (kind -> canonical column names) are the columns of the good rows returned for those kinds; every
    canonical column for the others. A run asks for what it reads (``suppliers.runs.RunReading.columns``), so a
    column no later step reads is not held beside the others once validated.

    Raises :class:`SourceError` for a missing required source or column and :class:`DataQualityError`
    when a source's quarantined share of rows is over ``max_quarantine_share``. That error carries the full
    quarantine frame and the summary as ``.quarantine`` and ``.summary``; when ``quarantine_path`` is given,
    the full quarantine is also written there as CSV (parent folders created) before it is raised, and the
    error's fix text names the file. Nothing is written when the run may go on.
    """
    if not 0.0 <= max_quarantine_share <= 1.0:
        raise ConfigError(
            f"max_quarantine_share must be between 0 and 1, got {max_quarantine_share}",
            where="validation.max_quarantine_share",
            fix="Use a share such as 0.2 (20%)",
        )
    unknown_columns = [f"{kind}.{name}" for kind, names in (columns or {}).items() for name in names
                       if name not in CANONICAL.get(kind, {})]
    if unknown_columns:
        raise ValueError(f"columns asked that no record kind has: {', '.join(unknown_columns)}")
    receipt_key = RECORDS["receipts"].key_to("purchase_order_lines").fields
    if not with_receipt_lines and not set(receipt_key) <= set((columns or {}).get("receipts", receipt_key)):
        raise ValueError("receipts without their order line's key need with_receipt_lines=True: the metrics then "
                         "find each receipt's line by its position")
    if window is not None and not window[0] <= window[1]:
        raise ConfigError(f"the window's first day {window[0]} is after its last day {window[1]}",
                          where="validate_inputs(window=...)", fix="Give (first day, last day)")
    missing = [kind for kind in REQUIRED_KINDS if kind not in raw]
    if missing:
        raise SourceError(
            f"no source for {', '.join(missing)}",
            where="inputs",
            fix=f"Provide {', '.join(f'{k}.csv' for k in missing)} in the data folder",
        )
    unknown = sorted(set(raw) - set(RECORD_KINDS))
    if unknown:
        raise SourceError(
            f"unknown record kind {', '.join(map(repr, unknown))}",
            where="inputs",
            fix=f"Use one of {', '.join(RECORD_KINDS)}",
        )
    def cast_all() -> dict[str, _Checked]:
        return {kind: _cast_source(kind, raw[kind][1], raw[kind][0].name, (formats or {}).get(kind))
                for kind in RECORD_KINDS if kind in raw}

    checked = cast_all()
    history = _price_history(checked["purchase_order_lines"].cast, *window) if window is not None else None
    deeper: pl.DataFrame | None = None  # items whose previous price needs all their lines before the window
    while True:  # once, unless the previous prices of the window need older lines (see _window_rows)
        rows = _window_rows(checked, *window, history=history, all_history_of=deeper) if window is not None else {}
        for kind, source_checked in checked.items():
            _checks(source_checked, rows.pop(kind, None))
        future_after = _future_after(as_of)
        for source_checked in checked.values():
            _future(source_checked, future_after)
        _references(checked, keep_matches=with_receipt_lines)
        _lines_with_a_quarantined_receipt(checked)
        if window is None or deeper is not None:
            break
        deeper = _items_without_previous_price(checked, history)
        if deeper.is_empty():
            break
        checked.clear()  # let go of the first pass's frames before casting again
        checked = cast_all()  # more rows to validate: start again from the frames as read

    quarantine = pl.concat([c.quarantine() for c in checked.values()], how="vertical").cast(QUARANTINE_SCHEMA)
    whole = quarantine.filter(pl.col("row").is_null())
    if whole.height:  # a check failed for the file as a whole: no row to set aside, so the source is unusable
        first = whole.row(0, named=True)
        raise SourceError(
            f"{first['reason']}"
            + (f" (and {whole.height - 1} more whole-file failures)" if whole.height > 1 else ""),
            where=first["source"],
            fix="Check that the file is the right export for its record kind",
        )
    summary = _summary(checked, quarantine)
    _check_threshold(summary, quarantine, max_quarantine_share, quarantine_path)

    receipt_lines = _receipt_lines(checked["receipts"], checked["purchase_order_lines"])
    good: dict[str, pl.DataFrame] = {}
    for kind in RECORD_KINDS:  # one kind at a time, letting go of its cast rows once its good rows are out
        source_checked = checked.pop(kind, None)
        returned = list((columns or {}).get(kind, CANONICAL[kind]))
        good[kind] = (source_checked.good if source_checked else empty_frame(kind)).select(returned)
        del source_checked
    return ValidatedInputs(**good, quarantine=quarantine, summary=summary, receipt_lines=receipt_lines)


def _receipt_lines(receipts: _Checked, lines: _Checked) -> pl.Series | None:
    """Per good receipt, the position of its order line among the good lines (null: that line is not one of
    them); None when the reference check kept no matches. Row numbers are looked up in arrays indexed by them,
    not joined: a _ROW is a row's number in its source, so they are about as many as the rows read."""
    if receipts.matched is None:
        return None
    receipt_rows, line_rows = receipts.good.get_column(_ROW), lines.good.get_column(_ROW)
    line_row = _line_rows_of(receipts, receipt_rows)  # the pairs are let go of here: one array less at once
    position = _by_row(line_rows, pl.int_range(line_rows.len(), dtype=pl.UInt32, eager=True), line_row)
    return position.gather(line_row).rename("line")


def _line_rows_of(receipts: _Checked, receipt_rows: pl.Series) -> pl.Series:
    """The row number of the order line each of ``receipt_rows`` was matched to (see :func:`_receipt_lines`)."""
    matched, receipts.matched = receipts.matched, None
    assert matched is not None  # checked by the caller
    return _by_row(matched.get_column(_ROW), matched.get_column(_PARENT_ROW), receipt_rows).gather(receipt_rows)


def _by_row(rows: pl.Series, values: pl.Series, asked: pl.Series) -> pl.Series:
    """values[i] at index rows[i], null elsewhere, long enough for every row number in ``asked`` too."""
    size = 1 + max((int(s.max()) for s in (rows, asked) if s.len() and s.null_count() < s.len()),  # type: ignore[arg-type]
                   default=0)
    return pl.repeat(None, size, dtype=pl.UInt32, eager=True).scatter(rows, values)


# --- the window


def _window_rows(checked: dict[str, _Checked], first: date, last: date, *, history: pl.DataFrame | None = None,
                 all_history_of: pl.DataFrame | None = None) -> dict[str, pl.Series]:
    """Per kind, which cast rows a run over ``first`` to ``last`` (its window and as-of date) validates.

    What the metrics and gates read (rules/metrics.py, rules/asl.py), and so what is kept:

    - order lines promised in the window (the judged lines are among them) or ordered in it (price variance),
      the order lines of every receipt received in the window (acceptance and PPM count a receipt by its line's
      supplier), and for each item (supplier, item_id, currency) ordered in the window its lines of the last day
      it was ordered before the window, where its previous price is found (``history``, see
      :func:`_price_history`; all its lines before the window for the items ``all_history_of``: those whose
      lines of that day are all quarantined, see validate_inputs);
    - every receipt of those lines, whatever its date: a judged line's deliveries before the window count, a
      line is set aside when one of its receipts is, and a kept receipt's line is there (never "unknown");
    - nonconformances raised by the last day and in the window, or still open, or closed on or after the first
      day (open at the as-of date, closed in the window);
    - feedback given in the window;
    - every supplier.

    A row whose deciding date is empty or did not parse is kept (it is quarantined for that). Lines and receipts
    are matched by a hash of (po_id, line_no): a hash two keys share keeps a few more rows, never fewer. A
    repeated key is still found against every row read (see :func:`_checks`).
    """
    def dated(column: str, rows: pl.DataFrame) -> pl.Series:
        return rows.select(pl.col(column).is_null() | pl.col(column).is_between(first, last)).to_series()

    kept: dict[str, pl.Series] = {}
    lines, receipts = checked["purchase_order_lines"].cast, checked["receipts"].cast
    reference = RECORDS["receipts"].key_to("purchase_order_lines")
    names = list(reference.reference.fields)
    line_key = lines.select(_key_hash(names, names)).to_series()
    receipt_key = receipts.select(_key_hash(list(reference.fields), names)).to_series()
    promised, received = dated("promised_date", lines), dated("received_date", receipts)
    ordered = lines.select(pl.col("order_date").is_between(first, last).fill_null(False)).to_series()
    if history is None:
        history = _price_history(lines, first, last)
    if all_history_of is not None and all_history_of.height:
        items = pl.DataFrame([lines.get_column(c).gather(history.get_column("_at")) for c in _PRICE_ITEM])
        everything = items.select(pl.struct(_PRICE_ITEM).is_in(
            all_history_of.select(pl.struct(_PRICE_ITEM)).to_series().implode(), nulls_equal=True)).to_series()
        history = history.with_columns(pl.col("_kept") | everything)
    wanted = promised | ordered | pl.repeat(False, lines.height, dtype=pl.Boolean, eager=True).scatter(
        history.get_column("_at"), history.get_column("_kept"))
    kept["purchase_order_lines"] = wanted | _among(line_key, ~wanted, receipt_key.filter(received))
    kept["receipts"] = received | _among(receipt_key, ~received, line_key.filter(kept["purchase_order_lines"]))
    if "nonconformances" in checked:
        raised, closed = pl.col("raised_date"), pl.col("closed_date")
        kept["nonconformances"] = checked["nonconformances"].cast.select(
            raised.is_null() | ((raised <= last) & ((raised >= first) | closed.is_null() | (closed >= first)))
        ).to_series()
    if "feedback" in checked:
        kept["feedback"] = dated("date", checked["feedback"].cast)
    return kept


# What price variance compares a line's unit price within, and in which order (rules/metrics.py, price_changes).
_PRICE_ITEM = ("supplier_id", "item_id", "currency")
_PRICE_ORDER = ("order_date", "po_id", "line_no")
_CHECK_SEED = 0x5EED  # a second hash of an item, any seed but the first's (0)


def _price_history(lines: pl.DataFrame, first: date, last: date) -> pl.DataFrame:
    """The lines (``lines`` cast) ordered with a price before ``first``, of items ordered with a price from
    ``first`` to ``last``: ``_at`` (position), ``_ROW`` and ``_kept``, whether the line is of the last day its item
    was ordered before ``first``; in no particular order.

    An item's previous price before the window is on its latest good line before it; when one of the lines of
    that last day is good, the latest good line is among them. Items are told apart by a hash of them here: two
    that share it only bring in more lines.
    """
    priced = lines.select(
        pl.col("item_id").is_not_null() & pl.col("unit_price").is_not_null() & pl.col("order_date").is_not_null()
    ).to_series()
    item = lines.select(_item_hash()).to_series()
    ordered = lines.get_column("order_date")
    bought = item.filter(priced & ordered.is_between(first, last)).unique()  # a small set looks up faster
    at = (priced & (ordered < first) & item.is_in(bought.implode())).arg_true()
    # The last day of each item is taken over its two hashes, not its texts: a second, independent hash tells
    # apart two items that share the first (both would have to collide: 128 bits). Sorted by them, an item's
    # lines are one run of rows, and a maximum over runs of a sorted column is a maximum over slices: half the
    # memory of one over the hashes themselves.
    check = lines.select(_item_hash(seed=_CHECK_SEED)).to_series().gather(at)
    before = pl.DataFrame([at.alias("_at"), lines.get_column(_ROW).gather(at), item.gather(at).alias("_item"),
                           check.alias("_check"), ordered.gather(at)]).sort("_item", "_check")
    starts = (pl.col("_item") != pl.col("_item").shift()) | (pl.col("_check") != pl.col("_check").shift())
    run = starts.fill_null(True).cum_sum().set_sorted()
    return before.select("_at", _ROW, (pl.col("order_date") == pl.col("order_date").max().over(run)).alias("_kept"))


def _item_hash(seed: int = 0) -> pl.Expr:
    """A 64-bit hash of a line's item (a function of its own so that a test can make items collide)."""
    return pl.struct(_PRICE_ITEM).hash(seed=seed)


def _items_without_previous_price(checked: dict[str, _Checked], history: pl.DataFrame) -> pl.DataFrame:
    """The items ordered in the window whose lines of the last day they were ordered before it were all
    quarantined: their previous price is on an older line, so a second pass validates all their lines before it."""
    lines = checked["purchase_order_lines"]
    kept_rows = history.filter("_kept").get_column(_ROW)
    quarantined = [part.get_column(_ROW) for part in lines.parts]
    # Only an item one of whose lines of that day was quarantined can have none left: look at those items alone.
    hit = kept_rows.filter(kept_rows.is_in(pl.concat(quarantined).drop_nulls().implode())) if quarantined else None
    if hit is None or hit.is_empty():
        return pl.DataFrame(schema={name: lines.cast.schema[name] for name in _PRICE_ITEM})
    kept = lines.cast.select(_ROW, *_PRICE_ITEM).filter(pl.col(_ROW).is_in(kept_rows.implode()))
    kept = kept.join(kept.filter(pl.col(_ROW).is_in(hit.implode())).select(_PRICE_ITEM).unique(), on=_PRICE_ITEM,
                     how="semi", nulls_equal=True)
    return (
        kept.with_columns(_good_rows(lines).alias("_good"))
        .group_by(_PRICE_ITEM)
        .agg(pl.col("_good").any())
        .filter(~pl.col("_good"))
        .select(_PRICE_ITEM)
    )


def _good_rows(checked: _Checked) -> pl.Expr:
    """True for a cast row that is not quarantined (a look-up among the few quarantined rows, not the many good)."""
    bad = [part.get_column(_ROW) for part in checked.parts]
    return ~pl.col(_ROW).is_in(pl.concat(bad).drop_nulls().unique().implode()) if bad else pl.lit(True)


def _among(keys: pl.Series, asked: pl.Series, wanted: pl.Series) -> pl.Series:
    """True where ``asked`` is and the key is one of ``wanted`` (only the asked rows are looked up)."""
    at = asked.arg_true()
    looked_up = keys.gather(at)
    if looked_up.len() < wanted.len():  # a look-up builds a set of what it looks in: build it of the fewer keys
        wanted = wanted.filter(wanted.is_in(looked_up.implode())).unique()
    return pl.repeat(False, keys.len(), dtype=pl.Boolean, eager=True).scatter(at, looked_up.is_in(wanted.implode()))
