"""What a run is: its record, its identity (the run key), and the suppliers it evaluates."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from importlib.metadata import PackageNotFoundError, version
from typing import Protocol

import polars as pl

from suppliers.errors import ConfigError
from suppliers.records import RECORDS

CURRENT_STATUS = "current_status"  # the ASL status a supplier had before this run
EVERY_ACTIVE = "*active*"  # the selection of a run that evaluates every active supplier
EVERY_DUE = "*due*"  # the selection of a nightly run that evaluates the active suppliers due for re-evaluation
PENDING = "pending"  # the status of a supplier the ASL has not seen yet


@dataclass(frozen=True)
class RunRecord:
    """One run as the store records it."""

    run_id: str
    run_key: str
    trigger: str
    requested_by: str
    as_of: date
    window_days: int
    selection: Sequence[str]
    rule_set_name: str
    rule_set_version: str
    rule_set_hash: str
    input_fingerprint: str
    code_version: str
    changes_asl: bool = True  # False for what-if runs (another rule set or window): recorded, no ASL change

    @property
    def approver(self) -> str:
        """Who a status change made by this run is recorded as approved by."""
        return f"supplier-eval {self.trigger} run ({self.requested_by})"


class _RuleSetNamed(Protocol):
    name: str
    version: str
    content_hash: str


def new_run(*, trigger: str, requested_by: str, requested: Sequence[str], due_only: bool, as_of: date,
            window_days: int, rule_set: _RuleSetNamed, changes_asl: bool) -> RunRecord:
    """A run about to start, not yet keyed (:func:`keyed` once its inputs are read): a new id, and as its selection
    the suppliers ``requested``, else every active one (due ones only for a nightly run that evaluates those)."""
    return RunRecord(
        run_id=str(uuid.uuid4()), run_key="", trigger=trigger, requested_by=requested_by, as_of=as_of,
        window_days=window_days, selection=list(requested) or [EVERY_DUE if due_only else EVERY_ACTIVE],
        rule_set_name=rule_set.name, rule_set_version=rule_set.version, rule_set_hash=rule_set.content_hash,
        input_fingerprint="", code_version=code_version(), changes_asl=changes_asl)


def code_version() -> str:
    try:
        return version("supplier-eval")
    except PackageNotFoundError:
        return "unknown"


def compute_run_key(*, as_of: date, window_days: int, tolerance_days: int, selection: Sequence[str],
                    rule_hash: str, fingerprint: str, code: str, changes_asl: bool) -> str:
    """The identity of an evaluation: same inputs, rules, date, window, selection, code and kind → same records."""
    identity = json.dumps({"as_of": as_of.isoformat(), "window_days": window_days, "tolerance": tolerance_days,
                           "selection": list(selection), "rules": rule_hash, "inputs": fingerprint, "code": code,
                           "official": changes_asl}, sort_keys=True)
    return hashlib.sha256(identity.encode()).hexdigest()


def keyed(run: RunRecord, *, selection: Sequence[str], fingerprint: str, tolerance_days: int) -> RunRecord:
    """``run`` with its input fingerprint and its run key (:func:`compute_run_key`) for ``selection``."""
    return replace(run, input_fingerprint=fingerprint, run_key=compute_run_key(
        as_of=run.as_of, window_days=run.window_days, tolerance_days=tolerance_days, selection=selection,
        rule_hash=run.rule_set_hash, fingerprint=fingerprint, code=run.code_version, changes_asl=run.changes_asl))


def requested_suppliers(trigger: str, supplier_ids: Sequence[str]) -> tuple[str, ...]:
    """The ids a run asks for: none (every active supplier) for the nightly run, whatever it was given."""
    return () if trigger == "nightly" else tuple(supplier_ids)


def hands_on_receipt_lines(requested: Sequence[str], shards: int) -> bool:
    """Whether validation hands each receipt's order line on to the metrics (``validate_inputs(...,
    with_receipt_lines=True)``): for a run that measures every supplier in one piece. A run of named suppliers
    measures a few, whose receipts the metrics match for less than holding every receipt's pair costs, and shards
    match their own."""
    return not requested and shards == 1


def fields_a_run_reads() -> dict[str, tuple[str, ...]]:
    """Per record kind, the fields a run loads and validates: those it reads (``Field.read_by_runs``)."""
    return {name: kind.fields_read_by_runs for name, kind in RECORDS.items()}


@dataclass(frozen=True)
class RunReading:
    """How a run reads its inputs: the fields it loads, whether validation hands each receipt's order line on
    (:func:`hands_on_receipt_lines`) and the columns validation returns."""

    receipt_lines: bool

    @property
    def fields(self) -> dict[str, tuple[str, ...]]:
        return fields_a_run_reads()

    @property
    def columns(self) -> dict[str, tuple[str, ...]]:
        """Per record kind, the validated columns the run holds (``validate_inputs(..., columns=...)``): the
        fields it reads, the receipts without their order line's key when each receipt's line is handed on (the
        metrics then read the line by its position)."""
        kept = fields_a_run_reads()
        if self.receipt_lines:
            key = RECORDS["receipts"].key_to("purchase_order_lines").fields
            kept["receipts"] = tuple(name for name in kept["receipts"] if name not in key)
        return kept


def run_reading(requested: Sequence[str], shards: int) -> RunReading:
    """How a run of ``requested`` suppliers (none: every one) in ``shards`` pieces reads its inputs."""
    return RunReading(receipt_lines=hands_on_receipt_lines(requested, shards))


def choose_suppliers(suppliers: pl.DataFrame, supplier_ids: Sequence[str] = ()) -> pl.DataFrame:
    """The suppliers a run evaluates: the chosen ids, or every active supplier when none are chosen."""
    if not supplier_ids:
        return suppliers.filter(pl.col("active")).sort("supplier_id")
    unknown = sorted(set(supplier_ids) - set(suppliers["supplier_id"].to_list()))
    if unknown:
        raise ConfigError(f"unknown supplier id {', '.join(map(repr, unknown))}", where="--supplier",
                          fix="Use supplier_id values from the suppliers source.")
    return suppliers.filter(pl.col("supplier_id").is_in(list(supplier_ids))).sort("supplier_id")


def with_current_status(chosen: pl.DataFrame, current: pl.DataFrame) -> pl.DataFrame:
    """The chosen suppliers with their ASL status before this run: the store's, else ``pending`` (a supplier
    the ASL has not seen starts as pending whatever its supplier record says; its first scored evaluation sets
    its status). ``status_as_of`` is when the store's status was decided (null for a new supplier)."""
    recorded = current.select("supplier_id", recorded_status="status",
                              status_as_of=pl.col("status_as_of") if "status_as_of" in current.columns
                              else pl.lit(None, dtype=pl.Date))
    return (
        chosen.join(recorded, on="supplier_id", how="left")
        .with_columns(pl.coalesce("recorded_status", pl.lit(PENDING)).alias(CURRENT_STATUS))
        .drop("recorded_status")
    )
