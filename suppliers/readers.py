"""Read one source of a mapping file — a CSV, Parquet or Excel export, or a SQL query — into a Polars frame.

A mapping file's ``sources:`` section describes each export as a :class:`SourceSpec`; :func:`read_table` reads
it raw and returns a :class:`RawTable`: the source's columns (CSV and Excel as text, so validation can quarantine
a bad cell with its original text; Parquet and SQL as typed), plus ``__file__`` and ``__row__`` to name each
row's origin, the SHA-256 of exactly what was parsed, and a label for messages.

Every way a real export goes wrong that can be told from the file itself is a one-line :class:`SourceError`
that says what the file looks like and which setting to change: a UTF-16 file read as UTF-8, a
semicolon-separated file read with a comma, an .xlsx given as CSV, the header on another line. A missing
column is only reported once the encoding and delimiter are known to be right, so it is never the symptom of
one of those.
"""

from __future__ import annotations

import codecs
import difflib
import glob
import hashlib
import io
import mmap
import os
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl

from suppliers.errors import ConfigError, SourceError

__all__ = ["SourceSpec", "RawTable", "read_table", "FORMATS", "ENCODINGS", "DELIMITERS", "FILE", "ROW", "aligned",
           "numbered_rows"]

FORMATS: tuple[str, ...] = ("csv", "parquet", "excel", "sql")
#: The encodings a CSV source may set (aliases such as "utf8", "windows-1252" or "iso-8859-1" are accepted too).
ENCODINGS: tuple[str, ...] = ("utf-8", "utf-16", "utf-16-le", "utf-16-be", "cp1252", "latin-1")
#: The delimiters a CSV source may use or that are detected, with their names in messages and settings.
DELIMITERS: dict[str, str] = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
FILE, ROW = "__file__", "__row__"

_DELIMITER_SETTING = {",": "','", ";": "';'", "\t": "tab", "|": "'|'"}
_DELIMITER_ALIASES = {"comma": ",", "semicolon": ";", "tab": "\t", "\\t": "\t", "pipe": "|"}
_ENCODING_ALIASES = {"utf-8": "utf-8", "utf-8-sig": "utf-8", "utf-16": "utf-16", "utf-16-le": "utf-16-le",
                     "utf-16-be": "utf-16-be", "cp1252": "cp1252", "latin-1": "latin-1"}
_UTF16 = ("utf-16", "utf-16-le", "utf-16-be")
_GLOB_MAGIC = re.compile(r"[*?[]")
_POLARS_DUPLICATE = re.compile(r"^(?P<base>.*)_duplicated_\d+$")  # Polars' name for a repeated CSV header
_FASTEXCEL_DUPLICATE = re.compile(r"^(?P<base>.*)_\d+$")  # fastexcel's name for a repeated sheet header
_EXCEL_UNNAMED = re.compile(r"^__UNNAMED__\d+$")
_MIDNIGHT = r"^(\d{4}-\d{2}-\d{2})[ T]00:00:00(?:\.0+)?$"  # how fastexcel renders a date cell as text
_SNIFF = 8192  # bytes looked at to tell what a file is


@dataclass(frozen=True)
class SourceSpec:
    """One source of the mapping file: where its records are and how to read them."""

    name: str  # the source's name in the mapping file, e.g. "shipments"
    format: Literal["csv", "parquet", "excel", "sql"]
    path: Path | None = None  # a file or a glob (csv, parquet, excel); absolute (the caller resolves it)
    encoding: str | None = None  # csv: None = detect (UTF-8 with or without BOM, UTF-16 by BOM); see ENCODINGS
    delimiter: str | None = None  # csv: None = detect among , ; tab | from the header line; or one of them / "tab"
    sheet: str | None = None  # excel: sheet name (None = first sheet)
    header_row: int = 1  # csv/excel: the 1-based line/row holding the header (rows above it are skipped)
    url: str | None = None  # sql: sqlite:///path or postgresql://... (postgresql+psycopg:// accepted too)
    query: str | None = None  # sql: the SELECT to run


@dataclass(frozen=True)
class RawTable:
    """A source read raw: its frame, the fingerprint of what was parsed, and its name for messages."""

    frame: pl.DataFrame  # the source's columns + __file__ (String) + __row__ (Int64, 1-based after the header)
    fingerprint: str  # sha256 hex of the bytes parsed (per file, in sorted order) or of the query result
    label: str  # the file name, "N files matching <glob>", or "query on <redacted url>"


