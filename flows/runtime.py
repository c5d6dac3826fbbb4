"""Prefect's process environment: offline, quiet, no heartbeat cost. Call ``configure`` before importing prefect."""

from __future__ import annotations

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


# How Prefect's engine mentions an exception in a state message: "... exception SourceError: ..." or "SourceError(".
_USER_ERROR_MENTION = re.compile(rf"\b(?:{'|'.join(sorted(_error_names(SupplierEvalError)))})[:(]")


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
        return not (("Failed(" in text or "exception" in text) and _USER_ERROR_MENTION.search(text))


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
