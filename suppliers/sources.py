"""Input sources: find the record files in a data folder, read them raw, fingerprint them.

A data folder holds one file per record kind, named ``<kind>.csv`` or ``<kind>.parquet``. CSV files are
read with every column as text, so :mod:`suppliers.validate` does the casting and can quarantine a bad cell
instead of failing the whole file; Parquet files are read as stored. Each file's bytes are read once:
:func:`read_source` parses them and returns their SHA-256 too, and :func:`fingerprint_sources` combines
those per-kind digests into the run's input fingerprint.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from suppliers.errors import SourceError
from suppliers.formats import ColumnFormat
from suppliers.records import RECORD_KINDS, RECORDS, REQUIRED_KINDS

__all__ = [
    "RECORD_KINDS",
    "REQUIRED_KINDS",
    "FORMATS",
    "Source",
    "discover_sources",
    "read_source",
    "fingerprint_sources",
]

FORMATS: tuple[str, ...] = ("csv", "parquet")

_DUPLICATED = re.compile(r"^(?P<base>.*)_duplicated_\d+$")  # how Polars renames a repeated CSV header


@dataclass(frozen=True)
class Source:
    """One input: the record kind it holds, where it is, and its format ("csv", "parquet", "excel" or "sql")."""

    kind: str
    path: Path
    format: str
    label: str | None = None  # how a mapped source is named: a file name, "3 files matching ...", a query

    @property
    def name(self) -> str:
        """The file name (or a mapped source's label), as quarantine rows and messages show it."""
        return self.label or self.path.name


def discover_sources(data_dir: Path) -> dict[str, Source]:
    """Find ``<data_dir>/<kind>.csv`` or ``<kind>.parquet`` for every record kind.

    Required kinds must be present; optional kinds (nonconformances, feedback) are left out when absent.
    Raises :class:`SourceError` for a missing folder, a missing required file, or a kind given twice.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise SourceError(
            "data folder not found" if not data_dir.exists() else "not a folder",
            where=str(data_dir),
            fix="Point the data folder setting at the folder that holds suppliers.csv, "
            "purchase_order_lines.csv and receipts.csv",
        )
    sources: dict[str, Source] = {}
    missing: list[str] = []
    for kind in RECORD_KINDS:
        found = [data_dir / f"{kind}.{fmt}" for fmt in FORMATS if (data_dir / f"{kind}.{fmt}").is_file()]
        if len(found) > 1:
            raise SourceError(
                f"both {found[0].name} and {found[1].name} are present; it is unclear which holds the {kind}",
                where=str(data_dir),
                fix="Keep one of them and move or delete the other",
            )
        if found:
            sources[kind] = Source(kind=kind, path=found[0], format=found[0].suffix[1:])
        elif kind in REQUIRED_KINDS:
            missing.append(kind)
    if missing:
        present = sorted(p.name for p in data_dir.iterdir() if p.is_file())
        wanted = [f"{kind}.csv (or {kind}.parquet)" for kind in missing]
        hints = []
        for kind in missing:
            close = difflib.get_close_matches(f"{kind}.csv", present, n=1, cutoff=0.6)
            if close:
                hints.append(f"found '{close[0]}' — did you mean {kind}.csv?")
        what = f"missing required input file{'s' if len(missing) > 1 else ''} {', '.join(wanted)}"
        if hints:
            what += f" ({'; '.join(hints)})"
        raise SourceError(
            what,
            where=str(data_dir),
            fix="Export the missing records into the folder under exactly these names, "
            "or rename the file that holds them",
        )
    return sources


def read_source(source: Source, *, compact: bool = False,
                fields: Collection[str] | None = None) -> tuple[pl.DataFrame, str]:
    """Read a source raw, once: (the frame, the SHA-256 hex of the bytes it was parsed from).

    The file's bytes are read a single time and both parsed (CSV with every column as String, Parquet as
    stored) and hashed, so the digest always describes exactly the data that is scored — a new export
    landing in the folder mid-run cannot give a run key that does not match the data.
    ``compact``: a CSV column that validation casts to a date, a number or true/false is read as Categorical
    instead of String: the same text, a quarter of the memory (see :func:`_compact_columns`).
    ``fields`` (the record kind's fields a run reads): only their columns are parsed, when the file has them all;
    otherwise every column, so that validation can name a missing one and the column it may have been meant as.
    Raises :class:`SourceError` naming the file when it is missing, empty, not UTF-8 or not parseable.
    """
    path = Path(source.path)
    if source.format not in FORMATS:
        raise SourceError(
            f"unsupported format '{source.format}'", where=str(path), fix="Use a .csv or .parquet file"
        )
    if not path.is_file():
        raise SourceError("file not found", where=str(path), fix="Check the data folder and the file name")
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:  # removed between the check and the read
        raise SourceError(
            "file not found", where=str(path), fix="Check the data folder and the file name"
        ) from exc
    except OSError as exc:
        raise SourceError(
            f"cannot be read ({exc.strerror or type(exc).__name__})",
            where=str(path),
            fix="Check that the file is readable by the user running supplier-eval",
        ) from exc
    if not data:
        raise SourceError(
            "the file is empty (not even a header line)",
            where=path.name,
            fix="Re-export the records with a header line",
        )
    digest = hashlib.sha256(data).hexdigest()
    if source.format == "csv":
        return _read_csv(data, path.name, source.kind, compact=compact, fields=fields), digest
    try:
        header = pl.read_parquet_schema(io.BytesIO(data)).names() if fields is not None else []
        return pl.read_parquet(io.BytesIO(data), columns=_columns_to_read(header, fields, source.kind)), digest
    except Exception as exc:  # polars raises several types for a damaged file
        raise SourceError(
            f"cannot be read as Parquet ({_first_line(exc)})",
            where=path.name,
            fix="Re-export the file as Parquet, or export it as CSV instead",
        ) from exc


def _columns_to_read(header: Sequence[str], fields: Collection[str] | None, kind: str) -> list[str] | None:
    """The columns of ``header`` that hold ``fields`` of ``kind`` (a header's name is trimmed), or None for every
    column: when ``fields`` is None, or one of them that must be there is not (a required one, or one whose
    partner is there), so that validation can name it and the column it may have been meant as."""
    if fields is None or kind not in RECORDS:
        return None
    present = {name.strip() for name in header}
    for name in fields:
        constraints = RECORDS[kind].field(name).constraints
        if name not in present and (not constraints.column_optional or present & set(constraints.together_with)):
            return None
    return [name for name in header if name.strip() in fields]


def _header(data: bytes) -> list[str]:
    return pl.read_csv(io.BytesIO(data), infer_schema=False, encoding="utf8", n_rows=0).columns


def _compact_columns(header: Sequence[str], kind: str) -> dict[str, pl.DataType]:
    """Categorical for the header's columns that validation casts to a date, a number or true/false.

    A text cell is a 16-byte view; a Categorical cell is a 4-byte code into the column's distinct texts, few for
    dates, quantities and flags. Such a column is kept only to show a quarantined cell as written, so the
    cheaper form holds the same text. Identifiers stay String: nearly every value is distinct, and validation
    uses them as they are. Each file gets categories of its own, let go of with its frame.
    """
    if kind not in RECORDS:
        return {}
    typed = {f.name for f in RECORDS[kind].fields if f.dtype != pl.String}
    chosen = [name for name in header if name.strip() in typed]
    if not chosen:
        return {}
    dtype = pl.Categorical(pl.Categories.random())
    return dict.fromkeys(chosen, dtype)


def _read_csv(data: bytes, name: str, kind: str, *, compact: bool = False,
              fields: Collection[str] | None = None) -> pl.DataFrame:
    try:
        header = _header(data) if compact or fields is not None else []
        # A repeated header is refused below, named: read every column to see it.
        columns = None if any(_DUPLICATED.match(c) for c in header) else _columns_to_read(header, fields, kind)
        overrides = _compact_columns(header, kind) if compact else {}
        if columns is not None:
            overrides = {name: dtype for name, dtype in overrides.items() if name in columns}
        frame = pl.read_csv(io.BytesIO(data), infer_schema=False, encoding="utf8", schema_overrides=overrides,
                            columns=columns)
    except pl.exceptions.NoDataError as exc:
        raise SourceError(
            "the file is empty (not even a header line)",
            where=name,
            fix="Re-export the records with a header line",
        ) from exc
    except pl.exceptions.ComputeError as exc:
        message = str(exc)
        if "utf-8" in message.lower() or "utf8" in message.lower():
            raise SourceError(
                f"is not UTF-8 text ({_utf8_position(data)})",
                where=name,
                fix="Re-save it as UTF-8 (in Excel: Save As → 'CSV UTF-8 (Comma delimited)')",
            ) from exc
        raise SourceError(
            f"cannot be read as CSV ({_first_line(exc)})",
            where=name,
            fix="Check that every line has as many comma-separated fields as the header",
        ) from exc
    except Exception as exc:
        raise SourceError(
            f"cannot be read as CSV ({_first_line(exc)})",
            where=name,
            fix="Check the file is a comma-separated export with a header line",
        ) from exc
    repeated = sorted(
        {m["base"] for c in frame.columns if (m := _DUPLICATED.match(c)) and m["base"] in frame.columns}
    )
    if repeated:
        names = ", ".join(f"'{c}'" for c in repeated)
        raise SourceError(
            f"column {names} appears more than once in the header",
            where=name,
            fix="Remove or rename the repeated column",
        )
    return frame


def _utf8_position(data: bytes) -> str:
    """Where the first byte that is not UTF-8 is — worked out only on the error path."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return f"byte 0x{data[exc.start]:02x} on line {line}"
    return "invalid byte sequence"  # pragma: no cover - polars and Python disagree


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def fingerprint_sources(digests: Mapping[str, str]) -> str:
    """SHA-256 hex over each kind's name and file digest (from :func:`read_source`), in kind order.

    ``digests`` maps record kind → the SHA-256 hex :func:`read_source` returned for that kind's file, so the
    fingerprint describes the bytes that were parsed, not a second read of the folder. Dict order does not
    matter; a change to any file's bytes, or a kind added or removed, changes the fingerprint.
    """
    combined = hashlib.sha256()
    for kind in sorted(digests):
        combined.update(f"{kind}\0{digests[kind]}\n".encode())
    return combined.hexdigest()


@dataclass(frozen=True)
class LoadedSources:
    """Every source read raw, the fingerprint of the very bytes parsed, and how each field is written."""

    raw: dict[str, tuple[Source, pl.DataFrame]]
    fingerprint: str
    formats: Mapping[str, Mapping[str, ColumnFormat]] = field(default_factory=dict)  # kind -> field -> format

    def describe(self) -> str:
        """E.g. "suppliers.csv (60 rows), receipts.csv (6,312 rows)" for progress messages."""
        return ", ".join(f"{source.name} ({frame.height:,} rows)" for source, frame in self.raw.values())


def load_sources(data_dir: Path, fields: Mapping[str, Collection[str]] | None = None) -> LoadedSources:
    """Find and read every source in ``data_dir`` (see :func:`discover_sources` and :func:`read_source`); of a
    kind in ``fields`` (kind -> field names: what a run reads), only those fields' columns."""
    raw: dict[str, tuple[Source, pl.DataFrame]] = {}
    digests: dict[str, str] = {}
    for kind, source in discover_sources(data_dir).items():
        frame, digests[kind] = read_source(source, compact=True, fields=(fields or {}).get(kind))
        raw[kind] = (source, frame)
    return LoadedSources(raw=raw, fingerprint=fingerprint_sources(digests))
