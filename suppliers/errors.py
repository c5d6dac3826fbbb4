"""The one error tree of supplier-eval.

Every error a user can cause says what went wrong, where, and how to fix it; the CLI prints it as one line
(plus the further problems below it, one per line) and exits with the class's ``exit_code``.

    SupplierEvalError
    ├── ConfigError            bad settings, parameters or usage           (exit 2)
    │   ├── RuleSetError       a rule file that does not check             (exit 2)
    │   └── MappingError       a mapping file that does not check          (exit 2)
    ├── SourceError            an input file that cannot be read as a whole (exit 1)
    ├── DataQualityError       too many bad rows to score on                (exit 1)
    ├── StoreError             the evaluation store refused an operation    (exit 1)
    └── DeliveryError          mail could not be delivered                  (exit 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "SupplierEvalError",
    "ConfigError",
    "RuleSetError",
    "MappingError",
    "SourceError",
    "DataQualityError",
    "StoreError",
    "DeliveryError",
]


class SupplierEvalError(Exception):
    """Base of every error supplier-eval raises on purpose.

    ``details`` are further problems of the same kind (a rule file with three mistakes): the message names
    the first and how many follow; the CLI prints each of the others on its own line below.
    ``transient`` says whether trying the same thing again may succeed (a locked store); only such errors
    are retried.
    """

    exit_code = 1
    transient = False

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None,
                 details: Sequence[str] = ()) -> None:
        self.what = what
        self.where = where
        self.fix = fix
        self.details = tuple(details)
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.where}: {self.what}" if self.where else self.what
        if self.fix:
            text = f"{text.rstrip('.')}. {self.fix}"
        if self.details:
            more = len(self.details)
            text = f"{text} ({more} more problem{'s' if more != 1 else ''} below)"
        return text

    def __reduce__(self) -> tuple[Any, ...]:  # Prefect pickles exceptions: keep the keyword context and state
        return (_rebuild, (type(self), self.what, self.where, self.fix, self.details), self.__dict__)


def _rebuild(cls: type[SupplierEvalError], what: str, where: str | None, fix: str | None,
             details: tuple[str, ...]) -> SupplierEvalError:
    error = cls.__new__(cls)
    SupplierEvalError.__init__(error, what, where=where, fix=fix, details=details)
    return error


class ConfigError(SupplierEvalError):
    """Settings, run parameters or command-line usage are wrong."""

    exit_code = 2


class RuleSetError(ConfigError):
    """A rule-set file does not parse or check; ``where`` is ``file:line``."""


class MappingError(ConfigError):
    """A mapping file (how exports become records) does not parse or check; ``where`` is ``file:line``."""


class SourceError(SupplierEvalError):
    """An input source cannot be used at all: missing file, missing column, unreadable encoding."""


class DataQualityError(SupplierEvalError):
    """A source's quarantined share is over the configured threshold, so scoring would mislead.

    Carries every quarantined row and the per-source summary, for the data-quality report of the failed run.
    """

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None,
                 quarantine: pl.DataFrame | None = None, summary: pl.DataFrame | None = None) -> None:
        super().__init__(what, where=where, fix=fix)
        self.quarantine = quarantine
        self.summary = summary


class StoreError(SupplierEvalError):
    """The evaluation store could not be opened or written; ``transient`` when a retry may succeed."""

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None,
                 transient: bool = False) -> None:
        super().__init__(what, where=where, fix=fix)
        self.transient = transient


class DeliveryError(SupplierEvalError):
    """One or more messages could not be delivered after their retries."""
