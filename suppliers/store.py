"""The evaluation store: the retained documented information of clause 8.4.

Runs, evaluations, ASL status changes, quarantine summaries and the email outbox ledger, in SQLite (one file,
the default) or PostgreSQL (by URL). Evaluations and status changes are append-only and keyed by the run
key (as-of date, window, selection, rule-set hash, input fingerprint), so re-running the same evaluation
adds nothing; the outbox is keyed by message, so nothing is sent twice.

Schema version 2 added, beside the version-1 tables (so a version-1 store migrates by creating them): what
each evaluation did on the ASL (``evaluation_outcomes``: profile, next due date, verdict, outcome), changes
proposed for a person's approval (``proposals``), manual decisions (``manual_decisions``), the actions status
changes raise (``actions``: SCARs, block-orders recommendations, with their closing and effectiveness check),
and the suppliers the ASL has seen (``suppliers_seen``: names and owners, so the ASL reads from the store alone).

Schema version 3 added the full text of every rule set a run used (``rule_sets``, keyed by its sha256), for the
audit evidence pack; a version-2 store migrates by creating it.
Schema version 4 gave the outbox its delivery states (queued, sending, sent, failed-temporary, failed-permanent;
``pending`` became ``queued`` and ``failed`` ``failed-temporary``), the time of each message's last attempt and
when a permanent failure was reported, and added who holds each run and claim (``holders``: host, pid and
process start time, and a lease), so a claim left by a killed process is free at once.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from suppliers.errors import StoreError
from suppliers.holder import LEASE, Holder, LeaseKeeper, is_alive, this_process
from suppliers.json_text import json_texts
from suppliers.runs import CURRENT_STATUS, RunRecord

if TYPE_CHECKING:
    from rules.decide import Decisions

__all__ = ["Store", "RunRecord", "PendingMessage", "ClaimedMessage", "History", "AslRecords", "AslResults", "FollowUp",
           "STALE_CLAIM", "SCHEMA_VERSION", "LockHolder", "RunLockedError", "hold_run_lock",
           "MessageOutcome", "QUEUED", "SENDING", "SENT", "FAILED_TEMPORARY", "FAILED_PERMANENT", "OUTBOX_STATES",
           "redact_url"]

metadata = sa.MetaData()
STALE_CLAIM = timedelta(minutes=30)  # only for claims recorded before holders were (schema version 2)
SCHEMA_VERSION = 4  # 3 is the rule sets' text (the evidence pack), 4 the delivery states and holders
QUEUED, SENDING, SENT, FAILED_TEMPORARY, FAILED_PERMANENT = (
    "queued", "sending", "sent", "failed-temporary", "failed-permanent")
OUTBOX_STATES = (QUEUED, SENDING, SENT, FAILED_TEMPORARY, FAILED_PERMANENT)
# Any constant: PostgreSQL serialises the runs that create the schema at once on this advisory lock.
_SCHEMA_LOCK = 84_049_001

schema_info = sa.Table(
    "schema_info", metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

runs = sa.Table(
    "runs", metadata,
    sa.Column("run_id", sa.String(36), primary_key=True),
    sa.Column("run_key", sa.String(64), nullable=False, index=True),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("requested_by", sa.String(200), nullable=False),
    sa.Column("as_of", sa.Date, nullable=False),
    sa.Column("window_days", sa.Integer, nullable=False),
    sa.Column("selection", sa.Text, nullable=False),
    sa.Column("rule_set_name", sa.Text, nullable=False),
    sa.Column("rule_set_version", sa.Text, nullable=False),
    sa.Column("rule_set_hash", sa.String(64), nullable=False),
    sa.Column("input_fingerprint", sa.String(64), nullable=False),
    sa.Column("code_version", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("changes_asl", sa.Boolean, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("evaluations_added", sa.Integer),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
)

evaluations = sa.Table(
    "evaluations", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_key", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(36), nullable=False),
    sa.Column("supplier_id", sa.String(200), nullable=False),
    sa.Column("as_of", sa.Date, nullable=False),
    sa.Column("window_start", sa.Date, nullable=False),
    sa.Column("score", sa.Float),
    sa.Column("band", sa.Text),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("previous_status", sa.String(16)),
    sa.Column("insufficient_reason", sa.Text),
    sa.Column("gates_hit", sa.Text, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("criteria", sa.Text, nullable=False),
    sa.Column("rule_set_hash", sa.String(64), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("run_key", "supplier_id", name="uq_evaluation_per_run_key"),
    sa.Index("ix_evaluations_supplier", "supplier_id", "as_of"),
)

status_changes = sa.Table(
    "status_changes", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_key", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(36), nullable=False),
    sa.Column("supplier_id", sa.String(200), nullable=False),
    sa.Column("as_of", sa.Date, nullable=False),
    sa.Column("from_status", sa.String(16), nullable=False),
    sa.Column("to_status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("approved_by", sa.String(200), nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("run_key", "supplier_id", name="uq_status_change_per_run_key"),
    sa.Index("ix_status_changes_supplier", "supplier_id"),
)

quarantine_summaries = sa.Table(
    "quarantine_summaries", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_key", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(36), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("rows_read", sa.Integer, nullable=False),
    sa.Column("rows_quarantined", sa.Integer, nullable=False),
    sa.Column("top_reasons", sa.Text, nullable=False),
    sa.UniqueConstraint("run_key", "kind", name="uq_quarantine_per_run_key"),
)

evaluation_outcomes = sa.Table(
    "evaluation_outcomes", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_key", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(36), nullable=False),
    sa.Column("supplier_id", sa.String(200), nullable=False),
    sa.Column("as_of", sa.Date, nullable=False),
    sa.Column("profile", sa.Text, nullable=False),
    sa.Column("reevaluate_every_days", sa.Integer, nullable=False),
    sa.Column("next_due", sa.Date),
    sa.Column("proposed_status", sa.String(16), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("action", sa.Text),
    sa.UniqueConstraint("run_key", "supplier_id", name="uq_outcome_per_run_key"),
    sa.Index("ix_outcomes_supplier", "supplier_id", "as_of"),
)

proposals = sa.Table(
    "proposals", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_key", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(36), nullable=False),
    sa.Column("supplier_id", sa.String(200), nullable=False),
    sa.Column("as_of", sa.Date, nullable=False),
    sa.Column("from_status", sa.String(16), nullable=False),
    sa.Column("to_status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # open | approved | rejected | superseded
    sa.Column("proposed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("decided_by", sa.String(200)),
    sa.Column("decision_reason", sa.Text),
    sa.Column("decided_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("run_key", "supplier_id", name="uq_proposal_per_run_key"),
    sa.Index("ix_proposals_open", "supplier_id", "state"),
)

manual_decisions = sa.Table(
    "manual_decisions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("supplier_id", sa.String(200), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("from_status", sa.String(16), nullable=False),
    sa.Column("decided_by", sa.String(200), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("until", sa.Date),
    sa.Column("as_of", sa.Date, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)

actions = sa.Table(
    "actions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),  # the number in SCAR-0001
    sa.Column("source_key", sa.String(80), nullable=False),  # the run key, or approval-N / manual-N
    sa.Column("supplier_id", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # scar | block_orders
    sa.Column("raised_on", sa.Date, nullable=False),
    sa.Column("due", sa.Date),
    sa.Column("owner", sa.Text),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # open | closed
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("closed_by", sa.String(200)),
    sa.Column("closed_on", sa.Date),
    sa.Column("effective", sa.Boolean),
    sa.Column("note", sa.Text),
    sa.UniqueConstraint("source_key", "supplier_id", "kind", name="uq_action_per_source"),
    sa.Index("ix_actions_supplier", "supplier_id", "state"),
)

suppliers_seen = sa.Table(
    "suppliers_seen", metadata,
    sa.Column("supplier_id", sa.String(200), primary_key=True),
    sa.Column("name", sa.Text),
    sa.Column("category", sa.Text),
    sa.Column("criticality", sa.String(16)),
    sa.Column("owner_email", sa.Text),
    sa.Column("active", sa.Boolean),
    sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen_as_of", sa.Date, nullable=False),
    sa.Column("last_seen_run_id", sa.String(36), nullable=False),
)

outbox = sa.Table(
    "outbox", metadata,
    sa.Column("message_key", sa.String(200), primary_key=True),
    sa.Column("run_key", sa.String(64), nullable=False, index=True),
    sa.Column("run_id", sa.String(36), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("supplier_id", sa.String(200)),
    sa.Column("recipients", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("transport", sa.String(16)),
    sa.Column("location", sa.Text),
    sa.Column("last_error", sa.Text),
    sa.Column("claimed_by", sa.String(36)),
    sa.Column("claimed_at", sa.DateTime(timezone=True)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    sa.Column("last_attempt_at", sa.DateTime(timezone=True)),  # version 4
    sa.Column("reported_at", sa.DateTime(timezone=True)),  # version 4: a permanent failure shown in a digest
    sa.Index("ix_outbox_claims", "claimed_by", "status"),
    sa.Index("ix_outbox_status", "status"),  # version 4: the claims being sent, the failures, without a scan
)
# Added to the outbox table of an older store when it opens.
_OUTBOX_V4_COLUMNS = ("last_attempt_at", "reported_at")

holders = sa.Table(
    "holders", metadata,
    sa.Column("holder_id", sa.String(36), primary_key=True),  # a run id, or the id of an `outbox retry`
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("process_started", sa.String(32), nullable=False),
    sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
)

rule_sets = sa.Table(
    "rule_sets", metadata,
    sa.Column("hash", sa.String(64), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("version", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
)

# One run at a time per scope (see "run locks" below). Created on first use too, so a store of an earlier
# version gains it without a migration step.
run_locks = sa.Table(
    "run_locks", metadata,
    sa.Column("scope", sa.String(100), primary_key=True),
    sa.Column("run_id", sa.String(36), nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("process_start", sa.String(80), nullable=False),
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("lease_until", sa.Float, nullable=False),  # seconds since the epoch: compared, never shown
)


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime) -> datetime:
    """SQLite gives back its times without a zone; they were written in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class PendingMessage:
    """A composed message for the outbox ledger."""

    message_key: str
    kind: str
    supplier_id: str | None
    recipients: Sequence[str]
    subject: str
    body: bytes


