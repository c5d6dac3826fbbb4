"""Validating only what a run's window needs (validate_inputs(window=...)) scores exactly as validating all history.

A generated history of 540 days (longer than the windows below), with receipts before, in and after each window,
nonconformances raised before a window and still open, and bad rows planted on both sides of the window
boundary: every supplier gets the same metrics and late lines either way, and what a windowed run quarantines is
what the full run quarantines for those rows.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from conftest import SAMPLE_END

from rules.asl import open_critical_ages
from rules.metrics import measure_suppliers, window_start
from suppliers.errors import ConfigError
from suppliers.generate import generate_frames, write_sample_data
from suppliers.sources import load_sources
from suppliers.validate import ValidatedInputs, validate_inputs

WINDOW = 365
FIRST = window_start(SAMPLE_END, WINDOW)
OLD = FIRST - timedelta(days=60)  # well before the window
IN = SAMPLE_END - timedelta(days=40)  # well inside it


def _append(path: Path, *rows: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write("".join(f"{row}\n" for row in rows))


def _csv_row(row: dict[str, object]) -> str:
    return ",".join("" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
                    for value in row.values())


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    """Generated CSV data with bad rows on both sides of the 365-day window's first day."""
    frames = generate_frames(suppliers=30, lines=3000, seed=5, end_date=SAMPLE_END)
    folder = tmp_path_factory.mktemp("window") / "data"
    write_sample_data(frames, folder, "csv")
    lines, receipts = frames["purchase_order_lines"], frames["receipts"]
    old_lines = lines.filter(pl.col("promised_date") < OLD)
    old_receipts = receipts.join(old_lines.select("po_id", "line_no"), on=["po_id", "line_no"])
    old_receipt = old_receipts.row(0, named=True)
    other_old = old_receipts.filter(pl.col("po_id") != old_receipt["po_id"]).row(0, named=True)
    old_line = old_lines.join(receipts.select("po_id", "line_no"), on=["po_id", "line_no"], how="anti")
    old_line = old_line.row(0, named=True) if old_line.height else old_lines.row(0, named=True)
    received = receipts.get_column("received_date")
    assert (received < FIRST).any() and (received > IN).any()  # receipts before the window and late in it
    in_line = lines.filter(pl.col("promised_date").is_between(FIRST, SAMPLE_END)).row(0, named=True)
    # receipts: an old receipt's id again, in the window, for a line promised in it (a duplicate of a row the
    # window leaves out); a receipt in the window of another line promised long before it; one of an unknown
    # line; one whose date does not parse
    dup = {**old_receipt, "po_id": in_line["po_id"], "line_no": in_line["line_no"], "received_date": IN}
    late = {**other_old, "receipt_id": "RC-LATE", "received_date": IN - timedelta(days=1)}
    _append(folder / "receipts.csv", _csv_row(dup), _csv_row(late),
            _csv_row({**old_receipt, "receipt_id": "RC-NOLINE", "po_id": "PO-NONE", "received_date": IN}),
            _csv_row({**dup, "receipt_id": "RC-BADDATE", "received_date": "31/12/2025"}))
    # order lines: an old line whose quantity does not parse, one in the window for an unknown supplier
    _append(folder / "purchase_order_lines.csv",
            _csv_row({**old_line, "po_id": "PO-OLD-BAD", "quantity_ordered": "lots"}),
            _csv_row({**in_line, "po_id": "PO-NEW-BAD", "supplier_id": "S9999"}))
    # nonconformances: a critical one raised before the window and still open, one raised before it and closed in
    # it, an old closed one with a bad severity, a new one with a bad severity
    ncr = frames["nonconformances"].row(0, named=True)
    _append(folder / "nonconformances.csv",
            _csv_row({**ncr, "ncr_id": "NCR-OPEN", "raised_date": OLD, "closed_date": None, "severity": "critical"}),
            _csv_row({**ncr, "ncr_id": "NCR-CLOSED-IN", "raised_date": OLD, "closed_date": IN, "severity": "minor"}),
            _csv_row({**ncr, "ncr_id": "NCR-OLD", "raised_date": OLD, "closed_date": OLD + timedelta(days=5),
                      "severity": "huge"}),
            _csv_row({**ncr, "ncr_id": "NCR-NEW", "raised_date": IN, "closed_date": None, "severity": "huge"}))
    return folder, {"old_receipt": old_receipt, "other_old": other_old}


