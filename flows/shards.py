"""Supplier shards: metrics and scoring run per shard, on threads or on an existing Dask cluster.

A supplier's metrics and scores depend on its own records only (every metric in ``rules.metrics`` is grouped by
supplier, the 90th-percentile lead time and the price history included; scoring is per row). So the selected
suppliers are split by a hash of their id into ``count`` shards, each with the order lines of its suppliers, the
receipts of those lines, their nonconformances and feedback, and each shard is measured and scored on its own.
What compares suppliers or numbers things across them (decisions: status changes, proposals, action numbers)
runs once, after the shards, on the combined results, which are in the order a single run gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl

from rules.metrics import RECEIPT_KEYS, SupplierPerformance, measure_suppliers
from rules.model import RuleSet
from rules.scoring import score_suppliers
from suppliers.validate import ValidatedInputs

SHARD = "__shard"


@dataclass(frozen=True)
class Shard:
    """The selected suppliers of one shard and every record their metrics read."""

    selected: pl.DataFrame
    lines: pl.DataFrame
    receipts: pl.DataFrame
    nonconformances: pl.DataFrame
    feedback: pl.DataFrame


@dataclass(frozen=True)
class ShardResult:
    performance: SupplierPerformance
    scored: pl.DataFrame


def shard_of(supplier_id: pl.Expr, count: int) -> pl.Expr:
    """The shard of each supplier id: a hash of the id modulo ``count`` (stable within a Polars version)."""
    return (supplier_id.hash(seed=0) % count).cast(pl.Int64)


def split_into_shards(validated: ValidatedInputs, selected: pl.DataFrame, count: int) -> list[Shard]:
    """The selected suppliers in ``count`` shards (empty shards left out), each with its suppliers' records.

    A receipt belongs to the shard of its order line's supplier; validation has quarantined any receipt whose
    line is unknown.
    """
    chosen = selected.select("supplier_id", shard_of(pl.col("supplier_id"), count).alias(SHARD))

    def partition(frame: pl.DataFrame, owners: pl.DataFrame, on: list[str]) -> dict[int, pl.DataFrame]:
        tagged = frame.join(owners, on=on, how="inner", maintain_order="left")
        return {key[0]: part.drop(SHARD) for key, part in tagged.partition_by(SHARD, as_dict=True).items()}

    suppliers = partition(selected, chosen, ["supplier_id"])
    lines = partition(validated.purchase_order_lines, chosen, ["supplier_id"])
    line_owners = validated.purchase_order_lines.select(*RECEIPT_KEYS, "supplier_id").join(
        chosen, on="supplier_id", how="inner").drop("supplier_id")
    receipts = partition(validated.receipts, line_owners, list(RECEIPT_KEYS))
    nonconformances = partition(validated.nonconformances, chosen, ["supplier_id"])
    feedback = partition(validated.feedback, chosen, ["supplier_id"])
    return [
        Shard(selected=suppliers[key],
              lines=lines.get(key, validated.purchase_order_lines.clear()),
              receipts=receipts.get(key, validated.receipts.clear()),
              nonconformances=nonconformances.get(key, validated.nonconformances.clear()),
              feedback=feedback.get(key, validated.feedback.clear()))
        for key in sorted(suppliers)
    ]


def measure_and_score(shard: Shard, rule_set: RuleSet, *, as_of: date, window_days: int,
                      with_records: bool = True) -> ShardResult:
    """Metrics (with the records behind them) and scores of one shard's suppliers."""
    performance = measure_suppliers(shard.selected, shard.lines, shard.receipts, shard.nonconformances,
                                    shard.feedback, as_of=as_of, window_days=window_days, with_records=with_records,
                                    **rule_set.evaluation.measure_options())
    return ShardResult(performance=performance,
                       scored=score_suppliers(shard.selected, performance.metrics, rule_set, as_of=as_of))


def combine_shards(selected: pl.DataFrame, results: list[ShardResult]) -> ShardResult:
    """The shards' results as one run's: metrics and scores in the order of ``selected``, the lines and records
    by supplier (each shard's are sorted within a supplier already, and a supplier is in one shard only)."""
    order = selected.select("supplier_id")

    def in_selected_order(frames: list[pl.DataFrame]) -> pl.DataFrame:
        return order.join(pl.concat(frames), on="supplier_id", how="inner", maintain_order="left")

    def by_supplier(frames: list[pl.DataFrame]) -> pl.DataFrame:
        return pl.concat(frames).sort("supplier_id", maintain_order=True)

    performance = SupplierPerformance(
        metrics=in_selected_order([r.performance.metrics for r in results]),
        late_lines=by_supplier([r.performance.late_lines for r in results]),
        records=by_supplier([r.performance.records for r in results]),
    )
    return ShardResult(performance=performance, scored=in_selected_order([r.scored for r in results]))


def dask_task_runner(address: str) -> Any:
    """Prefect's Dask task runner on the existing cluster at ``address`` (the ``dask`` extra), once the scheduler
    answers: an unreachable one is a usage error, said before any flow starts."""
    import socket
    from urllib.parse import urlsplit

    from suppliers.errors import ConfigError

    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as missing:
        raise ConfigError("the Dask task runner needs the dask extra", where="--task-runner dask",
                          fix="Install it: pip install 'supplier-eval[dask]'") from missing
    parts = urlsplit(address)
    try:
        if parts.scheme != "tcp" or not parts.hostname or parts.port is None:
            raise ValueError
        socket.create_connection((parts.hostname, parts.port), timeout=5).close()
    except ValueError:
        raise ConfigError(f"{address!r} is not a Dask scheduler address", where="--dask-address",
                          fix="Give it as tcp://HOST:PORT (the scheduler's port, 8786 by default)") from None
    except OSError as unreachable:
        raise ConfigError(f"no Dask scheduler answers at {address} ({unreachable.strerror or unreachable})",
                          where="--dask-address", fix="Start the cluster or check the address") from None
    return DaskTaskRunner(address=address)