class MessageOutcome(NamedTuple):
    """What became of one message (``Store.mark_messages``)."""

    message_key: str
    ok: bool
    attempts: int
    transport: str
    location: str
    error: str | None
    permanent: bool = False


class ClaimedMessage(NamedTuple):
    """A message a run has claimed for sending: its envelope and bytes, exactly as the ledger holds them."""

    message_key: str
    recipients: tuple[str, ...]
    body: bytes


@dataclass(frozen=True)
class History:
    """What the store knows before a run decides: current statuses, previous evaluations, later decisions."""

    current_statuses: pl.DataFrame  # supplier_id, status, status_as_of
    previous: pl.DataFrame  # supplier_id, previous_as_of, previous_score, previous_band, previous_criteria (JSON)
    official_as_of: pl.DataFrame  # supplier_id, official_as_of
    previous_quality: pl.DataFrame  # the latest earlier run's quarantine summary (see previous_quarantine_summary)
    manual: pl.DataFrame | None = None  # each supplier's latest manual decision (see latest_manual_decisions)
    recent_bands: pl.DataFrame | None = None  # scored official evaluations before the as-of date (see recent_bands)


@dataclass(frozen=True)
class AslRecords:
    """What the store holds for the approved supplier list (``Store.asl_records``; ``rules.asl`` builds it)."""

    seen: pl.DataFrame  # supplier_id, name, category, criticality, owner_email, active
    current: pl.DataFrame  # supplier_id, status, status_as_of, reason, approved_by (None: kept, version 1)
    latest: pl.DataFrame  # latest official evaluation: supplier_id, evaluated_as_of, score, band, insufficient_reason
    outcome: pl.DataFrame  # supplier_id, profile (latest official evaluation), next_due (latest scored one)
    proposals: pl.DataFrame  # open proposals: supplier_id, to_status
    manual: pl.DataFrame  # latest manual decision per supplier (see latest_manual_decisions)
    actions: pl.DataFrame  # open actions: supplier_id, number, kind, due


class FollowUp(NamedTuple):
    """What waits for a person: proposals awaiting approval (``Store.open_proposals``) and open actions
    (``Store.actions_frame``)."""

    proposals: pl.DataFrame
    actions: pl.DataFrame


# A supplier's record fields the store keeps as the latest-dated run saw them (the suppliers_seen table).
SEEN_FIELDS = ("supplier_id", "name", "category", "criticality", "owner_email", "active")


@dataclass(frozen=True)
class AslResults:
    """What a run records on the ASL besides its evaluations and status changes (``rules.decide.Decisions``)."""

    outcomes: pl.DataFrame  # per evaluated supplier: profile, reevaluate_every_days, next_due, proposed_status, ...
    proposals: pl.DataFrame  # supplier_id, from_status, to_status, reason
    actions: pl.DataFrame  # rules.asl.ACTIONS_SCHEMA
    seen: pl.DataFrame  # SEEN_FIELDS

    @classmethod
    def of(cls, decisions: Decisions, chosen: pl.DataFrame, *, official: bool) -> AslResults:
        """What a run's decisions record on the ASL. Only an official run records the suppliers it saw (their
        name, owner and other record fields): a what-if run under other rules must not change what the ASL
        shows."""
        seen = chosen.select(SEEN_FIELDS)
        return cls(outcomes=decisions.evaluated, proposals=decisions.proposals, actions=decisions.actions,
                   seen=seen if official else seen.clear())


@dataclass(frozen=True)
class EvidenceRecords:
    """What the store holds about a date range, for the audit evidence pack (``Store.evidence_records``).

    A record is in the range by its date: runs, evaluations and quarantine summaries by their as-of date,
    status changes by the date they took effect, proposals when proposed or decided, manual decisions when
    dated or recorded, actions when raised or closed. ``asl`` is each supplier's status at the end of the range.
    """

    runs: pl.DataFrame
    evaluations: pl.DataFrame
    status_changes: pl.DataFrame
    asl: pl.DataFrame
    proposals: pl.DataFrame
    manual_decisions: pl.DataFrame
    actions: pl.DataFrame
    quality: pl.DataFrame
    rule_texts: pl.DataFrame  # hash, name, version, text, first_seen_at: the recorded texts of the rule sets used


def _stops_are_not_errors(record: logging.LogRecord) -> bool:
    """Drop the connection pool's log of a stop (Ctrl-C, SIGTERM: a KeyboardInterrupt) that lands while it closes
    a connection: it logs it with its traceback and raises it again, and the command then says in one line that
    it stopped. Errors (Exception) are logged as before."""
    return not (record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt))


