"""The input record kinds, declared once: fields, constraints, keys and cross-column rules.

Everything else about an input record is derived from :data:`RECORDS`: the canonical columns and dtypes
validation casts to and the Pandera schemas that check values (:mod:`suppliers.schemas`), the reference
checks between sources (:mod:`suppliers.validate`), the files a data folder must hold (:mod:`suppliers.sources`),
the frames the sample-data generator returns (:mod:`suppliers.generate`) and the README's "Input records" table
(:func:`records_table_markdown`; ``python -m suppliers.records`` prints it).

The words follow Frictionless Table Schema where they fit: a field's ``constraints`` (``required``, ``enum``,
``minimum``, ``maximum``, ``exclusive_minimum``, ``pattern``), a kind's ``primary_key`` and ``foreign_keys``.
Cross-column rules are Polars expressions that are true for a good row. Each rule and foreign key declares the
reason code a failure is quarantined with, next to its reason (the whole vocabulary is in
:mod:`suppliers.validate`).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from types import MappingProxyType

import polars as pl

from suppliers.addresses import ADDRESS_PATTERN

__all__ = [
    "Pattern",
    "Constraints",
    "Field",
    "Reference",
    "ForeignKey",
    "CrossColumnRule",
    "RecordKind",
    "RECORDS",
    "RECORD_KINDS",
    "REQUIRED_KINDS",
    "CURRENCY_PATTERN",
    "records_table_markdown",
]

_Number = int | float
CURRENCY_PATTERN = r"^[A-Z]{3}$"

# Float sums: 0.1 + 0.2 must equal 0.3.
_QUANTITY_TOLERANCE = 1e-9
# A reason code is a short snake_case word a spreadsheet filter or a script can match.
_CODE = re.compile(r"[a-z][a-z0-9_]*")


def _check_code(code: str, what: str) -> None:
    if not _CODE.fullmatch(code):
        raise ValueError(f"{what}: reason code {code!r} must be snake_case (a-z, 0-9, _)")


@dataclass(frozen=True)
class Pattern:
    """A regular expression a text value must match, and what to tell the user when it does not.

    ``reason`` follows the column name: ``contact_email`` + ``"is not a valid email address"``. Write the regex
    for Polars (Rust regex) and anchor it at both ends: Pandera's ``str_matches`` only adds a leading ``^``.
    """

    regex: str
    reason: str


@dataclass(frozen=True)
class Constraints:
    """What a field's values must satisfy; a null value is judged only by ``required``.

    ``required=False`` makes the field optional: a cell may be empty, and the column may be left out of the
    file altogether (validation then reads it as empty in every row). ``column_required=True`` keeps the
    column mandatory where a missing column would say something false: an empty ``closed_date`` means open.

    Bounds: ``minimum`` alone means ``>=``, ``exclusive_minimum`` alone means ``>``, and ``minimum`` with
    ``maximum`` is a closed range. Those are the forms validation has reasons for, so no other is accepted.
    """

    required: bool = True
    column_required: bool | None = None  # None: the column may be absent exactly when a value is not required
    together_with: tuple[str, ...] = ()  # optional columns it comes with: a file has all of them or none
    enum: tuple[str, ...] = ()
    minimum: _Number | None = None
    exclusive_minimum: _Number | None = None
    maximum: _Number | None = None
    pattern: Pattern | None = None

    @property
    def column_optional(self) -> bool:
        """Whether the column may be left out of the file (it is then read as empty)."""
        return not (self.required if self.column_required is None else self.column_required)

    def __post_init__(self) -> None:
        if self.required and self.column_required is False:
            raise ValueError("a column that may be left out cannot require a value")
        if self.together_with and not self.column_optional:
            raise ValueError("only a column that may be left out comes together with others")
        if self.minimum is not None and self.exclusive_minimum is not None:
            raise ValueError("give minimum or exclusive_minimum, not both")
        if self.maximum is not None and self.minimum is None:
            raise ValueError("maximum is only supported together with minimum (a closed range)")
        if self.maximum is not None and self.minimum is not None and self.maximum < self.minimum:
            raise ValueError(f"empty range: minimum {self.minimum} is above maximum {self.maximum}")
        if len(set(self.enum)) != len(self.enum):
            raise ValueError(f"enum repeats a value: {self.enum}")


@dataclass(frozen=True)
class Field:
    """One column of a record kind: its name, the Polars dtype it has after validation, what it holds."""

    name: str
    dtype: pl.DataType
    description: str
    constraints: Constraints = Constraints()
    # False: no step of an evaluation reads the field (not the metrics, the scoring, a report or the store): a
    # run and ``supplier-eval validate`` leave its column unread, and a mapping may map it to no effect.
    read_by_runs: bool = True

    def __post_init__(self) -> None:
        numeric_bounds = (self.constraints.minimum, self.constraints.exclusive_minimum, self.constraints.maximum)
        if any(bound is not None for bound in numeric_bounds) and not self.dtype.is_numeric():
            raise ValueError(f"{self.name}: bounds need a numeric dtype, not {self.dtype}")
        if (self.constraints.enum or self.constraints.pattern) and self.dtype != pl.String:
            raise ValueError(f"{self.name}: enum and pattern need a String dtype, not {self.dtype}")


@dataclass(frozen=True)
class Reference:
    """The record kind and its fields that a foreign key points at."""

    resource: str
    fields: tuple[str, ...]


@dataclass(frozen=True)
class ForeignKey:
    """Fields whose values must be a good row of another record kind.

    ``unknown`` and ``quarantined`` are the reasons for a row whose key is not in the other file at all, or is
    there but was quarantined. They are ``str.format`` templates over the key ``fields`` by name and
    ``{source}``, the other file's name. ``unknown_code`` is the reason code of ``unknown``; a quarantined
    reference has the code ``reference_quarantined`` whatever the key.

    ``rules`` are cross-column rules over a row joined to the good row it refers to: a name the row's own kind
    declares is the row's column, any other is the referenced row's (``order_date`` of a receipt's order line).
    They are judged only for a row whose reference is good, and a failure is reported against ``column``, one
    of the row's own. A key with rules must refer to the referenced kind's primary key, so that a row joins one
    row at most.
    """

    fields: tuple[str, ...]
    reference: Reference
    unknown: str
    quarantined: str
    unknown_code: str
    rules: tuple[CrossColumnRule, ...] = ()

    def __post_init__(self) -> None:
        if len(self.fields) != len(self.reference.fields):
            raise ValueError(f"foreign key {self.fields} and its reference {self.reference.fields} differ in length")
        _check_code(self.unknown_code, f"foreign key {self.fields}")
        for template in (self.unknown, self.quarantined):
            named = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
            if not named <= {*self.fields, "source"}:
                raise ValueError(f"template {template!r} names {sorted(named - {*self.fields, 'source'})}")


@dataclass(frozen=True, eq=False)  # eq=False: a Polars expression compares into an expression, not a bool
class CrossColumnRule:
    """A rule over several columns of one row, and how a failure is reported.

    ``holds`` is true for a good row. Where it is null (a value it needs is missing) the row is not judged by
    this rule: a missing required value has its own reason. A failure is reported against ``column`` with
    the values of ``value_columns`` shown, as written in the file, and with the reason code ``code``.
    """

    reason: str
    code: str
    column: str
    value_columns: tuple[str, ...]
    holds: pl.Expr

    def __post_init__(self) -> None:
        _check_code(self.code, f"rule {self.reason!r}")

    @property
    def names(self) -> set[str]:
        """Every column the rule reads or reports."""
        return {self.column, *self.value_columns, *self.holds.meta.root_names()}


@dataclass(frozen=True)
class RecordKind:
    """One kind of input record: a file ``<name>.csv`` or ``<name>.parquet`` in the data folder."""

    name: str
    description: str  # what one row is
    required: bool  # False: the file may be absent, and the kind is then empty
    fields: tuple[Field, ...]
    primary_key: tuple[str, ...] = ()  # a repeated key keeps its first row; later ones are quarantined
    foreign_keys: tuple[ForeignKey, ...] = ()
    rules: tuple[CrossColumnRule, ...] = ()
    # Dates of events that have happened when the record is exported (a receipt, an order placed): a value after
    # the run's date is in the future, an error. Not a promised date or a certificate's expiry.
    past_dates: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = self.columns
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: a field name is repeated")
        used = [
            *self.primary_key,
            *(name for key in self.foreign_keys for name in key.fields),
            *(rule.column for key in self.foreign_keys for rule in key.rules),  # a row's own column
            *(name for rule in self.rules for name in rule.names),
            *self.past_dates,
            *(name for f in self.fields for name in f.constraints.together_with),
        ]
        unknown = sorted(set(used) - set(names))
        if unknown:
            raise ValueError(f"{self.name}: keys or rules name fields it does not declare: {', '.join(unknown)}")
        not_dates = [name for name in self.past_dates if self.field(name).dtype != pl.Date]
        if not_dates:
            raise ValueError(f"{self.name}: past_dates must be Date fields, not {', '.join(not_dates)}")

    @property
    def columns(self) -> tuple[str, ...]:
        """The field names, in file order."""
        return tuple(f.name for f in self.fields)

    @property
    def schema(self) -> pl.Schema:
        """The Polars schema of a validated frame of this kind."""
        return pl.Schema({f.name: f.dtype for f in self.fields})

    @property
    def fields_read_by_runs(self) -> tuple[str, ...]:
        """The names of the fields an evaluation reads (see :attr:`Field.read_by_runs`), in declared order."""
        return tuple(f.name for f in self.fields if f.read_by_runs)

    def key_to(self, resource: str) -> ForeignKey:
        """This kind's foreign key to the record kind ``resource``; StopIteration if it has none."""
        return next(key for key in self.foreign_keys if key.reference.resource == resource)

    def field(self, name: str) -> Field:
        """The field called ``name``; KeyError if there is none."""
        for candidate in self.fields:
            if candidate.name == name:
                return candidate
        raise KeyError(f"{self.name} has no field {name!r}")


_SUPPLIER_ID_FOREIGN_KEY = ForeignKey(
    fields=("supplier_id",),
    reference=Reference("suppliers", ("supplier_id",)),
    unknown="unknown supplier_id '{supplier_id}' (not in {source})",
    quarantined="supplier_id '{supplier_id}' is quarantined in {source}",
    unknown_code="unknown_supplier",
)
_EMAIL = Pattern(ADDRESS_PATTERN, "is not a valid email address")

_KINDS = (
    RecordKind(
        name="suppliers",
        description="a supplier",
        required=True,
        fields=(
            Field("supplier_id", pl.String(), "the supplier's identifier in the purchasing system"),
            Field("name", pl.String(), "the supplier's name, as reports show it"),
            Field("category", pl.String(), "what the supplier provides, e.g. machined parts"),
            Field(
                "criticality",
                pl.String(),
                "how much the supplier's goods matter to the product",
                Constraints(enum=("critical", "major", "minor")),
            ),
            Field(
                "contact_email",
                pl.String(),
                "the supplier's quality contact",
                Constraints(required=False, pattern=_EMAIL),
            ),
            Field(
                "owner_email",
                pl.String(),
                "the buyer responsible for the supplier, who gets its report; empty: no report is mailed",
                Constraints(required=False, pattern=_EMAIL),
            ),
            Field(
                "status",
                pl.String(),
                "the approval status in the purchasing system, used until an evaluation records one",
                Constraints(enum=("pending", "approved", "conditional", "probation", "disqualified")),
            ),
            Field(
                "certificate_expiry",
                pl.Date(),
                "when the supplier's quality certificate expires; empty if it has none",
                Constraints(required=False),
            ),
            Field("active", pl.Boolean(), "whether the supplier is still used; only active ones are evaluated"),
        ),
        primary_key=("supplier_id",),
    ),
    RecordKind(
        name="purchase_order_lines",
        description="a line of a purchase order",
        required=True,
        fields=(
            Field("po_id", pl.String(), "the purchase order"),
            Field("line_no", pl.Int64(), "the line's number within its order", Constraints(minimum=1)),
            Field("supplier_id", pl.String(), "the supplier the order went to"),
            Field("item_id", pl.String(), "the item ordered", Constraints(required=False)),
            Field("category", pl.String(), "the purchasing category of the item", Constraints(required=False),
                  read_by_runs=False),  # profiles and reports use the supplier's category
            Field("order_date", pl.Date(), "when the order was placed", Constraints(required=False)),
            Field("promised_date", pl.Date(), "when the supplier promised delivery"),
            Field("quantity_ordered", pl.Float64(), "units ordered", Constraints(exclusive_minimum=0)),
            Field(
                "unit_price", pl.Float64(), "price of one unit, in currency", Constraints(required=False, minimum=0)
            ),
            Field(
                "currency",
                pl.String(),
                "ISO 4217 code of the price's currency",
                Constraints(
                    required=False,
                    pattern=Pattern(CURRENCY_PATTERN, "must be a 3-letter upper-case currency code (e.g. EUR)"),
                ),
            ),
        ),
        primary_key=("po_id", "line_no"),
        foreign_keys=(_SUPPLIER_ID_FOREIGN_KEY,),
        rules=(
            CrossColumnRule(
                reason="promised_date is before order_date",
                code="promised_before_ordered",
                column="promised_date",
                value_columns=("promised_date", "order_date"),
                holds=pl.col("promised_date") >= pl.col("order_date"),
            ),
        ),
        past_dates=("order_date",),
    ),
    RecordKind(
        name="receipts",
        description="a delivery received against an order line (several per line allowed)",
        required=True,
        fields=(
            Field("receipt_id", pl.String(), "the goods receipt"),
            Field("po_id", pl.String(), "the purchase order delivered against"),
            Field("line_no", pl.Int64(), "the order line delivered against", Constraints(minimum=1)),
            Field("received_date", pl.Date(), "when the goods arrived"),
            Field("quantity_received", pl.Float64(), "units delivered", Constraints(exclusive_minimum=0)),
            Field(
                "quantity_accepted",
                pl.Float64(),
                "units that passed inspection; empty with quantity_rejected when the receipt was not inspected",
                Constraints(required=False, minimum=0, together_with=("quantity_rejected",)),
            ),
            Field(
                "quantity_rejected",
                pl.Float64(),
                "units rejected at inspection; empty with quantity_accepted when the receipt was not inspected",
                Constraints(required=False, minimum=0, together_with=("quantity_accepted",)),
            ),
        ),
        primary_key=("receipt_id",),
        foreign_keys=(
            ForeignKey(
                fields=("po_id", "line_no"),
                reference=Reference("purchase_order_lines", ("po_id", "line_no")),
                unknown="unknown purchase order line: po_id '{po_id}' line_no {line_no} (not in {source})",
                quarantined="purchase order line po_id '{po_id}' line_no {line_no} is quarantined in {source}",
                unknown_code="unknown_line",
                rules=(
                    CrossColumnRule(
                        reason="received_date is before the order line's order_date",
                        code="received_before_ordered",
                        column="received_date",
                        value_columns=("received_date", "order_date"),
                        holds=pl.col("received_date") >= pl.col("order_date"),  # order_date empty: not judged
                    ),
                ),
            ),
        ),
        rules=(
            CrossColumnRule(
                reason="quantity_accepted and quantity_rejected must be given together (or both left empty)",
                code="half_inspected",
                column="quantity_accepted",
                value_columns=("quantity_accepted", "quantity_rejected"),
                holds=pl.col("quantity_accepted").is_null() == pl.col("quantity_rejected").is_null(),
            ),
            CrossColumnRule(
                # Judged only when both are given: an empty pair is a receipt not inspected (yet).
                reason="quantity_accepted + quantity_rejected differs from quantity_received",
                code="quantities_do_not_add_up",
                column="quantity_accepted",
                value_columns=("quantity_accepted", "quantity_rejected", "quantity_received"),
                holds=(pl.col("quantity_accepted") + pl.col("quantity_rejected") - pl.col("quantity_received")).abs()
                <= _QUANTITY_TOLERANCE * pl.max_horizontal(pl.col("quantity_received").abs(), pl.lit(1.0)),
            ),
        ),
        past_dates=("received_date",),
    ),
    RecordKind(
        name="nonconformances",
        description="a nonconformance report (NCR) raised against a supplier; open while closed_date is empty",
        required=False,
        fields=(
            Field("ncr_id", pl.String(), "the nonconformance report"),
            Field("supplier_id", pl.String(), "the supplier it was raised against"),
            Field("raised_date", pl.Date(), "when it was raised"),
            Field(
                "severity",
                pl.String(),
                "how serious the nonconformance is",
                Constraints(enum=("critical", "major", "minor")),
            ),
            Field(
                "closed_date",
                pl.Date(),
                "when it was closed; empty while open",
                Constraints(required=False, column_required=True),
            ),
        ),
        primary_key=("ncr_id",),
        foreign_keys=(_SUPPLIER_ID_FOREIGN_KEY,),
        rules=(
            CrossColumnRule(
                reason="closed_date is before raised_date",
                code="closed_before_raised",
                column="closed_date",
                value_columns=("closed_date", "raised_date"),
                holds=pl.col("closed_date") >= pl.col("raised_date"),  # null while open: not judged
            ),
        ),
        past_dates=("raised_date", "closed_date"),
    ),
    RecordKind(
        name="feedback",
        description="a satisfaction score for a supplier from the people who use its goods",
        required=False,
        fields=(
            Field("supplier_id", pl.String(), "the supplier scored"),
            Field("date", pl.Date(), "when the score was given"),
            Field("score", pl.Int64(), "1 (poor) to 5 (excellent)", Constraints(minimum=1, maximum=5)),
        ),
        foreign_keys=(_SUPPLIER_ID_FOREIGN_KEY,),
        past_dates=("date",),
    ),
)


def _check_references(kinds: tuple[RecordKind, ...]) -> None:
    """A foreign key must point at the declared key fields of a required kind declared before it.

    Before: references are checked in declaration order, so a referenced kind's rows are final (its own
    references checked) when another kind is checked against them. Required: an absent file would make every
    reference to it unknown.
    """
    seen: dict[str, RecordKind] = {}
    for kind in kinds:
        for key in kind.foreign_keys:
            target = seen.get(key.reference.resource)
            if target is None or not target.required:
                raise ValueError(
                    f"{kind.name}: foreign key {key.fields} must refer to a required kind declared before it"
                )
            missing = sorted(set(key.reference.fields) - set(target.columns))
            if missing:
                raise ValueError(f"{kind.name}: {target.name} has no field {', '.join(missing)}")
            if not key.rules:
                continue
            if set(key.reference.fields) != set(target.primary_key):
                raise ValueError(
                    f"{kind.name}: foreign key {key.fields} has rules, so it must refer to the primary key of "
                    f"{target.name} {target.primary_key} (a row must join one row at most)"
                )
            unknown = sorted({name for rule in key.rules for name in rule.names} - {*kind.columns, *target.columns})
            if unknown:
                raise ValueError(
                    f"{kind.name}: rules of foreign key {key.fields} name fields neither it nor {target.name} "
                    f"declares: {', '.join(unknown)}"
                )
        seen[kind.name] = kind


_check_references(_KINDS)

#: Every input record kind by name, in the order sources are read and checked.
RECORDS: MappingProxyType[str, RecordKind] = MappingProxyType({kind.name: kind for kind in _KINDS})
RECORD_KINDS: tuple[str, ...] = tuple(RECORDS)
REQUIRED_KINDS: tuple[str, ...] = tuple(name for name, kind in RECORDS.items() if kind.required)


# --- the README table


def _bound_text(constraints: Constraints) -> str | None:
    if constraints.maximum is not None:
        return f"{constraints.minimum}-{constraints.maximum}"
    if constraints.minimum is not None:
        return f"≥ {constraints.minimum}"
    if constraints.exclusive_minimum is not None:
        return f"> {constraints.exclusive_minimum}"
    return None


def _column_text(column: Field) -> str:
    """``criticality (critical/major/minor)``, ``score (1-5)``, ``item_id (optional)``, ``closed_date (may be empty)``.

    *optional*: the value may be empty and the column may be left out; *may be empty*: the column must be there.
    """
    notes = []
    if column.constraints.enum:
        notes.append("/".join(column.constraints.enum))
    bound = _bound_text(column.constraints)
    if bound:
        notes.append(bound)
    if not column.constraints.required:
        notes.append("optional" if column.constraints.column_optional else "may be empty")
    if column.constraints.together_with:
        notes.append(f"with {', '.join(column.constraints.together_with)}")
    if not column.read_by_runs:
        notes.append("not read by an evaluation")
    return f"{column.name} ({', '.join(notes)})" if notes else column.name


def records_table_markdown() -> str:
    """The README's "Input records" table: one row per record kind, its keys and its columns."""
    lines = ["| file | one row is | key | refers to | columns |", "| --- | --- | --- | --- | --- |"]
    for kind in RECORDS.values():
        file = f"`{kind.name}`" + ("" if kind.required else " (optional)")
        key = ", ".join(kind.primary_key) or "—"
        refers_to = "; ".join(
            f"`{ref.reference.resource}` by {', '.join(ref.fields)}" for ref in kind.foreign_keys
        ) or "—"
        columns = ", ".join(_column_text(column) for column in kind.fields)
        lines.append(f"| {file} | {kind.description} | {key} | {refers_to} | {columns} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(records_table_markdown(), end="")
