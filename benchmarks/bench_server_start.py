"""Start-up of a one-shot command's Prefect API: Prefect's temporary server against ours (a child that dies with
the command, started while Prefect is imported).

    .venv/bin/python benchmarks/bench_server_start.py [--repeat 3]

Each way runs in a fresh process on the same, already migrated, Prefect database, and is timed from the start of
the process until the first flow could run: Prefect's way imports prefect and the flows, then starts its temporary
server on the first flow call; ours launches the server first and imports while it starts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PREFECTS_WAY = """
import time; began = time.perf_counter()
from flows import pipeline
from prefect.server.api.server import SubprocessASGIServer
server = SubprocessASGIServer(); server.start()
print(time.perf_counter() - began); server.stop()
"""

OURS = """
import os, time; began = time.perf_counter()
from pathlib import Path
from flows.server import prefect_api
with prefect_api(Path(os.environ["PREFECT_HOME"]), before_wait=lambda: __import__("flows.pipeline")):
    print(time.perf_counter() - began)
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-server-"))
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_UI_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING")

    def once(code: str) -> float:
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        return float(result.stdout.strip().splitlines()[-1])

    once(OURS)  # migrate the database once: both ways then start on the same one
    for label, code in (("Prefect's temporary server", PREFECTS_WAY), ("ours (child, dies with the command)", OURS)):
        times = sorted(once(code) for _ in range(args.repeat))
        print(f"{label:<38} best {times[0]:5.2f} s  median {times[len(times) // 2]:5.2f} s  (import + API healthy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
