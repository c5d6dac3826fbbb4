"""The real example: the USAID SCMS export evaluated through its mapping alone, checked against the raw CSV."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from flows.params import RunParameters
from suppliers.store import Store

EXAMPLE = Path(__file__).parents[1] / "examples" / "usaid-scms"
AS_OF = date(2015, 12, 31)
WINDOW_DAYS, TOLERANCE_DAYS = 365, 2  # the shipped rules
INTERNAL = "SCMS from RDC"

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def counts_from_the_raw_csv() -> tuple[Counter[str], Counter[str]]:
    """Per vendor, order lines due in the window and lines delivered by the deadline, by the csv module alone.

    The engine's rules, written out again: an outside vendor's line is judged when its scheduled date is in the
    window and its deadline (scheduled + tolerance) has passed; a line scheduled before its order date is not a
    valid record; a delivery dated before its order is not a valid record either, and a line whose delivery is
    not valid cannot be judged; a line is on time when it was delivered by the deadline.
    """
    def day(text: str) -> date:
        return datetime.strptime(text, "%d-%b-%y").date()

    def ordered(text: str) -> date | None:
        return datetime.strptime(text, "%m/%d/%Y").date() if "/" in text and text[0].isdigit() else None

    first_day = AS_OF - timedelta(days=WINDOW_DAYS - 1)
    judged: Counter[str] = Counter()
    on_time: Counter[str] = Counter()
    with (EXAMPLE / "Supply_Chain_Shipment_Pricing_Data.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            vendor = row["vendor"].strip()
            promised, delivered = day(row["scheduled delivery date"]), day(row["delivered to client date"])
            order_date = ordered(row["po sent to vendor date"])
            if vendor == INTERNAL or (order_date is not None and promised < order_date):
                continue
            deadline = promised + timedelta(days=TOLERANCE_DAYS)
            if not (first_day <= promised <= AS_OF and deadline <= AS_OF):
                continue
            if order_date is not None and delivered < order_date:
                continue
            judged[vendor] += 1
            if delivered <= deadline:
                on_time[vendor] += 1
    return judged, on_time


def test_the_usaid_export_evaluates_through_its_mapping_alone(tmp_path: Path) -> None:
    from flows.pipeline import adhoc
    from flows.runtime import fast_flow_runs

    for name in ("Supply_Chain_Shipment_Pricing_Data.csv", "mapping.yaml", "supplier-eval.toml"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    with fast_flow_runs():
        summary = adhoc(RunParameters(config_file=str(tmp_path / "supplier-eval.toml"), as_of=AS_OF))
    judged, on_time = counts_from_the_raw_csv()
    with Store(f"sqlite:///{tmp_path / 'usaid-scms-work' / 'supplier-eval.db'}") as store, \
            store.engine.connect() as connection:
        import sqlalchemy as sa

        rows = connection.execute(sa.text("SELECT supplier_id, metrics FROM evaluations")).all()
    stored = {supplier: json.loads(metrics) for supplier, metrics in rows}
    assert INTERNAL not in stored and summary.suppliers_evaluated == len(stored) == 72
    assert {v: m["order_lines"] for v, m in stored.items() if m["order_lines"]} == dict(judged)
    assert {v: m["on_time_lines"] for v, m in stored.items() if m["on_time_lines"]} == dict(on_time)
    assert sum(judged.values()) > 300  # the check is about real volume, not a handful of lines