def read_table(spec: SourceSpec, *, columns: Sequence[str] | None = None, compact: Sequence[str] = ()) -> RawTable:
    """Read a source raw: only ``columns`` (by header name, stripped of surrounding spaces) when given.

    ``compact``: CSV columns read as Categorical rather than String, the same text in a quarter of the memory
    (for columns cast to a date, a number or true/false: few distinct texts, each parsed once).

    CSV and Excel columns are String; Parquet and SQL keep their types (a PostgreSQL type ADBC has no Arrow type
    for, such as ``numeric``, arrives as its text). Header names are stripped of surrounding whitespace. Rows
    whose every read cell is empty or whitespace (blank lines, trailing ``;;;`` lines, empty sheet rows) are
    left out of CSV and Excel sources; ``__row__`` still counts them, so it stays the row's position after the
    header (the line number minus the header's, when no quoted cell spans lines). A cell of an Excel date at
    midnight reads as ``YYYY-MM-DD``. Several files (a glob) are read in name order, each numbered from 1.
    Raises :class:`SourceError` (one line: what, which file, which setting to change) for a source that cannot
    be read, and :class:`ConfigError` for a spec that is not complete.
    """
    settings = _check_spec(spec)
    wanted = None if columns is None else _wanted(columns, spec)
    if spec.format == "sql":
        return _read_sql(spec, wanted)
    files, label = _files(spec)
    frames: list[pl.DataFrame] = []
    digests: list[tuple[str, str]] = []
    # One set of categories for every file of the source, so that their frames concatenate.
    categorical = pl.Categorical(pl.Categories.random()) if compact and spec.format == "csv" else None
    kept_compact = {c: categorical for c in compact} if categorical is not None else {}
    with ThreadPoolExecutor(max_workers=1) as hashing:  # the bytes are hashed while Polars parses them
        for path in files:
            if spec.format == "csv" and settings.encoding in (None, "utf-8"):
                with _mapped(path) as data:  # hashed and parsed where they are, not copied
                    digest = hashing.submit(_sha256, data)
                    mapped = path if isinstance(data, mmap.mmap) else None
                    try:
                        frame = _read_csv(data, path.name, settings, spec.header_row, wanted, kept_compact, mapped)
                    finally:
                        wait([digest])  # the map can be let go of (even for an error) only once it is hashed
                    digests.append((path.name, digest.result()))
            else:
                data = _read_bytes(path)
                digest = hashing.submit(_sha256, data)
                if spec.format == "csv":
                    frame = _read_csv(data, path.name, settings, spec.header_row, wanted, kept_compact)
                elif spec.format == "parquet":
                    frame = _read_parquet(data, path.name, wanted)
                else:
                    frame = _read_excel(data, path.name, spec.sheet, spec.header_row, wanted)
                digests.append((path.name, digest.result()))
            frame = aligned(frame)
            layout = _layout(frame)
            file = pl.concat([pl.repeat(path.name, n, dtype=pl.String, eager=True) for n in layout], rechunk=False)
            row = frame.get_column(ROW).cast(pl.Int64)
            frame = frame.drop(ROW)
            frame.insert_column(frame.width, file.alias(FILE))
            frame.insert_column(frame.width, row)
            frames.append(frame)
    if len(digests) == 1:
        fingerprint = digests[0][1]
    else:
        combined = hashlib.sha256()
        for name, digest in digests:
            combined.update(f"{name}\0{digest}\n".encode())
        fingerprint = combined.hexdigest()
    return RawTable(frame=_concat(frames, files, label), fingerprint=fingerprint, label=label)


# --- the spec


@dataclass(frozen=True)
class _Settings:
    encoding: str | None
    delimiter: str | None


# --- frame layout: columns cut into the same chunks, so that selecting columns copies nothing


def aligned(frame: pl.DataFrame, like: pl.DataFrame | None = None) -> pl.DataFrame:
    """``frame`` with every column cut into the same chunks as most of its columns (or as ``like``'s, aligned).

    A reader gives columns in chunks (one per block it parsed); a column added whole (a row number, a constant)
    is one chunk. Polars copies every column into one chunk when a frame's columns are cut differently, on the
    next select or filter; a column cut like the others (zero-copy slices of it) avoids that copy.
    """
    layouts = [tuple(column.chunk_lengths()) for column in frame.get_columns()]
    target = tuple(_layout(like)) if like is not None else None
    if len(set(layouts)) <= 1 and (target is None or set(layouts) <= {target}):
        return frame
    if target is None:
        target = max(set(layouts), key=lambda layout: (layouts.count(layout), -len(layout)))
    starts = [0]
    for length in target[:-1]:
        starts.append(starts[-1] + length)
    frame = frame.clone()  # a new frame of the same columns: the caller's is left as it is
    for index, (column, layout) in enumerate(zip(frame.get_columns(), layouts, strict=True)):
        if layout != target:
            whole = column if len(layout) == 1 else column.rechunk()
            frame.replace_column(index, pl.concat(
                [whole.slice(start, length) for start, length in zip(starts, target, strict=True)], rechunk=False))
    return frame


def numbered_rows(frame: pl.DataFrame, name: str, offset: int = 1) -> pl.DataFrame:
    """``frame`` (aligned) with a first column ``name``: offset, offset + 1, ... (Int64), cut like the others."""
    frame = aligned(frame)
    starts, numbers = offset, []
    for length in _layout(frame):
        numbers.append(pl.int_range(starts, starts + length, dtype=pl.Int64, eager=True))
        starts += length
    column = pl.concat(numbers, rechunk=False) if numbers else pl.Series(name, [], dtype=pl.Int64)
    frame = frame.clone()
    frame.insert_column(0, column.alias(name))
    return frame


def _layout(frame: pl.DataFrame) -> list[int]:
    return frame.get_columns()[0].chunk_lengths() if frame.width else [frame.height]


def _sha256(data: bytes | mmap.mmap) -> str:
    return hashlib.sha256(data).hexdigest()  # hashlib lets go of the GIL on a buffer this size


def _check_spec(spec: SourceSpec) -> _Settings:
    where = f"source '{spec.name}'"
    if spec.format not in FORMATS:
        raise ConfigError(f"unknown format {spec.format!r}", where=where, fix=f"Use one of: {', '.join(FORMATS)}")
    if spec.format == "sql":
        if not spec.url or not spec.query:
            raise ConfigError("a sql source needs both url: and query:", where=where,
                              fix="Give url: (sqlite:///path or postgresql://...) and query: (the SELECT to run)")
        return _Settings(None, None)
    if spec.path is None:
        raise ConfigError(f"a {spec.format} source needs a path:", where=where,
                          fix="Give the export's file name, or a glob such as exports/shipments_*.csv")
    if not isinstance(spec.header_row, int) or isinstance(spec.header_row, bool) or spec.header_row < 1:
        raise ConfigError(f"header_row must be a whole number from 1 (got {spec.header_row!r})", where=where,
                          fix="Give the line (CSV) or row (Excel) holding the column names, 1 for the first")
    encoding = delimiter = None
    if spec.encoding is not None:
        try:
            encoding = _ENCODING_ALIASES.get(codecs.lookup(spec.encoding).name.replace("iso8859-1", "latin-1"))
        except LookupError:
            encoding = None
        if encoding is None:
            raise ConfigError(f"unsupported encoding {spec.encoding!r}", where=where,
                              fix=f"Use one of: {', '.join(ENCODINGS)} (or leave encoding: out to detect it)")
    if spec.delimiter is not None:
        delimiter = _DELIMITER_ALIASES.get(spec.delimiter.lower(), spec.delimiter)
        if delimiter not in DELIMITERS:
            raise ConfigError(f"unsupported delimiter {spec.delimiter!r}", where=where,
                              fix="Use one of: ',', ';', tab, '|' (or leave delimiter: out to detect it)")
    return _Settings(encoding, delimiter)


