"""The metric and gate catalogue: the names a rule file may use, and what each means.

The formulas live in ``rules.metrics``; this module is the vocabulary, so that the rule model can check a
file without importing Polars.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Unit = Literal["rate", "ppm", "days", "count", "score"]


@dataclass(frozen=True)
class MetricInfo:
    name: str
    label: str
    unit: Unit
    evidence: str  # the column counting the records behind the value
    evidence_label: str
    higher_is_better: bool


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("on_time_rate", "On-time delivery rate", "rate", "order_lines", "order lines", True),
        MetricInfo("in_full_rate", "In-full rate", "rate", "inspected_lines", "inspected order lines", True),
        MetricInfo("otif_rate", "On time and in full (OTIF) rate", "rate", "inspected_lines", "inspected order lines",
                   True),
        MetricInfo("acceptance_rate", "Acceptance rate", "rate", "units_inspected", "units inspected", True),
        MetricInfo("ppm_rejected", "Rejected parts per million", "ppm", "units_inspected", "units inspected", False),
        MetricInfo("mean_days_late", "Mean days late of late lines", "days", "late_lines", "late lines", False),
        MetricInfo("nonconformances", "Nonconformances raised", "count", "nonconformances", "nonconformances", False),
        MetricInfo("feedback_score", "Internal feedback (1-5)", "score", "feedback_entries", "feedback entries", True),
    )
}

GATE_CONDITIONS: dict[str, str] = {
    "certificate_expired": "the supplier's certificate expired before the as-of date",
    "open_critical_nonconformance": "a critical nonconformance raised by the as-of date is still open",
}
