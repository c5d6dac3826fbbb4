"""The one error tree of supplier-eval.

Every error a user can cause says what went wrong, where, and how to fix it; the CLI prints it as one line
and exits with the class's ``exit_code``.

    SupplierEvalError
    ├── ConfigError            bad settings, parameters or usage           (exit 2)
    │   └── RuleSetError       a rule file that does not check             (exit 2)
    ├── SourceError            an input file that cannot be read as a whole (exit 1)
    ├── DataQualityError       too many bad rows to score on                (exit 1)
    ├── StoreError             the evaluation store refused an operation    (exit 1)
    └── DeliveryError          mail could not be delivered                  (exit 1)
"""

from __future__ import annotations

__all__ = [
    "SupplierEvalError",
    "ConfigError",
    "RuleSetError",
    "SourceError",
    "DataQualityError",
    "StoreError",
    "DeliveryError",
]


class SupplierEvalError(Exception):
    """Base of every error supplier-eval raises on purpose."""

    exit_code = 1

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.where}: {self.what}" if self.where else self.what
        if self.fix:
            text = f"{text.rstrip('.')}. {self.fix}"
        return text

    def __reduce__(self):  # keep keyword context and extra attributes when Prefect pickles the exception
        return (_rebuild, (type(self), self.what, self.where, self.fix), self.__dict__)


def _rebuild(cls: type[SupplierEvalError], what: str, where: str | None, fix: str | None) -> SupplierEvalError:
    return cls(what, where=where, fix=fix)


class ConfigError(SupplierEvalError):
    """Settings, run parameters or command-line usage are wrong."""

    exit_code = 2


class RuleSetError(ConfigError):
    """A rule-set file does not parse or check; ``where`` is ``file:line``."""


class SourceError(SupplierEvalError):
    """An input source cannot be used at all: missing file, missing column, unreadable encoding."""


class DataQualityError(SupplierEvalError):
    """A source's quarantined share is over the configured threshold, so scoring would mislead."""


class StoreError(SupplierEvalError):
    """The evaluation store could not be opened or written."""


class DeliveryError(SupplierEvalError):
    """One or more messages could not be delivered after their retries."""