def _wanted(columns: Sequence[str], spec: SourceSpec) -> list[str]:
    if isinstance(columns, str):
        columns = [columns]
    wanted = list(dict.fromkeys(c.strip() for c in columns))
    if not wanted or not all(wanted):
        raise ConfigError("no column names to read (an empty list or an empty name)", where=f"source '{spec.name}'",
                          fix="Name the header columns to read, or pass columns=None to read them all")
    reserved = [c for c in wanted if c in (FILE, ROW)]
    if reserved:
        raise ConfigError(f"{reserved[0]} is not a source column: it is added to every table", where=spec.name)
    return wanted


# --- files


def _files(spec: SourceSpec) -> tuple[list[Path], str]:
    path = Path(spec.path)  # type: ignore[arg-type]  # checked by _check_spec
    pattern = str(path)
    if _GLOB_MAGIC.search(pattern):
        files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        if not files:
            raise SourceError("no file matches the pattern", where=pattern,
                              fix="Check the folder and the pattern of path: in the mapping file, and that the "
                                  "export has run")
        return files, f"{len(files)} file{'s' if len(files) != 1 else ''} matching {pattern}"
    if path.is_dir():
        raise SourceError("is a folder, not a file", where=pattern,
                          fix=f"Point path: at the export file, or at a pattern such as {path / '*.csv'}")
    if not path.is_file():
        raise SourceError("file not found", where=pattern, fix="Check path: in the mapping file and that the "
                                                              "export has run")
    return [path], path.name


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:  # removed between the look-up and the read
        raise SourceError("file not found", where=str(path), fix="Check path: in the mapping file") from None
    except OSError as exc:
        raise SourceError(f"cannot be read ({exc.strerror or type(exc).__name__})", where=str(path),
                          fix="Check that the file is readable by the user running supplier-eval") from None
    if not data or (len(data) <= _SNIFF and not data.lstrip(codecs.BOM_UTF8).strip()):
        raise SourceError("the file is empty (not even a header line)", where=path.name,
                          fix="Re-export the records with a header line")
    return data


@contextmanager
def _mapped(path: Path) -> Iterator[mmap.mmap | bytes]:
    """The file's bytes mapped into memory, not copied; raises if the file changes while they are used.

    Polars reads the file by its path (mapping it too: reading from a copy or an open file costs more), so the
    bytes hashed are the bytes parsed only while the path names the same, unchanged file: a new export landing
    meanwhile, in place or under the same name, is told by the file's identity, size or modification time, and the
    read is refused. A file system that cannot map files gives a copy of the bytes instead.
    """
    try:
        handle = path.open("rb")
    except FileNotFoundError:  # removed between the look-up and the read
        raise SourceError("file not found", where=str(path), fix="Check path: in the mapping file") from None
    except OSError as exc:
        raise SourceError(f"cannot be read ({exc.strerror or type(exc).__name__})", where=str(path),
                          fix="Check that the file is readable by the user running supplier-eval") from None
    with handle:
        before = os.fstat(handle.fileno())
        if before.st_size == 0:
            raise SourceError("the file is empty (not even a header line)", where=path.name,
                              fix="Re-export the records with a header line")
        try:
            mapped: mmap.mmap | nullcontext[bytes] = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            mapped = nullcontext(_read_bytes(path))
        with mapped as data:
            if before.st_size <= _SNIFF and not data[:].lstrip(codecs.BOM_UTF8).strip():
                raise SourceError("the file is empty (not even a header line)", where=path.name,
                                  fix="Re-export the records with a header line")
            yield data
        after = os.fstat(handle.fileno())
    try:
        named = os.stat(path)
    except OSError:
        named = None
    if named is None or any(_identity(stat) != _identity(before) for stat in (after, named)):
        raise SourceError("the file changed while it was read", where=path.name,
                          fix="Run again once the export has finished writing the file")


def _identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def _concat(frames: list[pl.DataFrame], files: list[Path], label: str) -> pl.DataFrame:
    if len(frames) == 1:
        return frames[0]
    first = frames[0].columns
    for frame, path in zip(frames[1:], files[1:], strict=True):
        if set(frame.columns) != set(first):
            extra = sorted(set(frame.columns) - set(first))
            lacking = sorted(set(first) - set(frame.columns))
            differs = "; ".join(part for part in (
                f"has {_names(extra)} that {files[0].name} has not" if extra else "",
                f"lacks {_names(lacking)} that {files[0].name} has" if lacking else "") if part)
            raise SourceError(f"its columns differ from the other files of {label}: it {differs}", where=path.name,
                              fix="Make every file the pattern matches the same export, or narrow path:")
    try:
        return pl.concat([frame.select(first) for frame in frames], how="vertical_relaxed")
    except pl.exceptions.PolarsError as exc:  # Parquet files whose column types do not combine
        raise SourceError(f"its files' column types differ ({_first_line(exc)})", where=label,
                          fix="Make every file the pattern matches the same export, or narrow path:") from None


# --- what a file is


