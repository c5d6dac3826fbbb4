"""What-if comparison of two rule sets: each supplier's score, band and status under both, and what moved.

Nothing here writes: no store (the current ASL statuses are only read, from a store that already exists), no
reports, no mail. The pure part works on frames:

- :func:`score_under_rule_sets`: measure the suppliers once per distinct (window, on-time tolerance) and score
  them under each rule set (the same metrics serve every rule set that shares a window and tolerance);
- :func:`compare_scores`: one row per supplier with its score, band and status under A and under B, and the
  movement from A to B;
- :func:`summarise_comparison`: how many moved up, down or stayed, and the band counts under each.

:func:`compare_rule_sets` is the one function that reads: rule files, inputs (validated as a run validates
them) and the current statuses; the CLI calls it and prints what it returns.

Movement from A to B, with bands ranked in ``band_order`` (best first):

- ``up`` / ``down``: scored under both and B's band is better / worse (``band_steps`` says by how many bands);
- ``same``: the same band under both, or insufficient data under both;
- ``now scored``: insufficient data under A, scored under B; ``now insufficient``: the other way round.

A change of status (``status_changed``) is told apart from the band: a gate or a band mapped to another status
can change the status with the band unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from rules.loader import DEFAULT_RULES_NAME, load_rule_set
from rules.metrics import measure_suppliers
from rules.model import RuleSet
from rules.scoring import score_suppliers
from suppliers.errors import RuleSetError, StoreError
from suppliers.runs import (
    CURRENT_STATUS,
    RunReading,
    choose_suppliers,
    with_current_status,
)
from suppliers.validate import ValidatedInputs

__all__ = [
    "MOVEMENTS",
    "INSUFFICIENT",
    "ComparisonSummary",
    "RuleSetComparison",
    "common_band_order",
    "compare_scores",
    "summarise_comparison",
    "score_under_rule_sets",
    "recorded_statuses",
    "compare_rule_sets",
]

MOVEMENTS = ("up", "down", "same", "now scored", "now insufficient")
INSUFFICIENT = "insufficient data"  # the band count key of the suppliers with no score


@dataclass(frozen=True)
class ComparisonSummary:
    """The comparison in numbers; ``bands_a`` / ``bands_b``: suppliers per band (best first), then INSUFFICIENT."""

    suppliers: int
    up: int
    down: int
    unchanged: int
    now_scored: int
    now_insufficient: int
    status_changes: int
    bands_a: dict[str, int]
    bands_b: dict[str, int]


def common_band_order(a: RuleSet, b: RuleSet) -> tuple[str, ...]:
    """The bands of both rule sets, best first; they must name the same bands in the same order.

    A band-by-band movement means nothing between, say, A/B/C/D and Gold/Silver/Bronze: that is a RuleSetError
    (exit 2) naming both lists. The bands' limits and statuses may differ: that is what a comparison is for.
    """
    order_a, order_b = tuple(band.band for band in a.bands), tuple(band.band for band in b.bands)
    if order_a != order_b:
        raise RuleSetError(
            f"the two rule sets name different bands ({', '.join(order_a)} vs {', '.join(order_b)}, best first)",
            where="--compare-with",
            fix="A comparison moves suppliers between bands of the same names; give both files the same band names",
        )
    return order_a


def compare_scores(a: pl.DataFrame, b: pl.DataFrame, band_order: Sequence[str]) -> pl.DataFrame:
    """Each supplier scored under A and under B (frames of ``score_suppliers``), and the movement from A to B.

    Columns: supplier_id, score_a, band_a, status_a, score_b, band_b, status_b, movement (see MOVEMENTS),
    band_steps (bands moved up, negative when down; null unless scored under both), status_changed; sorted by
    supplier_id. Both frames must hold the same suppliers and only bands named in ``band_order`` (best first).
    """
    if set(a["supplier_id"].to_list()) != set(b["supplier_id"].to_list()):
        raise ValueError("the two scored frames hold different suppliers")
    ranks = {band: rank for rank, band in enumerate(band_order)}
    unknown = sorted({*a["band"].drop_nulls().to_list(), *b["band"].drop_nulls().to_list()} - set(ranks))
    if unknown:
        raise ValueError(f"band {', '.join(unknown)} is not in the band order {', '.join(band_order)}")

    def rank(column: str) -> pl.Expr:
        return pl.col(column).replace_strict(ranks, default=None, return_dtype=pl.Int64)

    steps = rank("band_a") - rank("band_b")  # rank 0 is the best band: a smaller rank under B is a move up
    movement = (
        pl.when(pl.col("band_a").is_null() & pl.col("band_b").is_null()).then(pl.lit("same"))
        .when(pl.col("band_a").is_null()).then(pl.lit("now scored"))
        .when(pl.col("band_b").is_null()).then(pl.lit("now insufficient"))
        .when(steps > 0).then(pl.lit("up"))
        .when(steps < 0).then(pl.lit("down"))
        .otherwise(pl.lit("same"))
    )
    return (
        a.select("supplier_id", score_a="score", band_a="band", status_a="status")
        .join(b.select("supplier_id", score_b="score", band_b="band", status_b="status"), on="supplier_id")
        .with_columns(movement=movement, band_steps=steps,
                      status_changed=pl.col("status_a").ne_missing(pl.col("status_b")))
        .sort("supplier_id")
    )


def _band_counts(bands: pl.Series, band_order: Sequence[str]) -> dict[str, int]:
    counts = {band: 0 for band in band_order}
    for band in bands.to_list():
        key = INSUFFICIENT if band is None else band
        counts[key] = counts.get(key, 0) + 1
    counts.setdefault(INSUFFICIENT, 0)
    return {**{band: counts.pop(band) for band in band_order}, **counts}


def summarise_comparison(compared: pl.DataFrame, band_order: Sequence[str]) -> ComparisonSummary:
    """Counts of a ``compare_scores`` frame: movements, status changes, suppliers per band under A and B."""
    moved = dict.fromkeys(MOVEMENTS, 0) | dict(compared.group_by("movement").len().iter_rows())
    return ComparisonSummary(
        suppliers=compared.height, up=moved["up"], down=moved["down"], unchanged=moved["same"],
        now_scored=moved["now scored"], now_insufficient=moved["now insufficient"],
        status_changes=int(compared["status_changed"].sum()),
        bands_a=_band_counts(compared["band_a"], band_order), bands_b=_band_counts(compared["band_b"], band_order),
    )


def window_of(rule_set: RuleSet, window_days: int | None = None) -> int:
    """The window a rule set is measured over: ``window_days`` when given, else the rule set's own."""
    return window_days or rule_set.evaluation.window_days


