"""The metric catalogue: every metric a criterion may name is computed, documented, explained when not measured,
and can be scored with its evidence; the evaluation settings that shape the metrics reach them with their defaults.
"""

from __future__ import annotations

import inspect
import re
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from pydantic import ValidationError

from rules import metrics
from rules.catalogue import METRICS
from rules.decide import assemble_evaluations
from rules.loader import load_rule_set
from rules.model import EvaluationSettings, RuleSet
from rules.scoring import score_suppliers

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
AS_OF = date(2026, 3, 31)
EMPTY_LINES = pl.DataFrame(schema={"po_id": pl.String, "line_no": pl.Int64, "supplier_id": pl.String,
                                   "promised_date": pl.Date, "quantity_ordered": pl.Float64})
EMPTY_RECEIPTS = pl.DataFrame(schema={"po_id": pl.String, "line_no": pl.Int64, "received_date": pl.Date,
                                      "quantity_received": pl.Float64, "quantity_accepted": pl.Float64,
                                      "quantity_rejected": pl.Float64})
EMPTY_NCR = pl.DataFrame(schema={"ncr_id": pl.String, "supplier_id": pl.String, "raised_date": pl.Date,
                                 "severity": pl.String, "closed_date": pl.Date})
EMPTY_FEEDBACK = pl.DataFrame(schema={"supplier_id": pl.String, "date": pl.Date, "score": pl.Int64})


def empty_supplier() -> pl.DataFrame:
    return metrics.supplier_metrics(pl.DataFrame({"supplier_id": ["X"]}), EMPTY_LINES, EMPTY_RECEIPTS, EMPTY_NCR,
                                    EMPTY_FEEDBACK, as_of=AS_OF, window_days=90, tolerance_days=0)


def readme_metric_rows() -> dict[str, list[str]]:
    section = README.split("## How a supplier is scored", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        named = re.search(r"`([a-z0-9_]+)`", cells[0]) if line.startswith("|") else None
        if named:
            rows[named.group(1)] = cells
    return rows


@pytest.mark.parametrize("name", list(METRICS))
def test_every_metric_and_its_evidence_is_a_column_of_the_metrics(name: str) -> None:
    info = METRICS[name]
    assert name in metrics.METRIC_COLUMNS
    assert info.evidence in metrics.METRIC_COLUMNS
    assert info.unit in ("rate", "ppm", "days", "count", "score")


@pytest.mark.parametrize("name", list(METRICS))
def test_every_metric_is_in_the_readme_table_with_its_evidence_and_unit(name: str) -> None:
    rows = readme_metric_rows()
    assert name in rows, f"README's metric table has no row for `{name}`"
    _, formula, evidence, unit = rows[name]
    assert formula and evidence == METRICS[name].evidence_label and unit == METRICS[name].unit


def test_the_readme_table_documents_no_metric_the_catalogue_lacks() -> None:
    assert set(readme_metric_rows()) == set(METRICS)


@pytest.mark.parametrize("name", list(METRICS))
def test_without_records_a_metric_is_null_with_a_reason_or_a_count_of_zero(name: str) -> None:
    frame = empty_supplier()
    value = frame[name].item()
    if METRICS[name].unit == "count" and name != "certificate_valid":
        assert value == 0  # nothing raised, nothing open: a count of none is measured
        return
    assert value is None  # not measured, never 0
    reason = frame.select(metrics.not_measured_reason(name).alias("why"))["why"].item()
    assert reason and reason != "no data"


def test_a_rule_set_may_score_every_metric_and_report_its_evidence() -> None:
    shipped = load_rule_set()
    criteria = [{"name": info.label, "metric": name, "weight": 100 / len(METRICS),
                 "scale": {"linear": {"zero_points_at": 0, "full_points_at": 1}}} for name, info in METRICS.items()]
    rule_set = RuleSet.model_validate({**shipped.model_dump(by_alias=True, exclude={"criteria"}), "criteria": criteria})
    suppliers = pl.DataFrame({"supplier_id": ["X"], "certificate_expiry": [date(2026, 6, 29)],
                              "current_status": ["approved"]})
    measured = metrics.supplier_metrics(suppliers, EMPTY_LINES, EMPTY_RECEIPTS, EMPTY_NCR, EMPTY_FEEDBACK,
                                        as_of=AS_OF, window_days=90, tolerance_days=0)
    scored = score_suppliers(suppliers, measured, rule_set, as_of=AS_OF)
    previous = pl.DataFrame(schema={"supplier_id": pl.String, "previous_as_of": pl.Date,
                                    "previous_score": pl.Float64, "previous_band": pl.String})
    evaluated = assemble_evaluations(scored, rule_set, previous).row(0, named=True)
    by_metric = {c["metric"]: c for c in evaluated["criteria"]}
    assert set(by_metric) == set(METRICS)
    assert by_metric["days_to_expiry"]["value"] == 90.0 and by_metric["days_to_expiry"]["evidence"] == 1
    assert by_metric["lead_time_adherence_rate"]["measured"] is False
    assert by_metric["lead_time_adherence_rate"]["not_measured_reason"] == "no order lines due in the window"
    assert set(evaluated["metrics"]) == set(metrics.METRIC_COLUMNS)


def test_the_metric_functions_default_to_the_evaluation_settings_defaults() -> None:
    defaults = EvaluationSettings()
    parameters = inspect.signature(metrics.measure_suppliers).parameters
    for setting in ("early_tolerance_days", "on_time_basis", "quantity_accuracy_tolerance", "ncr_overdue_days"):
        assert parameters[setting].default == getattr(defaults, setting), setting
    # supplier_metrics gives the metrics only: the records behind them are measure_suppliers' business
    assert set(inspect.signature(metrics.supplier_metrics).parameters) == set(parameters) - {"with_records"}


def test_evaluation_settings_read_the_new_keys_and_refuse_bad_values() -> None:
    settings = EvaluationSettings.model_validate({"early_tolerance_days": 3, "on_time_basis": "quantity",
                                                 "quantity_accuracy_tolerance": 0.02, "ncr_overdue_days": 45})
    assert (settings.early_tolerance_days, settings.on_time_basis) == (3, "quantity")
    assert EvaluationSettings.model_validate({"early_tolerance_days": None}).early_tolerance_days is None
    for bad in ({"on_time_basis": "units"}, {"early_tolerance_days": -1}, {"quantity_accuracy_tolerance": 1.5},
                {"ncr_overdue_days": -1}):
        with pytest.raises(ValidationError):
            EvaluationSettings.model_validate(bad)


def test_the_shipped_rule_file_keeps_its_criteria_and_the_default_settings() -> None:
    shipped = load_rule_set()
    assert [c.metric for c in shipped.criteria] == ["on_time_rate", "otif_rate", "ppm_rejected", "mean_days_late"]
    assert shipped.evaluation.early_tolerance_days is None and shipped.evaluation.on_time_basis == "lines"
