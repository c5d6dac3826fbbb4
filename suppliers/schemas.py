"""Record schemas: the canonical columns of every record kind and the Pandera models that check them.

The canonical dtypes are applied by :mod:`suppliers.validate` (which casts each column itself, so a bad cell
becomes a quarantined cell rather than a Pandera coercion error); the models here then check values:
required values, ranges, enumerations, formats and cross-column rules. Every check has a readable reason
(see :func:`check_reasons`) so a quarantined row tells the user what is wrong with it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pandera.polars as pa
import polars as pl
from pandera.api.checks import Check

from suppliers.addresses import ADDRESS_PATTERN

__all__ = [
    "CANONICAL",
    "NULLABLE",
    "KEYS",
    "CRITICALITIES",
    "STATUSES",
    "SEVERITIES",
    "CURRENCY_PATTERN",
    "FrameRule",
    "FRAME_RULES",
    "MODELS",
    "SupplierRecord",
    "PurchaseOrderLineRecord",
    "ReceiptRecord",
    "NonconformanceRecord",
    "FeedbackRecord",
    "empty_frame",
    "check_reasons",
]

CRITICALITIES = ("critical", "major", "minor")
STATUSES = ("pending", "approved", "conditional", "probation", "disqualified")
SEVERITIES = ("critical", "major", "minor")
CURRENCY_PATTERN = r"^[A-Z]{3}$"

# Canonical columns per record kind, in output order, with the dtype they have after validation.
CANONICAL: dict[str, dict[str, pl.DataType]] = {
    "suppliers": {
        "supplier_id": pl.String(),
        "name": pl.String(),
        "category": pl.String(),
        "criticality": pl.String(),
        "contact_email": pl.String(),
        "owner_email": pl.String(),
        "status": pl.String(),
        "certificate_expiry": pl.Date(),
        "active": pl.Boolean(),
    },
    "purchase_order_lines": {
        "po_id": pl.String(),
        "line_no": pl.Int64(),
        "supplier_id": pl.String(),
        "item_id": pl.String(),
        "category": pl.String(),
        "order_date": pl.Date(),
        "promised_date": pl.Date(),
        "quantity_ordered": pl.Float64(),
        "unit_price": pl.Float64(),
        "currency": pl.String(),
    },
    "receipts": {
        "receipt_id": pl.String(),
        "po_id": pl.String(),
        "line_no": pl.Int64(),
        "received_date": pl.Date(),
        "quantity_received": pl.Float64(),
        "quantity_accepted": pl.Float64(),
        "quantity_rejected": pl.Float64(),
    },
    "nonconformances": {
        "ncr_id": pl.String(),
        "supplier_id": pl.String(),
        "raised_date": pl.Date(),
        "severity": pl.String(),
        "closed_date": pl.Date(),
    },
    "feedback": {
        "supplier_id": pl.String(),
        "date": pl.Date(),
        "score": pl.Int64(),
    },
}

# The only columns that may be empty; every other canonical column is required.
NULLABLE: dict[str, frozenset[str]] = {
    "suppliers": frozenset({"certificate_expiry"}),
    "nonconformances": frozenset({"closed_date"}),
}

# Natural keys: a repeated key keeps its first row and quarantines the later ones.
KEYS: dict[str, tuple[str, ...]] = {
    "suppliers": ("supplier_id",),
    "purchase_order_lines": ("po_id", "line_no"),
    "receipts": ("receipt_id",),
    "nonconformances": ("ncr_id",),
}


@dataclass(frozen=True)
class FrameRule:
    """How a cross-column (dataframe-level) check is reported: against which column, showing which values."""

    reason: str
    column: str
    value_columns: tuple[str, ...]


# Keyed by the check's ``error`` text, which is what Pandera puts in ``failure_cases["check"]``.
_PROMISED = FrameRule("promised_date is before order_date", "promised_date", ("promised_date", "order_date"))
_QUANTITIES = FrameRule(
    "quantity_accepted + quantity_rejected exceeds quantity_received",
    "quantity_accepted",
    ("quantity_accepted", "quantity_rejected", "quantity_received"),
)
_CLOSED = FrameRule("closed_date is before raised_date", "closed_date", ("closed_date", "raised_date"))
FRAME_RULES: dict[str, FrameRule] = {rule.reason: rule for rule in (_PROMISED, _QUANTITIES, _CLOSED)}

# Float sums: 0.1 + 0.2 must not exceed 0.3.
_QUANTITY_TOLERANCE = 1e-9


class _Record(pa.DataFrameModel):
    class Config:
        strict = False  # the row-number column rides along; extra file columns are dropped before
        coerce = False  # we cast ourselves (STACK.md gotcha 2)


class SupplierRecord(_Record):
    supplier_id: str
    name: str
    category: str
    criticality: str = pa.Field(isin=CRITICALITIES)
    # The same address rule mail uses (suppliers.addresses), so a row that passes here can be mailed.
    contact_email: str = pa.Field(str_matches=ADDRESS_PATTERN)
    owner_email: str = pa.Field(str_matches=ADDRESS_PATTERN)
    status: str = pa.Field(isin=STATUSES)
    certificate_expiry: dt.date = pa.Field(nullable=True)
    active: bool

    class Config:
        name = "suppliers"


class PurchaseOrderLineRecord(_Record):
    po_id: str
    line_no: int = pa.Field(ge=1)
    supplier_id: str
    item_id: str
    category: str
    order_date: dt.date
    promised_date: dt.date
    quantity_ordered: float = pa.Field(gt=0)
    unit_price: float = pa.Field(ge=0)
    currency: str = pa.Field(str_matches=CURRENCY_PATTERN)

    @pa.dataframe_check(error=_PROMISED.reason)
    def promised_not_before_order(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("promised_date") >= pl.col("order_date"))

    class Config:
        name = "purchase_order_lines"


class ReceiptRecord(_Record):
    receipt_id: str
    po_id: str
    line_no: int = pa.Field(ge=1)
    received_date: dt.date
    quantity_received: float = pa.Field(gt=0)
    quantity_accepted: float = pa.Field(ge=0)
    quantity_rejected: float = pa.Field(ge=0)

    @pa.dataframe_check(error=_QUANTITIES.reason)
    def accepted_plus_rejected_within_received(cls, data: pa.PolarsData) -> pl.LazyFrame:
        received = pl.col("quantity_received")
        return data.lazyframe.select(
            pl.col("quantity_accepted") + pl.col("quantity_rejected")
            <= received + _QUANTITY_TOLERANCE * pl.max_horizontal(received.abs(), pl.lit(1.0))
        )

    class Config:
        name = "receipts"


class NonconformanceRecord(_Record):
    ncr_id: str
    supplier_id: str
    raised_date: dt.date
    severity: str = pa.Field(isin=SEVERITIES)
    closed_date: dt.date = pa.Field(nullable=True)

    @pa.dataframe_check(error=_CLOSED.reason)
    def closed_not_before_raised(cls, data: pa.PolarsData) -> pl.LazyFrame:
        # An open NCR (closed_date empty) gives null here, which the check ignores (ignore_na=True).
        return data.lazyframe.select(pl.col("closed_date") >= pl.col("raised_date"))

    class Config:
        name = "nonconformances"


class FeedbackRecord(_Record):
    supplier_id: str
    date: dt.date
    score: int = pa.Field(in_range={"min_value": 1, "max_value": 5})

    class Config:
        name = "feedback"


MODELS: dict[str, type[_Record]] = {
    "suppliers": SupplierRecord,
    "purchase_order_lines": PurchaseOrderLineRecord,
    "receipts": ReceiptRecord,
    "nonconformances": NonconformanceRecord,
    "feedback": FeedbackRecord,
}


def empty_frame(kind: str) -> pl.DataFrame:
    """A frame with no rows and the canonical columns and dtypes of ``kind``."""
    return pl.DataFrame(schema=CANONICAL[kind])


def _describe(column: str, check: Check) -> str:
    """A readable reason for a built-in column check, e.g. "quantity_ordered must be > 0"."""
    stats: dict[str, Any] = check.statistics
    name = check.name
    if name == "isin":
        return f"{column} must be one of {', '.join(map(str, stats['allowed_values']))}"
    if name in ("greater_than", "greater_than_or_equal_to", "less_than", "less_than_or_equal_to"):
        op = {
            "greater_than": ">",
            "greater_than_or_equal_to": ">=",
            "less_than": "<",
            "less_than_or_equal_to": "<=",
        }[name]
        bound = stats.get("min_value", stats.get("max_value"))
        return f"{column} must be {op} {bound}"
    if name == "in_range":
        return f"{column} must be between {stats['min_value']} and {stats['max_value']}"
    if name == "str_matches":
        if stats["pattern"] == ADDRESS_PATTERN:
            return f"{column} is not a valid email address"
        if stats["pattern"] == CURRENCY_PATTERN:
            return f"{column} must be a 3-letter upper-case currency code (e.g. EUR)"
        return f"{column} does not match the pattern {stats['pattern']}"
    return f"{column} failed check {check.error or name}"  # pragma: no cover - every check used is above


def check_reasons(kind: str) -> pl.DataFrame:
    """Lookup from Pandera's ``failure_cases`` (``column``, ``check``) to a readable reason.

    Columns: ``column`` and ``check`` (as Pandera reports them), ``target`` (the canonical column the
    failure is reported against) and ``reason``. Dataframe-level checks are reported by Pandera under the
    schema's name; they are mapped to the column named in :data:`FRAME_RULES`.
    """
    schema = MODELS[kind].to_schema()
    rows: list[dict[str, str]] = []
    for column, spec in schema.columns.items():
        rows.append(
            {
                "column": column,
                "check": "not_nullable",
                "target": column,
                "reason": "required value is missing",
            }
        )
        for check in spec.checks:
            rows.append(
                {
                    "column": column,
                    "check": check.error or check.name,
                    "target": column,
                    "reason": _describe(column, check),
                }
            )
    for check in schema.checks:
        identifier = check.error or check.name
        rule = FRAME_RULES.get(identifier)
        rows.append(
            {
                "column": schema.name,
                "check": identifier,
                "target": rule.column if rule else None,
                "reason": rule.reason if rule else identifier,
            }
        )
    return pl.DataFrame(
        rows, schema={"column": pl.String, "check": pl.String, "target": pl.String, "reason": pl.String}
    )