def _looks_like(data: bytes | mmap.mmap) -> tuple[str, str] | None:
    """(what a non-text file looks like, the setting that reads it) from its first bytes, or None."""
    head = data[:_SNIFF]
    if head.startswith(b"PK\x03\x04"):
        tail = data[-65536:]
        if b"xl/workbook" in head or b"xl/workbook" in tail:
            return "an Excel workbook (.xlsx)", "Set format: excel for this source (and sheet: if needed)"
        if b"opendocument.spreadsheet" in head:
            return "an OpenDocument spreadsheet (.ods)", "Set format: excel for this source"
        return "a ZIP archive", "Unzip it and point path: at the export inside"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "a legacy Excel workbook (.xls)", "Set format: excel for this source"
    if head.startswith(b"PAR1"):
        return "a Parquet file", "Set format: parquet for this source"
    if head.startswith(b"SQLite format 3\x00"):
        return "a SQLite database", "Set format: sql with url: sqlite:///<this file> and a query:"
    if head.startswith(b"%PDF-"):
        return "a PDF document", "Export the records as CSV, Excel or Parquet instead"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip-compressed file", "Decompress it and point path: at the file inside"
    if head.startswith(b"ARROW1"):
        return "an Arrow IPC (Feather) file", "Export the records as Parquet or CSV instead"
    return None


def _utf16_without_bom(head: bytes) -> str | None:
    """"utf-16-le" or "utf-16-be" when the text has a NUL in every other byte (ASCII in UTF-16), else None."""
    units = len(head) // 2
    if units < 2:
        return None
    even, odd = head[0 : 2 * units : 2].count(0), head[1 : 2 * units : 2].count(0)
    if odd >= units * 0.25 and even <= units * 0.02:
        return "utf-16-le"
    if even >= units * 0.25 and odd <= units * 0.02:
        return "utf-16-be"
    return None


def _describe(data: bytes) -> str:
    """What a file that is not of its configured format looks like, for the message."""
    kind = _looks_like(data)
    if kind:
        return kind[0]
    head = data[:_SNIFF]
    if _utf16_without_bom(head) or head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "UTF-16 text (a CSV export?)"
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < len(head) - 4:  # a sequence cut at the end of the sample is fine
                return "binary data"
        return "text (a CSV export?)"
    return "binary data"


# --- CSV


_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def _bom(data: bytes | mmap.mmap) -> tuple[str | None, int]:
    for mark, encoding in _BOMS:
        if data[: len(mark)] == mark:
            return encoding, len(mark)
    return None, 0


def _to_utf8(data: bytes | mmap.mmap, setting: str | None, name: str) -> bytes | mmap.mmap:
    """The file's text as UTF-8 bytes for Polars (``data`` itself when it is UTF-8 already)."""
    bom, skip = _bom(data)
    head = data[:_SNIFF]
    if bom == "utf-32":
        raise SourceError("is UTF-32 text, which cannot be read", where=name, fix="Re-export it as UTF-8 or UTF-16")
    said = f"encoding: {setting}" if setting else "the detected encoding"
    if bom is not None and setting is not None and not _bom_fits(bom, setting):
        raise SourceError(f"starts with a {_BOM_NAMES[bom]} byte-order mark, so it is not {setting} text",
                          where=name, fix=f"Set encoding: {'utf-16' if bom in _UTF16 else bom} for this source, "
                                          "or leave encoding: out to detect it")
    if bom in _UTF16:
        codec = bom
    elif setting in _UTF16:
        if b"\x00" not in head:
            raise SourceError(f"is set to encoding: {setting} but looks like 8-bit text (no NUL bytes, no UTF-16 "
                              "byte-order mark)", where=name,
                              fix="Leave encoding: out to read it as UTF-8, or set encoding: cp1252 for Windows text")
        codec = (_utf16_without_bom(head) or "utf-16-le") if setting == "utf-16" else setting
    else:
        _refuse_binary(data, name, said)
        if setting in (None, "utf-8"):
            return data  # Polars reads UTF-8 (and drops a UTF-8 BOM) itself, and says so when it is not
        codec = setting  # cp1252 / latin-1
        if not data.isascii():
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                pass
            else:
                raise SourceError(f"is set to encoding: {setting} but is UTF-8 text (e.g. 'ü' would read as 'Ã¼')",
                                  where=name, fix="Leave encoding: out (or set encoding: utf-8) for this source")
    try:
        text = data[skip:].decode(codec)
    except UnicodeDecodeError as exc:
        at = skip + exc.start
        line = _line_of(data, at, codec)
        others = "utf-16-be" if codec == "utf-16-le" else "utf-16-le"
        try_instead = ("latin-1 (reads every byte), or utf-8 if it was exported as Unicode" if codec == "cp1252"
                       else f"{others}, or utf-8 / cp1252 if it is not UTF-16")
        raise SourceError(f"is not valid {codec} text: byte 0x{data[at]:02x} at offset {at} (line {line}) "
                          "cannot be decoded", where=name, fix=f"Try encoding: {try_instead}") from None
    return text.encode("utf-8")


_BOM_NAMES = {"utf-8": "UTF-8", "utf-16-le": "UTF-16 LE", "utf-16-be": "UTF-16 BE"}


def _bom_fits(bom: str, setting: str) -> bool:
    return bom == setting or (bom in _UTF16 and setting == "utf-16")


