"""Ad-hoc latency: one supplier evaluated at 1M order lines, four ways, and the engine's own share of it.

    .venv/bin/python benchmarks/bench_adhoc.py [--lines 1000000] [--suppliers 4740] [--repeat 3]

1. ``evaluate --supplier ID`` as a user types it, without PREFECT_API_URL: the command starts its own local API
   server (a child that dies with it) while it imports Prefect;
2. the same with PREFECT_API_URL pointing at a running Prefect server;
3. ``trigger adhoc --supplier ID`` against a running ``supplier-eval serve``;
4. in one process with the API already up: the adhoc flow's wall time, and the engine's share of it — the core
   functions the flow's tasks call (load, validate, schedule, measure, score, decide, store, render, deliver),
   timed by wrapping them; the rest is Prefect's bookkeeping of the run and its tasks.
Each suppliers' evaluation is a new one (another supplier each time), so nothing is "already recorded".
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-c", "import sys; from flows.cli import main; sys.exit(main())"]
END = date(2026, 6, 30)


def settings(work: Path, data: Path) -> Path:
    config = work / "supplier-eval.toml"
    config.write_text(f'[data]\ndir = "{data}"\n[store]\nurl = "sqlite:///store.db"\n[output]\ndir = "reports"\n'
                      '[mail]\nsender = "supplier-eval@example.org"\nofficers = ["qm@example.org"]\n'
                      'outbox_dir = "outbox"\n', encoding="utf-8")
    return config


def timed(command: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - began
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[3:])} failed:\n{result.stderr}")
    return elapsed


def wait_for_line(log: Path, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        if time.monotonic() > deadline:
            raise SystemExit(f"no {text!r} in {log} after {timeout} s:\n{log.read_text()}")
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--suppliers", type=int, default=4740)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-adhoc-"))
    data = work / "data"
    began = time.perf_counter()
    subprocess.run([*CLI, "generate", "--suppliers", str(args.suppliers), "--lines", str(args.lines), "--seed", "3",
                    "--format", "parquet", "--end", str(END), "--out", str(data)], check=True, capture_output=True)
    print(f"data: {args.lines:,} order lines, {args.suppliers:,} suppliers, Parquet "
          f"(generated in {time.perf_counter() - began:.1f} s) in {work}")
    config = settings(work, data)
    env = {key: value for key, value in os.environ.items() if key not in ("PREFECT_API_URL", "PREFECT_HOME")}
    env.update(DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING")
    ids = iter(f"S{n:04d}" for n in range(1, 10_000))
    rows: list[tuple[str, list[float]]] = []

    def evaluate(extra_env: dict[str, str]) -> float:
        return timed([*CLI, "evaluate", "--config", str(config), "--supplier", next(ids), "--as-of", str(END),
                      "--no-email"], {**env, **extra_env})

    evaluate({})  # first run of the store and Prefect's database: migrations, not latency
    rows.append(("evaluate, no PREFECT_API_URL (own API child)", [evaluate({}) for _ in range(args.repeat)]))

    log = work / "serve.log"
    port = "4291"
    with log.open("wb") as out:
        serve = subprocess.Popen([*CLI, "serve", "--config", str(config), "--port", port], env=env, stdout=out,
                                 stderr=subprocess.STDOUT)
    try:
        wait_for_line(log, "Serving 'nightly/nightly'")
        api = f"http://127.0.0.1:{port}/api"
        rows.append(("evaluate, PREFECT_API_URL set (running server)",
                     [evaluate({"PREFECT_API_URL": api}) for _ in range(args.repeat)]))
        trigger = [[*CLI, "trigger", "adhoc", "--supplier", next(ids), "--as-of", str(END), "--no-email",
                    "--api-url", api] for _ in range(args.repeat)]
        rows.append(("trigger adhoc -> running serve", [timed(command, env) for command in trigger]))
    finally:
        serve.terminate()
        serve.wait(timeout=60)

    flow_times, engine_times, breakdown = in_process(config, ids, args.repeat)
    rows.append(("adhoc flow in process, API up (no start-up)", flow_times))
    rows.append(("  of which the engine (core functions)", engine_times))
    print(f"\n{'way':<48} {'best':>7} {'median':>7}   (seconds, {args.repeat} runs; one supplier each)")
    for label, times in rows:
        times = sorted(times)
        print(f"{label:<48} {times[0]:7.2f} {times[len(times) // 2]:7.2f}")
    print("\nengine share by step (median run): " + ", ".join(f"{name} {seconds:.2f}" for name, seconds in breakdown))
    return 0


def in_process(config: Path, ids: Iterator[str],
               repeat: int) -> tuple[list[float], list[float], list[tuple[str, float]]]:
    """The adhoc flow with the API already up; its core calls timed by wrapping the names the flow module uses."""
    from flows import runtime

    runtime.configure(config.parent / ".prefect")
    from flows.server import prefect_api

    with prefect_api(Path(os.environ["PREFECT_HOME"])):
        from flows import pipeline
        from flows.params import RunParameters

        try:  # the measuring tasks have a module of their own since 2026-12-01
            from flows import measuring, shards
            owners: tuple[object, ...] = (pipeline, measuring, shards)
        except ImportError:  # pragma: no cover - the code before
            owners = (pipeline,)

        spent: dict[str, float] = defaultdict(float)

        def wrap(owner: object, name: str, label: str) -> None:
            original = getattr(owner, name)

            def timed_call(*args: object, **kwargs: object) -> object:
                began = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    spent[label] += time.perf_counter() - began

            setattr(owner, name, timed_call)

        for name, label in (("load_inputs", "load"), ("validate_inputs", "validate"), ("schedule", "schedule"),
                            ("requested_suppliers", "schedule"), ("suppliers_to_evaluate", "schedule"),
                            ("with_asl_facts", "schedule"), ("with_current_status", "schedule"),
                            ("measure_suppliers", "metrics"), ("score_suppliers", "score"), ("decide", "decide"),
                            ("quarantine_summary_with_reasons", "store"), ("write_run_reports", "render"),
                            ("deliver_run_messages", "deliver")):
            for owner in owners:  # each module that calls it by this name
                if hasattr(owner, name):
                    wrap(owner, name, label)
        for name in ("read_history", "last_scored", "save_results", "open_follow_up", "start_run", "finish_run",
                     "acquire_run_lock", "release_run_lock"):
            wrap(pipeline.Store, name, "store")
        flow_times, engine_times, runs = [], [], []
        with runtime.fast_flow_runs():
            pipeline.adhoc(RunParameters(config_file=str(config), suppliers=(next(ids),), as_of=END,
                                         send_email=False))  # warm: imports, first task runs
            for _ in range(repeat):
                spent.clear()
                began = time.perf_counter()
                pipeline.adhoc(RunParameters(config_file=str(config), suppliers=(next(ids),), as_of=END,
                                             send_email=False))
                flow_times.append(time.perf_counter() - began)
                engine_times.append(sum(spent.values()))
                runs.append(dict(spent))
    median = sorted(runs, key=lambda run: sum(run.values()))[len(runs) // 2]
    return flow_times, engine_times, sorted(median.items(), key=lambda item: -item[1])


if __name__ == "__main__":
    sys.exit(main())
