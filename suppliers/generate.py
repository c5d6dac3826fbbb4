"""Deterministic sample data: suppliers, purchase-order lines, receipts, nonconformances and feedback.

The generator builds a plausible purchasing history for ISO 9001:2015 clause 8.4 evaluations. Every column is
drawn as a NumPy array from one ``numpy.random.default_rng(seed)`` in a fixed order and then handed to Polars,
so the same arguments always give the same frames (and byte-identical files), and ten million lines take
seconds. There are no Python loops over lines or receipts.

Suppliers get a hidden *profile* (returned as the ``"profiles"`` frame, never written as a record kind):

* ``reliable`` (about 70 %): nearly every line complete by its promised date, a few 1-3 days late, rejects
  of 0.1-0.5 % of units;
* ``late`` (about 12 %, at least one): 40-70 % of lines land 3-30 days after the promised date, more short
  deliveries;
* ``quality`` (about 10 %, at least one): on time, but 3-10 % of units rejected and most nonconformances;
* ``sparse`` (at least two): new suppliers with only 1-3 lines in total, recently ordered, status pending.

Fixtures that reports and gates must handle: exactly one supplier (reliable) whose certificate expired before
``end_date``; exactly one inactive supplier (``active`` false; its orders stop about seven months before
``end_date``); one supplier named ``Smith & Sons <Precision> Ltd`` (a late one, so it appears in action lists;
reports must escape it).

Nothing is dated after ``end_date`` except promised dates of open orders and certificate expiry dates:
receipts that would fall in the future do not exist, so those lines are open or partially received.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from suppliers.errors import ConfigError
from suppliers.files import write_atomically
from suppliers.records import RECORD_KINDS, RECORDS

__all__ = [
    "HISTORY_DAYS",
    "HTML_FIXTURE_NAME",
    "PROFILE_NAMES",
    "PROFILES_SCHEMA",
    "generate_frames",
    "write_sample_data",
]

#: Order dates spread over this many days ending at ``end_date``.
HISTORY_DAYS = 540
#: The supplier name that exercises HTML escaping in reports.
HTML_FIXTURE_NAME = "Smith & Sons <Precision> Ltd"
#: The ``profiles`` frame: each supplier's hidden profile. Not a record kind, so it is declared here.
PROFILES_SCHEMA = pl.Schema({"supplier_id": pl.String(), "profile": pl.String()})

# --- profiles -----------------------------------------------------------------------------------------------

RELIABLE, LATE, QUALITY, SPARSE = 0, 1, 2, 3
PROFILE_NAMES = ("reliable", "late", "quality", "sparse")

# Per-profile behaviour, indexed by the profile codes above. Ranges are drawn once per supplier.
_LATE_PROB = ((0.01, 0.10), (0.15, 0.60), (0.02, 0.06), (0.00, 0.10))  # share of lines after promised date
_LATE_DAYS = ((1, 4), (3, 25), (1, 3), (1, 5))  # how late such a line is, in days (inclusive)
# Rejects come in defective lots, as they do in goods-in inspection: most receipts are clean, and a lot with
# defects loses a share of its units.
_DEFECTIVE_LOT_PROB = ((0.005, 0.06), (0.01, 0.05), (0.15, 0.60), (0.0, 0.05))  # share of receipts with rejects
_REJECT_RATE = ((0.01, 0.05), (0.02, 0.08), (0.05, 0.18), (0.01, 0.05))  # share of a defective lot rejected
_SHORT_PROB = ((0.015, 0.025), (0.08, 0.15), (0.02, 0.04), (0.0, 0.03))  # share of lines closed short
_NCR_PROB = (0.02, 0.05, 0.12, 0.05)  # chance a receipt with rejects raises a nonconformance
_NCR_OPEN_PROB = (0.03, 0.05, 0.15, 0.05)  # chance an NCR stays open regardless of age
_FEEDBACK_MEAN = (4.3, 2.6, 2.8, 3.6)
# Shares per profile, by value: a share stays with its value whatever order suppliers.records declares the
# values in, and a declared value not named here gets none.
_NCR_SEVERITY_P = (
    {"critical": 0.05, "major": 0.30, "minor": 0.65},
    {"critical": 0.05, "major": 0.35, "minor": 0.60},
    {"critical": 0.20, "major": 0.45, "minor": 0.35},
    {"critical": 0.05, "major": 0.30, "minor": 0.65},
)
_STATUS_P = (
    {"approved": 0.95, "conditional": 0.05},
    {"approved": 0.50, "conditional": 0.30, "probation": 0.20},
    {"approved": 0.40, "conditional": 0.30, "probation": 0.30},
    {"pending": 1.00},
)

# --- word lists ---------------------------------------------------------------------------------------------

_CATEGORIES = (
    "machined parts",
    "electronics",
    "raw materials",
    "fasteners",
    "packaging",
    "castings",
    "chemicals",
    "logistics services",
)
_CATEGORY_P = (0.22, 0.18, 0.15, 0.12, 0.10, 0.09, 0.08, 0.06)
_CATEGORY_CORES = (
    ("Precision", "Machining", "Tooling", "Engineering"),
    ("Electronics", "Circuits", "Sensors", "Controls"),
    ("Alloys", "Metals", "Polymers", "Steel"),
    ("Fasteners", "Fixings", "Rivets", "Bolts"),
    ("Packaging", "Cartons", "Containers", "Pallets"),
    ("Castings", "Foundry", "Forge", "Die Casting"),
    ("Chemicals", "Coatings", "Adhesives", "Lubricants"),
    ("Logistics", "Freight", "Transport", "Forwarding"),
)
_PREFIXES = (
    "Nordic", "Alpine", "Baltic", "Atlas", "Meridian", "Summit", "Harbor", "Crescent", "Pinnacle", "Keystone",
    "Riverside", "Northfield", "Oakridge", "Silverline", "Bluewater", "Granite", "Evergreen", "Lakeside",
    "Ironbridge", "Westbrook", "Redwood", "Falcon", "Orion", "Vanguard", "Sterling", "Cobalt", "Horizon",
    "Beacon", "Delta", "Zenith",
)  # fmt: skip
_LEGAL_FORMS = ("Ltd", "GmbH", "AB", "Inc.", "B.V.", "S.A.", "Oy", "S.r.l.", "A/S", "LLC", "Co.", "Group")
_BUYERS = ("anna", "ben", "chen", "dara", "elif", "femi")
_CURRENCIES = ("EUR", "USD", "GBP", "SEK")
_CURRENCY_P = (0.60, 0.25, 0.10, 0.05)
_CRITICALITY_P = {"critical": 0.15, "major": 0.35, "minor": 0.50}

_EPOCH = dt.date(1970, 1, 1)


def _weights(values: tuple[str, ...], shares: dict[str, float]) -> np.ndarray:
    """``shares`` as an array in the order of ``values``; a value not in ``shares`` gets 0."""
    unknown = sorted(set(shares) - set(values))
    if unknown:
        raise ValueError(f"shares of values that are not declared: {', '.join(unknown)} (declared: {values})")
    return np.array([shares.get(value, 0.0) for value in values], dtype=np.float64)


_CRITICALITIES = RECORDS["suppliers"].field("criticality").constraints.enum
_STATUSES = RECORDS["suppliers"].field("status").constraints.enum
_SEVERITIES = RECORDS["nonconformances"].field("severity").constraints.enum
_CRITICALITY_WEIGHTS = _weights(_CRITICALITIES, _CRITICALITY_P)
_STATUS_WEIGHTS = np.stack([_weights(_STATUSES, shares) for shares in _STATUS_P])  # one row per profile
_SEVERITY_WEIGHTS = np.stack([_weights(_SEVERITIES, shares) for shares in _NCR_SEVERITY_P])


# --- public API ---------------------------------------------------------------------------------------------


def generate_frames(
    *, suppliers: int = 60, lines: int = 6000, seed: int = 7, end_date: dt.date
) -> dict[str, pl.DataFrame]:
    """Generate one consistent purchasing history ending at ``end_date``.

    Returns every record kind of :data:`suppliers.records.RECORDS`, with exactly its declared columns and
    dtypes, plus ``"profiles"`` (:data:`PROFILES_SCHEMA`: the hidden ground truth, for tests and the demo
    narrative).
    ``lines`` is the exact number of purchase-order lines. Same arguments, same frames.
    """
    end_date = _check_generate_args(suppliers, lines, seed, end_date)
    rng = np.random.default_rng(seed)
    end = (end_date - _EPOCH).days

    sup = _plan_suppliers(rng, suppliers, lines, end)
    pol = _plan_lines(rng, sup, lines, end)
    rec = _plan_receipts(rng, sup, pol, end)
    ncr = _plan_nonconformances(rng, sup, rec, end)
    fb = _plan_feedback(rng, sup, end)

    supplier_ids = _ids("S", suppliers, 4)
    po_ids = _ids("PO", int(pol["n_po"]), 7)
    frames = {
        "suppliers": _suppliers_frame(sup, supplier_ids),
        "purchase_order_lines": _lines_frame(pol, sup, supplier_ids, po_ids),
        "receipts": _receipts_frame(rec, pol, po_ids),
        "nonconformances": _ncr_frame(ncr, supplier_ids),
        "feedback": _as_declared(
            "feedback",
            {
                "supplier_id": supplier_ids.gather(fb["sup"]),
                "date": _dates(fb["day"]),
                "score": pl.Series(fb["score"], dtype=pl.Int64),
            },
        ),
        "profiles": pl.DataFrame(
            {
                "supplier_id": supplier_ids,
                "profile": pl.Series(PROFILE_NAMES, dtype=pl.Utf8).gather(sup["profile"]),
            },
            schema=PROFILES_SCHEMA,
        ),
    }
    return frames


def write_sample_data(
    frames: dict[str, pl.DataFrame], out_dir: Path, fmt: Literal["csv", "parquet"] = "csv"
) -> dict[str, Path]:
    """Write every record kind (not ``profiles``) as ``<out_dir>/<kind>.<fmt>``; return kind -> path.

    CSV has ISO dates, ``true``/``false`` booleans and empty nulls. Each file is written to a temporary name
    and renamed, so a crash never leaves a half-written file under the final name.
    """
    if fmt not in ("csv", "parquet"):
        raise ConfigError(
            f"unknown sample-data format {fmt!r}",
            where="write_sample_data(fmt=...)",
            fix="Use 'csv' or 'parquet'.",
        )
    missing = [kind for kind in RECORD_KINDS if kind not in frames]
    if missing:
        raise ConfigError(
            f"frames lack record kind(s) {', '.join(missing)}",
            where="write_sample_data(frames=...)",
            fix="Pass the dict generate_frames() returns.",
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for kind in RECORD_KINDS:
        path = out_dir / f"{kind}.{fmt}"
        frame = frames[kind]
        if fmt == "csv":
            write_atomically(path, lambda tmp, frame=frame: frame.write_csv(tmp, date_format="%Y-%m-%d", null_value=""))
        else:
            write_atomically(path, frame.write_parquet)
        written[kind] = path
    return written


# --- argument checks ----------------------------------------------------------------------------------------


def _check_generate_args(suppliers: object, lines: object, seed: object, end_date: object) -> dt.date:
    for name, value in (("suppliers", suppliers), ("lines", lines), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ConfigError(
                f"{name} must be a whole number, got {value!r}",
                where=f"generate_frames({name}=...)",
                fix=f"Pass an integer {name}.",
            )
    if suppliers < 5:
        raise ConfigError(
            f"suppliers must be at least 5, got {suppliers}",
            where="generate_frames(suppliers=...)",
            fix="Use 5 or more suppliers so every profile and fixture can be represented.",
        )
    if lines < suppliers:
        raise ConfigError(
            f"lines ({lines}) must be at least suppliers ({suppliers})",
            where="generate_frames(lines=...)",
            fix="Give every supplier at least one purchase-order line: raise lines or lower suppliers.",
        )
    if seed < 0:
        raise ConfigError(
            f"seed must not be negative, got {seed}",
            where="generate_frames(seed=...)",
            fix="Use a seed of 0 or more.",
        )
    if isinstance(end_date, dt.datetime):
        end_date = end_date.date()
    if not isinstance(end_date, dt.date):
        raise ConfigError(
            f"end_date must be a date, got {end_date!r}",
            where="generate_frames(end_date=...)",
            fix="Pass a datetime.date, e.g. datetime.date(2026, 6, 30).",
        )
    return end_date


# --- planning (NumPy only) ----------------------------------------------------------------------------------


def _uniform_per(
    rng: np.random.Generator, ranges: tuple[tuple[float, float], ...], codes: np.ndarray
) -> np.ndarray:
    """One uniform draw per element, in the per-code range ``ranges[code]``."""
    lo = np.array([r[0] for r in ranges])[codes]
    hi = np.array([r[1] for r in ranges])[codes]
    return lo + (hi - lo) * rng.random(codes.size)


def _int_between(
    rng: np.random.Generator, lo: np.ndarray | int, hi: np.ndarray | int, size: int
) -> np.ndarray:
    """Integers uniform on ``[lo, hi]`` (inclusive, element-wise)."""
    lo = np.asarray(lo, dtype=np.int64)
    hi = np.asarray(hi, dtype=np.int64)
    return lo + np.floor(rng.random(size) * (hi - lo + 1)).astype(np.int64)


def _stable_order(days: np.ndarray) -> np.ndarray:
    """Stable argsort of day numbers; a small range is sorted as int16, where NumPy uses a radix sort."""
    if days.size and int(days.max()) - int(days.min()) < np.iinfo(np.int16).max:
        days = (days - days.min()).astype(np.int16)
    return np.argsort(days, kind="stable")


def _plan_suppliers(rng: np.random.Generator, n: int, lines: int, end: int) -> dict[str, np.ndarray]:
    n_late = max(1, round(0.12 * n))
    n_quality = max(1, round(0.10 * n))
    n_sparse = max(2, round(0.05 * n))
    n_reliable = n - n_late - n_quality - n_sparse  # >= 1 because n >= 5

    # Profiles by position after a seeded shuffle.
    order = rng.permutation(n)
    profile = np.empty(n, dtype=np.int64)
    bounds = np.cumsum([0, n_reliable, n_late, n_quality, n_sparse])
    for code in (RELIABLE, LATE, QUALITY, SPARSE):
        profile[order[bounds[code] : bounds[code + 1]]] = code
    reliable_ids = order[: bounds[1]]
    late_ids = order[bounds[1] : bounds[2]]
    quality_ids = order[bounds[2] : bounds[3]]
    expired = int(reliable_ids[0])
    inactive = int(reliable_ids[1]) if n_reliable >= 2 else int(late_ids[-1])
    html = int(late_ids[0]) if int(late_ids[0]) != inactive else int(quality_ids[0])

    category = rng.choice(len(_CATEGORIES), size=n, p=_CATEGORY_P)
    category[html] = 0  # "machined parts", to match the name
    # Name = prefix + a core word of the category: distinct (prefix, core) pairs within each category, drawn
    # without replacement; only past 120 suppliers in one category does a number get added.
    n_combos = len(_PREFIXES) * 4
    combo = np.zeros(n, dtype=np.int64)
    name_rep = np.zeros(n, dtype=np.int64)
    for c in range(len(_CATEGORIES)):
        members = np.flatnonzero(category == c)
        rank = np.arange(members.size)
        combo[members] = rng.permutation(n_combos)[rank % n_combos]
        name_rep[members] = rank // n_combos
    prefix = combo // 4
    core = combo % 4
    legal = rng.integers(0, len(_LEGAL_FORMS), size=n)
    criticality = rng.choice(len(_CRITICALITIES), size=n, p=_CRITICALITY_WEIGHTS)
    # Buyers own categories; one supplier in five is looked after by someone else.
    buyer = (category + np.where(rng.random(n) < 0.2, rng.integers(1, len(_BUYERS), size=n), 0)) % len(
        _BUYERS
    )
    currency = rng.choice(len(_CURRENCIES), size=n, p=_CURRENCY_P)

    status_u = rng.random(n)
    status_cdf = np.cumsum(_STATUS_WEIGHTS, axis=1)[profile]
    status = np.minimum((status_u[:, None] >= status_cdf).sum(axis=1), len(_STATUSES) - 1)
    status[[expired, inactive]] = _STATUSES.index("approved")

    # Certificates: one expired, a few missing, the rest valid for 3 weeks to about 3 years.
    cert_day = end + _int_between(rng, 21, 1100, n)
    cert_day[expired] = end - int(_int_between(rng, 5, 120, 1)[0])
    n_null = max(1, round(0.05 * n))
    candidates = np.delete(np.arange(n), expired)
    cert_null = np.zeros(n, dtype=bool)
    cert_null[rng.choice(candidates, size=n_null, replace=False)] = True

    active = np.ones(n, dtype=bool)
    active[inactive] = False

    # Order windows, as (most recent, oldest) offsets in days before end: sparse suppliers are new, the
    # inactive one stopped being used about seven months ago.
    win_lo = np.zeros(n, dtype=np.int64)
    win_hi = np.full(n, HISTORY_DAYS - 1, dtype=np.int64)
    win_hi[profile == SPARSE] = 119
    win_lo[inactive] = int(HISTORY_DAYS * 0.4)

    # Lines per supplier: sparse 1-3, the rest share what is left by a skewed (lognormal) weight.
    counts = np.zeros(n, dtype=np.int64)
    sparse_ids = np.flatnonzero(profile == SPARSE)
    others = np.flatnonzero(profile != SPARSE)
    sparse_counts = rng.integers(1, 4, size=sparse_ids.size)
    if lines - sparse_counts.sum() < others.size:
        sparse_counts[:] = 1
    counts[sparse_ids] = sparse_counts
    rest = lines - int(sparse_counts.sum())
    base = max(1, min(30, rest // (2 * others.size)))
    weights = rng.lognormal(0.0, 0.8, size=others.size)
    counts[others] = base + rng.multinomial(rest - base * others.size, weights / weights.sum())

    return {
        "n": np.int64(n),
        "profile": profile,
        "expired": np.int64(expired),
        "inactive": np.int64(inactive),
        "html": np.int64(html),
        "category": category,
        "core": core,
        "prefix": prefix,
        "name_rep": name_rep,
        "legal": legal,
        "criticality": criticality,
        "buyer": buyer,
        "currency": currency,
        "status": status,
        "cert_day": cert_day,
        "cert_null": cert_null,
        "active": active,
        "win_lo": win_lo,
        "win_hi": win_hi,
        "counts": counts,
        "lead_base": _int_between(rng, 7, 35, n),
        "late_prob": _uniform_per(rng, _LATE_PROB, profile),
        "late_min": np.array([r[0] for r in _LATE_DAYS])[profile],
        "late_max": np.array([r[1] for r in _LATE_DAYS])[profile],
        "defective_lot_prob": _uniform_per(rng, _DEFECTIVE_LOT_PROB, profile),
        "reject_rate": _uniform_per(rng, _REJECT_RATE, profile),
        "short_prob": _uniform_per(rng, _SHORT_PROB, profile),
        "ncr_prob": np.array(_NCR_PROB)[profile],
        "n_items": np.clip(counts // 15, 4, 400),
    }


def _plan_lines(
    rng: np.random.Generator, sup: dict[str, np.ndarray], lines: int, end: int
) -> dict[str, np.ndarray]:
    counts = sup["counts"]
    # Lay lines out in supplier blocks; cut them into purchase orders of 1-4 lines that never cross a block.
    block_sup = np.repeat(np.arange(counts.size), counts)
    sizes = rng.choice(np.array([1, 2, 3, 4]), size=lines, p=(0.45, 0.30, 0.15, 0.10))  # sum >= lines
    starts = np.cumsum(sizes) - sizes
    start_flag = np.zeros(lines, dtype=bool)
    start_flag[starts[starts < lines]] = True
    start_flag[(np.cumsum(counts) - counts)[counts > 0]] = True
    po_start = np.flatnonzero(start_flag)
    po_size = np.diff(np.append(po_start, lines))
    po_sup = block_sup[po_start]
    n_po = po_start.size

    po_day = end - _int_between(rng, sup["win_lo"][po_sup], sup["win_hi"][po_sup], n_po)
    # Number purchase orders by order date; a shuffle first breaks ties between suppliers at random.
    shuffle = rng.permutation(n_po)
    po_order = shuffle[_stable_order(po_day[shuffle])]
    po_size = po_size[po_order]
    po_sup = po_sup[po_order]
    po_day = po_day[po_order]

    line_po = np.repeat(np.arange(n_po), po_size)
    po_first = np.cumsum(po_size) - po_size
    line_no = np.arange(lines, dtype=np.int64) - po_first[line_po] + 1
    line_sup = po_sup[line_po]
    order_day = po_day[line_po]

    # Items: each supplier has its own small catalogue; lines of one PO take consecutive catalogue entries.
    n_items = sup["n_items"]
    item_offset = np.cumsum(n_items) - n_items
    po_item_base = rng.integers(0, 1 << 30, size=n_po)
    item = item_offset[line_sup] + (po_item_base[line_po] + line_no - 1) % n_items[line_sup]
    total_items = int(n_items.sum())
    item_price = np.maximum(np.round(rng.lognormal(np.log(20.0), 1.3, size=total_items), 2), 0.05)
    item_qty = rng.lognormal(np.log(50.0), 1.0, size=total_items)

    unit_price = np.round(item_price[item] * (1.0 + rng.uniform(-0.03, 0.05, size=lines)), 2)
    quantity = np.clip(np.rint(item_qty[item] * rng.lognormal(0.0, 0.5, size=lines)), 1, 100_000).astype(
        np.int64
    )
    lead = np.clip(sup["lead_base"][line_sup] + _int_between(rng, -3, 10, lines), 7, 45)
    promised_day = order_day + lead

    return {
        "n_po": np.int64(n_po),
        "line_po": line_po,
        "line_no": line_no,
        "line_sup": line_sup,
        "order_day": order_day,
        "promised_day": promised_day,
        "item": item,
        "total_items": np.int64(total_items),
        "quantity": quantity,
        "unit_price": unit_price,
    }


def _plan_receipts(
    rng: np.random.Generator, sup: dict[str, np.ndarray], pol: dict[str, np.ndarray], end: int
) -> dict[str, np.ndarray]:
    s = pol["line_sup"]
    n = s.size
    order_day = pol["order_day"]
    promised = pol["promised_day"]
    q = pol["quantity"]

    # When the line is complete (its last receipt): late by the profile's range, otherwise 0-5 days early.
    is_late = rng.random(n) < sup["late_prob"][s]
    late_days = _int_between(rng, sup["late_min"][s], sup["late_max"][s], n)
    early_days = _int_between(rng, 0, 5, n)
    final = np.maximum(np.where(is_late, promised + late_days, promised - early_days), order_day + 1)

    # How much arrives in total: some lines close short.
    short = (rng.random(n) < sup["short_prob"][s]) & (q >= 2)
    short_total = np.clip(np.floor(q * rng.uniform(0.4, 0.95, size=n)), 1, q - 1).astype(np.int64)
    total = np.where(short, short_total, q)

    # Split deliveries: about 10 % in two receipts, 5 % in three (only when there are enough units).
    u = rng.random(n)
    k = np.minimum(np.where(u < 0.10, 2, np.where(u < 0.15, 3, 1)), total)
    u1 = rng.random(n)
    u2 = rng.random(n)
    part_a = np.where(
        k == 1, total, np.where(k == 2, 1 + np.floor(u1 * (total - 1)), 1 + np.floor(u1 * (total - 2)))
    ).astype(np.int64)
    part_b = np.where(k == 2, total - part_a, np.where(k == 3, 1 + np.floor(u2 * (total - part_a - 1)), 0))
    part_b = part_b.astype(np.int64)
    part_c = np.where(k == 3, total - part_a - part_b, 0)
    gap1 = _int_between(rng, 1, 14, n)
    gap2 = _int_between(rng, 1, 10, n)
    first_day = np.maximum(np.where(k == 2, final - gap1, final - gap1 - gap2), order_day + 1)
    mid_day = np.maximum(final - gap2, order_day + 1)

    rec_line = np.repeat(np.arange(n), k)
    j = np.arange(rec_line.size) - (np.cumsum(k) - k)[rec_line]
    kk = k[rec_line]
    day = np.where(j == kk - 1, final[rec_line], np.where(j == 0, first_day[rec_line], mid_day[rec_line]))
    received = np.where(j == 0, part_a[rec_line], np.where(j == 1, part_b[rec_line], part_c[rec_line]))

    # The future has not happened: drop receipts after end; number the rest by date.
    keep = np.flatnonzero(day <= end)
    keep = keep[_stable_order(day[keep])]
    rec_line = rec_line[keep]
    day = day[keep]
    received = received[keep]
    rec_sup = s[rec_line]
    defective = rng.random(received.size) < sup["defective_lot_prob"][rec_sup]
    rejected = np.where(defective, rng.binomial(received, sup["reject_rate"][rec_sup]), 0)
    return {"line": rec_line, "sup": rec_sup, "day": day, "received": received, "rejected": rejected}


def _plan_nonconformances(
    rng: np.random.Generator, sup: dict[str, np.ndarray], rec: dict[str, np.ndarray], end: int
) -> dict[str, np.ndarray]:
    # Receipts with rejects raise an NCR with a per-profile chance (most for "quality" suppliers).
    has_rejects = np.flatnonzero(rec["rejected"] > 0)
    line_sup = rec["sup"]
    s = line_sup[has_rejects]
    raised_idx = has_rejects[rng.random(has_rejects.size) < sup["ncr_prob"][s]]
    s = line_sup[raised_idx]
    m = raised_idx.size
    profile = sup["profile"][s]
    raised = np.minimum(rec["day"][raised_idx] + _int_between(rng, 0, 3, m), end)
    sev_cdf = np.cumsum(_SEVERITY_WEIGHTS, axis=1)[profile]
    severity = np.minimum((rng.random(m)[:, None] >= sev_cdf).sum(axis=1), len(_SEVERITIES) - 1)
    closed = raised + _int_between(rng, 3, np.where(profile == QUALITY, 90, 45), m)
    is_open = (closed > end) | (rng.random(m) < np.array(_NCR_OPEN_PROB)[profile])
    order = np.argsort(raised, kind="stable")
    return {
        "sup": s[order],
        "raised": raised[order],
        "severity": severity[order],
        "closed": closed[order],
        "open": is_open[order],
    }


def _plan_feedback(rng: np.random.Generator, sup: dict[str, np.ndarray], end: int) -> dict[str, np.ndarray]:
    profile = sup["profile"]
    n = profile.size
    per = np.where(profile == SPARSE, 1, rng.integers(2, 6, size=n))
    fb_sup = np.repeat(np.arange(n), per)
    m = fb_sup.size
    day = end - _int_between(rng, sup["win_lo"][fb_sup], sup["win_hi"][fb_sup], m)
    mean = np.array(_FEEDBACK_MEAN)[profile[fb_sup]]
    score = np.clip(np.rint(rng.normal(mean, 0.8)), 1, 5).astype(np.int64)
    order = np.lexsort((day, fb_sup))
    return {"sup": fb_sup[order], "day": day[order], "score": score[order]}


# --- frames (Polars) ----------------------------------------------------------------------------------------


def _as_declared(kind: str, columns: dict[str, pl.Series]) -> pl.DataFrame:
    """The generated ``columns`` of ``kind`` as a frame in the declared column order.

    Raises if they are not exactly the declared columns and dtypes, so the generator cannot drift from the
    declaration unnoticed.
    """
    frame = pl.DataFrame(columns)
    declared = RECORDS[kind].schema
    if dict(frame.schema) != dict(declared):
        raise AssertionError(f"generated {kind} columns {dict(frame.schema)} are not the declared {dict(declared)}")
    return frame.select(declared.names())


def _ids(prefix: str, count: int, min_width: int) -> pl.Series:
    """``prefix`` + 1-based zero-padded numbers, at least ``min_width`` digits wide."""
    width = max(min_width, len(str(count)))
    numbers = pl.int_range(1, count + 1, dtype=pl.Int64).cast(pl.Utf8).str.zfill(width)
    return pl.select(pl.concat_str(pl.lit(prefix), numbers).alias("id")).to_series()


def _dates(days: np.ndarray) -> pl.Series:
    return pl.Series(np.asarray(days, dtype=np.int32)).cast(pl.Date)


def _pick(words: tuple[str, ...], codes: np.ndarray) -> pl.Series:
    return pl.Series(words, dtype=pl.Utf8).gather(np.asarray(codes, dtype=np.int64))


def _suppliers_frame(sup: dict[str, np.ndarray], supplier_ids: pl.Series) -> pl.DataFrame:
    n = int(sup["n"])
    cores = [word for group in _CATEGORY_CORES for word in group]
    rep = pl.Series(sup["name_rep"] + 1, dtype=pl.Int64)
    names = (
        _pick(_PREFIXES, sup["prefix"])
        + " "
        + _pick(tuple(cores), sup["category"] * 4 + sup["core"])
        + pl.select(pl.when(rep > 1).then(" " + rep.cast(pl.Utf8)).otherwise(pl.lit(""))).to_series()
        + " "
        + _pick(_LEGAL_FORMS, sup["legal"])
    )
    names = names.scatter(int(sup["html"]), HTML_FIXTURE_NAME)
    slug = names.str.to_lowercase().str.replace_all(r"[^a-z0-9]+", "-").str.strip_chars("-")
    cert = _dates(sup["cert_day"])
    cert = cert.scatter(np.flatnonzero(sup["cert_null"]), None)
    frame = _as_declared(
        "suppliers",
        {
            "supplier_id": supplier_ids,
            "name": names,
            "category": _pick(_CATEGORIES, sup["category"]),
            "criticality": _pick(_CRITICALITIES, sup["criticality"]),
            "contact_email": "quality@" + slug + ".example.com",
            "owner_email": "buyer." + _pick(_BUYERS, sup["buyer"]) + "@example.org",
            "status": _pick(_STATUSES, sup["status"]),
            "certificate_expiry": cert,
            "active": pl.Series(sup["active"], dtype=pl.Boolean),
        },
    )
    assert frame.height == n
    return frame


def _lines_frame(
    pol: dict[str, np.ndarray], sup: dict[str, np.ndarray], supplier_ids: pl.Series, po_ids: pl.Series
) -> pl.DataFrame:
    s = pol["line_sup"]
    item_ids = _ids("IT", int(pol["total_items"]), 6)
    return _as_declared(
        "purchase_order_lines",
        {
            "po_id": po_ids.gather(pol["line_po"]),
            "line_no": pl.Series(pol["line_no"], dtype=pl.Int64),
            "supplier_id": supplier_ids.gather(s),
            "item_id": item_ids.gather(pol["item"]),
            "category": _pick(_CATEGORIES, sup["category"][s]),
            "order_date": _dates(pol["order_day"]),
            "promised_date": _dates(pol["promised_day"]),
            "quantity_ordered": pl.Series(pol["quantity"], dtype=pl.Float64),
            "unit_price": pl.Series(pol["unit_price"], dtype=pl.Float64),
            "currency": _pick(_CURRENCIES, sup["currency"][s]),
        },
    )


def _receipts_frame(
    rec: dict[str, np.ndarray], pol: dict[str, np.ndarray], po_ids: pl.Series
) -> pl.DataFrame:
    line = rec["line"]
    received = rec["received"].astype(np.float64)
    rejected = rec["rejected"].astype(np.float64)
    return _as_declared(
        "receipts",
        {
            "receipt_id": _ids("RC", line.size, 8),
            "po_id": po_ids.gather(pol["line_po"][line]),
            "line_no": pl.Series(pol["line_no"][line], dtype=pl.Int64),
            "received_date": _dates(rec["day"]),
            "quantity_received": received,
            "quantity_accepted": received - rejected,
            "quantity_rejected": rejected,
        },
    )


def _ncr_frame(ncr: dict[str, np.ndarray], supplier_ids: pl.Series) -> pl.DataFrame:
    closed = _dates(ncr["closed"]).scatter(np.flatnonzero(ncr["open"]), None)
    return _as_declared(
        "nonconformances",
        {
            "ncr_id": _ids("NCR", ncr["sup"].size, 6),
            "supplier_id": supplier_ids.gather(ncr["sup"]),
            "raised_date": _dates(ncr["raised"]),
            "severity": _pick(_SEVERITIES, ncr["severity"]),
            "closed_date": closed,
        },
    )
