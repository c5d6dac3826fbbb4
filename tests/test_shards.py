"""Supplier shards: measured and scored apart, the results are a single run's, in threads or on a Dask cluster."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from conftest import SAMPLE_END
from polars.testing import assert_frame_equal

from flows.params import RunParameters
from flows.shards import combine_shards, measure_and_score, shard_of, split_into_shards
from rules.asl import with_asl_facts
from rules.loader import load_rule_set
from rules.metrics import window_start
from suppliers.runs import choose_suppliers, hands_on_receipt_lines, with_current_status
from suppliers.sources import load_sources
from suppliers.store import evaluations, status_changes
from suppliers.validate import validate_inputs

WINDOW_DAYS = 365
# A float sum or mean (price variance, units) is added up in an order that depends on how Polars splits the work,
# in shards or not: it may differ in its last bit, nothing more. Everything else must be equal.
FLOAT_TOLERANCE = {"check_exact": False, "rel_tol": 1e-12, "abs_tol": 1e-15}


@pytest.fixture(scope="module")
def validated(sample_data: Path):
    loaded = load_sources(sample_data)
    return validate_inputs(loaded.raw, as_of=SAMPLE_END, formats=loaded.formats, max_quarantine_share=1.0,
                           window=(window_start(SAMPLE_END, WINDOW_DAYS), SAMPLE_END))


@pytest.fixture(scope="module")
def selected(validated):
    chosen = choose_suppliers(validated.suppliers)
    no_history = pl.DataFrame(schema={"supplier_id": pl.String, "status": pl.String})
    return with_asl_facts(with_current_status(chosen, no_history), manual=None, previous_bands=None,
                          nonconformances=validated.nonconformances, as_of=SAMPLE_END)


def test_each_supplier_and_its_records_land_in_exactly_one_shard(validated, selected) -> None:
    shards = split_into_shards(validated, selected, 4)
    ids = [shard.selected["supplier_id"].to_list() for shard in shards]
    assert sorted(i for part in ids for i in part) == sorted(selected["supplier_id"].to_list())
    assert len(shards) == 4  # 25 suppliers in 4 shards: none empty
    for shard, own in zip(shards, ids, strict=True):
        assert set(shard.lines["supplier_id"].unique()) <= set(own)
        assert set(shard.nonconformances["supplier_id"].unique()) <= set(own)
        assert set(shard.feedback["supplier_id"].unique()) <= set(own)
        owners = shard.receipts.join(validated.purchase_order_lines, on=["po_id", "line_no"], how="left")
        assert set(owners["supplier_id"].unique()) <= set(own)  # a receipt goes with its line's supplier
    chosen_lines = validated.purchase_order_lines.join(selected.select("supplier_id"), on="supplier_id", how="semi")
    assert sum(shard.lines.height for shard in shards) == chosen_lines.height
    chosen_receipts = validated.receipts.join(chosen_lines, on=["po_id", "line_no"], how="semi")
    assert sum(shard.receipts.height for shard in shards) == chosen_receipts.height


def test_a_supplier_keeps_its_shard_whatever_else_is_selected() -> None:
    ids = pl.DataFrame({"supplier_id": ["S0001", "S0002", "S0003", "S0004"]})
    alone = ids.head(1).select(shard_of(pl.col("supplier_id"), 7))
    assert ids.select(shard_of(pl.col("supplier_id"), 7)).head(1).equals(alone)
    assert ids.select(shard_of(pl.col("supplier_id"), 1)).to_series().to_list() == [0, 0, 0, 0]


@pytest.mark.parametrize("count", [3, 30])  # 30 > 25 suppliers: some shards empty
def test_sharded_metrics_and_scores_equal_one_run(validated, selected, count: int) -> None:
    rule_set = load_rule_set()
    [whole] = [measure_and_score(shard, rule_set, as_of=SAMPLE_END, window_days=WINDOW_DAYS)
               for shard in split_into_shards(validated, selected, 1)]
    parts = [measure_and_score(shard, rule_set, as_of=SAMPLE_END, window_days=WINDOW_DAYS)
             for shard in split_into_shards(validated, selected, count)]
    combined = combine_shards(selected, parts)
    assert whole.performance.metrics.height == selected.height
    assert whole.performance.late_lines.height > 0 and whole.performance.records.height > 0
    assert_frame_equal(combined.performance.metrics, whole.performance.metrics, **FLOAT_TOLERANCE)
    assert combined.performance.late_lines.equals(whole.performance.late_lines)
    assert combined.performance.records.equals(whole.performance.records)
    assert_frame_equal(combined.scored, whole.scored, **FLOAT_TOLERANCE)
    assert combined.scored.select("supplier_id", "score", "band", "status", "gates_hit").equals(
        whole.scored.select("supplier_id", "score", "band", "status", "gates_hit"))


def _stored(workspace: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    engine = sa.create_engine(f"sqlite:///{workspace / 'store' / 'supplier-eval.db'}")
    try:
        with engine.connect() as connection:
            evaluated = pl.DataFrame(connection.execute(sa.select(
                evaluations.c.supplier_id, evaluations.c.score, evaluations.c.band, evaluations.c.status,
                evaluations.c.insufficient_reason, evaluations.c.gates_hit, evaluations.c.metrics,
                evaluations.c.criteria).order_by(evaluations.c.supplier_id)).mappings().all())
            changed = pl.DataFrame(connection.execute(sa.select(
                status_changes.c.supplier_id, status_changes.c.from_status, status_changes.c.to_status,
                status_changes.c.reason).order_by(status_changes.c.supplier_id)).mappings().all())
    finally:
        engine.dispose()
    return evaluated, changed


@pytest.mark.slow
def test_shards_on_a_local_dask_cluster_store_what_one_process_stores(workspace: Path, prefect_harness: str) -> None:
    import distributed  # the dask extra, which make test installs

    from flows.pipeline import adhoc
    from flows.runtime import fast_flow_runs
    from flows.shards import dask_task_runner

    other = workspace.parent / "dask-run"
    shutil.copytree(workspace, other)
    params = {"as_of": SAMPLE_END, "send_email": False}
    with fast_flow_runs():
        alone = adhoc(RunParameters(config_file=str(workspace / "supplier-eval.toml"), **params))
        # The workers report their task runs to the session's Prefect server (not a temporary one each).
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                      dashboard_address=None, env={"PREFECT_API_URL": prefect_harness}) as cluster:
            on_dask = adhoc.with_options(task_runner=dask_task_runner(cluster.scheduler_address))(
                RunParameters(config_file=str(other / "supplier-eval.toml"), shards=3, **params))
            assert cluster.scheduler.transition_counter > 0  # the shards ran on the cluster's workers
    assert on_dask.suppliers_evaluated == alone.suppliers_evaluated > 20
    assert on_dask.bands == alone.bands and on_dask.status_changes == alone.status_changes > 0
    evaluated, changed = _stored(workspace)
    evaluated_on_dask, changed_on_dask = _stored(other)
    assert evaluated.height == alone.suppliers_evaluated
    exact = ["supplier_id", "score", "band", "status", "insufficient_reason", "gates_hit"]
    assert evaluated_on_dask.select(exact).equals(evaluated.select(exact))
    for column in ("metrics", "criteria"):
        for mine, theirs in zip(evaluated_on_dask[column], evaluated[column], strict=True):
            assert _approx(json.loads(mine)) == json.loads(theirs)
    assert changed_on_dask.equals(changed)


def _approx(value: object) -> object:
    """``value`` with every number compared to FLOAT_TOLERANCE, everything else exactly."""
    if isinstance(value, dict):
        return {key: _approx(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_approx(item) for item in value]
    if isinstance(value, float):
        return pytest.approx(value, rel=FLOAT_TOLERANCE["rel_tol"], abs=FLOAT_TOLERANCE["abs_tol"])
    return value


@pytest.mark.parametrize(("address", "said"), [
    ("127.0.0.1:8786", "is not a Dask scheduler address"),
    ("tcp://127.0.0.1", "is not a Dask scheduler address"),
    (None, "no Dask scheduler answers at tcp://127.0.0.1:"),
])
def test_a_dask_address_that_cannot_work_is_a_usage_error(address: str | None, said: str) -> None:
    from flows.shards import dask_task_runner
    from suppliers.errors import ConfigError

    if address is None:  # a port nothing listens on any more
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(ConfigError, match=said) as raised:
        dask_task_runner(address)
    assert raised.value.exit_code == 2 and str(raised.value).startswith("--dask-address: ")


def test_validation_hands_each_receipts_line_on_only_to_a_run_measured_in_one_piece() -> None:
    assert hands_on_receipt_lines((), 1)  # every supplier (the nightly run): matched once, by validation
    assert not hands_on_receipt_lines(("S1",), 1)  # named suppliers: the metrics match their few receipts
    assert not hands_on_receipt_lines((), 4)  # shards: each matches its own
