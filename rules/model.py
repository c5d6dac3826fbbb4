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
    "proposed_status", "verdict_note", "outcome", "status_note", "next_due", "status_as_of", "official_as_of",
    "manual_status", "manual_by", "manual_reason", "manual_until", "active", "previous_criteria", "change_causes",
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
    minimum_evidence: int | None = Field(
        None, ge=0, description="The metric's evidence count (late lines for mean days late, inspected lines for "
        "OTIF, ...) below which this criterion is not measured: no points, as when its metric has no value.",
    )

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
    """A hard requirement: when its condition holds, it caps the status (``cap_status``: at best that status) or
    sets it (``force_status``), whatever the score.

    Conditions and their parameters: ``certificate_expired`` (``within_days``: also when the certificate expires
    within that many days after the as-of date); ``open_critical_nonconformance`` (``older_than_days``: only an
    open critical nonconformance raised more than that many days before the as-of date); ``repeated_low_score``
    (``bands``, ``consecutive``: this evaluation's band and the previous official ones, that many in a row, are
    all among ``bands``).
    """

    name: str = Field(min_length=1)
    when: str
    cap_status: AslStatus | None = None
    force_status: AslStatus | None = None
    within_days: int | None = Field(None, ge=0, le=3660)
    older_than_days: int | None = Field(None, ge=0, le=3660)
    bands: tuple[str, ...] | None = None
    consecutive: int | None = Field(None, ge=2, le=20)

    @field_validator("when")
    @classmethod
    def _known_condition(cls, value: str) -> str:
        if value not in GATE_CONDITIONS:
            raise ValueError(f"unknown gate condition {value!r}; known: {', '.join(GATE_CONDITIONS)}")
        return value

    @model_validator(mode="after")
    def _one_effect_and_its_parameters(self) -> Gate:
        if (self.cap_status is None) == (self.force_status is None):
            raise ValueError(f"gate {self.name!r} needs exactly one of cap_status or force_status")
        parameters = {"within_days": "certificate_expired", "older_than_days": "open_critical_nonconformance",
                      "bands": "repeated_low_score", "consecutive": "repeated_low_score"}
        for parameter, condition in parameters.items():
            if getattr(self, parameter) is not None and self.when != condition:
                raise ValueError(f"gate {self.name!r}: '{parameter}' belongs to a '{condition}' gate")
        if self.when == "repeated_low_score" and not self.bands:
            raise ValueError(f"gate {self.name!r}: a 'repeated_low_score' gate needs 'bands' (e.g. [D])")
        return self

    @property
    def effect(self) -> tuple[str, str]:
        """``("cap", status)`` or ``("force", status)``."""
        return ("force", self.force_status) if self.force_status is not None else ("cap", str(self.cap_status))

    @property
    def runs(self) -> int:
        """Evaluations in a row a ``repeated_low_score`` gate looks at, this one included (default 2)."""
        return self.consecutive or 2


Criticality = Literal["critical", "major", "minor"]


class CriterionOverride(_Frozen):
    """What a profile changes of one criterion of the rule set, named by ``name``."""

    name: str = Field(min_length=1)
    weight: float | None = Field(None, gt=0, le=100)
    scale: Scale | None = None
    minimum_evidence: int | None = Field(None, ge=0)


class ProfileMatch(_Frozen):
    """Which suppliers a profile is for: any of these criticalities and (when both are given) any of these
    categories."""

    criticality: tuple[Criticality, ...] = ()
    category: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _says_something(self) -> ProfileMatch:
        if not self.criticality and not self.category:
            raise ValueError("'when' needs 'criticality' or 'category' (leave 'when' out for the default profile)")
        return self


class Profile(_Frozen):
    """A type and extent of control (clause 8.4.2): the suppliers it is for, how often they are re-evaluated,
    and optionally their own criteria weights, scales and minimum evidence."""

    name: str = Field(min_length=1)
    when: ProfileMatch | None = Field(None, description="Which suppliers; none: every supplier no profile above "
                                                        "matches (the default, last).")
    reevaluate_every_days: int = Field(ge=1, le=3660, description="Days from an evaluation to the next one due.")
    minimum_evidence: MinimumEvidence | None = None
    criteria: tuple[CriterionOverride, ...] = ()


DEFAULT_PROFILE = Profile(name="standard", reevaluate_every_days=365)


