"""The rule-set model: what a rule file may say, as frozen pydantic models.

Structure checks (types, unknown keys, allowed values) are pydantic's; the cross-field checks a
procurement officer can get wrong (weights, band coverage) are the validators below.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from itertools import pairwise
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from rules.catalogue import GATE_CONDITIONS, METRICS, MetricInfo, OnTimeBasis, Unit

AslStatus = Literal["approved", "conditional", "probation", "disqualified"]
NotMeasuredPolicy = Literal["renormalise", "insufficient_data"]

# Best first: a gate's cap can only move a status rightwards.
STATUS_ORDER: tuple[str, ...] = ("approved", "conditional", "probation", "disqualified")

# Columns next to the metrics in the scored and evaluated frames: no custom metric may take their names.
RESERVED_COLUMNS = frozenset({
    "supplier_id", "certificate_expiry", "current_status", "measured_weight", "score", "band", "band_status",
    "status", "gates_hit", "insufficient_reason", "insufficient_data", "metrics", "criteria", "previous_as_of",
    "previous_score", "previous_band", "score_change", "action", "name", "category", "criticality", "owner_email",
    "profile", "reevaluate_every_days", "gate_note", "oldest_open_critical_days", "recent_bands",
})
# The custom metric names of the rule file being checked, in file order, for the criteria and formulas in it;
# and the name (as written) of the custom metric being checked, so that its formula may use those above it.
_CUSTOM_NAMES: ContextVar[tuple[str, ...]] = ContextVar("custom_metric_names", default=())
_CUSTOM_NAME: ContextVar[object] = ContextVar("custom_metric_name", default=None)


def metric_columns() -> tuple[str, ...]:
    """The metric columns a formula may use (``rules.metrics.METRIC_COLUMNS``).

    Imported on use: checking a rule file without custom metrics never imports Polars.
    """
    from rules.metrics import METRIC_COLUMNS

    return METRIC_COLUMNS


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class EvaluationSettings(_Frozen):
    window_days: int = Field(365, ge=1, le=3660, description="Days the evaluation looks back over.")
    on_time_tolerance_days: int = Field(0, ge=0, le=60, description="Days after the promised date still on time.")
    early_tolerance_days: int | None = Field(
        None, ge=0, le=365,
        description="Days before the promised date still on time; a delivery earlier than that is not on time. "
        "Empty (the default): early is always on time.",
    )
    on_time_basis: OnTimeBasis = Field(
        "lines",
        description="'lines': the on-time rate is a share of order lines; 'quantity': a share of the units "
        "ordered, Σ units received in the on-time window (up to each line's order) / Σ units ordered.",
    )
    quantity_accuracy_tolerance: float = Field(
        0.0, ge=0, le=1,
        description="Quantity accuracy: |received − ordered| up to this share of the quantity ordered is accurate.",
    )
    ncr_overdue_days: int = Field(30, ge=0, le=3660, description="Days a nonconformance may stay open before it "
                                  "is overdue.")

    def measure_options(self) -> dict[str, object]:
        """The keywords of ``rules.metrics.measure_suppliers`` these settings give (all but the window)."""
        return {"tolerance_days": self.on_time_tolerance_days, "early_tolerance_days": self.early_tolerance_days,
                "on_time_basis": self.on_time_basis, "quantity_accuracy_tolerance": self.quantity_accuracy_tolerance,
                "ncr_overdue_days": self.ncr_overdue_days}



class MinimumEvidence(_Frozen):
    order_lines: int = Field(5, ge=0, description="Order lines due in the window needed for a score.")
    receipts: int = Field(
        1, ge=0, description="Goods receipts in the window, inspected or not, needed for a score."
    )


class LinearScale(_Frozen):
    zero_points_at: float
    full_points_at: float

    @model_validator(mode="after")
    def _distinct(self) -> LinearScale:
        if self.zero_points_at == self.full_points_at:
            raise ValueError("zero_points_at and full_points_at must differ")
        return self


class Step(_Frozen):
    at_most: float | None = None
    at_least: float | None = None
    points: float = Field(ge=0, le=100)

    @model_validator(mode="after")
    def _one_bound(self) -> Step:
        if (self.at_most is None) == (self.at_least is None):
            raise ValueError("a step needs exactly one of at_most or at_least")
        return self


class Scale(_Frozen):
    linear: LinearScale | None = None
    steps: tuple[Step, ...] | None = None
    otherwise: float | None = Field(None, ge=0, le=100, description="Points when no step matches.")

    @model_validator(mode="after")
    def _one_kind(self) -> Scale:
        if (self.linear is None) == (self.steps is None):
            raise ValueError("a scale is either 'linear' or 'steps', not both or neither")
        if self.steps is not None and self.otherwise is None:
            raise ValueError("a 'steps' scale needs 'otherwise' (the points when no step matches)")
        if self.linear is not None and self.otherwise is not None:
            raise ValueError("'otherwise' belongs to a 'steps' scale, not a 'linear' one")
        return self


class Criterion(_Frozen):
    name: str = Field(min_length=1)
    metric: str
    weight: float = Field(gt=0, le=100)
    scale: Scale

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        known = (*METRICS, *_CUSTOM_NAMES.get())
        if value not in known:
            raise ValueError(f"unknown metric {value!r}; known metrics: {', '.join(known)}")
        return value


class CustomMetric(_Frozen):
    """A metric computed from the catalogue's by a formula (grammar: ``rules.formula``), e.g.
    ``{name: rework_free_rate, formula: "min(on_time_rate, otif_rate)", unit: rate, label: "..."}``.

    The formula may use the metric columns and the custom metrics above it; a null result is not measured.
    """

    name: str
    formula: str
    unit: Unit
    label: str = Field(min_length=1)

    @model_validator(mode="wrap")
    @classmethod
    def _own_name_in_scope(cls, data: object, handler: ValidatorFunctionWrapHandler) -> CustomMetric:
        """Its formula is checked knowing its name as written, even when the name itself does not check."""
        token = _CUSTOM_NAME.set(data.get("name") if isinstance(data, dict) else None)
        try:
            return handler(data)
        finally:
            _CUSTOM_NAME.reset(token)

    @field_validator("name")
    @classmethod
    def _free_name(cls, value: str) -> str:
        from rules.formula import KEYWORDS

        if not re.fullmatch(r"[a-z][a-z0-9_]*", value):
            raise ValueError(f"custom metric name {value!r} must be lower-case letters, digits and _, "
                             "starting with a letter")
        if value in metric_columns() or value in RESERVED_COLUMNS or value in KEYWORDS or value.startswith("points_"):
            raise ValueError(f"custom metric name {value!r} is taken (a metric column, a column of the results or "
                             "a word of the formula language); choose another")
        return value

    @field_validator("formula")
    @classmethod
    def _formula_checks(cls, value: str) -> str:
        from rules.formula import FormulaError, parse

        declared, own = _CUSTOM_NAMES.get(), _CUSTOM_NAME.get()
        # Those above it (above its last spelling: a name given twice is reported by the rule set, once).
        earlier = declared[:len(declared) - 1 - declared[::-1].index(own)] if own in declared else ()
        try:
            parse(value, (*metric_columns(), *earlier))
        except FormulaError as error:
            raise ValueError(error.one_line) from None
        return value


class Band(_Frozen):
    band: str = Field(min_length=1)
    lower: float = Field(alias="from", ge=0, le=100)
    upper: float = Field(alias="to", ge=0, le=100)
    status: AslStatus
    action: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> Band:
        if self.lower >= self.upper:
            raise ValueError(f"band {self.band}: 'from' ({self.lower:g}) must be below 'to' ({self.upper:g})")
        return self


class Gate(_Frozen):
    name: str = Field(min_length=1)
    when: str
    cap_status: AslStatus

    @field_validator("when")
    @classmethod
    def _known_condition(cls, value: str) -> str:
        if value not in GATE_CONDITIONS:
            raise ValueError(f"unknown gate condition {value!r}; known: {', '.join(GATE_CONDITIONS)}")
        return value


class RuleSet(_Frozen):
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    evaluation: EvaluationSettings = EvaluationSettings()
    minimum_evidence: MinimumEvidence = MinimumEvidence()
    not_measured: NotMeasuredPolicy = Field(
        "renormalise",
        description="A criterion whose metric has no value: 'renormalise' scores over the measured criteria "
        "(Σ points × weight / Σ weight, measured only); 'insufficient_data' gives the supplier no score.",
    )
    custom_metrics: tuple[CustomMetric, ...] = Field(
        (), description="Metrics computed by a formula, usable as a criterion's metric; each may use those above it.",
    )
    criteria: tuple[Criterion, ...] = Field(min_length=1)
    bands: tuple[Band, ...] = Field(min_length=1)
    gates: tuple[Gate, ...] = ()
    content_hash: str = Field("", description="sha256 of the rule file's bytes, set by the loader.")

    @model_validator(mode="wrap")
    @classmethod
    def _custom_names_in_scope(cls, data: object, handler: ValidatorFunctionWrapHandler) -> RuleSet:
        """Check the criteria and formulas knowing the custom metric names the file declares."""
        token = _CUSTOM_NAMES.set(_declared_names(data))
        try:
            return handler(data)
        finally:
            _CUSTOM_NAMES.reset(token)

    @field_validator("custom_metrics")
    @classmethod
    def _unique_custom_names(cls, metrics: tuple[CustomMetric, ...]) -> tuple[CustomMetric, ...]:
        names = [m.name for m in metrics]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"custom metric names must be unique; twice: {', '.join(twice)}")
        return metrics

    def metric_info(self, metric: str) -> MetricInfo:
        """The catalogue's entry for ``metric``, or one for a custom metric of this rule set.

        A custom metric has its own label and unit, and the evidence of the first metric its formula uses that
        has one (a catalogue metric, a custom metric above it, or an evidence count itself); order lines when
        none has. ``higher_is_better`` is not known for a formula (its criterion's scale says which way the
        points go) and is given as True.
        """
        if metric in METRICS:
            return METRICS[metric]
        custom = {m.name: m for m in self.custom_metrics}
        if metric not in custom:
            raise KeyError(metric)
        from rules.formula import variables

        evidence_labels = {info.evidence: info.evidence_label for info in METRICS.values()}
        evidence, label = "order_lines", evidence_labels.get("order_lines", "order lines")
        for name in variables(custom[metric].formula):
            if name in METRICS or name in custom:
                source = self.metric_info(name)
                evidence, label = source.evidence, source.evidence_label
                break
            if name in evidence_labels:
                evidence, label = name, evidence_labels[name]
                break
        return MetricInfo(metric, custom[metric].label, custom[metric].unit, evidence, label, True)

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int | float) else value

    @field_validator("criteria")
    @classmethod
    def _weights_sum_to_100(cls, criteria: tuple[Criterion, ...]) -> tuple[Criterion, ...]:
        total = sum(c.weight for c in criteria)
        if abs(total - 100) > 1e-9:
            parts = ", ".join(f"{c.name} {c.weight:g}" for c in criteria)
            raise ValueError(f"criterion weights add up to {total:g}, not 100 ({parts})")
        names = [c.name for c in criteria]
        if len(set(names)) != len(names):
            raise ValueError("criterion names must be unique")
        return criteria

    @field_validator("bands")
    @classmethod
    def _bands_cover_0_to_100(cls, bands: tuple[Band, ...]) -> tuple[Band, ...]:
        names = [b.band for b in bands]
        if len(set(names)) != len(names):
            raise ValueError("band names must be unique")
        ordered = sorted(bands, key=lambda b: b.lower)
        if ordered[0].lower != 0:
            raise ValueError(f"bands must start at 0; the lowest band {ordered[0].band} starts at {ordered[0].lower:g}")
        if ordered[-1].upper != 100:
            highest = ordered[-1]
            raise ValueError(f"bands must end at 100; the highest band {highest.band} ends at {highest.upper:g}")
        for below, above in pairwise(ordered):
            if above.lower > below.upper:
                raise ValueError(
                    f"gap between band {below.band} (to {below.upper:g}) and band {above.band} (from {above.lower:g})"
                )
            if above.lower < below.upper:
                raise ValueError(
                    f"bands {below.band} (to {below.upper:g}) and {above.band} (from {above.lower:g}) overlap"
                )
        return tuple(sorted(bands, key=lambda b: b.lower, reverse=True))


def _declared_names(data: object) -> tuple[str, ...]:
    """The custom metric names in raw rule-set data, in order (those that are text)."""
    metrics = data.get("custom_metrics") if isinstance(data, dict) else None
    if not isinstance(metrics, list | tuple):
        return ()
    return tuple(m["name"] for m in metrics if isinstance(m, dict) and isinstance(m.get("name"), str))