def _refuse_binary(data: bytes | mmap.mmap, name: str, said: str) -> None:
    """Raise for a file that is not 8-bit text: a workbook, an archive, UTF-16 without a byte-order mark."""
    kind = _looks_like(data)
    if kind:
        raise SourceError(f"is not a text file: it looks like {kind[0]}", where=name, fix=kind[1])
    head = data[:_SNIFF]
    if b"\x00" in head:
        utf16 = _utf16_without_bom(head)
        if utf16:
            raise SourceError(f"looks like {_BOM_NAMES[utf16]} text without a byte-order mark (a NUL in every "
                              f"other byte), which {said} cannot read", where=name,
                              fix=f"Set encoding: {utf16} for this source")
        raise SourceError("is not a text file: it contains NUL bytes (binary data)", where=name,
                          fix="Export the records as CSV text, or set format: to what the file really is")


def _line_of(data: bytes, offset: int, codec: str) -> int:
    before = data[:offset].decode(codec, errors="replace")
    return before.count("\n") + before.count("\r") - before.count("\r\n") + 1


def _header_line(body: bytes | mmap.mmap, header_row: int, eol: bytes, name: str) -> tuple[str, int]:
    """The header line's text, and the offset just past it."""
    start = 0
    for _ in range(1, header_row):
        end = body.find(eol, start)
        if end < 0 or end + 1 == len(body):
            lines = body[:].count(eol) + (body[-len(eol):] != eol)
            raise SourceError(f"has only {lines} line{'s' if lines != 1 else ''}, so there is no header on line "
                              f"{header_row}", where=name, fix="Set header_row: to the line holding the column names")
        start = end + 1
    end = body.find(eol, start)
    end = end if end >= 0 else len(body)
    raw = body[start:end]
    try:
        text = raw.decode("utf-8").lstrip("\ufeff").rstrip("\r")
    except UnicodeDecodeError as exc:
        at = start + exc.start
        raise SourceError(f"is not UTF-8 text: byte 0x{body[at]:02x} at offset {at} (line {header_row}) cannot be "
                          "decoded", where=name, fix=_NOT_UTF8_FIX) from None
    if not text.strip():
        below = re.search(rb"[^\s\x00]", body[start:])
        first = header_row + body[start : start + below.start()].count(eol) if below else None
        raise SourceError(f"line {header_row} (header_row: {header_row}) is blank, not a header", where=name,
                          fix=f"Set header_row: {first} (the next line with text)" if first
                          else "Set header_row: to the line holding the column names")
    return text, end + 1


_NOT_UTF8_FIX = "Set encoding: cp1252 (Windows Western European) or latin-1 for this source, or re-export it as UTF-8"


def _counts(line: str) -> dict[str, int]:
    outside_quotes = re.sub(r'"[^"]*"', "", line)
    return {d: outside_quotes.count(d) for d in DELIMITERS}


def _delimiter(header: str, setting: str | None, name: str) -> str:
    counts = _counts(header)
    best = max(DELIMITERS, key=lambda d: counts[d])  # ties: the first in DELIMITERS order
    if setting is None:
        return best if counts[best] else ","
    if counts[setting] == 0 and counts[best] > 0:
        raise SourceError(f"is read with delimiter: {_DELIMITER_SETTING[setting]} but its header has none; it looks "
                          f"{DELIMITERS[best]}-separated", where=name,
                          fix=f"Set delimiter: {_DELIMITER_SETTING[best]} for this source (or leave it out to detect "
                              "it)")
    return setting


def _read_csv(data: bytes | mmap.mmap, name: str, settings: _Settings, header_row: int, wanted: list[str] | None,
              compact: dict[str, Any] | None = None, path: Path | None = None) -> pl.DataFrame:
    """``data``: the file's bytes, or the mapped bytes of the file at ``path`` (which Polars then reads itself)."""
    body = _to_utf8(data, settings.encoding, name)
    if body[-1:] == b"\x1a":  # a DOS end-of-file mark
        body = body[:-1]
    eol = "\r" if body.find(b"\n") < 0 and body.find(b"\r") >= 0 else "\n"  # a file of bare CRs (old Mac exports)
    header, after_header = _header_line(body, header_row, eol.encode(), name)
    delimiter = _delimiter(header, settings.delimiter, name)
    options: dict[str, Any] = dict(separator=delimiter, skip_lines=header_row - 1, eol_char=eol, infer_schema=False,
                                   quote_char='"', encoding="utf8")

    def parse(**more: Any) -> pl.DataFrame:
        if path is None or body is not data:
            return pl.read_csv(body, **options, **more)
        return pl.read_csv(path, glob=False, **options, **more)

    names = _polars_call(lambda: parse(n_rows=0).columns, body, name)
    blank = {n for n in names if not n.strip() or ((m := _POLARS_DUPLICATE.match(n)) and not m["base"].strip())}
    repeated = {m["base"].strip() for n in names if (m := _POLARS_DUPLICATE.match(n)) and m["base"] in names}
    where_line = f"the header (line {header_row})"
    selected = _select(names, blank, repeated, wanted, name, where_line,
                       lambda: _csv_header_elsewhere(body, eol, wanted or [], header_row, delimiter))

    overrides = {raw: compact[key] for raw, key in selected.items() if compact and key in compact}

    def read(truncate: bool = False) -> pl.DataFrame:
        frame = parse(columns=list(selected) if wanted else None, raise_if_empty=False,
                      truncate_ragged_lines=truncate, schema_overrides=overrides or None)
        return numbered_rows(frame, ROW)  # not Polars' row index: one chunk, where the columns come in several

    try:
        frame = _polars_call(read, body, name)
    except _LongRows:
        row = _first_long_row(body[after_header:], options, len(names))
        if row is not None:
            raise SourceError(f"row {row} after the header has more fields than the header's {len(names)} columns",
                              where=name, fix="Check that row's quoting and delimiters, or add names for the extra "
                                              "columns to the header") from None
        frame = _polars_call(lambda: read(truncate=True), body, name)  # only empty fields past the header's end
    return _finish_text(frame, selected, blank)


class _LongRows(Exception):
    """A row has more fields than the header: told apart from the other parse errors."""


