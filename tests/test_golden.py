"""Golden result: the shipped rule set on seeded sample data, supplier by supplier.

The sample data of ``generate_frames(suppliers=60, lines=6000, seed=7, end_date=2026-06-30)`` is written as CSV,
read and validated, measured, scored and decided by the core as a first official evaluation as of 2026-06-30
(every supplier pending before it; no Prefect, no store), and each supplier's score, band, status, insufficient
reason and gates hit are compared with ``tests/golden/seed7-2026-06-30.csv``. A change anywhere on that path
(generator, validation, metrics, scoring, gates, transitions, the shipped rules) that moves a result fails here
with the suppliers that moved and how.

When the move is intended, regenerate the file on purpose and commit it with the change:

    .venv/bin/python tests/test_golden.py --update
    # or: SUPPLIER_EVAL_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py

Hand-checked before the golden file was first written, with the shipped rules (on time 30: linear 0.70 → 0,
0.98 → 100; OTIF 20: linear 0.60 → 0, 0.95 → 100; rejects per million 30: ≤ 1000 → 100, ≤ 3000 → 80, ...;
mean days late 20: linear 20 → 0, 2 → 100, measured over at least 3 late lines; bands A from 85, B 70, C 50):

S0001 (critical): 41 order lines due, 37 on time, 41 inspected of which 37 OTIF, 7,355 units inspected and 0
rejected, 4 late lines (3 and 4 days late, and two short lines delivered before their promise: 0) → mean 1.75.
    on time   37/41 = 0.902439 → (0.902439 − 0.70) / 0.28 × 100 = 72.30 points × 30 / 100 = 21.69
    OTIF      37/41 = 0.902439 → (0.902439 − 0.60) / 0.35 × 100 = 86.41 points × 20 / 100 = 17.28
    PPM       0 / 7,355 = 0 ppm ≤ 1000                          → 100 points × 30 / 100 = 30.00
    lateness  1.75 days ≤ 2 (4 late lines ≥ 3)                  → 100 points × 20 / 100 = 20.00
    score 21.69 + 17.28 + 30 + 20 = 88.97 → 89.0, band A, approved (first evaluation), no gate.

S0004 (critical): 56 order lines due, 55 on time, 56 inspected of which 52 OTIF, 5,722 units inspected (5,712
accepted, 10 rejected), 1 late line (a short line: 7 of 14 units received before its promise).
    on time   55/56 = 0.982143 ≥ 0.98                            → 100 points
    OTIF      52/56 = 0.928571 → (0.928571 − 0.60) / 0.35 × 100 = 93.88 points
    PPM       10⁶ × 10 / 5,722 = 1,747.6 ppm ≤ 3000             → 80 points
    lateness  1 late line < 3: not measured, so the other weights count 30, 20, 30 of 80 → 37.5, 25, 37.5
    score 100 × 0.375 + 93.88 × 0.25 + 80 × 0.375 = 37.5 + 23.47 + 30 = 90.97 → 91.0, band A, approved.
"""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import date
from pathlib import Path

import polars as pl
import pytest

GOLDEN = Path(__file__).parent / "golden" / "seed7-2026-06-30.csv"
AS_OF = date(2026, 6, 30)
UPDATE_ENV = "SUPPLIER_EVAL_UPDATE_GOLDEN"
REGENERATE = (f"If the change is intended, regenerate the golden file and commit it with the change: "
              f".venv/bin/python tests/test_golden.py --update (or {UPDATE_ENV}=1 .venv/bin/python -m pytest "
              f"tests/test_golden.py).")
FIELDS = ("score", "band", "status", "insufficient_reason", "gates_hit")
SCHEMA = {"supplier_id": pl.String, "score": pl.Float64, "band": pl.String, "status": pl.String,
          "insufficient_reason": pl.String, "gates_hit": pl.String}
SCORE_TOLERANCE = 0.001