def score_under_rule_sets(selected: pl.DataFrame, inputs: ValidatedInputs, rule_sets: Sequence[RuleSet], *,
                          as_of: date, window_days: int | None = None) -> list[pl.DataFrame]:
    """``score_suppliers`` of ``selected`` under each rule set, in order.

    The metrics are measured once per distinct window and measuring settings among the rule sets: two rule sets
    that differ only in weights, scales, bands or gates share one measurement. ``selected`` needs what
    ``score_suppliers`` needs (supplier_id, certificate_expiry, current_status).
    """
    measured: dict[tuple[object, ...], pl.DataFrame] = {}
    scored = []
    for rule_set in rule_sets:
        options = rule_set.evaluation.measure_options()
        key = (window_of(rule_set, window_days), *sorted(options.items()))
        if key not in measured:
            measured[key] = measure_suppliers(selected, inputs.purchase_order_lines, inputs.receipts,
                                              inputs.nonconformances, inputs.feedback, as_of=as_of,
                                              window_days=window_of(rule_set, window_days),
                                              receipt_lines=inputs.receipt_lines, **options).metrics
        scored.append(score_suppliers(selected, measured[key], rule_set, as_of=as_of))
    return scored


def recorded_statuses(store_url: str) -> tuple[pl.DataFrame, str]:
    """The ASL statuses recorded in the store (supplier_id, status), and where they came from, in words.

    The store is only read, and only if it exists (``create=False``): without one, or when it cannot be read,
    the frame is empty — every supplier keeps its supplier record's status — and the words say why.
    """
    from suppliers.store import Store, redact_url

    try:
        with Store(store_url, create=False) as store:
            statuses = store.current_statuses(excluding_run_key="")
    except StoreError as error:
        empty = pl.DataFrame(schema={"supplier_id": pl.String, "status": pl.String})
        return empty, f"the supplier records ({error.what})"
    return statuses.select("supplier_id", "status"), f"the store ({redact_url(store_url)})"