class Store:
    """A connection to the evaluation store; every method is one transaction."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        """Open the store; ``create`` makes the database and its tables on first use (never on later opens).

        Without ``create`` a store that does not exist yet is a clear error, not an empty new file.
        """
        self.url = url
        self._keepers: dict[str, LeaseKeeper] = {}
        try:
            self.engine = sa.create_engine(url)
            self.engine.pool.logger.addFilter(_stops_are_not_errors)
            if self.engine.dialect.name == "sqlite":
                sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            if self.engine.dialect.name not in _DIALECTS:
                raise StoreError(f"unsupported database {self.engine.dialect.name!r}", where=redact_url(url),
                                 fix="Use a sqlite:/// or postgresql+psycopg:// URL.")
            database = _sqlite_file(url)
            if database is not None and not database.is_file():
                if not create:
                    raise StoreError("no evaluations recorded yet: the store does not exist", where=redact_url(url),
                                     fix="Run an evaluation first (supplier-eval evaluate), or check store.url.")
                database.parent.mkdir(parents=True, exist_ok=True)
            if not _ensure_schema(self.engine, create=create):
                raise StoreError("no evaluations recorded yet: the store has no tables", where=redact_url(url),
                                 fix="Run an evaluation first (supplier-eval evaluate), or check store.url.")
        except ImportError as exc:
            raise StoreError(f"the database driver is not installed ({exc.name})", where=redact_url(url),
                             fix="Use a postgresql+psycopg:// URL (psycopg is installed with supplier-eval).",
                             ) from None
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            raise StoreError(f"cannot open the store ({_reason(exc)})", where=redact_url(url),
                             fix="Check store.url in the settings and that its folder exists and is writable.",
                             transient=_is_transient(exc)) from None

    def close(self) -> None:
        for keeper in self._keepers.values():
            keeper.stop()
        self._keepers.clear()
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _insert_ignoring_duplicates(self, table: sa.Table, rows: Sequence[dict[str, Any]],
                                    connection: sa.Connection | None = None) -> int:
        if not rows:
            return 0
        dialect = _DIALECTS[self.engine.dialect.name]
        key = next(iter(table.primary_key.columns))
        statement = dialect.insert(table).on_conflict_do_nothing().returning(key)
        if connection is not None:
            return len(connection.execute(statement, list(rows)).all())
        with self.engine.begin() as own:
            return len(own.execute(statement, list(rows)).all())

    def _insert_frame(self, connection: sa.Connection, table: sa.Table, frame: pl.DataFrame, *,
                      update: Sequence[str] = (), unless_newer: str | None = None) -> int:
        """Insert the rows of ``frame`` (named as ``table``'s columns) in one executemany; how many were written
        (see :class:`_Insert`)."""
        return _Insert.of(frame, table, connection.dialect, update=update, unless_newer=unless_newer).run(connection)

    # runs ------------------------------------------------------------------------------------------------

    def start_run(self, record: RunRecord) -> None:
        """Record the run as running, held by this process (see :meth:`hold`); an abandoned run is marked first."""
        self.release_abandoned()
        values = {**record.__dict__, "selection": json.dumps(list(record.selection)), "status": "running",
                  "started_at": _now()}
        with self.engine.begin() as connection:
            connection.execute(runs.insert().values(**values))
            self._register_holder(connection, record.run_id)
        self._keep_lease(record.run_id)

    def finish_run(self, run_id: str, *, status: str, error: str | None = None,
                   evaluations_added: int | None = None) -> None:
        keeper = self._keepers.pop(run_id, None)
        if keeper is not None:
            keeper.stop()
        with self.engine.begin() as connection:
            connection.execute(
                runs.update().where(runs.c.run_id == run_id).values(
                    status=status, error=error, evaluations_added=evaluations_added, finished_at=_now()
                )
            )

    def runs_frame(self, limit: int = 50) -> pl.DataFrame:
        query = sa.select(runs).order_by(runs.c.started_at.desc()).limit(limit)
        return self._frame(query)

    # evaluations and ASL -----------------------------------------------------------------------------------

    def save_results(self, run_key: str, run_id: str, *, evaluated: pl.DataFrame, changes: pl.DataFrame,
                     quarantine_summary: pl.DataFrame, as_of: date, window_start: date, rule_set_hash: str,
                     approved_by: str, asl: AslResults | None = None) -> int:
        """Evaluations, status changes, the quarantine summary and what the run did on the ASL, in one transaction.

        Returns how many evaluations this run recorded, counted by run id, so a retried call still says so.
        """
        # The evaluations' rows (JSON text written by Polars, mostly outside the GIL) are made in a thread while the
        # connection writes the other tables; only this thread uses the connection.
        with ThreadPoolExecutor(max_workers=1) as pool, self.engine.begin() as connection:
            prepared = pool.submit(lambda: _Insert.of(_evaluation_frame(
                run_key, run_id, evaluated, as_of=as_of, window_start=window_start, rule_set_hash=rule_set_hash),
                evaluations, connection.dialect))
            self.save_status_changes(run_key, run_id, changes, as_of=as_of, approved_by=approved_by,
                                     connection=connection)
            self.save_quarantine_summary(run_key, run_id, quarantine_summary, connection=connection)
            if asl is not None:
                self._save_asl(connection, run_key, run_id, as_of=as_of, asl=asl)
            prepared.result().run(connection)
            # By run key too: its index finds the run's rows without reading every earlier run's.
            mine = sa.select(sa.func.count()).select_from(evaluations).where(evaluations.c.run_key == run_key,
                                                                             evaluations.c.run_id == run_id)
            return int(connection.execute(mine).scalar_one())

    def _save_asl(self, connection: sa.Connection, run_key: str, run_id: str, *, as_of: date,
                  asl: AslResults) -> None:
        """Outcomes, proposals (an open one of an earlier evaluation is superseded by this one), actions, and the
        suppliers seen: all keyed like the evaluations, so a re-run adds nothing."""
        now = _now()
        keyed = {"run_key": pl.lit(run_key), "run_id": pl.lit(run_id), "as_of": pl.lit(as_of, dtype=pl.Date)}
        self._insert_frame(connection, evaluation_outcomes, asl.outcomes.select(
            "supplier_id", "profile", "reevaluate_every_days", "next_due", "proposed_status", "outcome",
            note="status_note", action="action").with_columns(**keyed))
        decided = asl.outcomes.filter(pl.col("outcome").is_in(["changed", "unchanged", "proposed", "manual"]))
        p = proposals.c
        for chunk in _chunks(decided["supplier_id"].to_list(), 500):
            connection.execute(
                proposals.update()
                .where(p.state == "open", p.run_key != run_key, p.supplier_id.in_(chunk), p.as_of <= as_of)
                .values(state="superseded", decided_at=now,
                        decision_reason=f"superseded by the evaluation as of {as_of.isoformat()}")
            )
        self._insert_frame(connection, proposals, asl.proposals.select(
            "supplier_id", "from_status", "to_status", "reason").with_columns(
            **keyed, state=pl.lit("open"), proposed_at=pl.lit(now, dtype=pl.Datetime("us", "UTC"))))
        self._insert_frame(connection, actions, _action_frame(run_key, asl.actions, now))
        self._upsert_seen(connection, run_id, as_of, asl.seen)

    def _insert_actions(self, connection: sa.Connection, source_key: str, raised: pl.DataFrame) -> list[int]:
        """Insert the actions raised by one source (a run key, an approval, a manual decision); the numbers of
        those that are new."""
        rows = _action_frame(source_key, raised, _now()).to_dicts()
        if not rows:
            return []
        statement = _DIALECTS[self.engine.dialect.name].insert(actions).on_conflict_do_nothing().returning(
            actions.c.id)
        return [int(row.id) for row in connection.execute(statement, rows)]

    def _upsert_seen(self, connection: sa.Connection, run_id: str, as_of: date, seen: pl.DataFrame) -> None:
        """Keep each supplier's record fields as the latest-dated run saw them."""
        fields = ("name", "category", "criticality", "owner_email", "active", "last_seen_as_of", "last_seen_run_id")
        self._insert_frame(connection, suppliers_seen, seen.select(SEEN_FIELDS).with_columns(
            first_seen_at=pl.lit(_now(), dtype=pl.Datetime("us", "UTC")),
            last_seen_as_of=pl.lit(as_of, dtype=pl.Date), last_seen_run_id=pl.lit(run_id)),
            update=fields, unless_newer="last_seen_as_of")

    def save_evaluations(self, run_key: str, run_id: str, evaluated: pl.DataFrame, *, as_of: date,
                         window_start: date, rule_set_hash: str, connection: sa.Connection | None = None) -> int:
        """Append one evaluation per supplier; rows already recorded under this run key are left alone."""
        if connection is None:
            with self.engine.begin() as own:
                return self.save_evaluations(run_key, run_id, evaluated, as_of=as_of, window_start=window_start,
                                             rule_set_hash=rule_set_hash, connection=own)
        return self._insert_frame(connection, evaluations, _evaluation_frame(
            run_key, run_id, evaluated, as_of=as_of, window_start=window_start, rule_set_hash=rule_set_hash))

    def save_status_changes(self, run_key: str, run_id: str, changes: pl.DataFrame, *, as_of: date,
                            approved_by: str, connection: sa.Connection | None = None) -> int:
        if connection is None:
            with self.engine.begin() as own:
                return self.save_status_changes(run_key, run_id, changes, as_of=as_of, approved_by=approved_by,
                                                connection=own)
        return self._insert_frame(connection, status_changes, changes.select(
            "supplier_id", "from_status", "to_status", "reason").with_columns(
            run_key=pl.lit(run_key), run_id=pl.lit(run_id), as_of=pl.lit(as_of, dtype=pl.Date),
            approved_by=pl.lit(approved_by), changed_at=pl.lit(_now(), dtype=pl.Datetime("us", "UTC"))))

    def save_quarantine_summary(self, run_key: str, run_id: str, summary: pl.DataFrame,
                                connection: sa.Connection | None = None) -> int:
        rows = [
            {"run_key": run_key, "run_id": run_id, "kind": row["kind"], "source": row["source"],
             "rows_read": row["rows_read"], "rows_quarantined": row["rows_quarantined"],
             "top_reasons": json.dumps(row["top_reasons"])}
            for row in summary.iter_rows(named=True)
        ]
        return self._insert_ignoring_duplicates(quarantine_summaries, rows, connection)

    def previous_quarantine_summary(self, *, before_run_id: str | None = None) -> pl.DataFrame:
        """The quarantine summary of the latest run, started before ``before_run_id``, that recorded one.

        One row per record kind: ``run_id``, ``as_of`` and ``started_at`` of that run, then ``kind``, ``source``,
        ``rows_read``, ``rows_quarantined``, ``share`` and ``top_reasons`` (a list of texts). Empty (same columns)
        when no earlier run recorded a summary. Without ``before_run_id``, or when that run is not recorded
        (yet), the latest summary of any run. A summary is recorded once per run key, by the first run of that
        evaluation, so a re-run's previous summary is that first run's: the same inputs, no change. A run that
        stopped for bad data records none.
        """
        q, r = quarantine_summaries.c, runs.c
        latest = sa.select(q.run_id).join(runs, r.run_id == q.run_id)
        if before_run_id is not None:
            started = sa.select(r.started_at).where(r.run_id == before_run_id).scalar_subquery()
            latest = latest.where(q.run_id != before_run_id, sa.or_(started.is_(None), r.started_at < started))
        latest = latest.order_by(r.started_at.desc(), q.id.desc()).limit(1).scalar_subquery()
        query = (
            sa.select(q.run_id, r.as_of, r.started_at, q.kind, q.source, q.rows_read, q.rows_quarantined,
                      q.top_reasons)
            .join(runs, r.run_id == q.run_id)
            .where(q.run_id == latest)
            .order_by(q.id)
        )
        frame = self._frame(query, schema={
            "run_id": pl.String, "as_of": pl.Date, "started_at": pl.Datetime("us", "UTC"), "kind": pl.String,
            "source": pl.String, "rows_read": pl.Int64, "rows_quarantined": pl.Int64, "top_reasons": pl.String})
        return frame.with_columns(
            share=pl.when(pl.col("rows_read") > 0).then(pl.col("rows_quarantined") / pl.col("rows_read"))
            .otherwise(0.0),
            top_reasons=pl.col("top_reasons").str.json_decode(pl.List(pl.String)),
        ).select("run_id", "as_of", "started_at", "kind", "source", "rows_read", "rows_quarantined", "share",
                 "top_reasons")

    def read_history(self, *, run_key: str, run_id: str, as_of: date) -> History:
        """Everything a run needs to decide and report, read apart from its own records (a re-run sees what came
        before)."""
        return History(current_statuses=self.current_statuses(excluding_run_key=run_key),
                       previous=self.previous_evaluations(as_of=as_of, excluding_run_key=run_key),
                       official_as_of=self.latest_official_as_of(excluding_run_key=run_key),
                       previous_quality=self.previous_quarantine_summary(before_run_id=run_id),
                       manual=self.latest_manual_decisions(),
                       recent_bands=self.recent_bands(as_of=as_of, excluding_run_key=run_key))

    def current_statuses(self, *, excluding_run_key: str, connection: sa.Connection | None = None) -> pl.DataFrame:
        """Per supplier, the ASL status of its latest change by as-of date (supplier_id, status, status_as_of).

        Ordered by the evaluation's as-of date, not by when it was recorded: a back-dated evaluation run
        today does not overwrite a newer decision. A supplier evaluated but never changed (a version-1 store kept
        the supplier record's status then) has the status of its latest official evaluation.
        """
        schema = {"supplier_id": pl.String, "status": pl.String, "status_as_of": pl.Date}
        latest = _latest_per_supplier(
            status_changes, status_changes.c.to_status.label("status"), status_changes.c.as_of.label("status_as_of"),
            where=status_changes.c.run_key != excluding_run_key,
        )
        e = evaluations.c
        evaluated = _latest_per_supplier(
            evaluations, e.status.label("status"), e.as_of.label("status_as_of"),
            join=(runs, runs.c.run_id == e.run_id), where=sa.and_(e.run_key != excluding_run_key, runs.c.changes_asl),
        )
        changed = self._frame(sa.select(latest.c.supplier_id, latest.c.status, latest.c.status_as_of), schema,
                              connection)
        kept = self._frame(sa.select(evaluated.c.supplier_id, evaluated.c.status, evaluated.c.status_as_of),
                           schema, connection)
        return pl.concat([changed, kept.join(changed, on="supplier_id", how="anti")]).sort("supplier_id")

    def latest_manual_decisions(self, connection: sa.Connection | None = None) -> pl.DataFrame:
        """Each supplier's latest manual decision (supplier_id, manual_status, manual_by, manual_reason,
        manual_until, manual_as_of); in force while manual_until is empty or not yet past."""
        m = manual_decisions.c
        latest = _latest_per_supplier(manual_decisions, m.status.label("manual_status"),
                                      m.decided_by.label("manual_by"), m.reason.label("manual_reason"),
                                      m.until.label("manual_until"), m.as_of.label("manual_as_of"))
        return self._frame(sa.select(latest), schema={
            "supplier_id": pl.String, "manual_status": pl.String, "manual_by": pl.String, "manual_reason": pl.String,
            "manual_until": pl.Date, "manual_as_of": pl.Date}, connection=connection)

    def recent_bands(self, *, as_of: date, excluding_run_key: str, limit: int = 10) -> pl.DataFrame:
        """The latest ``limit`` scored official evaluations of each supplier before ``as_of``, one per as-of date
        (supplier_id, as_of, band): what the repeated-low-score gate and the disqualification rule count."""
        e = evaluations.c
        ranked = (
            sa.select(e.supplier_id, e.as_of, e.band, sa.func.row_number().over(
                partition_by=e.supplier_id, order_by=(e.as_of.desc(), e.id.desc())).label("rank"))
            .join(runs, runs.c.run_id == e.run_id)
            .where(e.run_key != excluding_run_key, e.as_of < as_of, e.score.is_not(None), runs.c.changes_asl)
            .subquery()
        )
        query = sa.select(ranked.c.supplier_id, ranked.c.as_of, ranked.c.band).where(ranked.c.rank <= limit * 3)
        frame = self._frame(query, schema={"supplier_id": pl.String, "as_of": pl.Date, "band": pl.String})
        return (frame.unique(["supplier_id", "as_of"], keep="first", maintain_order=True)
                .group_by("supplier_id", maintain_order=True).head(limit))

    def score_history(self, *, as_of: date, excluding_run_key: str, limit: int = 7) -> pl.DataFrame:
        """The latest ``limit`` scored official evaluations of each supplier before ``as_of``, one per as-of date
        (supplier_id, as_of, score, band): what a supplier report's score chart shows before this evaluation."""
        e = evaluations.c
        ranked = (
            sa.select(e.supplier_id, e.as_of, e.score, e.band, sa.func.row_number().over(
                partition_by=e.supplier_id, order_by=(e.as_of.desc(), e.id.desc())).label("rank"))
            .join(runs, runs.c.run_id == e.run_id)
            .where(e.run_key != excluding_run_key, e.as_of < as_of, e.score.is_not(None), runs.c.changes_asl)
            .subquery()
        )
        query = sa.select(ranked.c.supplier_id, ranked.c.as_of, ranked.c.score, ranked.c.band).where(
            ranked.c.rank <= limit * 3)
        frame = self._frame(query, schema={"supplier_id": pl.String, "as_of": pl.Date, "score": pl.Float64,
                                           "band": pl.String})
        return (frame.unique(["supplier_id", "as_of"], keep="first", maintain_order=True)
                .group_by("supplier_id", maintain_order=True).head(limit))

    def last_scored(self, *, as_of: date) -> pl.DataFrame:
        """Per supplier, the as-of date of its latest scored official evaluation before ``as_of``
        (``last_scored_before``) and on or before it (``last_scored``): what the re-evaluation schedule runs on."""
        e = evaluations.c
        query = (
            sa.select(e.supplier_id,
                      sa.func.max(sa.case((e.as_of < as_of, e.as_of))).label("last_scored_before"),
                      sa.func.max(sa.case((e.as_of <= as_of, e.as_of))).label("last_scored"))
            .join(runs, runs.c.run_id == e.run_id)
            .where(runs.c.changes_asl, e.score.is_not(None))
            .group_by(e.supplier_id)
        )
        return self._frame(query, schema={"supplier_id": pl.String, "last_scored_before": pl.Date,
                                          "last_scored": pl.Date})

    # proposals, manual decisions, actions ----------------------------------------------------------------------

    def open_proposals(self, supplier_id: str | None = None, connection: sa.Connection | None = None) -> pl.DataFrame:
        """Changes awaiting a person's approval, oldest first: proposal_id, supplier_id, name, as_of, from_status,
        to_status, reason."""
        p = proposals.c
        query = (
            sa.select(p.id.label("proposal_id"), p.supplier_id, suppliers_seen.c.name, p.as_of, p.from_status,
                      p.to_status, p.reason)
            .outerjoin(suppliers_seen, suppliers_seen.c.supplier_id == p.supplier_id)
            .where(p.state == "open")
            .order_by(p.as_of, p.id)
        )
        if supplier_id is not None:
            query = query.where(p.supplier_id == supplier_id)
        return self._frame(query, schema={"proposal_id": pl.Int64, "supplier_id": pl.String, "name": pl.String,
                                          "as_of": pl.Date, "from_status": pl.String, "to_status": pl.String,
                                          "reason": pl.String}, connection=connection)

    def decide_proposal(self, proposal_id: int, *, approve: bool, decided_by: str, reason: str,
                        change: dict[str, Any] | None = None, raised: pl.DataFrame | None = None) -> list[int] | None:
        """Approve or reject an open proposal, in one transaction; None when it is no longer open.

        Approving records ``change`` (supplier_id, as_of, from_status, to_status, reason) as a status change
        approved by ``decided_by``, and the actions ``raised`` by it; returns their numbers.
        """
        with self.engine.begin() as connection:
            updated = connection.execute(
                proposals.update().where(proposals.c.id == proposal_id, proposals.c.state == "open").values(
                    state="approved" if approve else "rejected", decided_by=decided_by, decision_reason=reason,
                    decided_at=_now()))
            if updated.rowcount != 1:
                return None
            if not approve or change is None:
                return []
            key = f"approval-{proposal_id}"
            self._insert_ignoring_duplicates(status_changes, [{
                "run_key": key, "run_id": key, "approved_by": decided_by, "changed_at": _now(), **change}], connection)
            return self._insert_actions(connection, key, raised) if raised is not None else []

    def record_manual_decision(self, *, supplier_id: str, status: str, from_status: str, decided_by: str,
                               reason: str, until: date | None, as_of: date,
                               raised: pl.DataFrame | None = None) -> tuple[int, list[int]]:
        """A person's decision on a supplier's status, in one transaction: the decision (later runs respect it
        until ``until``), the status change when the status moves, the actions it raises; an open proposal of
        the supplier is superseded. Returns the decision's number and the new actions' numbers."""
        now = _now()
        with self.engine.begin() as connection:
            decision = int(connection.execute(manual_decisions.insert().returning(manual_decisions.c.id).values(
                supplier_id=supplier_id, status=status, from_status=from_status, decided_by=decided_by,
                reason=reason, until=until, as_of=as_of, recorded_at=now)).scalar_one())
            key = f"manual-{decision}"
            connection.execute(proposals.update().where(
                proposals.c.supplier_id == supplier_id, proposals.c.state == "open").values(
                state="superseded", decided_by=decided_by, decided_at=now,
                decision_reason=f"superseded by the manual decision {key}"))
            numbers: list[int] = []
            if status != from_status:
                self._insert_ignoring_duplicates(status_changes, [{
                    "run_key": key, "run_id": key, "supplier_id": supplier_id, "as_of": as_of,
                    "from_status": from_status, "to_status": status, "approved_by": decided_by, "changed_at": now,
                    "reason": f"manual decision: {reason}"}], connection)
                if raised is not None:
                    numbers = self._insert_actions(connection, key, raised)
            return decision, numbers

    def actions_frame(self, *, open_only: bool = False, supplier_id: str | None = None,
                      connection: sa.Connection | None = None) -> pl.DataFrame:
        """Actions raised by status changes, by number: number, kind, supplier_id, name, raised_on, due, owner,
        description, state, closed_by, closed_on, effective, note, source_key."""
        a = actions.c
        query = (
            sa.select(a.id.label("number"), a.kind, a.supplier_id, suppliers_seen.c.name, a.raised_on, a.due, a.owner,
                      a.description, a.state, a.closed_by, a.closed_on, a.effective, a.note, a.source_key)
            .outerjoin(suppliers_seen, suppliers_seen.c.supplier_id == a.supplier_id)
            .order_by(a.id)
        )
        if open_only:
            query = query.where(a.state == "open")
        if supplier_id is not None:
            query = query.where(a.supplier_id == supplier_id)
        return self._frame(query, schema={
            "number": pl.Int64, "kind": pl.String, "supplier_id": pl.String, "name": pl.String, "raised_on": pl.Date,
            "due": pl.Date, "owner": pl.String, "description": pl.String, "state": pl.String,
            "closed_by": pl.String, "closed_on": pl.Date, "effective": pl.Boolean, "note": pl.String,
            "source_key": pl.String}, connection=connection)

    def close_action(self, number: int, *, closed_by: str, effective: bool, note: str | None, on: date) -> bool:
        """Close an open action with its effectiveness check; False when it is not open (or does not exist)."""
        with self.engine.begin() as connection:
            result = connection.execute(actions.update().where(actions.c.id == number, actions.c.state == "open")
                                        .values(state="closed", closed_by=closed_by, closed_on=on,
                                                effective=effective, note=note))
            return result.rowcount == 1

    def knows_supplier(self, supplier_id: str) -> bool:
        """Whether the ASL has a record of the supplier (seen by an official run, evaluated, or changed)."""
        with self.engine.connect() as connection:
            return any(connection.execute(sa.select(table.c.supplier_id).where(table.c.supplier_id == supplier_id)
                                          .limit(1)).first() is not None
                       for table in (suppliers_seen, evaluations, status_changes))

    def open_follow_up(self) -> FollowUp:
        """Every proposal awaiting approval and every open action, read in one transaction (for the reports)."""
        with self.engine.begin() as connection:
            return FollowUp(self.open_proposals(connection=connection),
                            self.actions_frame(open_only=True, connection=connection))

    def asl_records(self) -> AslRecords:
        """Everything the approved supplier list shows, read in one transaction (see ``rules.asl``)."""
        e, o = evaluations.c, evaluation_outcomes.c
        official = (runs, runs.c.run_id == e.run_id)
        latest = _latest_per_supplier(evaluations, e.as_of.label("evaluated_as_of"), e.score, e.band,
                                      e.insufficient_reason, join=official, where=runs.c.changes_asl)
        same_evaluation = (evaluations, sa.and_(e.run_key == o.run_key, e.supplier_id == o.supplier_id))
        profiled = _latest_per_supplier(evaluation_outcomes, o.profile, where=o.outcome != "what-if")
        scored = _latest_per_supplier(evaluation_outcomes, o.next_due, join=same_evaluation,
                                      where=sa.and_(e.score.is_not(None), o.outcome != "what-if"))
        c = status_changes.c
        changed = _latest_per_supplier(status_changes, c.to_status.label("status"), c.as_of.label("status_as_of"),
                                       c.reason, c.approved_by)
        with self.engine.begin() as connection:  # one transaction: every part as of the same moment
            current = self._frame(sa.select(changed), {
                "supplier_id": pl.String, "status": pl.String, "status_as_of": pl.Date, "reason": pl.String,
                "approved_by": pl.String}, connection)
            kept = self.current_statuses(excluding_run_key="", connection=connection)  # version-1 unchanged ones
            return AslRecords(
                seen=self._frame(sa.select(suppliers_seen.c.supplier_id, suppliers_seen.c.name,
                                           suppliers_seen.c.category, suppliers_seen.c.criticality,
                                           suppliers_seen.c.owner_email, suppliers_seen.c.active), {
                    "supplier_id": pl.String, "name": pl.String, "category": pl.String, "criticality": pl.String,
                    "owner_email": pl.String, "active": pl.Boolean}, connection),
                current=pl.concat([current, kept.join(current, on="supplier_id", how="anti").with_columns(
                    reason=pl.lit(None, pl.String), approved_by=pl.lit(None, pl.String))]),
                latest=self._frame(sa.select(latest), {
                    "supplier_id": pl.String, "evaluated_as_of": pl.Date, "score": pl.Float64, "band": pl.String,
                    "insufficient_reason": pl.String}, connection),
                outcome=self._frame(sa.select(profiled), {"supplier_id": pl.String, "profile": pl.String},
                                    connection).join(self._frame(sa.select(scored), {
                                        "supplier_id": pl.String, "next_due": pl.Date}, connection),
                                                     on="supplier_id", how="left"),
                proposals=self.open_proposals(connection=connection).select("supplier_id", "to_status"),
                manual=self.latest_manual_decisions(connection),
                actions=self.actions_frame(open_only=True, connection=connection).select(
                    "supplier_id", "number", "kind", "due"),
            )

    def latest_official_as_of(self, *, excluding_run_key: str) -> pl.DataFrame:
        """Per supplier, the latest as-of date of an official evaluation (supplier_id, official_as_of).

        A run dated before it must not change the supplier's status: a newer evaluation has decided it,
        whether or not that evaluation changed anything.
        """
        query = (
            sa.select(evaluations.c.supplier_id, sa.func.max(evaluations.c.as_of).label("official_as_of"))
            .join(runs, runs.c.run_id == evaluations.c.run_id)
            .where(evaluations.c.run_key != excluding_run_key, runs.c.changes_asl)
            .group_by(evaluations.c.supplier_id)
        )
        return self._frame(query, schema={"supplier_id": pl.String, "official_as_of": pl.Date})

    def previous_evaluations(self, *, as_of: date, excluding_run_key: str) -> pl.DataFrame:
        """Per supplier, the latest official evaluation strictly before ``as_of``: its as-of date, score, band and
        criteria (``previous_criteria``, the JSON text stored with it: what the change since is explained by).

        Strictly before, so a same-day re-run is no "change"; official (a run that may change the ASL), so a
        what-if never becomes the baseline of the next real evaluation.
        """
        c = evaluations.c
        latest = _latest_per_supplier(
            evaluations, c.as_of.label("previous_as_of"), c.score.label("previous_score"),
            c.band.label("previous_band"), c.criteria.label("previous_criteria"),
            join=(runs, runs.c.run_id == c.run_id),
            where=sa.and_(c.run_key != excluding_run_key, c.as_of < as_of, runs.c.changes_asl),
        )
        return self._frame(sa.select(latest), schema={"supplier_id": pl.String, "previous_as_of": pl.Date,
                                          "previous_score": pl.Float64, "previous_band": pl.String,
                                          "previous_criteria": pl.String})

    def evaluation_history(self, supplier_id: str | None = None, limit: int = 100) -> pl.DataFrame:
        query = (
            sa.select(evaluations.c.supplier_id, evaluations.c.as_of, evaluations.c.score, evaluations.c.band,
                      evaluations.c.status, evaluations.c.previous_status, evaluations.c.insufficient_reason,
                      evaluations.c.gates_hit, evaluations.c.run_id, evaluations.c.rule_set_hash,
                      sa.func.coalesce(runs.c.changes_asl, True).label("official"))
            .outerjoin(runs, runs.c.run_id == evaluations.c.run_id)
            .order_by(evaluations.c.as_of.desc(), evaluations.c.id.desc())
            .limit(limit)
        )
        if supplier_id is not None:
            query = query.where(evaluations.c.supplier_id == supplier_id)
        return self._frame(query)

    def status_history(self, supplier_id: str | None = None) -> pl.DataFrame:
        query = sa.select(status_changes).order_by(status_changes.c.id)
        if supplier_id is not None:
            query = query.where(status_changes.c.supplier_id == supplier_id)
        return self._frame(query)

    def count(self, table: sa.Table) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())

    # outbox ledger -----------------------------------------------------------------------------------------

    def enqueue_messages(self, run_key: str, run_id: str, messages: Iterable[PendingMessage]) -> int:
        """Write messages to the ledger before any is sent; a message already there keeps its state."""
        created_at = _now()
        rows = [
            {"message_key": m.message_key, "run_key": run_key, "run_id": run_id, "kind": m.kind,
             "supplier_id": m.supplier_id, "recipients": json.dumps(list(m.recipients)), "subject": m.subject,
             "body": m.body, "status": QUEUED, "attempts": 0, "created_at": created_at}
            for m in messages
        ]
        return self._insert_ignoring_duplicates(outbox, rows)

    def claim_messages(self, message_keys: Sequence[str], *, run_id: str, stale_after: timedelta = STALE_CLAIM,
                       include_permanent: bool = False) -> list[ClaimedMessage]:
        """Atomically take the messages among ``message_keys`` still to send for this run, each with its envelope.

        Queued and temporarily failed messages are claimable (permanently failed ones only with
        ``include_permanent``). A message another live run is sending is skipped, so two runs at once never send
        it twice; a claim whose holder is gone (killed: its process has ended, or its lease ran out) is freed
        first (:meth:`release_abandoned`), and so is one held by a run that has finished. A message taken over
        may go twice, never zero times: an SMTP conversation cut short cannot tell whether it arrived.
        """
        if not message_keys:
            return []
        self.release_abandoned()
        now = _now()
        finished_runs = sa.select(runs.c.run_id).where(runs.c.status != "running")
        held = sa.select(holders.c.holder_id)
        statuses = (QUEUED, FAILED_TEMPORARY, FAILED_PERMANENT) if include_permanent else (QUEUED, FAILED_TEMPORARY)
        claimable = sa.or_(
            outbox.c.status.in_(statuses),
            sa.and_(
                outbox.c.status == SENDING,
                sa.or_(outbox.c.claimed_by.in_(finished_runs),
                       # a claim from before holders were recorded: the old timer
                       sa.and_(outbox.c.claimed_at < now - stale_after, outbox.c.claimed_by.not_in(held))),
            ),
        )
        claimed: list[ClaimedMessage] = []
        with self.engine.begin() as connection:
            for chunk in _chunks(list(message_keys), 500):
                connection.execute(
                    outbox.update()
                    .where(outbox.c.message_key.in_(chunk), claimable)
                    .values(status=SENDING, claimed_by=run_id, claimed_at=now)
                )
            for chunk in _chunks(list(message_keys), 500):
                rows = connection.execute(
                    sa.select(outbox.c.message_key, outbox.c.recipients, outbox.c.body).where(
                        outbox.c.message_key.in_(chunk), outbox.c.status == SENDING, outbox.c.claimed_by == run_id
                    )
                )
                claimed += [ClaimedMessage(row.message_key, tuple(json.loads(row.recipients)), bytes(row.body))
                            for row in rows]
        return sorted(claimed)

    def refresh_claims(self, run_id: str) -> None:
        """Keep this holder alive in the records: renew its lease (and its claims' time, for older readers)."""
        with self.engine.begin() as connection:
            connection.execute(holders.update().where(holders.c.holder_id == run_id)
                               .values(lease_until=_now() + LEASE))
            connection.execute(
                outbox.update()
                .where(outbox.c.claimed_by == run_id, outbox.c.status == SENDING)
                .values(claimed_at=_now())
            )

    def release_claims(self, run_id: str) -> int:
        """Give back what this run claimed and did not send (it was interrupted): the next run sends it."""
        with self.engine.begin() as connection:
            result = connection.execute(
                outbox.update()
                .where(outbox.c.claimed_by == run_id, outbox.c.status == SENDING)
                .values(status=QUEUED, claimed_by=None, claimed_at=None)
            )
            return int(result.rowcount or 0)

    def hold(self, holder_id: str) -> contextlib.AbstractContextManager[None]:
        """Hold claims as ``holder_id`` (an `outbox retry`, not a run) while the block runs; forgotten after."""
        return self._holding(holder_id)

    @contextlib.contextmanager
    def _holding(self, holder_id: str) -> Iterator[None]:
        with self.engine.begin() as connection:
            self._register_holder(connection, holder_id)
        self._keep_lease(holder_id)
        try:
            yield
        finally:
            keeper = self._keepers.pop(holder_id, None)
            if keeper is not None:
                keeper.stop()
            with contextlib.suppress(sa.exc.SQLAlchemyError), self.engine.begin() as connection:
                connection.execute(holders.delete().where(holders.c.holder_id == holder_id))

    def release_abandoned(self) -> tuple[int, int]:
        """Free what dead holders left: mark their runs abandoned and put their claims back in the queue.

        A holder is dead when its process on this host has ended (or the pid now belongs to another process),
        or, on another host, when its lease ran out. Returns (runs marked abandoned, messages put back).
        """
        now = _now()
        with self.engine.connect() as connection:
            candidates = connection.execute(
                sa.select(holders).where(sa.or_(
                    holders.c.holder_id.in_(sa.select(runs.c.run_id).where(runs.c.status == "running")),
                    holders.c.holder_id.in_(sa.select(outbox.c.claimed_by).where(outbox.c.status == SENDING)),
                ))
            ).all()
        mine = this_process()
        dead = [row.holder_id for row in candidates
                if (row.host, row.pid) != (mine.host, mine.pid)
                and not is_alive(Holder(row.host, row.pid, row.process_started),
                                 lease_expired=_aware(row.lease_until) < now, here=mine.host)]
        if not dead:
            return 0, 0
        with self.engine.begin() as connection:
            abandoned = connection.execute(
                runs.update().where(runs.c.run_id.in_(dead), runs.c.status == "running")
                .values(status="abandoned", finished_at=now,
                        error="its process ended without finishing (killed?); found by a later run")
            ).rowcount
            released = connection.execute(
                outbox.update().where(outbox.c.claimed_by.in_(dead), outbox.c.status == SENDING)
                .values(status=QUEUED, claimed_by=None, claimed_at=None)
            ).rowcount
        return int(abandoned or 0), int(released or 0)

    def known_message_keys(self, message_keys: Sequence[str]) -> set[str]:
        """Which of these messages the ledger already holds (sent or not): they need not be composed again."""
        known: set[str] = set()
        with self.engine.connect() as connection:
            for chunk in _chunks(list(message_keys), 500):
                query = sa.select(outbox.c.message_key).where(outbox.c.message_key.in_(chunk))
                known.update(connection.execute(query).scalars())
        return known

    def unsent_message_keys(self, *, include_permanent: bool = False) -> list[str]:
        """Every message not yet sent, whatever run wrote it (for `supplier-eval outbox retry`); refused ones
        only with ``include_permanent``."""
        skip = (SENT,) if include_permanent else (SENT, FAILED_PERMANENT)
        query = (sa.select(outbox.c.message_key).where(outbox.c.status.not_in(skip))
                 .order_by(outbox.c.message_key))
        with self.engine.connect() as connection:
            return [row.message_key for row in connection.execute(query)]

    def outbox_counts(self, message_keys: Sequence[str] | None = None) -> dict[str, int]:
        """Messages per state (queued, sending, sent, failed-temporary, failed-permanent), of the given or all."""
        counts: dict[str, int] = {}
        chunks = _chunks(list(message_keys), 500) if message_keys is not None else [None]
        with self.engine.connect() as connection:
            for chunk in chunks:
                query = sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status)
                if chunk is not None:
                    query = query.where(outbox.c.message_key.in_(chunk))
                for status, count in connection.execute(query):
                    counts[status] = counts.get(status, 0) + int(count)
        return counts

    def mark_message(self, message_key: str, *, ok: bool, attempts: int, transport: str, location: str,
                     error: str | None, run_id: str | None = None, permanent: bool = False) -> bool:
        """Record a message's outcome; False when ``run_id`` no longer holds its claim (another run took it)."""
        outcome = MessageOutcome(message_key, ok, attempts, transport, location, error, permanent)
        return not self.mark_messages([outcome], run_id=run_id)

    def mark_messages(self, outcomes: Sequence[MessageOutcome], *, run_id: str | None = None) -> list[str]:
        """Record several outcomes in one transaction; the keys whose claim ``run_id`` no longer held."""
        now = _now()
        lost = []
        with self.engine.begin() as connection:
            for o in outcomes:
                status = SENT if o.ok else FAILED_PERMANENT if o.permanent else FAILED_TEMPORARY
                values: dict[str, Any] = {"status": status, "transport": o.transport, "location": o.location,
                                          "last_error": o.error, "attempts": outbox.c.attempts + o.attempts,
                                          "claimed_by": None, "claimed_at": None, "last_attempt_at": now,
                                          "reported_at": None}
                if o.ok:
                    values["sent_at"] = now
                condition = outbox.c.message_key == o.message_key
                if run_id is not None:  # only the holder of the claim records the outcome
                    condition = sa.and_(condition, outbox.c.claimed_by == run_id)
                if not connection.execute(outbox.update().where(condition).values(**values)).rowcount:
                    lost.append(o.message_key)
        return lost

    def outbox_frame(self, run_key: str | None = None) -> pl.DataFrame:
        query = sa.select(outbox.c.message_key, outbox.c.kind, outbox.c.supplier_id, outbox.c.recipients,
                          outbox.c.subject, outbox.c.status, outbox.c.attempts, outbox.c.transport,
                          outbox.c.location, outbox.c.last_error, outbox.c.sent_at, outbox.c.last_attempt_at)
        if run_key is not None:
            query = query.where(outbox.c.run_key == run_key)
        return self._frame(query.order_by(outbox.c.message_key))

    # audit evidence (read-only) ------------------------------------------------------------------------------

    def record_rule_set(self, *, name: str, version: str, content_hash: str, text: str) -> None:
        """Keep the full text of a rule set a run uses, once per sha256 (the audit evidence shows it)."""
        self._insert_ignoring_duplicates(rule_sets, [{"hash": content_hash, "name": name, "version": version,
                                                      "text": text, "first_seen_at": _now()}])

    def evidence_records(self, start: date, end: date) -> EvidenceRecords:
        """Every record dated from ``start`` to ``end`` (both included), read in one transaction; see
        ``EvidenceRecords`` for which date counts. Unsorted: the evidence pack orders them."""
        r, e, c, p, m, a, q = (runs.c, evaluations.c, status_changes.c, proposals.c, manual_decisions.c, actions.c,
                               quarantine_summaries.c)
        first, after = (datetime.combine(start, datetime.min.time(), UTC),
                        datetime.combine(end + timedelta(days=1), datetime.min.time(), UTC))
        named = suppliers_seen.c.name
        text, day, moment = pl.String, pl.Date, pl.Datetime("us", "UTC")
        with self.engine.begin() as connection:
            frame = functools.partial(self._frame, connection=connection)
            run_frame = frame(sa.select(r.run_id, r.as_of, r.trigger, r.requested_by, r.window_days, r.selection,
                                        r.rule_set_name, r.rule_set_version, r.rule_set_hash, r.input_fingerprint,
                                        r.code_version, r.changes_asl, r.status, r.evaluations_added, r.error,
                                        r.started_at, r.finished_at).where(r.as_of.between(start, end)), {
                "run_id": text, "as_of": day, "trigger": text, "requested_by": text, "window_days": pl.Int64,
                "selection": text, "rule_set_name": text, "rule_set_version": text, "rule_set_hash": text,
                "input_fingerprint": text, "code_version": text, "changes_asl": pl.Boolean, "status": text,
                "evaluations_added": pl.Int64, "error": text, "started_at": moment, "finished_at": moment})
            evaluation_frame = frame(
                sa.select(e.supplier_id, named, e.as_of, e.window_start, e.score, e.band, e.status, e.previous_status,
                          e.insufficient_reason, e.gates_hit, e.criteria, e.rule_set_hash, e.run_id,
                          sa.func.coalesce(r.changes_asl, True).label("official"))
                .outerjoin(runs, r.run_id == e.run_id)
                .outerjoin(suppliers_seen, suppliers_seen.c.supplier_id == e.supplier_id)
                .where(e.as_of.between(start, end)), {
                    "supplier_id": text, "name": text, "as_of": day, "window_start": day, "score": pl.Float64,
                    "band": text, "status": text, "previous_status": text, "insufficient_reason": text,
                    "gates_hit": text, "criteria": text, "rule_set_hash": text, "run_id": text,
                    "official": pl.Boolean})
            change_frame = frame(
                sa.select(c.supplier_id, named, c.as_of, c.from_status, c.to_status, c.reason, c.approved_by,
                          c.run_id, c.changed_at)
                .outerjoin(suppliers_seen, suppliers_seen.c.supplier_id == c.supplier_id)
                .where(c.as_of.between(start, end)), {
                    "supplier_id": text, "name": text, "as_of": day, "from_status": text, "to_status": text,
                    "reason": text, "approved_by": text, "run_id": text, "changed_at": moment})
            changed = _latest_per_supplier(status_changes, c.to_status.label("status"), c.as_of.label("since"),
                                           c.reason, c.approved_by, where=c.as_of <= end)
            evaluated = _latest_per_supplier(evaluations, e.as_of.label("evaluated_as_of"), e.score, e.band,
                                             e.status.label("evaluated_status"), join=(runs, r.run_id == e.run_id),
                                             where=sa.and_(e.as_of <= end, r.changes_asl))
            asl_frame = frame(sa.select(changed), {"supplier_id": text, "status": text, "since": day, "reason": text,
                                                   "approved_by": text}).join(
                frame(sa.select(evaluated), {"supplier_id": text, "evaluated_as_of": day, "score": pl.Float64,
                                             "band": text, "evaluated_status": text}),
                on="supplier_id", how="full", coalesce=True).join(
                frame(sa.select(suppliers_seen.c.supplier_id, named), {"supplier_id": text, "name": text}),
                on="supplier_id", how="left")
            proposal_frame = frame(
                sa.select(p.id.label("proposal_id"), p.supplier_id, named, p.as_of, p.from_status, p.to_status,
                          p.reason, p.state, p.decided_by, p.decision_reason, p.decided_at, p.run_id)
                .outerjoin(suppliers_seen, suppliers_seen.c.supplier_id == p.supplier_id)
                .where(sa.or_(p.as_of.between(start, end), sa.and_(p.decided_at >= first, p.decided_at < after))), {
                    "proposal_id": pl.Int64, "supplier_id": text, "name": text, "as_of": day, "from_status": text,
                    "to_status": text, "reason": text, "state": text, "decided_by": text, "decision_reason": text,
                    "decided_at": moment, "run_id": text})
            manual_frame = frame(
                sa.select(m.id.label("decision_id"), m.supplier_id, named, m.as_of, m.from_status, m.status,
                          m.decided_by, m.reason, m.until, m.recorded_at)
                .outerjoin(suppliers_seen, suppliers_seen.c.supplier_id == m.supplier_id)
                .where(sa.or_(m.as_of.between(start, end), sa.and_(m.recorded_at >= first, m.recorded_at < after))), {
                    "decision_id": pl.Int64, "supplier_id": text, "name": text, "as_of": day, "from_status": text,
                    "status": text, "decided_by": text, "reason": text, "until": day, "recorded_at": moment})
            action_frame = frame(
                sa.select(a.id.label("number"), a.kind, a.supplier_id, named, a.raised_on, a.due, a.owner,
                          a.description, a.state, a.closed_by, a.closed_on, a.effective, a.note, a.source_key)
                .outerjoin(suppliers_seen, suppliers_seen.c.supplier_id == a.supplier_id)
                .where(sa.or_(a.raised_on.between(start, end), a.closed_on.between(start, end))), {
                    "number": pl.Int64, "kind": text, "supplier_id": text, "name": text, "raised_on": day,
                    "due": day, "owner": text, "description": text, "state": text, "closed_by": text,
                    "closed_on": day, "effective": pl.Boolean, "note": text, "source_key": text})
            quality_frame = frame(
                sa.select(q.run_id, r.as_of, q.kind, q.source, q.rows_read, q.rows_quarantined, q.top_reasons)
                .join(runs, r.run_id == q.run_id).where(r.as_of.between(start, end)), {
                    "run_id": text, "as_of": day, "kind": text, "source": text, "rows_read": pl.Int64,
                    "rows_quarantined": pl.Int64, "top_reasons": text})
            used = sa.select(r.rule_set_hash).where(r.as_of.between(start, end)).union(
                sa.select(e.rule_set_hash).where(e.as_of.between(start, end)))
            text_frame = frame(sa.select(rule_sets).where(rule_sets.c.hash.in_(used)), {
                "hash": text, "name": text, "version": text, "text": text, "first_seen_at": moment})
        return EvidenceRecords(runs=run_frame, evaluations=evaluation_frame, status_changes=change_frame,
                               asl=asl_frame, proposals=proposal_frame, manual_decisions=manual_frame,
                               actions=action_frame, quality=quality_frame, rule_texts=text_frame)
    def failed_messages(self, *, permanent_only: bool = False, unreported_only: bool = False) -> pl.DataFrame:
        """The messages that failed: message_key, kind, supplier_id, recipients (a list), subject, status,
        attempts, last_error, last_attempt_at; latest attempt first."""
        o = outbox.c
        states = (FAILED_PERMANENT,) if permanent_only else (FAILED_TEMPORARY, FAILED_PERMANENT)
        query = (sa.select(o.message_key, o.kind, o.supplier_id, o.recipients, o.subject, o.status, o.attempts,
                           o.last_error, o.last_attempt_at)
                 .where(o.status.in_(states)).order_by(o.last_attempt_at.desc(), o.message_key))
        if unreported_only:
            query = query.where(o.reported_at.is_(None))
        schema = {"message_key": pl.String, "kind": pl.String, "supplier_id": pl.String, "recipients": pl.String,
                  "subject": pl.String, "status": pl.String, "attempts": pl.Int64, "last_error": pl.String,
                  "last_attempt_at": pl.Datetime("us", "UTC")}
        frame = self._frame(query, schema={**schema, "last_attempt_at": pl.Datetime("us")})
        return frame.with_columns(pl.col("recipients").str.json_decode(pl.List(pl.String)),
                                  pl.col("last_attempt_at").dt.replace_time_zone("UTC"))

    def delivery_failures(self) -> pl.DataFrame:
        """Permanently failed messages no digest has reported yet (see :meth:`mark_failures_reported`)."""
        return self.failed_messages(permanent_only=True, unreported_only=True)

    def mark_failures_reported(self, message_keys: Sequence[str]) -> int:
        """Record that a digest showed these permanent failures, so the next one does not repeat them."""
        now, marked = _now(), 0
        with self.engine.begin() as connection:
            for chunk in _chunks(list(message_keys), 500):
                marked += connection.execute(
                    outbox.update().where(outbox.c.message_key.in_(chunk), outbox.c.status == FAILED_PERMANENT)
                    .values(reported_at=now)).rowcount or 0
        return marked

    # holders -----------------------------------------------------------------------------------------------

    def _register_holder(self, connection: sa.Connection, holder_id: str) -> None:
        me = this_process()
        connection.execute(holders.insert().values(holder_id=holder_id, host=me.host, pid=me.pid,
                                                   process_started=me.started, lease_until=_now() + LEASE))

    def _keep_lease(self, holder_id: str) -> None:
        if holder_id not in self._keepers:
            self._keepers[holder_id] = LeaseKeeper(lambda: self.refresh_claims(holder_id)).start()
    # run locks ---------------------------------------------------------------------------------------------
    # A scope is held by one run at a time. A holder whose process is gone (this host) is taken over at once;
    # one on another host when its lease, which the holder renews while it runs, has run out.

    def acquire_run_lock(self, scope: str, *, run_id: str, trigger: str, holder: Holder,
                         lease_seconds: float) -> LockHolder | None:
        """Take ``scope`` for ``run_id``; None when taken, else who holds it."""
        values = {"scope": scope, "run_id": run_id, "trigger": trigger, "host": holder.host, "pid": holder.pid,
                  "process_start": holder.started, "acquired_at": _now(),
                  "lease_until": time.time() + lease_seconds}
        with self.engine.begin() as connection:
            self._ensure_run_locks(connection)
            inserted = connection.execute(_DIALECTS[self.engine.dialect.name].insert(run_locks)
                                          .on_conflict_do_nothing().values(**values)
                                          .returning(run_locks.c.scope)).first()
            if inserted is not None:
                return None
            row = connection.execute(sa.select(run_locks).where(run_locks.c.scope == scope)).mappings().first()
            if row is None:  # released between the two statements: try again on the next call
                return LockHolder(run_id="", trigger="", holder=holder, since=_now())
            if row["run_id"] == run_id:
                return None
            current = Holder(host=row["host"], pid=row["pid"], started=row["process_start"])
            if not is_alive(current, lease_expired=row["lease_until"] < time.time()):
                taken = connection.execute(run_locks.update().where(
                    run_locks.c.scope == scope, run_locks.c.run_id == row["run_id"]).values(**values)
                    .returning(run_locks.c.scope)).first()
                if taken is not None:
                    return None
            since = row["acquired_at"] if row["acquired_at"].tzinfo else row["acquired_at"].replace(tzinfo=UTC)
            return LockHolder(run_id=row["run_id"], trigger=row["trigger"], holder=current, since=since)

    def renew_run_lock(self, scope: str, *, run_id: str, lease_seconds: float) -> bool:
        with self.engine.begin() as connection:
            return bool(connection.execute(run_locks.update().where(
                run_locks.c.scope == scope, run_locks.c.run_id == run_id).values(
                lease_until=time.time() + lease_seconds)).rowcount)

    def release_run_lock(self, scope: str, *, run_id: str) -> bool:
        with self.engine.begin() as connection:
            self._ensure_run_locks(connection)
            return bool(connection.execute(run_locks.delete().where(
                run_locks.c.scope == scope, run_locks.c.run_id == run_id)).rowcount)

    def _ensure_run_locks(self, connection: sa.Connection) -> None:
        if not getattr(self, "_run_locks_ready", False):
            if not sa.inspect(connection).has_table(run_locks.name):  # a store made before the table existed
                if self.engine.dialect.name == "postgresql":  # two first runs at once: one creates it
                    connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
                connection.execute(CreateTable(run_locks, if_not_exists=True))
            self._run_locks_ready = True

    # helpers -----------------------------------------------------------------------------------------------

    def _frame(self, query: sa.Select, schema: dict[str, Any] | None = None,
               connection: sa.Connection | None = None) -> pl.DataFrame:
        if connection is None:
            with self.engine.connect() as own:
                return self._frame(query, schema, own)
        result = connection.execute(query)
        columns = list(result.keys())
        rows = [tuple(row) for row in result]
        if schema is not None:
            return pl.DataFrame(rows, schema=schema, orient="row")
        return pl.DataFrame(rows, schema=columns, orient="row", infer_schema_length=None)


