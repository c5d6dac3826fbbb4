"""The mapping file: where a user's exports are, and how their columns become supplier-eval's records.

A YAML file, checked like the rule file (every problem at ``file:line``; ``supplier-eval mapping check``)::

    sources:                                  # each export, read once (suppliers/readers.py)
      shipments:
        path: Supply_Chain_Shipment_Pricing_Data.csv     # relative to this file; a glob reads every match
        missingValues: ["", "N/A", "Date Not Captured"]  # cell texts that mean "no value", in every column
    records:                                  # each record kind, from one source (one export may feed several)
      purchase_order_lines:
        from: shipments
        where: [{column: vendor, not_in: ["SCMS from RDC"]}]   # row filters, on the text as written
        fields:
          po_id: "po / so #"                                    # a source column
          line_no: {number_within: ["po / so #"]}               # a key the export lacks: 1, 2, ... per order
          promised_date: {column: scheduled delivery date, format: ["%d-%b-%y", "%m/%d/%y"]}
          unit_price: {column: unit price, bareNumber: false, groupChar: ","}   # $1,234.50
          currency: {constant: USD}
      suppliers:
        from: shipments
        one_row_per: [supplier_id]                              # the supplier list from the distinct vendors
        fields: {supplier_id: vendor, name: vendor, criticality: {constant: major}, ...}

Structure (filters, keys made, distinct rows) is applied here; how each cell is written (missing values,
value maps, defaults, date and number formats) becomes a :class:`~suppliers.formats.ColumnFormat` that
validation applies, so a cell that does not parse is quarantined with its text as written. Nothing is invented:
a field the export lacks is left out (optional fields are then empty) or given a constant by the user.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from suppliers.errors import MappingError, SourceError
from suppliers.formats import ColumnFormat
from suppliers.records import RECORD_KINDS, RECORDS
from suppliers.sources import LoadedSources, Source, load_sources
from suppliers.yamlfile import Location, load_model, parse_yaml

if TYPE_CHECKING:
    from suppliers.readers import RawTable, SourceSpec

__all__ = ["MappingFile", "Mapping", "load_mapping", "read_mapped_sources", "source_columns", "load_inputs",
           "CHECK_COMMAND"]

CHECK_COMMAND = "supplier-eval mapping check"
_ROW, _FILE, _FILE_ROW = "__row__", "__file__", "__file_row__"
_FORMATS_BY_SUFFIX = {".csv": "csv", ".txt": "csv", ".tsv": "csv", ".parquet": "parquet", ".xlsx": "excel"}
Scalar = str | int | float | bool


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class SourceEntry(_Entry):
    """One export: a file or glob (CSV, Parquet, Excel) or a SQL query."""

    path: str | None = Field(None, description="A file or glob, relative to the mapping file.")
    format: Literal["csv", "parquet", "excel", "sql"] | None = Field(None, description="Default: from the suffix.")
    encoding: str | None = Field(None, description="CSV: utf-8, utf-16, utf-16-le, utf-16-be, cp1252, latin-1.")
    delimiter: str | None = Field(None, description="CSV: , ; tab or |; detected when not given.")
    sheet: str | None = Field(None, description="Excel: the sheet's name; the first sheet when not given.")
    header_row: int = Field(1, ge=1, description="CSV and Excel: the line or row that holds the header.")
    url_env: str | None = Field(None, description="SQL: the environment variable holding the database URL.")
    url: str | None = Field(None, description="SQL: the database URL, when it holds no password.")
    query: str | None = Field(None, description="SQL: the SELECT that returns the rows.")
    missing_values: tuple[str, ...] = Field((), alias="missingValues",
                                            description="Cell texts that mean 'no value' in every column.")

    @field_validator("missing_values", mode="before")
    @classmethod
    def _words_as_text(cls, value: Any) -> Any:
        return [_word(item) for item in value] if isinstance(value, list | tuple) else value

    @model_validator(mode="after")
    def _complete(self) -> SourceEntry:
        kind = self.format or _format_of(self.path)
        if kind == "sql":
            if not self.query or not (self.url or self.url_env):
                raise ValueError("a sql source needs query and url_env (or url)")
        elif not self.path:
            raise ValueError("a source needs path (a file or glob), or format: sql with a query")
        elif kind is None:
            raise ValueError(f"cannot tell the format of {self.path!r}: add format: csv, parquet or excel")
        return self


class Condition(_Entry):
    """A row filter on one source column's text (trimmed): exactly one comparison."""

    column: str
    equals: str | None = None
    not_equals: str | None = None
    is_in: tuple[str, ...] | None = Field(None, alias="in")
    not_in: tuple[str, ...] | None = None
    empty: bool | None = None

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        tests = ("equals", "not_equals", "is_in", "not_in", "empty")
        given = [name for name in tests if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("a condition needs exactly one of equals, not_equals, in, not_in, empty")
        return self

    def expression(self) -> pl.Expr:
        text = pl.col(self.column).cast(pl.String).str.strip_chars()
        if self.equals is not None:
            return text == self.equals
        if self.not_equals is not None:
            return (text != self.not_equals).fill_null(True)
        if self.is_in is not None:
            return text.is_in(list(self.is_in)).fill_null(False)
        if self.not_in is not None:
            return ~text.is_in(list(self.not_in)).fill_null(False)
        is_empty = text.is_null() | (text.str.len_bytes() == 0)
        return is_empty if self.empty else ~is_empty


class FieldEntry(_Entry):
    """Where one field of a record comes from, and how the export writes it."""

    column: str | None = Field(None, description="The source column.")
    constant: Scalar | None = Field(None, description="The same value in every row (a fact the export lacks).")
    number_within: tuple[str, ...] | None = Field(None, description="A number 1, 2, ... within these columns.")
    order_by: tuple[str, ...] = Field((), description="number_within: the order (default: file order).")
    join: tuple[str, ...] | None = Field(None, description="A composite key: these columns joined.")
    separator: str = Field("-", description="join: what goes between the parts.")
    format: str | tuple[str, ...] | None = Field(None, description="Dates: strptime formats, tried in order.")
    missing_values: tuple[str, ...] = Field((), alias="missingValues")
    values: dict[str, Scalar] | None = Field(None, description="Value map: text as written -> value meant.")
    default: Scalar | None = Field(None, description="The value of a cell that is empty.")
    decimal_char: str = Field(".", alias="decimalChar", min_length=1, max_length=1)
    group_char: str | None = Field(None, alias="groupChar", min_length=1, max_length=1)
    bare_number: bool = Field(True, alias="bareNumber", description="False: currency signs allowed ($1.50).")
    true_values: tuple[str, ...] | None = Field(None, alias="trueValues")
    false_values: tuple[str, ...] | None = Field(None, alias="falseValues")

    @model_validator(mode="before")
    @classmethod
    def _column_by_name(cls, value: Any) -> Any:
        return {"column": value} if isinstance(value, str) else value

    @field_validator("missing_values", "true_values", "false_values", mode="before")
    @classmethod
    def _words_as_text(cls, value: Any) -> Any:
        return [_word(item) for item in value] if isinstance(value, list | tuple) else value

    @field_validator("values", mode="before")
    @classmethod
    def _map_keys_as_text(cls, value: Any) -> Any:
        return {_word(key): item for key, item in value.items()} if isinstance(value, dict) else value

    @field_validator("constant", "default", mode="before")
    @classmethod
    def _dates_as_iso_text(cls, value: Any) -> Any:
        return value.isoformat() if isinstance(value, date) else value

    @model_validator(mode="after")
    def _one_origin(self) -> FieldEntry:
        origins = [name for name in ("column", "constant", "number_within", "join") if name in self.model_fields_set]
        if len(origins) != 1:
            raise ValueError("a field comes from exactly one of column, constant, number_within, join")
        if "constant" in origins and self.constant is None:
            raise ValueError("constant is empty: give the value every row should have")
        if self.group_char is not None and self.group_char == self.decimal_char:
            raise ValueError(f"groupChar and decimalChar are both {self.decimal_char!r}: set decimalChar too "
                             f"(e.g. decimalChar: \",\" with groupChar: \".\" for 1.234,5)")
        return self

    def source_columns(self) -> tuple[str, ...]:
        return tuple(c for c in (self.column, *(self.number_within or ()), *self.order_by, *(self.join or ())) if c)

    def column_format(self, source_missing: tuple[str, ...]) -> ColumnFormat:
        formats = (self.format,) if isinstance(self.format, str) else self.format
        defaults = ColumnFormat()
        return ColumnFormat(
            missing_values=tuple(dict.fromkeys((*source_missing, *self.missing_values))),
            values=tuple((str(k), _text(v)) for k, v in (self.values or {}).items()),
            default=None if self.default is None else _text(self.default),
            date_formats=formats or defaults.date_formats,
            decimal_char=self.decimal_char, group_char=self.group_char, bare_number=self.bare_number,
            true_values=self.true_values or defaults.true_values,
            false_values=self.false_values or defaults.false_values,
        )


class RecordEntry(_Entry):
    """One record kind: its source, the rows that count, and where each field comes from."""

    source: str = Field(alias="from", description="The name of a source above.")
    where: tuple[Condition, ...] = Field((), description="Rows are kept only when every condition holds.")
    one_row_per: tuple[str, ...] = Field((), description="Keep the first row of each value of these fields.")
    fields: dict[str, FieldEntry]


class MappingFile(_Entry):
    sources: dict[str, SourceEntry] = Field(min_length=1)
    records: dict[str, RecordEntry] = Field(min_length=1)


@dataclass(frozen=True)
class Mapping:
    """A checked mapping file, with its sources resolved against its folder."""

    path: Path
    content_hash: str
    file: MappingFile

    def spec(self, name: str) -> SourceSpec:
        from suppliers.readers import SourceSpec

        entry = self.file.sources[name]
        fmt = entry.format or _format_of(entry.path)
        path = None if entry.path is None else (Path(entry.path) if Path(entry.path).is_absolute()
                                                else self.path.parent / entry.path)
        return SourceSpec(name=name, format=fmt, path=path, encoding=entry.encoding, delimiter=entry.delimiter,
                          sheet=entry.sheet, header_row=entry.header_row, url=_url(entry, name), query=entry.query)

    def formats(self, kind: str) -> dict[str, ColumnFormat]:
        record = self.file.records[kind]
        missing = self.file.sources[record.source].missing_values
        formats = {name: entry.column_format(missing) for name, entry in record.fields.items()}
        if self.spec(record.source).format == "excel":
            # A date cell of a sheet arrives as ISO text whatever the sheet shows: accept it beside the formats.
            formats = {name: replace(fmt, date_formats=tuple(dict.fromkeys((*fmt.date_formats, "%Y-%m-%d"))))
                       for name, fmt in formats.items()}
        return formats


    def reading_only(self, fields: dict[str, tuple[str, ...]]) -> Mapping:
        """The mapping with each record kind in ``fields`` (kind -> field names) mapping only those fields (and
        those it keeps one row per): what a run reads. Its content hash is the file's, which the run key names."""
        records = {
            kind: record if kind not in fields else record.model_copy(update={"fields": {
                name: entry for name, entry in record.fields.items()
                if name in fields[kind] or name in record.one_row_per}})
            for kind, record in self.file.records.items()
        }
        return replace(self, file=self.file.model_copy(update={"records": records}))


def load_inputs(data_dir: Path, mapping_file: Path | None,
                fields: dict[str, tuple[str, ...]] | None = None) -> LoadedSources:
    """The run's inputs: the exports a mapping file describes, else the canonical files of the data folder; of a
    kind in ``fields`` (kind -> field names: what a run reads, ``suppliers.runs.fields_a_run_reads``), only
    those fields."""
    if mapping_file is None:
        return load_sources(data_dir, fields)
    mapping = load_mapping(mapping_file)
    return read_mapped_sources(mapping.reading_only(fields) if fields is not None else mapping)


def load_mapping(path: Path | str) -> Mapping:
    """Read and check a mapping file; raise one MappingError listing every problem at its line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MappingError("mapping file not found", where=str(path),
                           fix="Check data.mapping in the settings (relative to the settings file).") from None
    except OSError as exc:
        raise MappingError(f"cannot read the mapping file ({exc.strerror})", where=str(path)) from None
    document = parse_yaml(raw, source_name=str(path), error=MappingError, command=CHECK_COMMAND, noun="mapping file")
    file = load_model(document, MappingFile, noun="mapping file (sources, records)")
    problems = _problems(file)
    if problems:
        raise document.fail(problems)
    # What the mapping says, not how it is written: a comment or a re-indented line changes no run key.
    meaning = file.model_dump_json(by_alias=True).encode()
    return Mapping(path=path.resolve(), content_hash=hashlib.sha256(meaning).hexdigest(), file=file)


def _problems(file: MappingFile) -> list[tuple[Location, str]]:
    """What the structure allows but the records do not: unknown kinds and fields, required fields unmapped."""
    problems: list[tuple[Location, str]] = []
    for kind in RECORD_KINDS:
        if RECORDS[kind].required and kind not in file.records:
            problems.append((("records",), f"no mapping for {kind}, which every evaluation needs"))
    for kind, record in file.records.items():
        where: Location = ("records", kind)
        if kind not in RECORDS:
            problems.append((where, f"unknown record kind {kind!r}{_close(kind, RECORD_KINDS)}; "
                                    f"known: {', '.join(RECORD_KINDS)}"))
            continue
        declared = RECORDS[kind]
        if record.source not in file.sources:
            problems.append(((*where, "from"), f"unknown source {record.source!r}{_close(record.source, file.sources)}"
                                               f"; sources: {', '.join(file.sources)}"))
        for name, entry in record.fields.items():
            if name not in declared.columns:
                problems.append(((*where, "fields", name), f"{kind} has no field {name!r}"
                                 f"{_close(name, declared.columns)}; its fields: {', '.join(declared.columns)}"))
                continue
            dtype = declared.field(name).dtype
            problems += [((*where, "fields", name), message) for message in _format_problems(entry, dtype)]
        for field in declared.fields:
            if not field.constraints.column_optional and field.name not in record.fields:
                problems.append(((*where, "fields"), f"required field {field.name!r} is not mapped "
                                                     f"({field.description}): map a column or give a constant"))
        for name in record.one_row_per:
            if name not in record.fields:
                problems.append(((*where, "one_row_per"), f"{name!r} is not one of the fields mapped here"))
    return problems


def _format_problems(entry: FieldEntry, dtype: pl.DataType) -> list[str]:
    given = entry.model_fields_set
    problems = []
    if "format" in given and dtype != pl.Date:
        problems.append("format applies to dates only")
    if given & {"decimal_char", "group_char", "bare_number"} and not dtype.is_numeric():
        problems.append("decimalChar, groupChar and bareNumber apply to numbers only")
    if given & {"true_values", "false_values"} and dtype != pl.Boolean:
        problems.append("trueValues and falseValues apply to true/false fields only")
    if "order_by" in given and "number_within" not in given:
        problems.append("order_by belongs with number_within")
    if "separator" in given and "join" not in given:
        problems.append("separator belongs with join")
    return problems


def source_columns(mapping: Mapping) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Per source a record reads from: (the columns the mapping uses, those of them read compact).

    A column is read compact (see :func:`suppliers.readers.read_table`) when its only use is as the column of
    fields cast to a date, a number or true/false: not a filter, a key made, or a text field.
    """
    needed: dict[str, dict[str, bool]] = {}
    for kind, record in mapping.file.records.items():
        columns = needed.setdefault(record.source, {})

        def use(column: str, typed: bool, columns: dict[str, bool] = columns) -> None:
            columns[column] = columns.get(column, True) and typed

        for condition in record.where:
            use(condition.column, False)
        for name, entry in record.fields.items():
            for column in entry.source_columns():
                use(column, column == entry.column and RECORDS[kind].field(name).dtype != pl.String)
    return {name: (tuple(columns), tuple(c for c, typed in columns.items() if typed))
            for name, columns in needed.items()}


def read_mapped_sources(mapping: Mapping) -> LoadedSources:
    """Read each source once (only the columns the mapping uses) and build every mapped record kind from it."""
    from suppliers.readers import read_table

    tables = {name: read_table(mapping.spec(name), columns=columns, **({"compact": compact} if compact else {}))
              for name, (columns, compact) in source_columns(mapping).items()}
    raw: dict[str, tuple[Source, pl.DataFrame]] = {}
    for kind, record in mapping.file.records.items():
        table, fmt = tables[record.source], mapping.spec(record.source).format
        raw[kind] = (Source(kind=kind, path=Path(table.label), format=fmt, label=table.label),
                     _mapped(kind, record, table, fmt))
    digest = hashlib.sha256(mapping.content_hash.encode())
    for name in sorted(tables):
        digest.update(f"{name}\0{tables[name].fingerprint}\n".encode())
    formats = {kind: mapping.formats(kind) for kind in mapping.file.records}
    return LoadedSources(raw=raw, fingerprint=digest.hexdigest(), formats=formats)


def _mapped(kind: str, record: RecordEntry, table: RawTable, fmt: str) -> pl.DataFrame:
    """The record kind's rows from a source read: its rows with a value (see :func:`_without_blank_rows`), mapped."""
    # read_table leaves out the blank rows of a CSV or Excel source itself, by the same test.
    frame = table.frame if fmt in ("csv", "excel") else _without_blank_rows(table.frame)
    return _map_record(kind, record, frame, table.label)


def _without_blank_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows with at least one cell that holds something (an export's trailing blank lines are not records).

    A cell holds something when it is not null and, as text, not empty or only whitespace. Only the rows whose
    fullest column holds nothing can be blank, so the test of every cell runs on those rows only.
    """
    cells = [c for c in frame.columns if c not in (_ROW, _FILE)]
    if not cells or frame.is_empty():
        return frame

    def empty(column: str) -> pl.Expr:
        dtype = frame.schema[column]
        if dtype.is_numeric() or dtype.is_temporal() or dtype == pl.Boolean:  # as text never empty
            return pl.col(column).is_null()
        text = pl.col(column).cast(pl.String).str.strip_chars()
        return text.is_null() | (text.str.len_bytes() == 0)

    pivot = min(cells, key=lambda c: frame.get_column(c).null_count())
    at = "__position__"
    maybe = frame.with_row_index(at).filter(empty(pivot))
    if maybe.is_empty():
        return frame
    blank = maybe.filter(pl.all_horizontal([empty(c) for c in cells])).get_column(at)
    if not blank.len():
        return frame
    return frame.with_row_index(at).filter(~pl.col(at).is_in(blank.implode())).drop(at)


def _map_record(kind: str, record: RecordEntry, frame: pl.DataFrame, label: str) -> pl.DataFrame:
    """The record kind's fields from the source's rows: keys made, filtered, one row per value if asked.

    Keys are made on the whole source, before this kind's filters: two kinds that number the same orders (lines
    and their receipts) get the same numbers even when one of them keeps fewer rows.
    """
    # Whether any row is of another file than the first: a comparison, a quarter of the cost of counting names.
    several_files = _FILE in frame.columns and frame.height > 0 and bool(
        (frame.get_column(_FILE) != frame.get_column(_FILE)[0]).any())
    if several_files:
        # Rows get one number through the files in name order; the quarantine names each file and its own row.
        frame = frame.sort(_FILE, _ROW).with_columns(
            pl.col(_ROW).alias(_FILE_ROW), pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(_ROW))
    generated = {name: entry for name, entry in record.fields.items() if entry.number_within is not None}
    for name, entry in generated.items():
        frame = frame.with_columns(_line_numbers(frame, entry).alias(f"__{name}__"))
    for condition in record.where:
        frame = frame.filter(condition.expression())
    columns = [pl.col(_ROW).cast(pl.Int64), *((pl.col(_FILE), pl.col(_FILE_ROW)) if several_files else ())]
    for name, entry in record.fields.items():
        columns.append(_field_expression(name, entry).alias(name))
    mapped = frame.select(columns)
    if record.one_row_per:
        # One row per value, each field's first value that is not empty: one blank cell in a vendor's first row
        # must not set the vendor aside, and every line and receipt of it with it.
        keys = [f"__key{i}__" for i in range(len(record.one_row_per))]
        others = [c for c in mapped.columns if c != _ROW]
        mapped = (
            mapped.with_columns(pl.col(name).cast(pl.String).str.strip_chars().alias(key)
                                for key, name in zip(keys, record.one_row_per, strict=True))
            .group_by(keys, maintain_order=True)
            .agg(pl.col(_ROW).min(),
                 *[pl.col(c).filter(pl.col(c).cast(pl.String).str.strip_chars().str.len_bytes() > 0).first()
                   for c in others])
            .drop(keys)
        )
    return mapped


def _field_expression(name: str, entry: FieldEntry) -> pl.Expr:
    if entry.column is not None:
        return pl.col(entry.column)
    if entry.number_within is not None:
        return pl.col(f"__{name}__").cast(pl.String)
    if entry.join is not None:
        parts = [pl.col(c).cast(pl.String).str.strip_chars() for c in entry.join]
        return pl.concat_str(parts, separator=entry.separator)
    return pl.lit(_text(entry.constant), dtype=pl.String)


def _line_numbers(frame: pl.DataFrame, entry: FieldEntry) -> pl.Series:
    """1, 2, ... within each group of ``number_within``, in ``order_by`` order (numbers as numbers), then file order."""
    groups = [pl.col(c).cast(pl.String).str.strip_chars() for c in entry.number_within or ()]
    order = [expr for c in entry.order_by
             for expr in (pl.col(c).cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False),
                          pl.col(c).cast(pl.String))]
    numbered = (
        frame.select(_ROW, *[g.alias(f"__group{i}__") for i, g in enumerate(groups)],
                     *[o.alias(f"__order{i}__") for i, o in enumerate(order)])
        .with_row_index("__position__")
        .sort([*[f"__order{i}__" for i in range(len(order))], _ROW], nulls_last=True)
        .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64)
                      .over([f"__group{i}__" for i in range(len(groups))]).alias("__number__"))
        .sort("__position__")
    )
    return numbered.get_column("__number__")


def _format_of(path: str | None) -> str | None:
    if path is None:
        return None
    return _FORMATS_BY_SUFFIX.get(Path(path).suffix.lower())


def _url(entry: SourceEntry, name: str) -> str | None:
    if entry.url_env is None:
        return entry.url
    url = os.environ.get(entry.url_env)
    if not url:
        raise SourceError(f"the environment variable {entry.url_env} is not set", where=f"source {name!r}",
                          fix=f"Set {entry.url_env} to the database URL (it is read from the environment so that "
                              "its password stays out of files).")
    return url


def _word(value: Any) -> Any:
    """A word of a list in the mapping file as text; YAML reads some bare words as something else."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"YAML read a bare word as {value!r}: put it in quotes, e.g. \"yes\", \"N/A\", \"null\"")
    return str(value) if isinstance(value, int | float) else value


def _text(value: Scalar | None) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _close(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""

