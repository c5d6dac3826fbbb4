"""Benchmark: peak memory (RSS) of reading and validating 10M order lines with their receipts.

Each step runs in a child process of its own, and its peak resident set size is what the kernel says the child
used (``os.wait4``'s ``ru_maxrss``), so nothing the parent holds is counted. Generating the data is not measured:
the sample-data generator writes a data folder once into ``--work`` (every record kind, about 1.15 receipts per
line) and later runs reuse it. Steps:

- ``read``: the data folder read as a run and ``supplier-eval validate`` read it (``load_sources``: only the
  fields an evaluation reads, ``suppliers.runs.fields_a_run_reads``, where the code measured has them; CSV as
  text, the columns cast to dates, numbers and true/false compact, as Categorical; Parquet as stored), nothing
  else: the floor under validation;
- ``validate``: read, then ``validate_inputs`` of every kind (cast, Pandera checks, duplicates, references):
  what ``supplier-eval validate`` does;
- ``window``: the same with the run's 365-day window (``validate_inputs(window=...)``), when available;
- ``mapping``: the CSV folder read through a mapping file that maps every column by name (for a run: the fields
  it reads), then validated;
- ``run``: what an evaluation's validation holds: read, validated for the 365-day window, each receipt's line
  handed on, only the columns a run keeps (``RunReading.columns``), when available.

    .venv/bin/python benchmarks/bench_memory.py [--lines 10000000] [--format csv parquet] [--steps read validate]

Target (the issue): reading + validating 10M lines and their receipts peaks under 3 GB.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sample_data import sample_folder  # noqa: E402

AS_OF = date(2026, 6, 30)
WINDOW_DAYS = 365
STEPS = ("read", "validate", "window", "mapping", "run")


def prepare(work: Path, lines: int, fmt: str) -> Path:
    """The data folder of ``lines`` order lines in ``fmt``, generated once (in a child, not measured)."""
    return sample_folder(work, lines, fmt, AS_OF)


def child(step: str, folder: Path) -> None:
    """Run one step in this process and print what it did as JSON (the parent measures the memory)."""
    from rules.metrics import window_start
    from suppliers.mapping import load_mapping, read_mapped_sources
    from suppliers.records import RECORDS
    from suppliers.sources import load_sources
    from suppliers.validate import validate_inputs

    try:  # what a run and supplier-eval validate read, where the code measured says
        from suppliers.runs import fields_a_run_reads
        fields = fields_a_run_reads()
    except ImportError:
        fields = None
    started = time.perf_counter()
    if step == "mapping":
        mapping = folder / "mapping.yaml"
        text = ["sources:"]
        text += [f"  {kind}: {{path: {path.name}}}" for kind, path in _files(folder).items()]
        text.append("records:")
        for kind in _files(folder):
            text += [f"  {kind}:", f"    from: {kind}", "    fields:"]
            text += [f"      {name}: {name}" for name in RECORDS[kind].columns]
        mapping.write_text("\n".join(text) + "\n")
        loaded = read_mapped_sources(load_mapping(mapping).reading_only(fields) if fields else load_mapping(mapping))
    else:
        loaded = load_sources(folder, fields)
    read = time.perf_counter() - started
    rows = {kind: frame.height for kind, (_, frame) in loaded.raw.items()}
    kept = None
    if step != "read":
        window = {"window": (window_start(AS_OF, WINDOW_DAYS), AS_OF)} if step in ("window", "run") else {}
        if step == "run":
            from suppliers.runs import RunReading

            window |= {"with_receipt_lines": True, "columns": RunReading(receipt_lines=True).columns}
        result = validate_inputs(loaded.raw, as_of=AS_OF, formats=loaded.formats, max_quarantine_share=1.0,
                                 **window)
        kept = dict(zip(result.summary["kind"], result.summary["rows_read"], strict=True))
    print(json.dumps({"read": read, "total": time.perf_counter() - started, "rows": rows, "validated": kept}))


def _files(folder: Path) -> dict[str, Path]:
    from suppliers.sources import discover_sources

    return {kind: source.path for kind, source in discover_sources(folder).items()}


def measure(step: str, folder: Path) -> tuple[float, dict]:
    """Run ``step`` in a child process: (its peak RSS in GB of 10⁹ bytes, what it printed)."""
    process = subprocess.Popen([sys.executable, __file__, "--child", step, str(folder)], stdout=subprocess.PIPE,
                               text=True, cwd=Path(__file__).resolve().parents[1])
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"step {step} failed ({process.returncode})")
    return usage.ru_maxrss * 1024 / 1e9, json.loads(output.strip().splitlines()[-1])  # ru_maxrss is in KiB


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--format", nargs="+", choices=("csv", "parquet"), default=["csv", "parquet"])
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    parser.add_argument("--work", type=Path, default=Path("/tmp/supplier-eval-bench"))
    args = parser.parse_args()

    from suppliers.validate import validate_inputs

    windowed = "window" in inspect.signature(validate_inputs).parameters
    print(f"{'data folder':<22} {'step':<9} {'peak RSS':>9} {'seconds':>8}  rows")
    for fmt in args.format:
        folder = prepare(args.work, args.lines, fmt)
        for step in args.steps:
            runs = "columns" in inspect.signature(validate_inputs).parameters
            if (step == "window" and not windowed) or (step == "mapping" and fmt != "csv") or (
                    step == "run" and not runs):
                continue
            peak, done = measure(step, folder)
            rows = done["validated"] or done["rows"]
            shown = ", ".join(f"{kind} {count:,}" for kind, count in rows.items()
                              if kind in ("purchase_order_lines", "receipts"))
            print(f"{fmt + ', ' + f'{args.lines:,} lines':<22} {step:<9} {peak:7.2f} GB "
                  f"({peak * 1e9 / 2**30:.2f} GiB) {done['total']:8.1f}  "
                  f"{'validated' if done['validated'] else 'read'}: {shown}", flush=True)


if __name__ == "__main__":
    main()
