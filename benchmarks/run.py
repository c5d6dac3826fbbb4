"""Run every benchmark: the timing ones at 1M order lines (the figures the README quotes; --lines for other
sizes), rendering and writing 10,000 supplier reports, then loading, mapping and validating 5M receipts from CSV
next to Polars' and DuckDB's own reads, the peak memory of reading and validating 10M order lines with their
receipts, delivering 1,000 messages through the outbox ledger (with the kill experiment), then the evaluation side
by side with DuckDB and pandas (needs the bench extra, which make bench installs).

    make bench                                   # or: .venv/bin/python benchmarks/run.py --lines 10000000
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    lines = sys.argv[sys.argv.index("--lines") + 1] if "--lines" in sys.argv else "1000000"
    runs = [
        ["bench_generate.py", "--lines", lines, "--repeat", "1"],
        ["bench_validate.py", "--lines", lines],
        ["bench_scoring.py", "--lines", lines, "--repeat", "3"],
        ["bench_render.py", "--suppliers", "10000", "--repeat", "3"],
        ["bench_load.py", "--receipts", "5000000", "--repeat", "3"],
        ["bench_memory.py", "--lines", "10000000"],
        ["bench_delivery.py", "--messages", "1000", "--kill-messages", "400"],
        ["bench_compare.py", "--sizes", lines],
    ]
    for script, *args in runs:
        print(f"== {script} {' '.join(args)}", flush=True)
        status = subprocess.call([sys.executable, str(HERE / script), *args])
        if status:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
