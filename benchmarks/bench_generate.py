"""Time ``suppliers.generate.generate_frames`` (and optionally the file writes) at large sizes.

    .venv/bin/python benchmarks/bench_generate.py                       # 1M and 10M lines
    .venv/bin/python benchmarks/bench_generate.py --lines 100000 1000000 --write parquet

Target: 10M lines in under 30 s on 2 cores. Not a test: prints one line per size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from suppliers.generate import generate_frames, write_sample_data
from suppliers.records import RECORD_KINDS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, nargs="+", default=[1_000_000, 10_000_000], help="line counts")
    parser.add_argument(
        "--suppliers",
        type=int,
        default=None,
        help="supplier count (default: max(60, lines // 200), i.e. 50k suppliers at 10M lines)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--end-date", type=dt.date.fromisoformat, default=dt.date(2026, 6, 30))
    parser.add_argument("--repeat", type=int, default=1, help="runs per size; the best is reported")
    parser.add_argument(
        "--write", choices=("csv", "parquet"), help="also time write_sample_data to a temp dir"
    )
    args = parser.parse_args(argv)

    for lines in args.lines:
        suppliers = args.suppliers if args.suppliers is not None else max(60, lines // 200)
        best = float("inf")
        frames = {}
        for _ in range(args.repeat):
            frames = {}
            gc.collect()
            start = time.perf_counter()
            frames = generate_frames(suppliers=suppliers, lines=lines, seed=args.seed, end_date=args.end_date)
            best = min(best, time.perf_counter() - start)
        rows = sum(frames[kind].height for kind in RECORD_KINDS)
        line = (
            f"generate_frames lines={lines:,} suppliers={suppliers:,}: {best:.2f} s, "
            f"{lines / best:,.0f} lines/s, {rows / best:,.0f} rows/s over all kinds "
            f"(receipts={frames['receipts'].height:,}, nonconformances={frames['nonconformances'].height:,}, "
            f"feedback={frames['feedback'].height:,})"
        )
        if args.write:
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                paths = write_sample_data(frames, Path(tmp), args.write)
                took = time.perf_counter() - start
                size = sum(path.stat().st_size for path in paths.values())
            line += f"; write {args.write}: {took:.2f} s, {size / 1e6:,.0f} MB"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
