"""The metric and gate catalogue: the names a rule file may use, and what each means.

The formulas live in ``rules.metrics``; this module is the vocabulary, so that the rule model can check a
file without importing Polars.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Unit = Literal["rate", "ppm", "days", "count", "score"]
# What the on-time rate is a share of: judged order lines, or the units they ordered.
OnTimeBasis = Literal["lines", "quantity"]


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
        MetricInfo("quantity_accuracy_rate", "Quantity accuracy (received vs ordered)", "rate", "order_lines",
                   "order lines", True),
        MetricInfo("lead_time_adherence_rate", "Lead-time adherence", "rate", "lines_with_order_date",
                   "order lines with an order date", True),
        MetricInfo("mean_lead_time_days", "Mean lead time (order to completion)", "days", "lead_time_lines",
                   "completed order lines with an order date", False),
        MetricInfo("p90_lead_time_days", "90th-percentile lead time", "days", "lead_time_lines",
                   "completed order lines with an order date", False),
        MetricInfo("price_variance", "Mean price change vs the previous order of the item", "rate", "priced_lines",
                   "order lines with a previous price", False),
        MetricInfo("open_nonconformances", "Nonconformances open", "count", "open_nonconformances",
                   "open nonconformances", False),
        MetricInfo("overdue_nonconformances", "Nonconformances overdue", "count", "overdue_nonconformances",
                   "overdue nonconformances", False),
        MetricInfo("mean_days_to_close", "Mean days to close a nonconformance", "days", "closed_nonconformances",
                   "nonconformances closed", False),
        MetricInfo("certificate_valid", "Certificate valid (1 yes, 0 no)", "count", "certificates",
                   "certificate expiry dates", True),
        MetricInfo("days_to_expiry", "Days to certificate expiry", "days", "certificates", "certificate expiry dates",
                   True),
    )
}

GATE_CONDITIONS: dict[str, str] = {
    "certificate_expired": "the supplier's certificate expired before the as-of date",
    "open_critical_nonconformance": "a critical nonconformance raised by the as-of date is still open",
    "repeated_low_score": "this evaluation and the previous official ones in a row fell in the bands named",
}