def _validate(folder: Path, as_of: date, window: tuple[date, date] | None) -> ValidatedInputs:
    loaded = load_sources(folder)
    return validate_inputs(loaded.raw, as_of=as_of, max_quarantine_share=1.0, window=window, with_receipt_lines=True)


def _measured(inputs: ValidatedInputs, as_of: date, window_days: int) -> tuple[pl.DataFrame, ...]:
    performance = measure_suppliers(inputs.suppliers, inputs.purchase_order_lines, inputs.receipts,
                                    inputs.nonconformances, inputs.feedback, as_of=as_of, window_days=window_days,
                                    tolerance_days=2, early_tolerance_days=3, with_records=True,
                                    receipt_lines=inputs.receipt_lines)
    return performance.metrics.sort("supplier_id"), performance.late_lines, performance.records


def _rows(quarantine: pl.DataFrame) -> set[tuple]:
    return set(quarantine.iter_rows())


@pytest.mark.parametrize(("as_of", "window_days"), [
    pytest.param(SAMPLE_END, WINDOW, id="a year"),
    pytest.param(SAMPLE_END - timedelta(days=120), 90, id="a back-dated quarter"),
    pytest.param(SAMPLE_END, 30, id="a month"),
])
def test_the_window_alone_scores_every_supplier_as_the_whole_history_does(
        planted: tuple[Path, dict], as_of: date, window_days: int) -> None:
    folder, _ = planted
    window = (window_start(as_of, window_days), as_of)
    full, windowed = _validate(folder, as_of, None), _validate(folder, as_of, window)

    # every metric, the lines not on time and the records behind the metrics
    for whole, part in zip(_measured(full, as_of, window_days), _measured(windowed, as_of, window_days),
                           strict=True):
        assert part.equals(whole, null_equal=True)
    assert windowed.suppliers.equals(full.suppliers)
    ages = open_critical_ages(full.nonconformances, as_of).sort("supplier_id")  # what the gates read
    assert open_critical_ages(windowed.nonconformances, as_of).sort("supplier_id").equals(ages)
    # fewer rows are validated, and each of them is quarantined exactly as the whole history quarantines it
    read = dict(full.summary.select("kind", "rows_read").iter_rows())
    validated = dict(windowed.summary.select("kind", "rows_read").iter_rows())
    assert validated["suppliers"] == read["suppliers"]
    assert validated["purchase_order_lines"] < read["purchase_order_lines"]
    assert validated["receipts"] < read["receipts"]
    assert _rows(windowed.quarantine) <= _rows(full.quarantine)
    assert windowed.quarantine.height < full.quarantine.height