_DIALECTS = {"sqlite": sqlite, "postgresql": postgresql}


def _evaluation_frame(run_key: str, run_id: str, evaluated: pl.DataFrame, *, as_of: date, window_start: date,
                      rule_set_hash: str) -> pl.DataFrame:
    """The rows of the ``evaluations`` table for one run: gates hit, metrics and criteria as ``json.dumps`` text."""
    return evaluated.select(
        "supplier_id", "score", "band", "status", "insufficient_reason", previous_status=CURRENT_STATUS,
    ).with_columns(
        json_texts(evaluated[name]) for name in ("gates_hit", "metrics", "criteria")
    ).with_columns(
        run_key=pl.lit(run_key), run_id=pl.lit(run_id), as_of=pl.lit(as_of, dtype=pl.Date),
        window_start=pl.lit(window_start, dtype=pl.Date), rule_set_hash=pl.lit(rule_set_hash),
        recorded_at=pl.lit(_now(), dtype=pl.Datetime("us", "UTC")),
    )


def _action_frame(source_key: str, raised: pl.DataFrame, now: datetime) -> pl.DataFrame:
    """The rows of the ``actions`` table for the actions one source raised (``rules.asl.ACTIONS_SCHEMA``)."""
    return raised.select("supplier_id", "kind", "raised_on", "due", "owner", "description").with_columns(
        source_key=pl.lit(source_key), state=pl.lit("open"), created_at=pl.lit(now, dtype=pl.Datetime("us", "UTC")))