class Transitions(_Frozen):
    """What it takes to move a supplier on the ASL.

    ``disqualify_after_consecutive``: a band that disqualifies moves the supplier to ``disqualified`` only when
    this many official evaluations in a row (this one included) fell in a disqualifying band; before that it
    goes to ``probation``. ``needs_approval``: leaving these statuses needs a person's approval;
    ``needs_approval_to_enter``: so does entering these. Such a change is recorded as proposed, not applied.
    """

    disqualify_after_consecutive: int = Field(1, ge=1, le=20)
    needs_approval: tuple[AslStatus, ...] = ()
    needs_approval_to_enter: tuple[AslStatus, ...] = ()


class CorrectiveActions(_Frozen):
    """The follow-up records a status change raises: a corrective action request (SCAR) on entering probation,
    a recommendation to block new orders on entering disqualified."""

    scar_due_days: int = Field(30, ge=1, le=3660, description="Days from the change to the SCAR's due date.")


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
    profiles: tuple[Profile, ...] = Field(
        (DEFAULT_PROFILE,), min_length=1,
        description="Types and extents of control (8.4.2), first match wins; the last, without 'when', is the "
        "default. Without any: one profile, 'standard', re-evaluated every 365 days.",
    )
    status_actions: dict[AslStatus, str] = Field(
        default_factory=dict, description="What each ASL status means for the officer; the action a report "
        "shows is the one of the status the supplier ends up with (a band's own 'action' when none is given).",
    )
    transitions: Transitions = Transitions()
    corrective_actions: CorrectiveActions = CorrectiveActions()
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

    @model_validator(mode="after")
    def _profiles_and_gates_fit_the_rules(self) -> RuleSet:
        names = [p.name for p in self.profiles]
        if len(set(names)) != len(names):
            raise ValueError("profile names must be unique")
        *matched, default = self.profiles
        if default.when is not None:
            raise ValueError(f"the last profile ({default.name}) is the default: leave out its 'when', so every "
                             "supplier has a profile")
        for profile in matched:
            if profile.when is None:
                raise ValueError(f"profile {profile.name}: only the last profile may leave out 'when' (the default)")
        criteria = {c.name for c in self.criteria}
        for profile in self.profiles:
            overridden = [o.name for o in profile.criteria]
            unknown = [name for name in overridden if name not in criteria]
            if unknown:
                raise ValueError(f"profile {profile.name}: no criterion named {unknown[0]!r}; criteria: "
                                 f"{', '.join(c.name for c in self.criteria)}")
            if len(set(overridden)) != len(overridden):
                raise ValueError(f"profile {profile.name}: a criterion is named twice")
            total = sum(c.weight for c in self.criteria_for(profile))
            if abs(total - 100) > 1e-9:
                raise ValueError(f"profile {profile.name}: criterion weights add up to {total:g}, not 100")
        bands = {b.band for b in self.bands}
        for gate in self.gates:
            unknown_bands = [band for band in gate.bands or () if band not in bands]
            if unknown_bands:
                raise ValueError(f"gate {gate.name!r}: no band {unknown_bands[0]!r}; bands: "
                                 f"{', '.join(b.band for b in self.bands)}")
        return self

    def criteria_for(self, profile: Profile) -> tuple[Criterion, ...]:
        """The criteria as a profile scores them: the rule set's, with the profile's overrides by name."""
        overrides = {o.name: o for o in profile.criteria}
        criteria = []
        for criterion in self.criteria:
            override = overrides.get(criterion.name)
            changes = {key: getattr(override, key) for key in ("weight", "scale", "minimum_evidence")
                       if override is not None and getattr(override, key) is not None}
            criteria.append(criterion.model_copy(update=changes) if changes else criterion)
        return tuple(criteria)

    def minimum_evidence_for(self, profile: Profile) -> MinimumEvidence:
        return profile.minimum_evidence or self.minimum_evidence

    def action_for(self, status: str) -> str:
        """The action of an ASL status: ``status_actions``, else the action of the first band with that status."""
        if status in self.status_actions:
            return self.status_actions[status]  # type: ignore[index]
        return next((band.action for band in self.bands if band.status == status and band.action), "")


def _declared_names(data: object) -> tuple[str, ...]:
    """The custom metric names in raw rule-set data, in order (those that are text)."""
    metrics = data.get("custom_metrics") if isinstance(data, dict) else None
    if not isinstance(metrics, list | tuple):
        return ()
    return tuple(m["name"] for m in metrics if isinstance(m, dict) and isinstance(m.get("name"), str))