def test_items_whose_first_hashes_collide_keep_their_own_last_day(planted: tuple[Path, dict],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """For each item bought in the window, the lines of the last day it was bought before it are validated too
    (its previous price is there). Items are told apart by two hashes: should every item's first collide, the
    second keeps each item's last day its own, and every supplier scores the same."""
    import suppliers.validate as validate

    folder, _ = planted
    window = (FIRST, SAMPLE_END)
    expected = _measured(_validate(folder, SAMPLE_END, window), SAMPLE_END, WINDOW)
    assert expected[0]["priced_lines"].sum() > 0
    real = validate._item_hash
    monkeypatch.setattr(validate, "_item_hash", lambda seed=0: real(seed) if seed else real(1) * 0 + 7)
    collided = _validate(folder, SAMPLE_END, window)
    for whole, part in zip(expected, _measured(collided, SAMPLE_END, WINDOW), strict=True):
        assert part.equals(whole, null_equal=True)


def test_what_a_year_window_validates_and_quarantines(planted: tuple[Path, dict]) -> None:
    folder, facts = planted
    full, windowed = _validate(folder, SAMPLE_END, None), _validate(folder, SAMPLE_END, (FIRST, SAMPLE_END))
    quarantined = windowed.quarantine
    old_receipt = facts["old_receipt"]["receipt_id"]

    # the in-window copy of an old receipt's id is a duplicate of the old row, which the window leaves out
    first_row = full.quarantine.filter(pl.col("code") == "duplicate_key", pl.col("value") == old_receipt)
    assert first_row.height == 1
    assert quarantined.filter(pl.col("code") == "duplicate_key", pl.col("value") == old_receipt).equals(first_row)
    assert old_receipt not in windowed.receipts["receipt_id"].to_list()  # the old row itself is not validated
    # a receipt in the window of a line promised long before it: its line is validated too, not "unknown", and
    # so is every receipt of that line
    assert "RC-LATE" in windowed.receipts["receipt_id"].to_list()
    assert facts["other_old"]["receipt_id"] in windowed.receipts["receipt_id"].to_list()
    late_line = windowed.receipts.filter(pl.col("receipt_id") == "RC-LATE").select("po_id", "line_no")
    assert late_line.join(windowed.purchase_order_lines, on=["po_id", "line_no"]).height == 1
    assert quarantined.filter(pl.col("code") == "unknown_line")["value"].to_list() == [
        f"PO-NONE, {facts['old_receipt']['line_no']}"]
    assert quarantined.filter(pl.col("value") == "31/12/2025")["code"].to_list() == ["unparseable"]  # no date: kept
    assert quarantined.filter(pl.col("value") == "lots").height == 0  # an old line, not needed
    assert full.quarantine.filter(pl.col("value") == "lots").height == 1
    assert quarantined.filter(pl.col("value") == "S9999").height == 1  # promised in the window
    assert quarantined.filter(pl.col("value") == "huge").height == 1  # the new NCR, not the old closed one
    assert full.quarantine.filter(pl.col("value") == "huge").height == 2
    # a nonconformance open in the window is validated, whenever it was raised
    assert {"NCR-OPEN", "NCR-CLOSED-IN"} <= set(windowed.nonconformances["ncr_id"])
    open_ncrs = full.nonconformances.filter(pl.col("closed_date").is_null() | (pl.col("closed_date") >= FIRST))
    assert set(open_ncrs["ncr_id"]) <= set(windowed.nonconformances["ncr_id"])


def test_a_window_ending_before_it_starts_is_refused(planted: tuple[Path, dict]) -> None:
    folder, _ = planted
    with pytest.raises(ConfigError, match="first day"):
        _validate(folder, SAMPLE_END, (SAMPLE_END, FIRST))


def test_an_item_whose_last_day_before_the_window_is_all_quarantined_takes_its_price_from_an_older_line(
        tmp_path: Path) -> None:
    """The previous price of an item bought in the window is on its latest good line before it. When every line of
    the last day it was bought before the window is quarantined, validation looks further back (a second pass)
    and the window scores as the whole history does."""
    frames = generate_frames(suppliers=10, lines=1500, seed=11, end_date=SAMPLE_END)
    folder = tmp_path / "data"
    write_sample_data(frames, folder, "csv")
    lines = frames["purchase_order_lines"].filter(pl.col("item_id").is_not_null() & pl.col("unit_price").is_not_null())
    item = ["supplier_id", "item_id", "currency"]
    bought = lines.filter(pl.col("order_date") >= FIRST).select(item).unique()
    latest = (lines.filter(pl.col("order_date") < FIRST).join(bought, on=item, how="semi")
              .sort("order_date").group_by(item, maintain_order=True).last())
    # an item whose latest line before the window is not in it otherwise (promised and received before it), and
    # ordered at least two days before it
    received_in = frames["receipts"].filter(pl.col("received_date") >= FIRST).select("po_id", "line_no")
    last = (latest.filter(pl.col("promised_date") < FIRST, pl.col("order_date") < FIRST - timedelta(days=1))
            .join(received_in, on=["po_id", "line_no"], how="anti").sort("po_id").row(0, named=True))
    # a line of that item the day after its last one before the window, with a quantity that does not parse
    bad = {**last, "po_id": "PO-LAST-DAY-BAD", "order_date": last["order_date"] + timedelta(days=1),
           "quantity_ordered": "lots", "unit_price": 1000.0}
    _append(folder / "purchase_order_lines.csv", _csv_row({c: bad[c] for c in frames["purchase_order_lines"].columns}))
    full = _validate(folder, SAMPLE_END, None)
    windowed = _validate(folder, SAMPLE_END, (FIRST, SAMPLE_END))
    assert windowed.quarantine.filter(pl.col("value") == "lots").select("column").rows() == [("quantity_ordered",)]
    for whole, part in zip(_measured(full, SAMPLE_END, WINDOW), _measured(windowed, SAMPLE_END, WINDOW), strict=True):
        assert part.equals(whole, null_equal=True)
    supplier = _measured(windowed, SAMPLE_END, WINDOW)[0].filter(pl.col("supplier_id") == last["supplier_id"])
    assert supplier["priced_lines"].item() > 0
