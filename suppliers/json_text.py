"""``json.dumps`` of every value of a Polars series, byte for byte, computed over whole columns.

The store keeps nested values (metrics, criteria, gates hit) as the text ``json.dumps`` writes for them, and
every reader relies on that text. Encoding 50,000 suppliers one ``json.dumps`` at a time costs seconds; this
writes the same text with column operations, recursing through structs and lists:

- null → ``null``; booleans → ``true``/``false``; integers as Python writes them;
- floats as ``repr`` writes them (the shortest text that reads back the same number, Polars' digits too;
  only the notation differs: Python writes 1e-05 where Polars writes 0.00001, and 1e-07 for 1e-7), NaN and
  ±inf as ``NaN`` and ``Infinity``/``-Infinity`` (``json.dumps`` does, though it is not JSON);
- strings in quotes, ``\\`` and ``"`` escaped; a string with any character outside printable ASCII (which
  ``json.dumps`` writes as ``\\uXXXX``) is written by ``json.dumps`` itself, once per distinct string;
- structs as ``{"field": value, ...}`` in field order, lists as ``[value, ...]``;
- any other type (dates, decimals, ...) by ``json.dumps`` of each value, so it fails as ``json.dumps`` does.
"""

from __future__ import annotations

import json

import polars as pl

__all__ = ["json_texts"]

_PRINTABLE_ASCII = r"^[ -~]*$"


def json_texts(values: pl.Series) -> pl.Series:
    """``[json.dumps(v) for v in values.to_list()]`` as a String series of the same name."""
    return _encode(values).alias(values.name)


def _encode(values: pl.Series) -> pl.Series:
    dtype = values.dtype
    if dtype == pl.Null:
        return pl.repeat("null", len(values), dtype=pl.String, eager=True)
    if isinstance(dtype, pl.Array):
        return _encode(values.cast(pl.List(dtype.inner)))
    if isinstance(dtype, pl.Struct | pl.List):
        text = _struct_texts(values) if isinstance(dtype, pl.Struct) else _list_texts(values)
        if not values.null_count():
            return text
        return pl.select(pl.when(values.is_null()).then(pl.lit("null")).otherwise(text)).to_series()
    if dtype == pl.Boolean:
        text = pl.select(pl.when(values).then(pl.lit("true")).when(~values).then(pl.lit("false"))).to_series()
    elif dtype.is_integer():
        text = values.cast(pl.String)
    elif dtype.is_float():
        text = _float_texts(values.cast(pl.Float64))  # a Float32 reaches Python as the double it is
    elif dtype == pl.String:
        text = _string_texts(values)
    else:
        return pl.Series([json.dumps(value) for value in values.to_list()], dtype=pl.String)
    return text.fill_null("null")  # a leaf's text is null exactly where its value is


def _float_texts(values: pl.Series) -> pl.Series:
    text = values.cast(pl.String)
    # Only magnitudes below 1e-4 are written differently (see the module docstring): fix those alone.
    tiny = ((values.abs() < 1e-4) & (values != 0.0)).fill_null(False)
    if tiny.any():
        fixed = (
            text.filter(tiny)
            .str.replace(r"^(-?)0\.0000(\d)$", "${1}${2}e-05")
            .str.replace(r"^(-?)0\.0000(\d)(\d+)$", "${1}${2}.${3}e-05")
            .str.replace(r"e([+-])(\d)$", "e${1}0${2}")
        )
        text = text.scatter(tiny.arg_true(), fixed)
    if not values.is_finite().fill_null(True).all():
        text = pl.select(
            pl.when(pl.lit(values).is_nan()).then(pl.lit("NaN"))
            .when(pl.lit(values) == float("inf")).then(pl.lit("Infinity"))
            .when(pl.lit(values) == float("-inf")).then(pl.lit("-Infinity"))
            .otherwise(pl.lit(text))
        ).to_series()
    return text


def _string_texts(values: pl.Series) -> pl.Series:
    distinct = values.unique()
    if len(distinct) * 4 <= len(values):  # names, labels, reasons: write each distinct text once
        return values.replace_strict(distinct, _string_texts_each(distinct), default=None, return_dtype=pl.String)
    return _string_texts_each(values)


def _string_texts_each(values: pl.Series) -> pl.Series:
    plain = values.str.contains(_PRINTABLE_ASCII)
    quoted = '"' + values.str.replace_all("\\", "\\\\", literal=True).str.replace_all('"', '\\"', literal=True) + '"'
    others = values.filter(~plain).unique().to_list()
    if not others:
        return quoted
    written = values.replace_strict(others, [json.dumps(text) for text in others], default=None,
                                    return_dtype=pl.String)
    return pl.select(pl.when(pl.lit(plain)).then(pl.lit(quoted)).otherwise(pl.lit(written))).to_series()


def _struct_texts(values: pl.Series) -> pl.Series:
    fields = values.struct.fields
    if not fields:
        return pl.repeat("{}", len(values), dtype=pl.String, eager=True)
    parts: list[pl.Expr] = []
    for position, name in enumerate(fields):
        parts += [pl.lit(("{" if position == 0 else ", ") + json.dumps(name) + ": "),
                  pl.lit(_encode(values.struct.field(name)))]
    return pl.select(pl.concat_str(*parts, pl.lit("}"))).to_series()


def _list_texts(values: pl.Series) -> pl.Series:
    lengths = values.list.len().fill_null(0)
    rows = pl.DataFrame({"row": pl.int_range(len(values), eager=True), "value": values}).filter(lengths > 0)
    if rows.is_empty():
        return pl.repeat("[]", len(values), dtype=pl.String, eager=True)
    items = rows.explode("value")  # only non-empty lists: every exploded row is one of their items
    joined = (
        items.select("row", text=_encode(items["value"]))
        .group_by("row", maintain_order=True).agg(pl.col("text").str.join(", "))
    )
    return (
        pl.DataFrame({"row": pl.int_range(len(values), eager=True)})
        .join(joined, on="row", how="left", maintain_order="left")
        .select("[" + pl.col("text").fill_null("") + "]")
        .to_series()
    )