# Columns of these types are bound through SQLAlchemy's converter for the dialect, once per distinct value.
_CONVERTED = (pl.Date, pl.Datetime, pl.Boolean)


class _Insert(NamedTuple):
    """One INSERT of many rows, ready for the driver's executemany.

    A row whose unique key is already there is left alone, or, with ``update``, those of its columns take the new
    values (not when its ``unless_newer`` column is later than the new row's). The values go to the driver as
    SQLAlchemy would bind them (its own converters, once per distinct date or flag), without SQLAlchemy's per-row
    work: statements it compiles itself cost seconds at 50,000 suppliers.
    """

    sql: str
    rows: list[tuple[Any, ...]]

    @classmethod
    def of(cls, frame: pl.DataFrame, table: sa.Table, dialect: sa.Dialect, *, update: Sequence[str] = (),
           unless_newer: str | None = None) -> _Insert:
        quote = dialect.identifier_preparer.quote
        name = dialect.identifier_preparer.format_table(table)
        conflict = " ON CONFLICT"
        if update:
            key = [c.name for c in table.primary_key.columns]
            conflict += (f" ({', '.join(map(quote, key))}) DO UPDATE SET "
                         + ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in update))
            if unless_newer is not None:
                conflict += f" WHERE {name}.{quote(unless_newer)} <= excluded.{quote(unless_newer)}"
        else:
            conflict += " DO NOTHING"
        columns = ", ".join(quote(c) for c in frame.columns)
        marker = "?" if dialect.paramstyle == "qmark" else "%s"
        sql = f"INSERT INTO {name} ({columns}) VALUES ({', '.join(marker for _ in frame.columns)}){conflict}"
        return cls(sql, pl.DataFrame(_driver_columns(frame, table, dialect)).rows())

    def run(self, connection: sa.Connection) -> int:
        """Execute it; how many rows were written."""
        if not self.rows:
            return 0
        return int(connection.exec_driver_sql(self.sql, self.rows).rowcount or 0)


def _driver_columns(frame: pl.DataFrame, table: sa.Table, dialect: sa.Dialect) -> list[pl.Series]:
    """The columns of ``frame`` as the driver takes them: dates, times and flags as SQLAlchemy binds them for
    ``dialect`` (SQLite keeps dates as text), everything else as it is."""
    columns = []
    for series in frame.iter_columns():
        convert = table.c[series.name].type.dialect_impl(dialect).bind_processor(dialect)
        if convert is not None and isinstance(series.dtype, _CONVERTED) and series.null_count() < len(series):
            distinct = series.drop_nulls().unique()
            series = series.replace_strict(distinct, pl.Series([convert(value) for value in distinct.to_list()]),
                                           default=None)
        columns.append(series)
    return columns


@dataclass(frozen=True)
class LockHolder:
    """Who holds a run lock: the run, what started it, its process, since when."""

    run_id: str
    trigger: str
    holder: Holder
    since: datetime

    def describe(self) -> str:
        return (f"run {self.run_id} ({self.trigger}) on {self.holder.describe()}, since "
                f"{self.since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC")


class RunLockedError(StoreError):
    """Another run holds the scope this run needs, and did not let go in time."""


EVALUATIONS_SCOPE = "evaluations"


@contextmanager
def hold_run_lock(store: Store, *, run_id: str, trigger: str, wait_seconds: float, lease_seconds: float = 60.0,
                  scope: str = EVALUATIONS_SCOPE, on_wait: Callable[[LockHolder], None] | None = None,
                  poll_seconds: float = 0.25) -> Iterator[None]:
    """Hold ``scope`` in ``store`` for the block: wait up to ``wait_seconds`` for another run to let go, renew the
    lease while the block runs, release it after. Raises RunLockedError naming the holder when the wait is over.
    """
    me = this_process()
    deadline = time.monotonic() + wait_seconds
    told = False
    while (held_by := store.acquire_run_lock(scope, run_id=run_id, trigger=trigger, holder=me,
                                             lease_seconds=lease_seconds)) is not None:
        if time.monotonic() >= deadline:
            raise RunLockedError(f"another run is writing these evaluations: {held_by.describe()}",
                                 where=redact_url(store.url),
                                 fix=f"Waited {wait_seconds:g} s. Run again when it has finished, or wait longer "
                                     "with [store] lock_wait_seconds; a run whose process is gone is taken over at "
                                     "once")
        if not told and on_wait is not None:
            on_wait(held_by)
            told = True
        time.sleep(poll_seconds)
    renewer = LeaseKeeper(lambda: store.renew_run_lock(scope, run_id=run_id, lease_seconds=lease_seconds),
                          every=timedelta(seconds=lease_seconds / 3)).start()
    try:
        yield
    finally:
        renewer.stop()
        store.release_run_lock(scope, run_id=run_id)


def _ensure_schema(engine: sa.Engine, *, create: bool = True) -> bool:
    """Create the tables on first use; a store already at this version costs one query.

    Returns False, creating nothing, when the store has no tables and ``create`` is off.

    Runs that start together do not race: every statement is ``CREATE ... IF NOT EXISTS``, and on PostgreSQL
    they take turns on an advisory lock (SQLite writers take turns by themselves, waiting on busy_timeout).
    A store written by a newer supplier-eval is refused rather than written in a shape it does not know.
    """
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
        if sa.inspect(connection).has_table(schema_info.name):
            version = connection.execute(sa.select(sa.func.max(schema_info.c.version))).scalar()
            if version == SCHEMA_VERSION:
                return True
            if version is not None and version > SCHEMA_VERSION:
                raise StoreError(f"the store has schema version {version}; this supplier-eval knows up to "
                                 f"{SCHEMA_VERSION}", where=redact_url(str(engine.url)),
                                 fix="Upgrade supplier-eval to the version that wrote this store.")
        elif not create and not sa.inspect(connection).has_table(runs.name):
            return False
        for table in metadata.sorted_tables:
            connection.execute(CreateTable(table, if_not_exists=True))
            for index in table.indexes:
                connection.execute(CreateIndex(index, if_not_exists=True))
        _upgrade_outbox(connection)
        statement = _DIALECTS[engine.dialect.name].insert(schema_info).on_conflict_do_nothing()
        connection.execute(statement.values(version=SCHEMA_VERSION, created_at=_now()))
    return True


def _upgrade_outbox(connection: sa.Connection) -> None:
    """Version 4's outbox: the new columns on an older table, and the old states by their new names (idempotent)."""
    present = {column["name"] for column in sa.inspect(connection).get_columns(outbox.name)}
    for name in _OUTBOX_V4_COLUMNS:
        if name not in present:
            column_type = outbox.c[name].type.compile(dialect=connection.dialect)
            connection.execute(sa.text(f"ALTER TABLE {outbox.name} ADD COLUMN {name} {column_type}"))
    for old, new in (("pending", QUEUED), ("failed", FAILED_TEMPORARY)):
        connection.execute(outbox.update().where(outbox.c.status == old).values(status=new))


def _translate_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: Store, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(
                f"the store refused to {method.__name__.replace('_', ' ')} ({_reason(exc)})",
                where=redact_url(self.url),
                fix="If another run is writing, wait and run again; otherwise check store.url and the database.",
                transient=_is_transient(exc),
            ) from None

    return wrapper


# Every public method is one transaction; a database error in any of them is a StoreError, never a traceback.
for _name, _member in list(vars(Store).items()):
    if callable(_member) and not _name.startswith("_") and _name != "close":
        setattr(Store, _name, _translate_errors(_member))


def _latest_per_supplier(table: sa.Table, *columns: Any, where: Any = None,
                         join: tuple[sa.Table, Any] | None = None) -> sa.Subquery:
    """Each supplier's latest row of ``table`` by as-of date (then by insertion): supplier_id plus ``columns``."""
    ranked = sa.select(
        table.c.supplier_id,
        *columns,
        sa.func.row_number().over(partition_by=table.c.supplier_id,
                                  order_by=(table.c.as_of.desc(), table.c.id.desc())).label("rank"),
    )
    if join is not None:
        ranked = ranked.join(*join)
    if where is not None:
        ranked = ranked.where(where)
    ranked_sub = ranked.subquery()
    return (
        sa.select(*(column for column in ranked_sub.c if column.name != "rank"))
        .where(ranked_sub.c.rank == 1)
        .subquery()
    )


def _is_transient(exc: BaseException) -> bool:
    """Worth a retry: a locked SQLite file or a lost or refused database connection; not a broken schema."""
    if not isinstance(exc, sa.exc.OperationalError):
        return False
    text = str(getattr(exc, "orig", exc)).lower()
    if isinstance(getattr(exc, "orig", None), sqlite3.Error):
        return "locked" in text or "busy" in text
    return True  # PostgreSQL reports connection trouble as OperationalError


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[start:start + size] for start in range(0, len(items), size)]


def _sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for another database or an in-memory one."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # busy_timeout makes a second run wait for a writer rather than fail.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    _switch_to_wal(cursor)
    # In WAL mode, NORMAL syncs at checkpoints instead of at every commit: a commit survives the process being
    # killed, only a power cut may undo the last few. Marking each message as sent costs no disk flush.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _switch_to_wal(cursor: Any, wait_seconds: float = 30.0) -> None:
    """WAL lets readers and one writer work at once; the file keeps it once switched.

    SQLite answers a switch that races another connection's (runs opening a new store together) with
    "database is locked" at once, without its busy timeout: so wait here, briefly and boundedly.
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def redact_url(url: str) -> str:
    """The URL with any password hidden, for messages and output."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable store URL>"


def _reason(exc: BaseException) -> str:
    original = getattr(exc, "orig", None)
    return str(original or exc).splitlines()[0]
