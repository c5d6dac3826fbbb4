"""The evaluation store: the retained documented information of clause 8.4.

Runs, evaluations, ASL status changes, quarantine summaries and the email outbox ledger, in SQLite (one file,
the default) or PostgreSQL (by URL). Evaluations and status changes are append-only and keyed by the run
key (as-of date, window, selection, rule-set hash, input fingerprint), so re-running the same evaluation
adds nothing; the outbox is keyed by message, so nothing is sent twice.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from suppliers.errors import StoreError
from suppliers.runs import RunRecord

__all__ = ["Store", "RunRecord", "PendingMessage", "ClaimedMessage", "History", "STALE_CLAIM", "SCHEMA_VERSION",
           "redact_url"]

metadata = sa.MetaData()
STALE_CLAIM = timedelta(minutes=30)
SCHEMA_VERSION = 1
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
    sa.Index("ix_outbox_claims", "claimed_by", "status"),
)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class PendingMessage:
    """A composed message for the outbox ledger."""

    message_key: str
    kind: str
    supplier_id: str | None
    recipients: Sequence[str]
    subject: str
    body: bytes


class ClaimedMessage(NamedTuple):
    """A message a run has claimed for sending: its envelope and bytes, exactly as the ledger holds them."""

    message_key: str
    recipients: tuple[str, ...]
    body: bytes


@dataclass(frozen=True)
class History:
    """What the store knows before a run decides: current statuses, previous evaluations, later decisions."""

    current_statuses: pl.DataFrame  # supplier_id, status, status_as_of
    previous: pl.DataFrame  # supplier_id, previous_as_of, previous_score, previous_band
    official_as_of: pl.DataFrame  # supplier_id, official_as_of
    previous_quality: pl.DataFrame  # the latest earlier run's quarantine summary (see previous_quarantine_summary)


class Store:
    """A connection to the evaluation store; every method is one transaction."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        """Open the store; ``create`` makes the database and its tables on first use (never on later opens).

        Without ``create`` a store that does not exist yet is a clear error, not an empty new file.
        """
        self.url = url
        try:
            self.engine = sa.create_engine(url)
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

    # runs ------------------------------------------------------------------------------------------------

    def start_run(self, record: RunRecord) -> None:
        values = {**record.__dict__, "selection": json.dumps(list(record.selection)), "status": "running",
                  "started_at": _now()}
        with self.engine.begin() as connection:
            connection.execute(runs.insert().values(**values))

    def finish_run(self, run_id: str, *, status: str, error: str | None = None,
                   evaluations_added: int | None = None) -> None:
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
                     approved_by: str) -> int:
        """Evaluations, status changes and the quarantine summary of a run, in one transaction.

        Returns how many evaluations this run recorded, counted by run id, so a retried call still says so.
        """
        with self.engine.begin() as connection:
            self.save_evaluations(run_key, run_id, evaluated, as_of=as_of, window_start=window_start,
                                  rule_set_hash=rule_set_hash, connection=connection)
            self.save_status_changes(run_key, run_id, changes, as_of=as_of, approved_by=approved_by,
                                     connection=connection)
            self.save_quarantine_summary(run_key, run_id, quarantine_summary, connection=connection)
            mine = sa.select(sa.func.count()).select_from(evaluations).where(evaluations.c.run_id == run_id)
            return int(connection.execute(mine).scalar_one())

    def save_evaluations(self, run_key: str, run_id: str, evaluated: pl.DataFrame, *, as_of: date,
                         window_start: date, rule_set_hash: str, connection: sa.Connection | None = None) -> int:
        """Append one evaluation per supplier; rows already recorded under this run key are left alone."""
        recorded_at = _now()
        rows = [
            {
                "run_key": run_key, "run_id": run_id, "supplier_id": row["supplier_id"], "as_of": as_of,
                "window_start": window_start, "score": row["score"], "band": row["band"], "status": row["status"],
                "previous_status": row["current_status"], "insufficient_reason": row["insufficient_reason"],
                "gates_hit": json.dumps(row["gates_hit"]), "metrics": json.dumps(row["metrics"]),
                "criteria": json.dumps(row["criteria"]), "rule_set_hash": rule_set_hash, "recorded_at": recorded_at,
            }
            for row in evaluated.select(
                "supplier_id", "score", "band", "status", "current_status", "insufficient_reason", "gates_hit",
                "metrics", "criteria",
            ).iter_rows(named=True)
        ]
        return self._insert_ignoring_duplicates(evaluations, rows, connection)

    def save_status_changes(self, run_key: str, run_id: str, changes: pl.DataFrame, *, as_of: date,
                            approved_by: str, connection: sa.Connection | None = None) -> int:
        changed_at = _now()
        rows = [
            {"run_key": run_key, "run_id": run_id, "as_of": as_of, "approved_by": approved_by,
             "changed_at": changed_at, **row}
            for row in changes.select("supplier_id", "from_status", "to_status", "reason").iter_rows(named=True)
        ]
        return self._insert_ignoring_duplicates(status_changes, rows, connection)

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
                       previous_quality=self.previous_quarantine_summary(before_run_id=run_id))

    def current_statuses(self, *, excluding_run_key: str) -> pl.DataFrame:
        """Per supplier, the ASL status of its latest change by as-of date (supplier_id, status, status_as_of).

        Ordered by the evaluation's as-of date, not by when it was recorded: a back-dated evaluation run
        today does not overwrite a newer decision.
        """
        latest = _latest_per_supplier(
            status_changes, status_changes.c.to_status.label("status"), status_changes.c.as_of.label("status_as_of"),
            where=status_changes.c.run_key != excluding_run_key,
        )
        query = sa.select(latest.c.supplier_id, latest.c.status, latest.c.status_as_of)
        return self._frame(query, schema={"supplier_id": pl.String, "status": pl.String, "status_as_of": pl.Date})

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

    def approved_supplier_list(self) -> pl.DataFrame:
        """Each supplier's status from its latest change by as-of date, with the change's reason and approver."""
        c = status_changes.c
        latest = _latest_per_supplier(status_changes, c.to_status, c.as_of, c.reason, c.approved_by)
        return self._frame(sa.select(latest).order_by(latest.c.supplier_id))

    def previous_evaluations(self, *, as_of: date, excluding_run_key: str) -> pl.DataFrame:
        """Per supplier, the latest official evaluation strictly before ``as_of``.

        Strictly before, so a same-day re-run is no "change"; official (a run that may change the ASL), so a
        what-if never becomes the baseline of the next real evaluation.
        """
        c = evaluations.c
        latest = _latest_per_supplier(
            evaluations, c.as_of.label("previous_as_of"), c.score.label("previous_score"),
            c.band.label("previous_band"),
            join=(runs, runs.c.run_id == c.run_id),
            where=sa.and_(c.run_key != excluding_run_key, c.as_of < as_of, runs.c.changes_asl),
        )
        return self._frame(sa.select(latest), schema={"supplier_id": pl.String, "previous_as_of": pl.Date,
                                          "previous_score": pl.Float64, "previous_band": pl.String})

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
             "body": m.body, "status": "pending", "attempts": 0, "created_at": created_at}
            for m in messages
        ]
        return self._insert_ignoring_duplicates(outbox, rows)

    def claim_messages(self, message_keys: Sequence[str], *, run_id: str,
                       stale_after: timedelta = STALE_CLAIM) -> list[ClaimedMessage]:
        """Atomically take the unsent messages among ``message_keys`` for this run, each with its envelope.

        A message another run is sending is skipped, so two runs at once never send it twice. A claim held by
        a run that has finished (it failed mid-send) is taken over at once; one whose run is still "running"
        after ``stale_after`` belongs to a process that was killed, and is taken over then. A message taken
        over may go twice, never zero times: an SMTP conversation cut short cannot tell whether it arrived.
        """
        if not message_keys:
            return []
        now = _now()
        finished_runs = sa.select(runs.c.run_id).where(runs.c.status != "running")
        claimable = sa.or_(
            outbox.c.status.in_(("pending", "failed")),
            sa.and_(
                outbox.c.status == "sending",
                sa.or_(outbox.c.claimed_at < now - stale_after, outbox.c.claimed_by.in_(finished_runs)),
            ),
        )
        claimed: list[ClaimedMessage] = []
        with self.engine.begin() as connection:
            for chunk in _chunks(list(message_keys), 500):
                connection.execute(
                    outbox.update()
                    .where(outbox.c.message_key.in_(chunk), claimable)
                    .values(status="sending", claimed_by=run_id, claimed_at=now)
                )
            for chunk in _chunks(list(message_keys), 500):
                rows = connection.execute(
                    sa.select(outbox.c.message_key, outbox.c.recipients, outbox.c.body).where(
                        outbox.c.message_key.in_(chunk), outbox.c.status == "sending", outbox.c.claimed_by == run_id
                    )
                )
                claimed += [ClaimedMessage(row.message_key, tuple(json.loads(row.recipients)), bytes(row.body))
                            for row in rows]
        return sorted(claimed)

    def refresh_claims(self, run_id: str) -> None:
        """Keep this run's claims fresh while it is still sending, so a slow batch is not taken over."""
        with self.engine.begin() as connection:
            connection.execute(
                outbox.update()
                .where(outbox.c.claimed_by == run_id, outbox.c.status == "sending")
                .values(claimed_at=_now())
            )

    def release_claims(self, run_id: str) -> int:
        """Give back what this run claimed and did not send (it was interrupted): the next run sends it."""
        with self.engine.begin() as connection:
            result = connection.execute(
                outbox.update()
                .where(outbox.c.claimed_by == run_id, outbox.c.status == "sending")
                .values(status="pending", claimed_by=None, claimed_at=None)
            )
            return int(result.rowcount or 0)

    def known_message_keys(self, message_keys: Sequence[str]) -> set[str]:
        """Which of these messages the ledger already holds (sent or not): they need not be composed again."""
        known: set[str] = set()
        with self.engine.connect() as connection:
            for chunk in _chunks(list(message_keys), 500):
                query = sa.select(outbox.c.message_key).where(outbox.c.message_key.in_(chunk))
                known.update(connection.execute(query).scalars())
        return known

    def unsent_message_keys(self) -> list[str]:
        """Every message not yet sent, whatever run wrote it (for `supplier-eval outbox --retry`)."""
        query = sa.select(outbox.c.message_key).where(outbox.c.status != "sent").order_by(outbox.c.message_key)
        with self.engine.connect() as connection:
            return [row.message_key for row in connection.execute(query)]

    def outbox_counts(self, message_keys: Sequence[str] | None = None) -> dict[str, int]:
        """Messages per status (pending, sending, sent, failed), of the given messages or of all."""
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
                     error: str | None, run_id: str | None = None) -> bool:
        """Record a message's outcome; False when ``run_id`` no longer holds its claim (another run took it)."""
        values: dict[str, Any] = {"status": "sent" if ok else "failed", "transport": transport, "location": location,
                                  "last_error": error, "attempts": outbox.c.attempts + attempts,
                                  "claimed_by": None, "claimed_at": None}
        if ok:
            values["sent_at"] = _now()
        condition = outbox.c.message_key == message_key
        if run_id is not None:  # only the holder of the claim records the outcome
            condition = sa.and_(condition, outbox.c.claimed_by == run_id)
        with self.engine.begin() as connection:
            return bool(connection.execute(outbox.update().where(condition).values(**values)).rowcount)

    def outbox_frame(self, run_key: str | None = None) -> pl.DataFrame:
        query = sa.select(outbox.c.message_key, outbox.c.kind, outbox.c.supplier_id, outbox.c.recipients,
                          outbox.c.subject, outbox.c.status, outbox.c.attempts, outbox.c.transport,
                          outbox.c.location, outbox.c.last_error, outbox.c.sent_at)
        if run_key is not None:
            query = query.where(outbox.c.run_key == run_key)
        return self._frame(query.order_by(outbox.c.message_key))

    # helpers -----------------------------------------------------------------------------------------------

    def _frame(self, query: sa.Select, schema: dict[str, pl.DataType] | None = None) -> pl.DataFrame:
        with self.engine.connect() as connection:
            result = connection.execute(query)
            columns = list(result.keys())
            rows = [tuple(row) for row in result]
        if schema is not None:
            return pl.DataFrame(rows, schema=schema, orient="row")
        return pl.DataFrame(rows, schema=columns, orient="row", infer_schema_length=None)


_DIALECTS = {"sqlite": sqlite, "postgresql": postgresql}


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
        statement = _DIALECTS[engine.dialect.name].insert(schema_info).on_conflict_do_nothing()
        connection.execute(statement.values(version=SCHEMA_VERSION, created_at=_now()))
    return True


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