@dataclass(frozen=True)
class RuleSetComparison:
    """What ``compare_rule_sets`` found: A is the rule set compared with (the baseline), B the one tried."""

    as_of: date
    rules_a: str  # the rule file as given, or 'the shipped iso9001-8.4.yaml'
    rules_b: str
    rule_set_a: RuleSet
    rule_set_b: RuleSet
    window_a: int
    window_b: int
    band_order: tuple[str, ...]
    rows: pl.DataFrame  # supplier_id, name, current_status, then the columns of compare_scores
    summary: ComparisonSummary
    statuses_from: str  # where the current statuses came from, in words
    quarantined_rows: int


def _label(rules_file: Path | str | None) -> str:
    return str(rules_file) if rules_file is not None else f"the shipped {DEFAULT_RULES_NAME}"


def compare_rule_sets(baseline: Path | str | None, candidate: Path | str | None, *, data_dir: Path,
                      mapping_file: Path | None, store_url: str, as_of: date, supplier_ids: Sequence[str] = (),
                      window_days: int | None = None, max_quarantine_share: float = 0.2) -> RuleSetComparison:
    """Score the chosen suppliers under ``baseline`` (A) and ``candidate`` (B) and compare; write nothing.

    A rule file of None is the shipped rules. The inputs are read and validated as a run reads them (bad rows
    quarantined, too many stop it: DataQualityError, but no quarantine file is written); the suppliers are the
    ones given, else every active one (an unknown id is a ConfigError); the current status of each is the
    store's if a store exists, else its supplier record's. ``window_days`` overrides both rule sets' windows.
    """
    from suppliers.mapping import load_inputs
    from suppliers.validate import validate_inputs

    rule_set_a, rule_set_b = load_rule_set(baseline), load_rule_set(candidate)
    band_order = common_band_order(rule_set_a, rule_set_b)
    reading = RunReading(receipt_lines=True)  # every chosen supplier measured in one piece
    loaded = load_inputs(data_dir, mapping_file, reading.fields)
    inputs = validate_inputs(loaded.raw, formats=loaded.formats, as_of=as_of,
                             max_quarantine_share=max_quarantine_share, quarantine_path=None,
                             with_receipt_lines=reading.receipt_lines, columns=reading.columns)
    chosen = choose_suppliers(inputs.suppliers, supplier_ids)
    current, statuses_from = recorded_statuses(store_url)
    selected = with_current_status(chosen, current)
    scored_a, scored_b = score_under_rule_sets(selected, inputs, (rule_set_a, rule_set_b), as_of=as_of,
                                               window_days=window_days)
    compared = compare_scores(scored_a, scored_b, band_order)
    rows = selected.select("supplier_id", "name", CURRENT_STATUS).join(compared, on="supplier_id").sort("supplier_id")
    return RuleSetComparison(
        as_of=as_of, rules_a=_label(baseline), rules_b=_label(candidate),
        rule_set_a=rule_set_a, rule_set_b=rule_set_b, window_a=window_of(rule_set_a, window_days),
        window_b=window_of(rule_set_b, window_days), band_order=band_order, rows=rows,
        summary=summarise_comparison(compared, band_order), statuses_from=statuses_from,
        quarantined_rows=int(inputs.summary["rows_quarantined"].sum()),
    )