def _polars_call(read: Any, body: bytes | mmap.mmap, name: str) -> Any:
    try:
        return read()
    except pl.exceptions.NoDataError:
        raise SourceError("the file is empty (not even a header line)", where=name,
                          fix="Re-export the records with a header line") from None
    except pl.exceptions.ComputeError as exc:
        message = str(exc)
        if "utf-8" in message.lower() or "utf8" in message.lower():
            try:
                body[:].decode("utf-8")
                at = None
            except UnicodeDecodeError as error:
                at = error.start
            where = f": byte 0x{body[at]:02x} at offset {at} (line {_line_of(body, at, 'utf-8')})" \
                if at is not None else ""
            raise SourceError(f"is not UTF-8 text{where}", where=name, fix=_NOT_UTF8_FIX) from None
        if "more fields" in message:
            raise _LongRows from None
        raise SourceError(f"cannot be read as CSV ({_first_line(exc)})", where=name,
                          fix="Check the quoting (every opening \" needs its closing \") and the delimiter") from None


def _first_long_row(rows: bytes, options: dict[str, Any], width: int) -> int | None:
    """The 1-based row (after the header) of the first row with a non-empty field past the header's width.

    None when every field past the header's width is empty (data lines that end with one delimiter more than
    the header, a common export quirk): those rows are then read with the empty fields left off. Only on this
    path the rows are read again, under a made-up header twice as wide as the real one.
    """
    separator, eol = options["separator"], options["eol_char"]
    wider = separator.join(f"c{i}" for i in range(2 * width + 1)).encode() + eol.encode()
    probe = pl.read_csv(wider + rows, truncate_ragged_lines=True, **{**options, "skip_lines": 0})
    extra = pl.any_horizontal(pl.col(f"c{i}").is_not_null() for i in range(width, 2 * width + 1))
    found = probe.with_row_index(ROW, 1).filter(extra).get_column(ROW)
    return int(found[0]) if len(found) else None


def _csv_header_elsewhere(body: bytes | mmap.mmap, eol: str, wanted: Sequence[str], header_row: int,
                          delimiter: str) -> tuple[str, str] | None:
    """On the error path: "set header_row: N" when another of the first lines holds every wanted column."""
    lines = body[: 1 << 20].decode("utf-8", errors="replace").lstrip("\ufeff").split(eol)[:50]
    for number, line in enumerate(lines, start=1):
        for candidate in DELIMITERS:
            fields = {field.strip().strip('"').strip() for field in line.rstrip("\r").split(candidate)}
            if set(wanted) <= fields and (number != header_row or candidate != delimiter):
                settings = [f"header_row: {number}"] if number != header_row else []
                if candidate != delimiter:
                    settings.append(f"delimiter: {_DELIMITER_SETTING[candidate]}")
                return f"line {number} holds all of them", f"Set {' and '.join(settings)} for this source"
    return None


# --- shared by CSV and Excel: choosing columns, finishing text frames


def _select(names: Sequence[str], blank: set[str], repeated: set[str], wanted: list[str] | None, name: str,
            where_line: str, elsewhere: Any) -> dict[str, str]:
    """{name as read: stripped name} of the columns to read; raises for a missing or repeated column."""
    stripped: dict[str, list[str]] = {}
    for raw in names:
        if raw not in blank:
            stripped.setdefault(raw.strip(), []).append(raw)
    repeated |= {key for key, raws in stripped.items() if len(raws) > 1}
    reserved = sorted({FILE, ROW} & set(stripped))
    if reserved and (wanted is None or set(reserved) & set(wanted)):
        raise SourceError(f"has a column named {reserved[0]}, a name supplier-eval keeps for itself", where=name,
                          fix="Rename that column in the export")
    if wanted is None:
        chosen = [key for key in stripped if key not in reserved]
    else:
        missing = [c for c in wanted if c not in stripped]
        if missing:
            raise _missing(missing, list(stripped), name, where_line, elsewhere())
        chosen = wanted
    clash = [c for c in chosen if c in repeated]
    if clash:
        raise SourceError(f"column {_names(clash)} appears more than once in {where_line}", where=name,
                          fix="Rename or remove the repeated column in the export (names are compared without "
                              "surrounding spaces)")
    return {stripped[key][0]: key for key in chosen}


def _missing(missing: list[str], present: list[str], name: str, where_line: str,
             elsewhere: tuple[str, str] | None) -> SourceError:
    lowered = {p.lower(): p for p in present}
    parts = []
    for column in missing:
        close = difflib.get_close_matches(column.lower(), list(lowered), n=1, cutoff=0.5)
        parts.append(f"'{column}'" + (f" (closest: '{lowered[close[0]]}')" if close else ""))
    what = f"no column{'s' if len(missing) > 1 else ''} {', '.join(parts)} in {where_line}"
    if elsewhere:
        return SourceError(f"{what}, but {elsewhere[0]}", where=name, fix=elsewhere[1])
    shown = ", ".join(f"'{p}'" for p in present[:30]) + (", ..." if len(present) > 30 else "")
    return SourceError(what, where=name, fix=f"Use the header's names in the mapping file; it has: {shown}")


def _finish_text(frame: pl.DataFrame, selected: dict[str, str], blank: set[str]) -> pl.DataFrame:
    """Stripped names, nameless empty columns dropped, rows with every cell empty dropped."""
    source = [c for c in frame.columns if c != ROW]
    renamed, drop = {}, []
    for position, column in enumerate(source, start=1):
        if column in selected:
            renamed[column] = selected[column]
        elif column in blank:
            if frame.get_column(column).null_count() == frame.height:
                drop.append(column)
            else:  # data under a nameless header: keep it, named by its position
                renamed[column] = f"column_{position}"
                while renamed[column] in frame.columns or renamed[column] in selected.values():
                    renamed[column] += "_"
    frame = frame.drop(drop).rename(renamed)
    cells = [c for c in frame.columns if c != ROW]  # every column, in the file's order
    if all(c in selected.values() for c in cells):
        cells = list(selected.values())  # the requested ones, in the requested order
    return _drop_blank(frame.select(*cells, ROW), cells)


