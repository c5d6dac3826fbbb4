"""The measuring stage of a run: metrics and scores of the selected suppliers, in one go or per supplier shard on
the flow's task runner. Each task is a thin shell over one core function (see flows/pipeline.py)."""

from __future__ import annotations

from datetime import date

import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.shards import Shard, ShardResult, combine_shards, measure_and_score, split_into_shards
from rules.metrics import SupplierPerformance, measure_suppliers
from rules.model import RuleSet
from rules.scoring import score_suppliers
from suppliers.validate import ValidatedInputs


@task(name="compute metrics", cache_policy=NO_CACHE)
def compute_metrics(validated: ValidatedInputs, selected: pl.DataFrame, rule_set: RuleSet, as_of: date,
                    window_days: int) -> SupplierPerformance:
    performance = measure_suppliers(selected, validated.purchase_order_lines, validated.receipts,
                                    validated.nonconformances, validated.feedback, as_of=as_of,
                                    window_days=window_days, with_records=True, receipt_lines=validated.receipt_lines,
                                    **rule_set.evaluation.measure_options())
    get_run_logger().info("Measured %s suppliers over the %s-day window", f"{performance.metrics.height:,}",
                          window_days)
    return performance


@task(name="score", cache_policy=NO_CACHE)
def score(selected: pl.DataFrame, metrics: pl.DataFrame, rule_set: RuleSet, as_of: date) -> pl.DataFrame:
    scored = score_suppliers(selected, metrics, rule_set, as_of=as_of)
    get_run_logger().info("Scored %s suppliers", f"{scored.height:,}")
    return scored


@task(name="measure and score a shard", cache_policy=NO_CACHE)
def score_shard(shard: Shard, rule_set: RuleSet, as_of: date, window_days: int) -> ShardResult:
    return measure_and_score(shard, rule_set, as_of=as_of, window_days=window_days)


def measure_and_score_in_shards(validated: ValidatedInputs, selected: pl.DataFrame, rule_set: RuleSet, as_of: date,
                                window_days: int, shards: int) -> tuple[SupplierPerformance, pl.DataFrame]:
    """Metrics and scores of the selected suppliers: in one go, or per supplier shard on the flow's task runner
    (threads, or the workers of a Dask cluster), combined in the order one go gives."""
    if shards == 1:
        performance = compute_metrics(validated, selected, rule_set, as_of, window_days)
        return performance, score(selected, performance.metrics, rule_set, as_of)
    parts = split_into_shards(validated, selected, shards)
    futures = [score_shard.submit(part, rule_set, as_of, window_days) for part in parts]
    combined = combine_shards(selected, [future.result() for future in futures])
    get_run_logger().info("Measured and scored %s suppliers in %s shards", f"{selected.height:,}", len(futures))
    return combined.performance, combined.scored
