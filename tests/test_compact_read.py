"""A data folder's CSV files are read compact: the columns validation casts to a date, a number or true/false
are Categorical (4 bytes a cell, not 16). The text is the same, and so is everything validation gives: each
bad input of tests/test_bad_inputs.py, and cells that only the slow path reads, validate to the same good rows
and the same quarantine as the files read all as String.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from suppliers.sources import discover_sources, load_sources, read_source
from suppliers.validate import ValidatedInputs, validate_inputs
from tests.test_bad_inputs import CASES, GOOD

# Cells the quick cast cannot decide alone: padded, written another way, empty but quoted, not finite.
AWKWARD = {
    **GOOD,
    "purchase_order_lines": GOOD["purchase_order_lines"]
    + 'P6, 1 ,S1,I7,metal, 2026-03-02,2026-03-16,1e1,"",EUR\n'
    + "P7,2.0,S1,I8,metal,2026-03-02,2026-03-16,inf,-0,EUR\n"
    + "P8,1,S1,I9,metal,2026-02-30,16/03/2026, 7 ,abc,EUR\n",
    "receipts": GOOD["receipts"] + "R6,P1,1,2026-03-14 ,  ,98,2\n",
    "suppliers": GOOD["suppliers"].replace(",true\n", ", TRUE \n", 1).replace(",yes\n", ",maybe\n"),
}


def _validated(folder: Path, files: dict[str, str], *, compact: bool) -> ValidatedInputs:
    folder.mkdir()
    for kind, text in files.items():
        (folder / f"{kind}.csv").write_text(text, encoding="utf-8")
    if compact:
        raw = load_sources(folder).raw
    else:
        raw = {kind: (source, read_source(source)[0]) for kind, source in discover_sources(folder).items()}
    return validate_inputs(raw, max_quarantine_share=1.0)


def _same(compact: ValidatedInputs, text: ValidatedInputs) -> None:
    assert compact.quarantine.equals(text.quarantine), (compact.quarantine.to_dicts(), text.quarantine.to_dicts())
    for kind in ("suppliers", "purchase_order_lines", "receipts", "nonconformances", "feedback"):
        assert getattr(compact, kind).equals(getattr(text, kind)), kind
    assert compact.summary.equals(text.summary)


def test_typed_columns_are_read_as_categorical_holding_the_text_as_written(tmp_path: Path):
    for kind, text in AWKWARD.items():
        (tmp_path / f"{kind}.csv").write_text(text, encoding="utf-8")
    loaded = load_sources(tmp_path)
    source, lines = loaded.raw["purchase_order_lines"]
    as_text, _ = read_source(source)
    categorical = [c for c, dtype in lines.schema.items() if isinstance(dtype, pl.Categorical)]
    assert categorical == ["line_no", "order_date", "promised_date", "quantity_ordered", "unit_price"]
    assert lines.cast(pl.String).equals(as_text)  # ids, names and codes stay String; every cell as written


# One case of each way a typed cell is judged: its cast, its bounds, a rule over the row or over the row it refers
# to, its date against today, and a copy of a row (compared as written).
TYPED = ["date not ISO", "text for a number", "fraction for a whole number", "not a boolean", "empty number",
         "zero quantity ordered", "accepted + rejected exceeds received", "received before ordered",
         "received tomorrow", "receipt copied", "receipt for an unknown line"]


@pytest.mark.parametrize("name", TYPED)
def test_a_bad_input_validates_the_same_read_compact(tmp_path: Path, name: str):
    files = CASES[name].files()
    _same(_validated(tmp_path / "compact", files, compact=True), _validated(tmp_path / "text", files, compact=False))


def test_cells_only_the_slow_path_reads_validate_the_same_read_compact(tmp_path: Path):
    compact = _validated(tmp_path / "compact", AWKWARD, compact=True)
    _same(compact, _validated(tmp_path / "text", AWKWARD, compact=False))
    values = dict(zip(compact.quarantine.get_column("column"), compact.quarantine.get_column("value"), strict=False))
    assert values["promised_date"] == "16/03/2026" and values["unit_price"] == "abc"  # as written
    assert compact.quarantine.height >= 5


# --- a mapped export: the columns only typed fields use are read compact, with the mapping's formats

EXPORT = """\
PO,Vendor,Promised,Ordered,Qty,Price,Site
P1,S1,15/03/2026,01/03/2026,"1.000,5",N/A,main
P2,S2,20/04/2026,01/04/2026, 12 ,"2,50",main
P3,S1,31/02/2026,01/04/2026,abc,3,main
P4,S2,20/04/2026,01/04/2026,4,1,depot
P5,S1,20/04/2026,02/04/2026,0,1,main
"""
MAPPING = """\
sources:
  export: {path: export.csv, missingValues: ["N/A"]}
  receipts: {path: receipts.csv}
  suppliers: {path: suppliers.csv}
records:
  purchase_order_lines:
    from: export
    where: [{column: Site, not_equals: depot}]
    fields:
      po_id: PO
      line_no: {number_within: [PO]}
      supplier_id: Vendor
      promised_date: {column: Promised, format: "%d/%m/%Y"}
      order_date: {column: Ordered, format: "%d/%m/%Y"}
      quantity_ordered: {column: Qty, decimalChar: ",", groupChar: "."}
      unit_price: {column: Price, decimalChar: ","}
  receipts:
    from: receipts
    fields: {receipt_id: receipt_id, po_id: po_id, line_no: line_no, received_date: received_date,
             quantity_received: quantity_received}
  suppliers:
    from: suppliers
    fields: {supplier_id: supplier_id, name: name, category: category, criticality: criticality,
             status: status, active: active}
"""


def test_a_mapped_export_validates_the_same_read_compact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from suppliers import mapping as mapping_module

    (tmp_path / "export.csv").write_text(EXPORT, encoding="utf-8")
    (tmp_path / "receipts.csv").write_text("receipt_id,po_id,line_no,received_date,quantity_received\n"
                                           "R1,P1,1,2026-03-14,1000.5\nR2,P5,1,2026-03-40,x\n", encoding="utf-8")
    (tmp_path / "suppliers.csv").write_text(GOOD["suppliers"], encoding="utf-8")
    (tmp_path / "mapping.yaml").write_text(MAPPING, encoding="utf-8")
    mapping = mapping_module.load_mapping(tmp_path / "mapping.yaml")
    columns, compact = mapping_module.source_columns(mapping)["export"]
    assert columns == ("Site", "PO", "Vendor", "Promised", "Ordered", "Qty", "Price")
    assert compact == ("Promised", "Ordered", "Qty", "Price")  # not the filter, the key, the text field

    def validated() -> ValidatedInputs:
        loaded = mapping_module.read_mapped_sources(mapping)
        return validate_inputs(loaded.raw, formats=loaded.formats, max_quarantine_share=1.0)

    read_compact = validated()
    assert isinstance(mapping_module.read_mapped_sources(mapping).raw["purchase_order_lines"][1]
                      .schema["promised_date"], pl.Categorical)
    as_text = mapping_module.source_columns
    monkeypatch.setattr(mapping_module, "source_columns",
                        lambda m: {name: (columns, ()) for name, (columns, _) in as_text(m).items()})
    _same(read_compact, validated())
    assert read_compact.purchase_order_lines.get_column("quantity_ordered").to_list() == [1000.5, 12.0]
    values = read_compact.quarantine.select("column", "value").rows()
    assert ("promised_date", "31/02/2026") in values and ("quantity_ordered", "abc") in values
