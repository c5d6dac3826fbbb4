"""The store's JSON columns are written over whole columns, and must be exactly the text json.dumps writes."""

from __future__ import annotations

import json
from datetime import date

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suppliers.json_text import json_texts


def dumped(series: pl.Series) -> list[str]:
    return [json.dumps(value) for value in series.to_list()]


@pytest.mark.parametrize(("values", "dtype", "expected"), [
    # Python writes 1e-05 where Polars writes 0.00001, and pads the exponent: 1.5e-07, not 1.5e-7.
    ([1e-05, 1.5e-05, -2.5e-05, 1.5e-07, 1e-10, 0.0001, 1e16, 1.5e16, 1e15], pl.Float64,
     ["1e-05", "1.5e-05", "-2.5e-05", "1.5e-07", "1e-10", "0.0001", "1e+16", "1.5e+16", "1000000000000000.0"]),
    ([0.0, -0.0, 100.0, 0.1, 2 / 3, None], pl.Float64, ["0.0", "-0.0", "100.0", "0.1", "0.6666666666666666", "null"]),
    ([float("nan"), float("inf"), float("-inf")], pl.Float64, ["NaN", "Infinity", "-Infinity"]),
    ([1.1], pl.Float32, ["1.100000023841858"]),  # a Float32 reaches json.dumps as the double it is
    ([0, -7, 2**62, None], pl.Int64, ["0", "-7", "4611686018427387904", "null"]),
    ([True, False, None], pl.Boolean, ["true", "false", "null"]),
    (['say "hi"', "C:\\dir", "", None, "tab\there", "é", "😀", "\x7f", "a, b: c"], pl.String,
     ['"say \\"hi\\""', '"C:\\\\dir"', '""', "null", '"tab\\there"', '"\\u00e9"', '"\\ud83d\\ude00"', '"\\u007f"',
      '"a, b: c"']),
])
def test_leaves_are_written_as_json_dumps_writes_them(values: list, dtype: pl.DataType, expected: list[str]) -> None:
    series = pl.Series("v", values, dtype=dtype)
    assert json_texts(series).to_list() == expected == dumped(series)


def test_structs_and_lists_nest_as_python_sees_them() -> None:
    series = pl.Series("criteria", [
        [{"name": "On time", "points": 90.0, "measured": True},
         {"name": "Qualität", "points": None, "measured": False}],
        [],
        None,
        [None],
    ])
    assert json_texts(series).to_list() == [
        '[{"name": "On time", "points": 90.0, "measured": true}, '
        '{"name": "Qualit\\u00e4t", "points": null, "measured": false}]',
        "[]",
        "null",
        "[null]",
    ] == dumped(series)


def test_empty_structs_lists_of_nothing_and_arrays() -> None:
    frame = pl.DataFrame({"metrics": [{}, {}], "criteria": [[], []],
                          "pair": pl.Series([[1, 2], [3, None]], dtype=pl.Array(pl.Int8, 2))})
    for name in frame.columns:
        assert json_texts(frame[name]).to_list() == dumped(frame[name])
    assert json_texts(frame["metrics"]).to_list() == ["{}", "{}"]


def test_a_type_json_dumps_refuses_is_refused_the_same_way() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        json_texts(pl.Series([{"due": date(2026, 6, 30)}]))


finite_or_not = st.floats(allow_nan=True, allow_infinity=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), finite_or_not, st.floats(min_value=-1e-3, max_value=1e-3)), max_size=40),
       st.lists(st.text(max_size=12), min_size=1, max_size=5))
def test_any_floats_and_texts_are_written_byte_for_byte(floats: list[float | None], texts: list[str]) -> None:
    series = pl.Series("row", [{"value": value, "labels": texts, "label": texts[0]} for value in floats],
                       dtype=pl.Struct({"value": pl.Float64, "labels": pl.List(pl.String), "label": pl.String}))
    assert json_texts(series).to_list() == dumped(series)