def _drop_blank(frame: pl.DataFrame, cells: list[str]) -> pl.DataFrame:
    """Leave out rows whose every cell is empty or only whitespace (ROW keeps their numbers).

    Only rows whose fullest column is empty (null, or a quoted ``""``) or starts with whitespace can be blank, so
    the exact test runs on those few rows instead of on every cell.
    """
    if not cells or frame.is_empty():
        return frame

    def text(column: str) -> pl.Expr:
        return pl.col(column).cast(pl.String) if frame.schema[column] != pl.String else pl.col(column)

    def empty_or_padded(cell: pl.Expr) -> pl.Expr:
        return cell.is_null() | (cell.str.len_bytes() == 0) | cell.str.contains(r"^\s")

    # Any column will do (a blank row is empty in every one): the fullest, compact text first (each distinct
    # text is looked at once, then found by its code).
    pivot = min(cells, key=lambda c: (frame.get_column(c).null_count(), frame.schema[c] == pl.String))
    dtype = frame.schema[pivot]
    if isinstance(dtype, pl.Categorical):
        texts = pl.select(empty_or_padded(pl.lit(dtype.categories.to_series()))).to_series()
        if not texts.any() and not frame.get_column(pivot).null_count():  # no text of the pivot can be blank
            return frame
        maybe = frame.filter(pl.col(pivot).is_null() | pl.lit(texts).gather(pl.col(pivot).to_physical()))
    else:
        maybe = frame.filter(empty_or_padded(text(pivot)))
    if maybe.is_empty():
        return frame
    blank = maybe.filter(pl.all_horizontal(text(c).is_null() | (text(c).str.strip_chars() == "") for c in cells))
    return frame.filter(~pl.col(ROW).is_in(blank.get_column(ROW).implode())) if blank.height else frame


def _names(columns: Sequence[str]) -> str:
    return ", ".join(f"'{c}'" for c in columns)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --- Parquet


def _read_parquet(data: bytes, name: str, wanted: list[str] | None) -> pl.DataFrame:
    if not data.startswith(b"PAR1"):
        raise SourceError(f"is not a Parquet file: it looks like {_describe(data)}", where=name,
                          fix="Set format: to what the file is (csv, excel), or re-export it as Parquet")
    scan = pl.scan_parquet(io.BytesIO(data), row_index_name=ROW, row_index_offset=1)
    try:
        names = [c for c in scan.collect_schema().names() if c != ROW]
    except pl.exceptions.PolarsError as exc:
        raise SourceError(f"cannot be read as Parquet ({_first_line(exc)})", where=name,
                          fix="Re-export the file; it may be damaged or still being written") from None
    selected = _select(names, set(), set(), wanted, name, "the file", lambda: None)
    try:
        return scan.select(ROW, *[pl.col(raw).alias(key) for raw, key in selected.items()]).collect()
    except pl.exceptions.PolarsError as exc:
        raise SourceError(f"cannot be read as Parquet ({_first_line(exc)})", where=name,
                          fix="Re-export the file; it may be damaged or still being written") from None


# --- Excel


