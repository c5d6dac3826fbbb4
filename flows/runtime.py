"""Prefect's process environment: offline, quiet, no heartbeat cost. Call ``configure`` before importing prefect."""

from __future__ import annotations

import logging
import os
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


class _UserErrorTracebackFilter(logging.Filter):
    """Keep the log line of a failed run, drop the traceback when the cause is a user error, not a bug."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], SupplierEvalError):
            record.exc_info = None
            record.exc_text = None
        return True


_FILTER = _UserErrorTracebackFilter()


def hide_user_error_tracebacks() -> None:
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

    hide_user_error_tracebacks()
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield
