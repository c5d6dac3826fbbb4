"""The settings file (TOML): where data, store, reports and mail go. Secrets never live here.

Relative paths are taken from the settings file's folder (or the working folder without a file), so a
settings file and its data can move together. See ``examples/supplier-eval.toml`` for every key.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from reports.delivery import SmtpSettings, Transport
from reports.routing import Routing
from suppliers.addresses import is_address
from suppliers.errors import ConfigError

SETTINGS_ENV = "SUPPLIER_EVAL_CONFIG"
STORE_URL_ENV = "SUPPLIER_EVAL_STORE_URL"  # a PostgreSQL URL carries a password: keep it out of the file
DEFAULT_SETTINGS_NAME = "supplier-eval.toml"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataSettings(_Section):
    dir: Path = Field(Path("data"), description="Folder with suppliers, purchase_order_lines, receipts, ... files.")
    mapping: Path | None = Field(None, description="Mapping file (YAML): the exports to read and how they map "
                                                   "onto the records. Without it, dir holds canonical files.")


class StoreSettings(_Section):
    url: str = Field("sqlite:///supplier-eval.db", description="SQLAlchemy URL: sqlite:///file.db or postgresql://...")
    lock_wait_seconds: float = Field(600, ge=0, le=86_400, description="How long a run waits for another run "
                                     "writing the same evaluations to finish before it gives up.")


class RulesSettings(_Section):
    file: Path | None = Field(None, description="Rule file; the shipped ISO 9001 clause 8.4 rules when unset.")


class OutputSettings(_Section):
    dir: Path = Field(Path("reports-out"), description="Where each run's reports and quarantine are written.")


class ScheduleSettings(_Section):
    evaluate: Literal["due", "all"] = Field(
        "due", description="What the nightly run evaluates: the active suppliers due for re-evaluation (each "
        "profile's interval after its last scored evaluation; never scored: due), or every active supplier.")
    cron: str = Field("0 2 * * *", description="When `supplier-eval serve` starts the nightly run (cron: minute "
                      "hour day-of-month month day-of-week).")
    timezone: str = Field("UTC", description="The time zone the cron line is read in (IANA name, e.g. "
                          "Europe/Berlin).")
    port: int = Field(4200, ge=1, le=65535, description="Port of the Prefect server (API and UI) that "
                      "`supplier-eval serve` starts on 127.0.0.1 when PREFECT_API_URL is not set.")

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        if len(value.split()) != 5 and not value.strip().startswith("@"):
            raise ValueError(f"{value!r} is not a cron line: five fields (minute hour day month weekday), "
                             "e.g. \"0 2 * * *\" for 02:00 every day")
        return value.strip()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone; use an IANA name such as UTC or Europe/Berlin") from None
        return value


class OrganisationSettings(_Section):
    name: str | None = Field(None, description="The organisation, shown on the audit evidence pack's cover.")
    scope: str | None = Field(None, description="The scope of the supplier evaluation (sites, product lines), "
                                                "shown on the audit evidence pack's cover.")


class ValidationSettings(_Section):
    max_quarantine_share: float = Field(0.2, ge=0, le=1, description="Stop when a source has more bad rows.")


class MailSettings(_Section):
    sender: str = "supplier-eval@localhost"
    officers: tuple[str, ...] = Field((), description="Who receives the officer digest.")
    data_owner: str | None = Field(None, description="Who receives the data-quality report when a run stops "
                                                     "for bad data (the person who can fix the exports).")
    outbox_dir: Path = Field(Path("outbox"), description="Where .eml files go when no SMTP server is set.")
    concurrency: int = Field(4, ge=1, le=64)
    retries: int = Field(3, ge=0, le=10)
    smtp: SmtpSettings | None = None

    @field_validator("sender")
    @classmethod
    def _sender_is_an_address(cls, value: str) -> str:
        if not is_address(value):
            raise ValueError(f"{value!r} is not an email address")
        return value

    @field_validator("data_owner")
    @classmethod
    def _owner_is_an_address(cls, value: str | None) -> str | None:
        if value is not None and not is_address(value):
            raise ValueError(f"{value!r} is not an email address")
        return value

    @field_validator("officers")
    @classmethod
    def _officers_are_addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [address for address in value if not is_address(address)]
        if bad:
            raise ValueError(f"not an email address: {', '.join(map(repr, bad))}")
        return value


class RoutingSettings(_Section):
    supplier_reports: Literal["per_buyer", "per_supplier"] = Field(
        "per_buyer", description="How each buyer (a supplier's owner_email) gets the reports of their suppliers: "
        "one message with all of them (a summary, then the reports), or one message per supplier.")
    supplier_contact: bool = Field(False, description="Also send each supplier its own report, to its "
                                                      "contact_email.")


class Settings(_Section):
    data: DataSettings = DataSettings()
    store: StoreSettings = StoreSettings()
    rules: RulesSettings = RulesSettings()
    output: OutputSettings = OutputSettings()
    validation: ValidationSettings = ValidationSettings()
    mail: MailSettings = MailSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    organisation: OrganisationSettings = OrganisationSettings()
    routing: RoutingSettings = RoutingSettings()
    base_dir: Path = Field(Path("."), exclude=True)

    @field_validator("base_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.resolve()

    def path(self, value: Path) -> Path:
        """A settings path made absolute against the settings file's folder."""
        return value if value.is_absolute() else (self.base_dir / value)

    @property
    def data_dir(self) -> Path:
        return self.path(self.data.dir)

    @property
    def mapping_file(self) -> Path | None:
        return self.path(self.data.mapping) if self.data.mapping is not None else None

    @property
    def output_dir(self) -> Path:
        return self.path(self.output.dir)

    @property
    def outbox_dir(self) -> Path:
        return self.path(self.mail.outbox_dir)

    @property
    def rules_file(self) -> Path | None:
        return self.path(self.rules.file) if self.rules.file is not None else None

    @property
    def store_url(self) -> str:
        """The store URL ($SUPPLIER_EVAL_STORE_URL wins), a relative SQLite path made absolute. Touches no disk."""
        url = os.environ.get(STORE_URL_ENV) or self.store.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite:///:memory:":
            return prefix + str(self.path(Path(url[len(prefix):])))
        return url


def find_settings_file(explicit: str | Path | None) -> Path | None:
    """The settings file to use: the one given, else $SUPPLIER_EVAL_CONFIG, else ./supplier-eval.toml if present."""
    if explicit:
        return Path(explicit)
    if os.environ.get(SETTINGS_ENV):
        return Path(os.environ[SETTINGS_ENV])
    local = Path(DEFAULT_SETTINGS_NAME)
    return local if local.is_file() else None


def load_settings(path: str | Path | None = None, *, overrides: dict[str, Any] | None = None) -> Settings:
    """Read and check the settings file; without one, defaults relative to the working folder."""
    file = find_settings_file(path)
    data: dict[str, Any] = {}
    base_dir = Path.cwd()
    if file is not None:
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError("settings file not found", where=str(file),
                              fix="Pass an existing file with --config, or copy examples/supplier-eval.toml.") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"not valid TOML ({exc})", where=str(file), fix="Fix the syntax on that line.") from None
        base_dir = file.resolve().parent
    for section, values in (overrides or {}).items():
        data.setdefault(section, {}).update(values)
    try:
        return Settings.model_validate({**data, "base_dir": base_dir})
    except ValidationError as exc:
        problems = list(dict.fromkeys(_describe(error) for error in exc.errors()))
        raise ConfigError(problems[0], where=str(file or "settings"), details=problems[1:],
                          fix="See examples/supplier-eval.toml for the allowed keys and values.") from None


def _describe(error: Any) -> str:
    """One validation error as ``setting 'section.key': message``."""
    location = tuple(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = f"unknown setting{_allowed_keys(location[:-1])}"
    elif error["type"] != "value_error" and not isinstance(error.get("input"), dict | list | tuple | type(None)):
        message = f"{message} (got {error['input']!r})"
    return f"setting '{'.'.join(location)}': {message}"


def _allowed_keys(section: tuple[str, ...]) -> str:
    """``; allowed here: ...`` for the section at ``section``, or nothing when it is not a known section."""
    model: Any = Settings
    for key in section:
        field = model.model_fields.get(key)
        model = next((kind for kind in (field.annotation, *get_args(field.annotation))
                      if isinstance(kind, type) and issubclass(kind, BaseModel)), None) if field else None
        if model is None:
            return ""
    keys = [name for name, info in model.model_fields.items() if not info.exclude]
    return f"; allowed here: {', '.join(keys)}"


def transport_of(settings: Settings) -> Transport:
    """Where this installation's mail goes: the SMTP server of the settings, else the outbox folder."""
    mail = settings.mail
    return Transport(smtp=mail.smtp, outbox_dir=settings.outbox_dir, concurrency=mail.concurrency,
                     retries=mail.retries)


def routing_of(settings: Settings) -> Routing:
    """Who gets the supplier reports of an official run (the digest always goes to the officers)."""
    return Routing(supplier_reports=settings.routing.supplier_reports,
                   supplier_contact=settings.routing.supplier_contact)