def _read_excel(data: bytes, name: str, sheet: str | None, header_row: int,
                wanted: list[str] | None) -> pl.DataFrame:
    if not (data.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"))):
        raise SourceError(f"is not an Excel workbook: it looks like {_describe(data)}", where=name,
                          fix="Set format: to what the file is (csv, parquet), or re-save it as .xlsx")
    seen: list[str] = []

    def use(column: Any) -> bool:
        seen.append(column.name)
        return wanted is None or column.name.strip() in wanted

    read_options: dict[str, Any] = {"header_row": header_row - 1, "use_columns": use}
    frame = _excel_call(data, name, sheet, lambda: pl.read_excel(
        data, sheet_name=sheet, sheet_id=None if sheet else 1, engine="calamine", read_options=read_options,
        infer_schema_length=0, drop_empty_rows=False, drop_empty_cols=False, raise_if_empty=False))
    which = f"sheet '{sheet}'" if sheet else "the first sheet"
    if not seen:
        raise SourceError(f"{which} has nothing on row {header_row} or below", where=name,
                          fix="Set sheet: and header_row: to the sheet and row holding the column names")
    blank = {n for n in seen if _EXCEL_UNNAMED.match(n)}
    repeated = {m["base"].strip() for n in seen if (m := _FASTEXCEL_DUPLICATE.match(n)) and m["base"] in seen}
    if repeated:  # "x_1" may be a real header: confirm against the header row as written
        cells = _excel_header_cells(data, sheet, header_row)
        repeated = {base for base in repeated if cells.count(base) > 1}
    where_line = f"the header (row {header_row} of {which})"
    selected = _select(seen, blank, repeated, wanted, name, where_line,
                       lambda: _excel_header_elsewhere(data, sheet, wanted or [], header_row))
    frame = frame.with_row_index(ROW, 1).with_columns(pl.col(pl.String).str.replace(_MIDNIGHT, "$1"))
    return _finish_text(frame, selected, blank)


def _excel_call(data: bytes, name: str, sheet: str | None, read: Any) -> pl.DataFrame:
    try:
        return read()
    except ValueError as exc:
        if "no matching sheet" not in str(exc):
            raise
        import fastexcel

        sheets = fastexcel.read_excel(data).sheet_names
        close = difflib.get_close_matches(sheet or "", sheets, n=1, cutoff=0.5)
        raise SourceError(f"has no sheet '{sheet}'" + (f" (closest: '{close[0]}')" if close else ""), where=name,
                          fix=f"Set sheet: to one of {_names(sheets)}") from None
    except Exception as exc:  # fastexcel's CalamineError and kin for a damaged or foreign file
        if type(exc).__module__.split(".")[0] not in ("fastexcel", "_fastexcel", "polars"):
            raise
        raise SourceError(f"cannot be read as an Excel workbook ({_first_line(exc)})", where=name,
                          fix="Re-save it from Excel as .xlsx, or export the records as CSV") from None


def _excel_rows(data: bytes, sheet: str | None, skip: int, count: int) -> pl.DataFrame:
    return pl.read_excel(data, sheet_name=sheet, sheet_id=None if sheet else 1, engine="calamine",
                         read_options={"header_row": None, "skip_rows": skip, "n_rows": count},
                         infer_schema_length=0, drop_empty_rows=False, drop_empty_cols=False, raise_if_empty=False)


def _excel_header_cells(data: bytes, sheet: str | None, header_row: int) -> list[str]:
    """The header row's cells as written (only when a name looks like fastexcel's renaming of a repeat)."""
    rows = _excel_rows(data, sheet, 0, header_row + 200).rows()
    index = header_row - 1
    if header_row == 1:  # fastexcel takes the sheet's first row with something in it for the first row
        index = next((i for i, row in enumerate(rows) if any(v is not None for v in row)), 0)
    return [str(v).strip() for v in rows[index] if v is not None] if index < len(rows) else []


def _excel_header_elsewhere(data: bytes, sheet: str | None, wanted: Sequence[str],
                            header_row: int) -> tuple[str, str] | None:
    """On the error path: "set header_row: N" when another of the first rows holds every wanted column."""
    top = _excel_rows(data, sheet, 0, 50)
    for number, row in enumerate(top.iter_rows(), start=1):
        cells = {str(v).strip() for v in row if v is not None}
        if number != header_row and set(wanted) <= cells:
            return f"row {number} holds all of them", f"Set header_row: {number} for this source"
    return None


# --- SQL


def _read_sql(spec: SourceSpec, wanted: list[str] | None) -> RawTable:
    from suppliers.store import redact_url

    url, query = str(spec.url), str(spec.query)
    shown = redact_url(url)
    label = f"query on {shown}"
    uri, password = _adbc_uri(url, shown)
    try:
        frame = pl.read_database_uri(query, uri, engine="adbc")
    except ModuleNotFoundError as exc:
        raise SourceError(f"the database driver is not installed ({exc.name or exc})", where=label,
                          fix="Reinstall supplier-eval (it brings adbc-driver-sqlite and adbc-driver-postgresql)",
                          ) from None
    except Exception as exc:  # ADBC's OperationalError/ProgrammingError, Polars' ComputeError: one line, no secret
        reason = _first_line(exc)
        if password:
            reason = reason.replace(password, "***")
        fix = ("Check url: (server, port, database, user) and that the server accepts connections"
               if "connect" in reason.lower() or "open" in reason.lower()
               else "CAST the column to one type in the query (e.g. CAST(x AS TEXT))" if "mismatch" in reason.lower()
               else "Check query: in the mapping file (run it in a SQL client to see)")
        raise SourceError(f"the query failed ({reason})", where=label, fix=fix) from None
    opaque = [c for c, dtype in frame.schema.items() if dtype.is_extension()]
    if opaque:  # e.g. PostgreSQL numeric: ADBC hands its text over
        frame = frame.with_columns(pl.col(c).ext.storage() for c in opaque)
    names = frame.columns
    selected = _select(names, set(), set(), wanted, label, "the query's result", lambda: None)
    frame = frame.select(*[pl.col(raw).alias(key) for raw, key in selected.items()])
    fingerprint = _frame_digest(frame)
    frame = frame.with_columns(pl.lit(label, pl.String).alias(FILE),
                               pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(ROW))
    return RawTable(frame=frame, fingerprint=fingerprint, label=label)


def _adbc_uri(url: str, shown: str) -> tuple[str, str | None]:
    """The URI ADBC's driver takes for a SQLAlchemy-style URL, and the password to keep out of messages."""
    from urllib.parse import quote

    import sqlalchemy as sa

    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise SourceError("the url is not a database URL", where=shown,
                          fix="Use sqlite:////absolute/path.db or postgresql://user@host:port/database") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database
        if not database or database == ":memory:":
            raise SourceError("the url names no SQLite database file", where=shown,
                              fix="Use sqlite:////absolute/path/to/file.db")
        path = Path(database)
        if not path.is_file():
            raise SourceError("database file not found", where=str(path),
                              fix="Check url: in the mapping file (sqlite:////absolute/path.db)")
        # ADBC's SQLite driver takes an SQLite URI filename: read-only, so a wrong path can never create a database
        return f"sqlite:file:{quote(str(path.resolve()))}?mode=ro", None
    if backend == "postgresql":
        password = parsed.password
        return parsed.set(drivername="postgresql").render_as_string(hide_password=False), password or None
    raise SourceError(f"unsupported database '{backend}'", where=shown,
                      fix="Use a sqlite:/// or postgresql:// URL")


def _frame_digest(frame: pl.DataFrame) -> str:
    """SHA-256 over the result's column names and types and its rows written as CSV (IPC for types CSV lacks)."""
    digest = hashlib.sha256("\n".join(f"{c}\0{d}" for c, d in frame.schema.items()).encode() + b"\n\n")
    buffer = io.BytesIO()
    try:
        frame.write_csv(buffer)
    except pl.exceptions.ComputeError:  # nested or binary columns
        buffer = io.BytesIO()
        frame.rechunk().write_ipc(buffer, compression="uncompressed")
    digest.update(buffer.getbuffer())
    return digest.hexdigest()