def evaluate(work: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The seed-7 sample data through validate → measure → score → decide: (metrics, evaluations)."""
    from rules.asl import with_asl_facts
    from rules.decide import decide
    from rules.loader import load_rule_set
    from rules.metrics import measure_suppliers
    from rules.scoring import score_suppliers
    from suppliers.generate import generate_frames, write_sample_data
    from suppliers.runs import choose_suppliers, with_current_status
    from suppliers.sources import load_sources
    from suppliers.validate import validate_inputs

    rule_set = load_rule_set()
    folder = work / "data"
    write_sample_data(generate_frames(suppliers=60, lines=6000, seed=7, end_date=AS_OF), folder, "csv")
    validated = validate_inputs(load_sources(folder).raw, as_of=AS_OF)
    nobody = pl.DataFrame(schema={"supplier_id": pl.String, "status": pl.String, "status_as_of": pl.Date})
    selected = with_asl_facts(with_current_status(choose_suppliers(validated.suppliers), nobody), manual=None,
                              previous_bands=None, nonconformances=validated.nonconformances, as_of=AS_OF)
    performance = measure_suppliers(selected, validated.purchase_order_lines, validated.receipts,
                                    validated.nonconformances, validated.feedback, as_of=AS_OF,
                                    window_days=rule_set.evaluation.window_days,
                                    **rule_set.evaluation.measure_options())
    scored = score_suppliers(selected, performance.metrics, rule_set, as_of=AS_OF)
    no_previous = pl.DataFrame(schema={"supplier_id": pl.String, "previous_as_of": pl.Date,
                                       "previous_score": pl.Float64, "previous_band": pl.String})
    no_official = pl.DataFrame(schema={"supplier_id": pl.String, "official_as_of": pl.Date})
    decisions = decide(selected, scored, rule_set, previous=no_previous, official_as_of=no_official, as_of=AS_OF,
                       official=True)
    return performance.metrics, decisions.evaluated


def result_table(evaluated: pl.DataFrame) -> pl.DataFrame:
    """What the golden file holds: per supplier, score, band, status, insufficient reason and gates hit."""
    return evaluated.select(
        "supplier_id", "score", "band", "status", "insufficient_reason",
        gates_hit=pl.when(pl.col("gates_hit").list.len() > 0).then(pl.col("gates_hit").list.join("; ")),
    ).cast(SCHEMA).sort("supplier_id")


def read_golden() -> pl.DataFrame:
    return pl.read_csv(GOLDEN, schema=SCHEMA)  # an empty cell is null: no reason, no gate


def write_golden(table: pl.DataFrame) -> None:
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    table.write_csv(GOLDEN)


def differences(golden: pl.DataFrame, now: pl.DataFrame) -> list[str]:
    """One line per supplier whose result moved: ``S0003: score 44.8 → 46.1; band D → C``."""
    both = golden.join(now, on="supplier_id", how="full", coalesce=True, suffix="_now")

    def shown(column: str) -> pl.Expr:
        return pl.col(column).cast(pl.String).fill_null("—")

    moved = []
    for field in FIELDS:
        was, now_ = pl.col(field), pl.col(f"{field}_now")
        if field == "score":
            differs = (was - now_).abs().gt(SCORE_TOLERANCE).fill_null(was.is_null() != now_.is_null())
        else:
            differs = was.ne_missing(now_)
        moved.append(pl.when(differs).then(pl.format("{} {} → {}", pl.lit(field), shown(field),
                                                     shown(f"{field}_now"))))
    in_golden = pl.col("status").is_not_null()
    in_result = pl.col("status_now").is_not_null()
    lines = both.select(
        "supplier_id",
        line=pl.when(~in_result).then(pl.lit("in the golden file, not evaluated now"))
        .when(~in_golden).then(pl.format("evaluated now, not in the golden file (score {}, band {}, status {})",
                                         shown("score_now"), shown("band_now"), shown("status_now")))
        .otherwise(pl.concat_str(moved, separator="; ", ignore_nulls=True)),
    ).filter(pl.col("line") != "").sort("supplier_id")
    return [f"{supplier}: {line}" for supplier, line in lines.iter_rows()]


@pytest.fixture(scope="module")
def seed7(tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.DataFrame, pl.DataFrame]:
    return evaluate(tmp_path_factory.mktemp("golden"))


def test_the_shipped_rules_on_seed_7_give_the_golden_result(seed7: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    now = result_table(seed7[1])
    if os.environ.get(UPDATE_ENV):
        write_golden(now)
        pytest.skip(f"{GOLDEN} rewritten ({UPDATE_ENV} is set): review its diff and commit it")
    assert GOLDEN.is_file(), f"no golden file at {GOLDEN}. {REGENERATE}"
    moved = differences(read_golden(), now)
    assert not moved, (
        f"The shipped rules on the seed-7 sample data no longer give the golden result "
        f"({GOLDEN.relative_to(Path(__file__).parent.parent)}): {len(moved)} of {now.height} suppliers moved\n"
        + "\n".join(f"  {line}" for line in moved) + f"\n{REGENERATE}"
    )


def test_the_golden_file_holds_every_kind_of_result() -> None:
    golden = read_golden()
    assert golden.height == 59  # 60 generated, one inactive
    assert set(golden["band"].drop_nulls()) == {"A", "B", "C", "D"}
    assert golden["insufficient_reason"].drop_nulls().len() == golden["score"].null_count() > 0
    assert golden["gates_hit"].drop_nulls().len() > 0


@pytest.mark.parametrize(
    ("supplier", "counts", "points", "score"),
    [
        # order lines, on time, inspected, OTIF, units inspected, ppm, late lines, mean days late (see above)
        ("S0001", (41, 37, 41, 37, 7355.0, 0.0, 4, 1.75),
         {"On-time delivery": 72.30, "Delivered on time and in full (OTIF)": 86.41,
          "Quality of goods received (rejects per million)": 100.0, "Lateness when late (mean days)": 100.0},
         21.69 + 17.28 + 30 + 20),
        ("S0004", (56, 55, 56, 52, 5722.0, 1e6 * 10 / 5722, 1, 0.0),
         {"On-time delivery": 100.0, "Delivered on time and in full (OTIF)": 93.88,
          "Quality of goods received (rejects per million)": 80.0, "Lateness when late (mean days)": None},
         100 * 0.375 + 93.88 * 0.25 + 80 * 0.375),
    ],
)
def test_two_suppliers_scores_by_hand(seed7: tuple[pl.DataFrame, pl.DataFrame], supplier: str,
                                      counts: tuple, points: dict[str, float | None], score: float) -> None:
    metrics, evaluated = seed7
    measured = metrics.filter(pl.col("supplier_id") == supplier).select(
        "order_lines", "on_time_lines", "inspected_lines", "otif_lines", "units_inspected", "ppm_rejected",
        "late_lines", "mean_days_late").row(0)
    assert measured == pytest.approx(counts)
    row = evaluated.filter(pl.col("supplier_id") == supplier).row(0, named=True)
    points_now = {c["name"]: c["points"] for c in row["criteria"]}
    assert points_now == pytest.approx(points, abs=0.05)  # a criterion's points are kept to 0.1
    assert row["score"] == pytest.approx(round(score, 1))
    assert (row["band"], row["status"], row["gates_hit"]) == ("A", "approved", [])


def test_a_moved_result_is_told_supplier_by_supplier() -> None:
    golden = pl.DataFrame({"supplier_id": ["S1", "S2", "S3"], "score": [80.0, None, 50.0], "band": ["B", None, "C"],
                           "status": ["conditional", "pending", "probation"],
                           "insufficient_reason": [None, "too few lines", None], "gates_hit": [None, None, None]},
                          schema=SCHEMA)
    now = golden.with_columns(
        score=pl.Series([86.0, None, 50.0]), band=pl.Series(["A", None, "C"]),
        status=pl.Series(["approved", "pending", "probation"]),
        gates_hit=pl.Series([None, None, "Quality certificate expired"]),
    ).filter(pl.col("supplier_id") != "S2")
    assert differences(golden, golden) == []
    assert differences(golden, now) == [
        "S1: score 80.0 → 86.0; band B → A; status conditional → approved",
        "S2: in the golden file, not evaluated now",
        "S3: gates_hit — → Quality certificate expired",
    ]


def main(argv: list[str]) -> int:
    if argv != ["--update"]:
        print(f"usage: {Path(__file__).name} --update   (rewrite {GOLDEN} from the current code)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as work:
        table = result_table(evaluate(Path(work))[1])
    previous = read_golden() if GOLDEN.is_file() else None
    write_golden(table)
    moved = differences(previous, table) if previous is not None else []
    print(f"Wrote {GOLDEN} ({table.height} suppliers" + (f"; {len(moved)} moved" if previous is not None else "")
          + "): review `git diff` and commit it.")
    for line in moved:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
