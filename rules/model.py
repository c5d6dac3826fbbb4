"""The rule-set model: what a rule file may say, as frozen pydantic models.

Structure checks (types, unknown keys, allowed values) are pydantic's; the cross-field checks a
procurement officer can get wrong (weights, band coverage) are the validators below.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rules.catalogue import GATE_CONDITIONS, METRICS

AslStatus = Literal["approved", "conditional", "probation", "disqualified"]
NotMeasuredPolicy = Literal["renormalise", "insufficient_data"]

# Best first: a gate's cap can only move a status rightwards.
STATUS_ORDER: tuple[str, ...] = ("approved", "conditional", "probation", "disqualified")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class EvaluationSettings(_Frozen):
    window_days: int = Field(365, ge=1, le=3660, description="Days the evaluation looks back over.")
    on_time_tolerance_days: int = Field(0, ge=0, le=60, description="Days after the promised date still on time.")


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
        if value not in METRICS:
            raise ValueError(f"unknown metric {value!r}; known metrics: {', '.join(METRICS)}")
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
    criteria: tuple[Criterion, ...] = Field(min_length=1)
    bands: tuple[Band, ...] = Field(min_length=1)
    gates: tuple[Gate, ...] = ()
    content_hash: str = Field("", description="sha256 of the rule file's bytes, set by the loader.")

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
