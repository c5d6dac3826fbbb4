"""Prefect's process environment: offline, quiet, no heartbeat cost. Call ``configure`` before importing prefect."""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from suppliers.errors import SupplierEvalError

OFFLINE_DEFAULTS = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_LOGGING_COLORS": "false",
    "PREFECT_CLI_COLORS": "false",
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}


def configure(prefect_home: Path | None = None) -> None:
    """Set Prefect's environment unless the user set it: no telemetry, a home of our own when none is set."""
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if prefect_home is not None and "PREFECT_HOME" not in os.environ:
        prefect_home.mkdir(parents=True, exist_ok=True)
        os.environ["PREFECT_HOME"] = str(prefect_home)


def _error_names(cls: type[SupplierEvalError]) -> set[str]:
    return {cls.__name__, *(name for sub in cls.__subclasses__() for name in _error_names(sub))}


def _user_error_mention() -> re.Pattern[str]:
    """How Prefect's engine mentions a user error in a state message: "... exception SourceError: ..." or
    "SourceError(" — for every error class defined so far (some live next to what raises them)."""
    return _mention_pattern(frozenset(_error_names(SupplierEvalError)))


@functools.cache
def _mention_pattern(names: frozenset[str]) -> re.Pattern[str]:
    return re.compile(rf"\b(?:{'|'.join(sorted(names))})[:(]")


class _UserErrorFilter(logging.Filter):
    """Drop Prefect's own lines about a run that failed on a user error: the CLI says it once, in one line.

    Prefect reports such a failure three or four times (the task failed, its state, the flow failed, its state),
    each with the whole message; a bug (any other exception) keeps its lines and traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], SupplierEvalError):
            return False
        if not record.name.startswith("prefect"):
            return True
        text = record.getMessage()
        return not (("Failed(" in text or "exception" in text) and _user_error_mention().search(text))


_FILTER = _UserErrorFilter()


def quiet_user_errors() -> None:
    """Attach the filter to Prefect's run loggers and every handler below 'prefect' (call after importing prefect)."""
    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs", "prefect.flow_engine", "prefect.task_engine"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)


@contextmanager
def fast_flow_runs() -> Iterator[None]:
    """Skip the flow heartbeat thread (about a second a run); the run records are unchanged."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    quiet_user_errors()
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


# The evaluation's tasks in the order a run passes them (flows/pipeline.py): the progress bar's steps.
RUN_STEPS = ("load sources", "validate", "read schedule", "read history", "compute metrics", "score", "decide",
             "store results", "read follow-up", "render reports", "deliver")


class _StepProgress(logging.Handler):
    """Moves a progress bar on as each task of the run finishes (from Prefect's task-run log lines)."""

    def __init__(self, progress: object, bar: object) -> None:
        super().__init__(level=logging.INFO)
        self.progress, self.bar = progress, bar

    def emit(self, record: logging.LogRecord) -> None:
        name = getattr(record, "task_name", None)
        if name in RUN_STEPS and record.getMessage().startswith("Finished in state"):
            step = RUN_STEPS.index(name) + 1
            following = RUN_STEPS[step] if step < len(RUN_STEPS) else "finishing"
            self.progress.update(self.bar, completed=step, description=following)  # type: ignore[attr-defined]


def shows_progress() -> bool:
    """A progress bar only for a person at a terminal: never into a log file, a pipe or CI."""
    import sys

    return sys.stderr.isatty() and not os.environ.get("CI") and os.environ.get("TERM") != "dumb"


@contextmanager
def run_progress(enabled: bool | None = None) -> Iterator[None]:
    """Show the run's steps as a progress bar on stderr while the block runs (rich; gone when it ends)."""
    if not (shows_progress() if enabled is None else enabled):
        yield
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("{task.description:<16}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        TimeElapsedColumn(), console=Console(stderr=True), transient=True)
    bar = progress.add_task(RUN_STEPS[0], total=len(RUN_STEPS))
    handler = _StepProgress(progress, bar)
    logger = logging.getLogger("prefect.task_runs")
    logger.addHandler(handler)
    try:
        with progress:
            yield
    finally:
        logger.removeHandler(handler)
