"""The sample-data generator: deterministic, consistent, and with suppliers that really differ."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from suppliers.errors import ConfigError
from suppliers.generate import HTML_FIXTURE_NAME, PROFILES_SCHEMA, generate_frames, write_sample_data
from suppliers.records import RECORD_KINDS, RECORDS

END = dt.date(2026, 6, 30)
KEY = ["po_id", "line_no"]

@pytest.fixture(scope="module")
def frames() -> dict[str, pl.DataFrame]:
    return generate_frames(suppliers=40, lines=4000, seed=11, end_date=END)


@pytest.fixture(scope="module")
def line_outcomes(frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """One row per PO line: receipts, units received (in total and by the promised date), profile."""
    lines = frames["purchase_order_lines"]
    receipts = frames["receipts"].join(lines.select(*KEY, "promised_date"), on=KEY)
    per_line = receipts.group_by(KEY).agg(
        receipts=pl.len(),
        received=pl.col("quantity_received").sum(),
        received_on_time=pl.col("quantity_received")
        .filter(pl.col("received_date") <= pl.col("promised_date"))
        .sum(),
        rejected=pl.col("quantity_rejected").sum(),
    )
    return (
        lines.join(per_line, on=KEY, how="left")
        .with_columns(pl.col("receipts", "received", "received_on_time", "rejected").fill_null(0))
        .join(frames["profiles"], on="supplier_id")
    )


def _profile_ids(frames: dict[str, pl.DataFrame], profile: str) -> list[str]:
    return frames["profiles"].filter(pl.col("profile") == profile)["supplier_id"].to_list()


# --- determinism --------------------------------------------------------------------------------------------


def test_same_arguments_give_identical_frames_and_another_seed_does_not():
    first = generate_frames(suppliers=12, lines=500, seed=3, end_date=END)
    again = generate_frames(suppliers=12, lines=500, seed=3, end_date=END)
    other = generate_frames(suppliers=12, lines=500, seed=4, end_date=END)
    assert first.keys() == again.keys() == set(RECORD_KINDS) | {"profiles"}
    for kind in first:
        assert first[kind].equals(again[kind]), kind
    assert not first["purchase_order_lines"].equals(other["purchase_order_lines"])
    assert not first["receipts"].equals(other["receipts"])
    assert not first["profiles"].equals(
        other["profiles"]
    )  # the shuffle that assigns profiles depends on the seed


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_same_arguments_write_byte_identical_files(tmp_path: Path, fmt: str):
    a = write_sample_data(generate_frames(suppliers=10, lines=300, seed=5, end_date=END), tmp_path / "a", fmt)
    b = write_sample_data(generate_frames(suppliers=10, lines=300, seed=5, end_date=END), tmp_path / "b", fmt)
    assert a.keys() == b.keys() == set(RECORD_KINDS)
    for kind in RECORD_KINDS:
        assert a[kind].read_bytes() == b[kind].read_bytes(), kind


# --- shape of the data --------------------------------------------------------------------------------------


def test_every_frame_has_exactly_the_declared_columns_and_dtypes_in_order(frames):
    assert list(frames) == [*RECORD_KINDS, "profiles"]
    for kind in RECORD_KINDS:
        assert frames[kind].schema == RECORDS[kind].schema, kind
    assert frames["profiles"].schema == PROFILES_SCHEMA


@pytest.mark.parametrize(("suppliers", "lines"), [(5, 5), (5, 37), (13, 1001), (40, 4000)])
def test_line_count_is_exact_and_every_supplier_has_lines(suppliers: int, lines: int):
    out = generate_frames(suppliers=suppliers, lines=lines, end_date=END)
    assert out["purchase_order_lines"].height == lines
    assert out["suppliers"].height == suppliers
    assert out["purchase_order_lines"]["supplier_id"].n_unique() == suppliers
    assert out["suppliers"]["supplier_id"].is_unique().all()
    assert out["suppliers"]["name"].is_unique().all()


def test_purchase_orders_have_one_to_four_numbered_lines_of_one_supplier(frames):
    lines = frames["purchase_order_lines"]
    assert lines.select(KEY).is_unique().all()
    per_po = lines.group_by("po_id").agg(
        n=pl.len(),
        suppliers=pl.col("supplier_id").n_unique(),
        numbered=pl.col("line_no").sort() == pl.int_range(1, pl.len() + 1),
        order_dates=pl.col("order_date").n_unique(),
    )
    assert per_po["n"].is_between(1, 4).all()
    assert (per_po["suppliers"] == 1).all()
    assert (per_po["order_dates"] == 1).all()
    assert per_po["numbered"].list.all().all()


def test_dates_and_quantities_are_plausible(frames):
    lines = frames["purchase_order_lines"]
    lead = (lines["promised_date"] - lines["order_date"]).dt.total_days()
    assert lead.is_between(7, 45).all()
    assert lines["order_date"].max() <= END
    assert lines["order_date"].min() >= END - dt.timedelta(days=540)
    assert (lines["promised_date"] > END).any(), "some orders should still be open at end_date"
    assert (lines["quantity_ordered"] > 0).all() and (lines["unit_price"] >= 0).all()
    assert lines["currency"].str.contains(r"^[A-Z]{3}$").all()
    assert (lines.group_by("supplier_id").agg(pl.col("currency").n_unique())["currency"] == 1).all()
    feedback = frames["feedback"]
    assert feedback["score"].is_between(1, 5).all()
    assert feedback["date"].max() <= END
    ncr = frames["nonconformances"]
    assert ncr["severity"].is_in(["critical", "major", "minor"]).all()
    assert ncr["raised_date"].max() <= END
    assert (ncr["closed_date"].is_null() | (ncr["closed_date"] >= ncr["raised_date"])).all()
    assert (ncr["closed_date"].drop_nulls() <= END).all()


def test_receipts_never_after_end_date_and_quantities_balance(frames):
    receipts = frames["receipts"]
    assert receipts.height > 0
    assert receipts["received_date"].max() <= END
    assert (receipts["quantity_received"] > 0).all()
    assert (receipts["quantity_accepted"] >= 0).all() and (receipts["quantity_rejected"] >= 0).all()
    assert (
        receipts["quantity_accepted"] + receipts["quantity_rejected"] == receipts["quantity_received"]
    ).all()
    assert receipts["receipt_id"].is_unique().all()


def test_records_refer_to_existing_lines_and_suppliers(frames, line_outcomes):
    lines = frames["purchase_order_lines"]
    supplier_ids = frames["suppliers"].select("supplier_id")
    assert frames["receipts"].join(lines, on=KEY, how="anti").height == 0
    assert lines.join(supplier_ids, on="supplier_id", how="anti").height == 0
    assert frames["nonconformances"].join(supplier_ids, on="supplier_id", how="anti").height == 0
    assert frames["feedback"].join(supplier_ids, on="supplier_id", how="anti").height == 0
    assert frames["profiles"].join(supplier_ids, on="supplier_id", how="anti").height == 0
    # Receipts come after the order and never add up to more than was ordered.
    dated = frames["receipts"].join(lines.select(*KEY, "order_date"), on=KEY)
    assert (dated["received_date"] > dated["order_date"]).all()
    assert (line_outcomes["received"] <= line_outcomes["quantity_ordered"]).all()


# --- the profiles really differ -----------------------------------------------------------------------------


def test_late_suppliers_complete_far_fewer_lines_by_the_promised_date(line_outcomes):
    due = line_outcomes.filter(pl.col("promised_date") <= END - dt.timedelta(days=31))
    otif = (
        due.group_by("profile")
        .agg((pl.col("received_on_time") >= pl.col("quantity_ordered")).mean().alias("share"))
        .pipe(lambda df: dict(zip(df["profile"], df["share"], strict=True)))
    )
    assert otif["reliable"] >= 0.90
    assert otif["late"] <= 0.65
    assert otif["reliable"] - otif["late"] >= 0.25
    assert otif["quality"] >= 0.85  # quality suppliers are on time; their problem is elsewhere


def test_quality_suppliers_reject_more_and_get_most_nonconformances(frames, line_outcomes):
    rejected = (
        line_outcomes.group_by("profile")
        .agg((pl.col("rejected").sum() / pl.col("received").sum()).alias("share"))
        .pipe(lambda df: dict(zip(df["profile"], df["share"], strict=True)))
    )
    assert 0.03 <= rejected["quality"] <= 0.10
    assert rejected["reliable"] <= 0.006
    assert rejected["quality"] >= 5 * rejected["reliable"]

    ncr = frames["nonconformances"].join(frames["profiles"], on="supplier_id")
    quality = ncr.filter(pl.col("profile") == "quality")
    assert quality.height > ncr.height / 2
    assert (quality["severity"] == "critical").any()
    assert quality["closed_date"].is_null().any(), "some quality NCRs should still be open"
    assert ncr.filter(pl.col("profile") != "quality").height > 0, "a few NCRs elsewhere"


def test_feedback_scores_follow_the_profile(frames):
    means = (
        frames["feedback"]
        .join(frames["profiles"], on="supplier_id")
        .group_by("profile")
        .agg(pl.col("score").mean())
        .pipe(lambda df: dict(zip(df["profile"], df["score"], strict=True)))
    )
    assert means["reliable"] > means["late"] + 0.8
    assert means["reliable"] > means["quality"] + 0.8
    per_supplier = frames["feedback"].group_by("supplier_id").len()
    assert per_supplier.height == frames["suppliers"].height
    assert per_supplier["len"].is_between(1, 5).all()


@pytest.mark.parametrize(("suppliers", "lines"), [(5, 5), (5, 200), (40, 4000)])
def test_every_profile_is_present_and_sparse_suppliers_have_at_most_three_lines(suppliers: int, lines: int):
    out = generate_frames(suppliers=suppliers, lines=lines, end_date=END)
    profiles = out["profiles"]["profile"].value_counts()
    counts = dict(zip(profiles["profile"], profiles["count"], strict=True))
    assert counts.get("late", 0) >= 1 and counts.get("quality", 0) >= 1 and counts.get("sparse", 0) >= 2
    assert counts.get("reliable", 0) >= 1
    per_supplier = out["purchase_order_lines"].group_by("supplier_id").len()
    sparse = per_supplier.filter(pl.col("supplier_id").is_in(_profile_ids(out, "sparse")))
    assert sparse.height == counts["sparse"]
    assert sparse["len"].is_between(1, 3).all()
    if lines >= 1000:  # everyone else has enough history to judge
        others = per_supplier.filter(~pl.col("supplier_id").is_in(_profile_ids(out, "sparse")))
        assert others["len"].min() >= 10


def test_default_sizes_give_about_seventy_percent_reliable():
    out = generate_frames(end_date=END)
    shares = out["profiles"]["profile"].value_counts(normalize=True)
    share = dict(zip(shares["profile"], shares["proportion"], strict=True))
    assert 0.65 <= share["reliable"] <= 0.80
    assert 0.08 <= share["late"] <= 0.16 and 0.06 <= share["quality"] <= 0.14
    assert out["purchase_order_lines"].height == 6000 and out["suppliers"].height == 60


# --- fixtures the rest of the engine relies on --------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 11, 99])
def test_exactly_one_expired_certificate_and_one_inactive_supplier(seed: int):
    out = generate_frames(suppliers=30, lines=900, seed=seed, end_date=END)
    suppliers = out["suppliers"].join(out["profiles"], on="supplier_id")
    expired = suppliers.filter(pl.col("certificate_expiry") < END)
    assert expired.height == 1
    assert expired["profile"].item() == "reliable"
    assert expired["active"].item() is True
    assert suppliers.filter(~pl.col("active")).height == 1
    assert suppliers["certificate_expiry"].null_count() >= 1
    assert (
        suppliers["status"].is_in(["pending", "approved", "conditional", "probation", "disqualified"]).all()
    )
    assert (suppliers["status"] == "approved").mean() > 0.5
    assert suppliers["criticality"].is_in(["critical", "major", "minor"]).all()
    assert suppliers["owner_email"].n_unique() <= 6
    assert suppliers["contact_email"].str.contains(r"^[a-z0-9.\-]+@[a-z0-9.\-]+$").all()


def test_one_supplier_name_needs_html_escaping(frames):
    names = frames["suppliers"]["name"]
    special = names.filter(names.str.contains(r"[<>&]"))
    assert special.to_list() == [HTML_FIXTURE_NAME]
    assert "<" in HTML_FIXTURE_NAME and "&" in HTML_FIXTURE_NAME


def test_split_and_short_deliveries_exist(line_outcomes):
    settled = line_outcomes.filter(pl.col("promised_date") <= END - dt.timedelta(days=45))
    split_share = (settled["receipts"] >= 2).mean()
    assert 0.08 <= split_share <= 0.25
    assert (settled["receipts"] == 3).any()
    short = settled.filter(pl.col("received") < pl.col("quantity_ordered"))
    assert 0.01 <= short.height / settled.height <= 0.08
    short_share = settled.group_by("profile").agg(
        (pl.col("received") < pl.col("quantity_ordered")).mean().alias("share")
    )
    share = dict(zip(short_share["profile"], short_share["share"], strict=True))
    assert share["late"] > share["reliable"]
    # Open orders at end_date: lines promised in the future with nothing or part received.
    open_lines = line_outcomes.filter(
        pl.col("received") < pl.col("quantity_ordered"), pl.col("promised_date") > END
    )
    assert open_lines.height > 0


# --- writing ------------------------------------------------------------------------------------------------


def test_csv_round_trips_with_iso_dates_lowercase_booleans_and_empty_nulls(tmp_path: Path):
    out = generate_frames(suppliers=10, lines=300, end_date=END)
    paths = write_sample_data(out, tmp_path / "nested" / "csv")
    assert paths == {kind: tmp_path / "nested" / "csv" / f"{kind}.csv" for kind in RECORD_KINDS}
    assert sorted(p.name for p in (tmp_path / "nested" / "csv").iterdir()) == sorted(
        f"{k}.csv" for k in RECORD_KINDS
    )
    for kind in RECORD_KINDS:
        back = pl.read_csv(paths[kind], schema=RECORDS[kind].schema)
        assert back.equals(out[kind]), kind
        # Even plain type inference gets the canonical dtypes back (floats keep their ".0"), for every
        # column that has a value to infer from.
        inferred = pl.read_csv(paths[kind], try_parse_dates=True)
        filled = [name for name in inferred.columns if inferred[name].null_count() < inferred.height]
        expected = RECORDS[kind].schema
        assert {name: inferred.schema[name] for name in filled} == {name: expected[name] for name in filled}, kind
    header, *rows = paths["suppliers"].read_text(encoding="utf-8").splitlines()
    assert header == ",".join(RECORDS["suppliers"].columns)
    assert {row.rsplit(",", 1)[1] for row in rows} == {"true", "false"}
    assert any(",," in row for row in rows), "a null certificate_expiry is written as an empty field"
    assert HTML_FIXTURE_NAME in paths["suppliers"].read_text(
        encoding="utf-8"
    )  # raw in data; escaping is for reports
    first_line = paths["purchase_order_lines"].read_text().splitlines()[1].split(",")
    assert dt.date.fromisoformat(first_line[5]) <= END


def test_parquet_round_trips(tmp_path: Path):
    out = generate_frames(suppliers=10, lines=300, end_date=END)
    paths = write_sample_data(out, tmp_path, "parquet")
    assert set(paths) == set(RECORD_KINDS)
    for kind in RECORD_KINDS:
        assert paths[kind] == tmp_path / f"{kind}.parquet"
        assert pl.read_parquet(paths[kind]).equals(out[kind]), kind
    assert not (tmp_path / "profiles.parquet").exists()


# --- bad arguments ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "where"),
    [
        ({"suppliers": 4, "lines": 100}, "suppliers"),
        ({"suppliers": 10, "lines": 9}, "lines"),
        ({"suppliers": 10, "lines": 100, "seed": -1}, "seed"),
        ({"suppliers": "10", "lines": 100}, "suppliers"),
    ],
)
def test_bad_generator_arguments_raise_config_error(kwargs: dict, where: str):
    with pytest.raises(ConfigError) as info:
        generate_frames(end_date=END, **kwargs)
    assert where in info.value.where
    assert info.value.fix
    assert info.value.exit_code == 2


def test_unknown_format_raises_config_error_and_writes_nothing(tmp_path: Path):
    out = generate_frames(suppliers=5, lines=20, end_date=END)
    with pytest.raises(ConfigError, match="xlsx"):
        write_sample_data(out, tmp_path / "x", "xlsx")  # type: ignore[arg-type]
    assert not (tmp_path / "x").exists()
