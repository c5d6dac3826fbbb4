"""Record schemas: the canonical columns of every record kind and the Pandera schemas that check them.

All of it is derived from the declaration in :mod:`suppliers.records`. The canonical dtypes are applied by
:mod:`suppliers.validate` (which casts each column itself, so a bad cell becomes a quarantined cell rather than
a Pandera coercion error); the schemas here then check values: required values, ranges, enumerations, formats
and cross-column rules. Every check has a readable reason and a reason code (see :func:`check_reasons`) so a
quarantined row tells the user what is wrong with it, and a script or a spreadsheet filter can count it.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from suppliers.records import CURRENCY_PATTERN, RECORDS, CrossColumnRule, Field, RecordKind

__all__ = [
    "MISSING",
    "NOT_ALLOWED",
    "OUT_OF_RANGE",
    "BAD_FORMAT",
    "CANONICAL",
    "KEYS",
    "CURRENCY_PATTERN",
    "FRAME_RULES",
    "MODELS",
    "empty_frame",
    "check_reasons",
]

# The reason codes of the checks a field's constraints give (the whole vocabulary is in suppliers.validate).
MISSING = "missing"  # required: the cell is empty
NOT_ALLOWED = "not_allowed"  # enum
OUT_OF_RANGE = "out_of_range"  # minimum, exclusive_minimum, maximum
BAD_FORMAT = "bad_format"  # pattern

# Canonical columns per record kind, in output order, with the dtype they have after validation.
CANONICAL: dict[str, dict[str, pl.DataType]] = {
    name: {f.name: f.dtype for f in kind.fields} for name, kind in RECORDS.items()
}
# Natural keys: a repeated key keeps its first row and quarantines the later ones.
KEYS: dict[str, tuple[str, ...]] = {name: kind.primary_key for name, kind in RECORDS.items() if kind.primary_key}

# Keyed by the rule's reason, which is the check's ``error`` and so what Pandera puts in ``failure_cases["check"]``.
FRAME_RULES: dict[str, CrossColumnRule] = {rule.reason: rule for kind in RECORDS.values() for rule in kind.rules}


def _column_checks(column: Field) -> list[tuple[pa.Check, str, str]]:
    """The Pandera checks of a declared field, each with the reason and the code a failing cell is quarantined
    with.

    The values are passed to Pandera as declared (a tuple for ``isin``, ints for bounds): Pandera names a
    built-in check after its arguments, e.g. ``isin(('critical', 'major', 'minor'))``.
    """
    rules = column.constraints
    name = column.name
    checks: list[tuple[pa.Check, str, str]] = []
    if rules.enum:
        checks.append((pa.Check.isin(rules.enum), f"{name} must be one of {', '.join(rules.enum)}", NOT_ALLOWED))
    if rules.maximum is not None:
        checks.append(
            (
                pa.Check.in_range(min_value=rules.minimum, max_value=rules.maximum),
                f"{name} must be between {rules.minimum} and {rules.maximum}",
                OUT_OF_RANGE,
            )
        )
    elif rules.minimum is not None:
        checks.append((pa.Check.ge(rules.minimum), f"{name} must be >= {rules.minimum}", OUT_OF_RANGE))
    if rules.exclusive_minimum is not None:
        checks.append(
            (pa.Check.gt(rules.exclusive_minimum), f"{name} must be > {rules.exclusive_minimum}", OUT_OF_RANGE)
        )
    if rules.pattern is not None:
        checks.append((pa.Check.str_matches(rules.pattern.regex), f"{name} {rules.pattern.reason}", BAD_FORMAT))
    return checks


def _frame_check(rule: CrossColumnRule) -> pa.Check:
    """A dataframe-level check that is true where ``rule.holds``; a null result passes (``ignore_na``)."""

    def holds(data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(rule.holds)

    return pa.Check(holds, error=rule.reason, ignore_na=True)


def _schema(kind: RecordKind) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            f.name: pa.Column(
                f.dtype,
                checks=[check for check, _, _ in _column_checks(f)],
                nullable=not f.constraints.required,
                description=f.description,
            )
            for f in kind.fields
        },
        checks=[_frame_check(rule) for rule in kind.rules],
        name=kind.name,
        description=kind.description,
        strict=False,  # the row-number column rides along; extra file columns are dropped before
        coerce=False,  # validation casts each column itself, so a cell that does not cast is quarantined alone
    )


# Read at validation time, so a test may put another schema in for a kind.
MODELS: dict[str, pa.DataFrameSchema] = {name: _schema(kind) for name, kind in RECORDS.items()}


def empty_frame(kind: str) -> pl.DataFrame:
    """A frame with no rows and the canonical columns and dtypes of ``kind``."""
    return pl.DataFrame(schema=CANONICAL[kind])


def check_reasons(kind: str) -> pl.DataFrame:
    """Lookup from Pandera's ``failure_cases`` (``column``, ``check``) to a readable reason and its code.

    Columns: ``column`` and ``check`` (as Pandera reports them), ``target`` (the canonical column the
    failure is reported against), ``reason`` and ``code``. Dataframe-level checks are reported by Pandera
    under the schema's name; they are mapped to the column and code of the rule in :data:`FRAME_RULES`. A
    dataframe-level check that is not a declared rule gives its own ``error`` text as the reason, no target
    and no code (validation gives a check it does not know a code of its own).
    """
    rows: list[dict[str, str | None]] = []
    for column in RECORDS[kind].fields:
        missing = "required value is missing"
        rows.append(
            {"column": column.name, "check": "not_nullable", "target": column.name, "reason": missing, "code": MISSING}
        )
        for check, reason, code in _column_checks(column):
            rows.append(
                {"column": column.name, "check": check.error, "target": column.name, "reason": reason, "code": code}
            )
    schema = MODELS[kind]
    for check in schema.checks:
        identifier = check.error or check.name
        rule = FRAME_RULES.get(identifier)
        rows.append(
            {
                "column": schema.name,
                "check": identifier,
                "target": rule.column if rule else None,
                "reason": rule.reason if rule else identifier,
                "code": rule.code if rule else None,
            }
        )
    return pl.DataFrame(rows, schema=dict.fromkeys(("column", "check", "target", "reason", "code"), pl.String))
