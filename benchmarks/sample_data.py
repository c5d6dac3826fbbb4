"""The benchmarks' input: a data folder of generated sample records, made once per size and format and kept."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sample_folder(work: Path, lines: int, fmt: str, as_of: date) -> Path:
    """``work/<fmt>-<lines>``: ``lines`` order lines (``lines // 200`` suppliers, seed 7) up to ``as_of``.

    Generated in a child process (so its memory and time are not the benchmark's), once: a finished folder is
    marked ``.complete`` and reused.
    """
    folder = work / f"{fmt}-{lines}"
    if not (folder / ".complete").exists():
        code = (
            "from pathlib import Path; from datetime import date\n"
            "from suppliers.generate import generate_frames, write_sample_data\n"
            f"frames = generate_frames(suppliers=max(60, {lines} // 200), lines={lines}, seed=7, "
            f"end_date=date({as_of.year}, {as_of.month}, {as_of.day}))\n"
            "frames.pop('profiles')\n"
            f"write_sample_data(frames, Path({str(folder)!r}), {fmt!r})\n"
        )
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
        (folder / ".complete").write_text("")
        print(f"generated {lines:,} lines as {fmt} into {folder} in {time.perf_counter() - started:.0f} s",
              flush=True)
    return folder
