"""The store keeps records once: re-running an evaluation adds nothing and re-sends nothing."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from conftest import fresh_database
from sqlalchemy.schema import CreateTable

from suppliers.errors import StoreError
from suppliers.store import (
    SCHEMA_VERSION,
    AslResults,
    PendingMessage,
    RunRecord,
    Store,
    actions,
    evaluation_outcomes,
    evaluations,
    outbox,
    proposals,
    quarantine_summaries,
    runs,
    schema_info,
    status_changes,
    suppliers_seen,
)

AS_OF = date(2026, 6, 30)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store of each kind: a SQLite file, or a fresh database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return fresh_database(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(store_url: str) -> Store:
    with Store(store_url) as store:
        yield store


def run_record(run_id: str, run_key: str = "key-1", as_of: date = AS_OF) -> RunRecord:
    return RunRecord(run_id=run_id, run_key=run_key, trigger="adhoc", requested_by="tester", as_of=as_of,
                     window_days=365, selection=["*active*"], rule_set_name="rules", rule_set_version="1",
                     rule_set_hash="h" * 64, input_fingerprint="f" * 64, code_version="0.1.0")


def evaluated(scores: dict[str, float | None]) -> pl.DataFrame:
    ids = list(scores)
    return pl.DataFrame({
        "supplier_id": ids,
        "score": [scores[i] for i in ids],
        "band": ["A" if scores[i] is not None else None for i in ids],
        "status": ["approved"] * len(ids),
        "current_status": ["conditional"] * len(ids),
        "insufficient_reason": [None if scores[i] is not None else "too little" for i in ids],
        "gates_hit": [[] for _ in ids],
        "metrics": [{"order_lines": 10, "on_time_rate": 0.9} for _ in ids],
        "criteria": [[{"name": "On time", "points": 90.0}] for _ in ids],
    }, schema_overrides={"gates_hit": pl.List(pl.String), "score": pl.Float64, "band": pl.String,
                         "insufficient_reason": pl.String})


def test_same_run_key_twice_adds_no_duplicate_evaluation(store: Store) -> None:
    frame = evaluated({"S1": 91.0, "S2": None})
    assert store.save_evaluations("key-1", "run-1", frame, as_of=AS_OF, window_start=date(2025, 7, 1),
                                  rule_set_hash="h") == 2
    assert store.save_evaluations("key-1", "run-2", frame, as_of=AS_OF, window_start=date(2025, 7, 1),
                                  rule_set_hash="h") == 0
    assert store.count(evaluations) == 2
    history = store.evaluation_history("S1")
    assert history.height == 1 and history["run_id"].item() == "run-1" and history["score"].item() == 91.0


def test_status_changes_are_recorded_once_and_become_the_current_status(store: Store) -> None:
    changes = pl.DataFrame({"supplier_id": ["S1"], "from_status": ["approved"], "to_status": ["probation"],
                            "reason": ["score 55.0 puts it in band C"]})
    assert store.save_status_changes("key-1", "run-1", changes, as_of=AS_OF, approved_by="tester") == 1
    assert store.save_status_changes("key-1", "run-2", changes, as_of=AS_OF, approved_by="tester") == 0
    assert store.count(status_changes) == 1
    current = store.current_statuses(excluding_run_key="other")
    assert current.rows() == [("S1", "probation", AS_OF)]
    # while re-running key-1 itself, its own change is not "current": the re-run decides the same way again
    assert store.current_statuses(excluding_run_key="key-1").is_empty()


def record_runs(store: Store, *keys: str, what_if: tuple[str, ...] = ()) -> None:
    for key in keys:
        store.start_run(replace(run_record(f"run-{key}", key), changes_asl=key not in what_if))


def test_previous_evaluation_is_the_latest_earlier_one_under_another_key(store: Store) -> None:
    window = date(2025, 1, 1)
    record_runs(store, "old", "mid", "future", "now")
    store.save_evaluations("old", "run-old", evaluated({"S1": 60.0}), as_of=date(2025, 12, 31), window_start=window,
                           rule_set_hash="h")
    store.save_evaluations("mid", "run-mid", evaluated({"S1": 70.0}), as_of=date(2026, 3, 31), window_start=window,
                           rule_set_hash="h")
    store.save_evaluations("future", "run-future", evaluated({"S1": 80.0}), as_of=date(2026, 9, 30),
                           window_start=window,
                           rule_set_hash="h")
    store.save_evaluations("now", "run-now", evaluated({"S1": 75.0}), as_of=AS_OF, window_start=window,
                           rule_set_hash="h")
    previous = store.previous_evaluations(as_of=AS_OF, excluding_run_key="now")
    assert previous.select("supplier_id", "previous_as_of", "previous_score").rows() == [
        ("S1", date(2026, 3, 31), 70.0)]
    # its criteria as stored, for the change since it (rules.decide.change_causes)
    assert json.loads(previous["previous_criteria"].item()) == [{"name": "On time", "points": 90.0}]


def test_outbox_ledger_sends_each_message_once(store: Store) -> None:
    messages = [PendingMessage("digest-1", "digest", None, ["qm@example.org"], "Digest", b"body-1"),
                PendingMessage("supplier-1", "supplier", "S1", ["buyer@example.org"], "Report", b"body-2")]
    keys = ["digest-1", "supplier-1"]
    assert store.enqueue_messages("key-1", "run-1", messages) == 2
    assert store.claim_messages(keys, run_id="run-1") == [("digest-1", ("qm@example.org",), b"body-1"),
                                                          ("supplier-1", ("buyer@example.org",), b"body-2")]
    store.mark_message("digest-1", ok=True, attempts=1, transport="outbox", location="/tmp/x.eml", error=None)
    store.mark_message("supplier-1", ok=False, attempts=3, transport="smtp", location="h:25", error="451 busy")
    ledger = {row["message_key"]: row for row in store.outbox_frame("key-1").to_dicts()}
    assert ledger["digest-1"]["status"] == "sent" and ledger["digest-1"]["sent_at"] is not None
    assert (ledger["supplier-1"]["status"], ledger["supplier-1"]["attempts"]) == ("failed-temporary", 3)
    # a re-run enqueues the same messages again: nothing is added, the sent one stays sent, the failed one retries
    assert store.enqueue_messages("key-1", "run-2", messages) == 0
    assert [claimed.message_key for claimed in store.claim_messages(keys, run_id="run-2")] == ["supplier-1"]


def test_runs_are_recorded_with_their_outcome(store: Store) -> None:
    store.start_run(run_record("run-1"))
    store.finish_run("run-1", status="failed", error="receipts.csv: missing column 'po_id'")
    row = store.runs_frame().row(0, named=True)
    assert (row["status"], row["error"], row["rule_set_hash"]) == ("failed", "receipts.csv: missing column 'po_id'",
                                                                    "h" * 64)
    assert row["finished_at"] is not None


def test_two_writers_at_once_leave_exactly_one_copy(store_url: str) -> None:
    url = store_url
    frame = evaluated({f"S{i:04d}": float(i % 100) for i in range(500)})
    errors: list[BaseException] = []

    def write(run_id: str) -> None:
        try:
            writer = Store(url)  # the schema is created concurrently too
            try:
                writer.save_evaluations("same-key", run_id, frame, as_of=AS_OF, window_start=date(2025, 7, 1),
                                        rule_set_hash="h")
            finally:
                writer.close()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(f"run-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    reader = Store(url)
    try:
        assert reader.count(evaluations) == 500
    finally:
        reader.close()


def test_unopenable_store_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="cannot open the store.*Check store.url"):
        Store(f"sqlite:///{blocker / 'store.db'}")


def test_a_message_being_sent_by_one_run_is_not_taken_by_another(store: Store) -> None:
    store.enqueue_messages("key-1", "run-1", [PendingMessage("m1", "digest", None, ["a@example.org"], "S", b"x")])
    assert store.claim_messages(["m1"], run_id="run-1") == [("m1", ("a@example.org",), b"x")]
    assert store.claim_messages(["m1"], run_id="run-2") == []
    # a claim left by a process that was killed (its run still "running") is taken over once it is stale
    assert store.claim_messages(["m1"], run_id="run-3", stale_after=timedelta(0)) == [("m1", ("a@example.org",), b"x")]


def test_a_claim_held_by_a_failed_run_is_taken_over_at_once(store: Store) -> None:
    store.start_run(run_record("run-1"))
    store.enqueue_messages("key-1", "run-1", [PendingMessage("m1", "digest", None, ["a@example.org"], "S", b"x")])
    assert store.claim_messages(["m1"], run_id="run-1") == [("m1", ("a@example.org",), b"x")]
    assert store.claim_messages(["m1"], run_id="run-2") == []  # run-1 is still sending
    store.finish_run("run-1", status="failed", error="crashed while sending")
    assert store.claim_messages(["m1"], run_id="run-2") == [("m1", ("a@example.org",), b"x")]


def test_two_runs_claiming_at_once_split_the_messages_without_overlap(store_url: str) -> None:
    keys = [f"m{i:03d}" for i in range(200)]
    with Store(store_url) as setup:
        setup.enqueue_messages("key-1", "run-0", [PendingMessage(k, "supplier", None, ["a@example.org"], "S", b"x")
                                                  for k in keys])
    claims: dict[str, list[str]] = {}

    def claim(run_id: str) -> None:
        with Store(store_url) as store:
            claims[run_id] = [claimed.message_key for claimed in store.claim_messages(keys, run_id=run_id)]

    threads = [threading.Thread(target=claim, args=(f"run-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [key for claimed in claims.values() for key in claimed]
    assert sorted(everything) == keys  # every message claimed exactly once


def test_current_status_follows_the_latest_as_of_date_not_the_latest_insert(store: Store) -> None:
    def change(key: str, as_of: date, to_status: str) -> None:
        frame = pl.DataFrame({"supplier_id": ["S1"], "from_status": ["approved"], "to_status": [to_status],
                              "reason": ["r"]})
        store.save_status_changes(key, f"run-{key}", frame, as_of=as_of, approved_by="tester")

    change("nightly", date(2026, 6, 30), "probation")
    change("back-dated", date(2025, 1, 31), "approved")  # recorded later, about an earlier date
    assert store.current_statuses(excluding_run_key="x").rows() == [("S1", "probation", date(2026, 6, 30))]


def test_an_evaluation_of_the_same_day_or_a_what_if_is_not_the_previous_one(store: Store) -> None:
    window = date(2025, 7, 1)
    record_runs(store, "last-week", "yesterday", "earlier-today", "next-week", what_if=("yesterday", "next-week"))
    for key, as_of, score in [("last-week", date(2026, 6, 22), 50.0), ("yesterday", date(2026, 6, 29), 60.0),
                              ("earlier-today", AS_OF, 70.0), ("next-week", date(2026, 7, 7), 80.0)]:
        store.save_evaluations(key, f"run-{key}", evaluated({"S1": score}), as_of=as_of, window_start=window,
                               rule_set_hash="h")
    previous = store.previous_evaluations(as_of=AS_OF, excluding_run_key="now")
    assert previous.select("supplier_id", "previous_score").rows() == [("S1", 50.0)]
    # the official as-of guard ignores what-ifs too, even a later one
    assert store.latest_official_as_of(excluding_run_key="now").rows() == [("S1", AS_OF)]
    history = store.evaluation_history("S1").select("as_of", "official").rows()
    assert history[0] == (date(2026, 7, 7), False) and history[1] == (AS_OF, True)


def test_reading_a_store_that_does_not_exist_does_not_create_one(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no evaluations recorded yet.*Run an evaluation first"):
        Store(f"sqlite:///{tmp_path / 'none.db'}", create=False)
    assert not (tmp_path / "none.db").exists()


def test_a_missing_database_driver_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match="database driver is not installed"):
        Store("postgresql+pg8000://user@127.0.0.1:1/db")


def test_a_database_error_mid_run_is_a_store_error_not_a_traceback(store: Store) -> None:
    store.start_run(run_record("run-1"))
    with pytest.raises(StoreError, match="the store refused to start run .*check store.url") as caught:
        store.start_run(run_record("run-1"))  # the same run id twice breaks the primary key
    assert caught.value.transient is False


def test_a_run_that_keeps_sending_keeps_its_claims(store: Store) -> None:
    store.enqueue_messages("key-1", "run-1", [PendingMessage("m1", "digest", None, ["a@example.org"], "S", b"x")])
    store.claim_messages(["m1"], run_id="run-1")
    with store.engine.begin() as connection:  # pretend the claim was taken an hour ago
        connection.execute(outbox.update().values(claimed_at=datetime.now(UTC) - timedelta(hours=1)))
    store.refresh_claims("run-1")
    assert store.claim_messages(["m1"], run_id="run-2", stale_after=timedelta(minutes=30)) == []


def test_only_the_holder_of_a_claim_records_the_outcome(store: Store) -> None:
    store.enqueue_messages("key-1", "run-1", [PendingMessage("m1", "digest", None, ["a@example.org"], "S", b"x")])
    store.claim_messages(["m1"], run_id="run-1")
    store.claim_messages(["m1"], run_id="run-2", stale_after=timedelta(0))  # run-2 takes it over
    assert not store.mark_message("m1", ok=False, attempts=1, transport="smtp", location="h", error="x",
                                  run_id="run-1")
    assert store.outbox_frame()["status"].to_list() == ["sending"]
    assert store.mark_message("m1", ok=True, attempts=1, transport="smtp", location="h", error=None, run_id="run-2")
    assert store.outbox_frame()["status"].to_list() == ["sent"]


def test_store_results_are_one_transaction_and_counted_by_run(store: Store) -> None:
    changes = pl.DataFrame({"supplier_id": ["S1"], "from_status": ["approved"], "to_status": ["probation"],
                            "reason": ["r"]})
    summary = pl.DataFrame({"kind": ["receipts"], "source": ["receipts.csv"], "rows_read": [10],
                            "rows_quarantined": [1], "top_reasons": [["bad date (1 rows)"]]})
    args = {"evaluated": evaluated({"S1": 55.0}), "changes": changes, "quarantine_summary": summary, "as_of": AS_OF,
            "window_start": date(2025, 7, 1), "rule_set_hash": "h", "approved_by": "tester"}
    assert store.save_results("key-1", "run-1", **args) == 1
    assert store.save_results("key-1", "run-1", **args) == 1  # a retried task still reports what its run added
    assert store.save_results("key-1", "run-2", **args) == 0  # another run of the same evaluation adds nothing
    assert store.count(status_changes) == 1


def test_lock_and_connection_errors_are_transient_broken_schemas_are_not() -> None:
    import sqlite3

    from suppliers.store import _is_transient

    def sqlite_error(text: str) -> sa.exc.OperationalError:
        return sa.exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError(text))

    assert _is_transient(sqlite_error("database is locked")) is True
    assert _is_transient(sqlite_error("no such table: runs")) is False
    assert _is_transient(sqlite_error("attempt to write a readonly database")) is False
    with pytest.raises(StoreError) as refused:
        Store("postgresql+psycopg://nobody@127.0.0.1:1/none")  # nothing listens on port 1
    assert refused.value.transient is True
    import pickle

    assert pickle.loads(pickle.dumps(refused.value)).transient is True  # survives Prefect's pickling


def test_the_schema_is_created_once_and_later_opens_only_check_its_version(store_url: str) -> None:
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement.strip().split()[0].upper())

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    try:
        Store(store_url).close()  # first use: creates every table and stamps the version
        created = statements.count("CREATE")
        statements.clear()
        Store(store_url).close()  # later opens: no CREATE, no INSERT
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)
    assert created >= 6  # runs, evaluations, status changes, quarantine summaries, outbox, schema_info
    assert "CREATE" not in statements and "INSERT" not in statements
    with Store(store_url) as store, store.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT version FROM schema_info")).scalars().all() == [SCHEMA_VERSION]


def test_a_store_written_before_versioning_is_stamped_and_keeps_its_records(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with Store(url) as store:
        store.start_run(run_record("run-1"))
        with store.engine.begin() as connection:  # what the store looked like before it had a version
            connection.execute(sa.text("DROP TABLE schema_info"))
    with Store(url) as reopened:
        assert reopened.runs_frame()["run_id"].to_list() == ["run-1"]
        with reopened.engine.connect() as connection:
            assert connection.execute(sa.text("SELECT version FROM schema_info")).scalar() == SCHEMA_VERSION


def test_a_store_from_a_newer_supplier_eval_is_refused_not_written(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    with Store(url) as store, store.engine.begin() as connection:
        connection.execute(sa.text("UPDATE schema_info SET version = :v"), {"v": SCHEMA_VERSION + 1})
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}.*Upgrade supplier-eval"):
        Store(url)


def test_a_new_sqlite_store_gets_its_folder(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 'a' / 'b' / 'store.db'}") as store:
        store.start_run(run_record("run-1"))
    assert (tmp_path / "a" / "b" / "store.db").is_file()


def test_reading_an_empty_database_creates_no_tables(store_url: str) -> None:
    with pytest.raises(StoreError, match="no evaluations recorded yet.*Run an evaluation first"):
        Store(store_url, create=False)
    if store_url.startswith("postgresql"):
        engine = sa.create_engine(store_url)
        try:
            assert sa.inspect(engine).get_table_names() == []
        finally:
            engine.dispose()


# --- schema version 2: the ASL's own records ---------------------------------------------------------------------

def asl_results(outcomes: dict[str, tuple[str, str]], *, proposals: dict[str, tuple[str, str]] | None = None,
                actions: list[tuple[str, str]] | None = None) -> AslResults:
    """outcomes: supplier → (outcome, proposed_status); proposals: supplier → (from, to); actions: (supplier, kind)."""
    ids = list(outcomes)
    return AslResults(
        outcomes=pl.DataFrame({
            "supplier_id": ids, "profile": ["major"] * len(ids), "reevaluate_every_days": [180] * len(ids),
            "next_due": [date(2026, 12, 27)] * len(ids), "proposed_status": [outcomes[i][1] for i in ids],
            "outcome": [outcomes[i][0] for i in ids], "status_note": [None] * len(ids), "action": ["Keep."] * len(ids),
        }, schema_overrides={"status_note": pl.String}),
        proposals=pl.DataFrame([{"supplier_id": s, "from_status": f, "to_status": t, "reason": "score 40.0"}
                                for s, (f, t) in (proposals or {}).items()],
                               schema={"supplier_id": pl.String, "from_status": pl.String, "to_status": pl.String,
                                       "reason": pl.String}),
        actions=pl.DataFrame([{"supplier_id": s, "kind": k, "raised_on": AS_OF, "due": AS_OF + timedelta(days=30),
                               "owner": "buyer@example.org", "description": "do it"} for s, k in (actions or [])],
                             schema={"supplier_id": pl.String, "kind": pl.String, "raised_on": pl.Date,
                                     "due": pl.Date, "owner": pl.String, "description": pl.String}),
        seen=pl.DataFrame({"supplier_id": ids, "name": [f"Name {i}" for i in ids], "category": ["parts"] * len(ids),
                           "criticality": ["major"] * len(ids), "owner_email": ["buyer@example.org"] * len(ids),
                           "active": [True] * len(ids)}),
    )


def save(store: Store, key: str, as_of: date, scores: dict[str, float | None], asl: AslResults,
         changes: pl.DataFrame | None = None) -> int:
    store.start_run(replace(run_record(f"run-{key}", key, as_of)))
    empty_changes = pl.DataFrame(schema={"supplier_id": pl.String, "from_status": pl.String, "to_status": pl.String,
                                         "reason": pl.String})
    summary = pl.DataFrame(schema={"kind": pl.String, "source": pl.String, "rows_read": pl.Int64,
                                   "rows_quarantined": pl.Int64, "top_reasons": pl.List(pl.String)})
    return store.save_results(key, f"run-{key}", evaluated=evaluated(scores), changes=changes if changes is not None
                              else empty_changes, quarantine_summary=summary, as_of=as_of,
                              window_start=as_of - timedelta(days=364), rule_set_hash="h", approved_by="run",
                              asl=asl)


def test_a_run_records_its_outcomes_proposals_actions_and_suppliers_once(store: Store) -> None:
    asl = asl_results({"S1": ("proposed", "disqualified"), "S2": ("changed", "probation")},
                      proposals={"S1": ("probation", "disqualified")}, actions=[("S2", "scar")])
    changes = pl.DataFrame({"supplier_id": ["S2"], "from_status": ["approved"], "to_status": ["probation"],
                            "reason": ["score 55.0 puts it in band C"]})
    assert save(store, "k1", AS_OF, {"S1": 40.0, "S2": 55.0}, asl, changes) == 2
    store.start_run(run_record("run-k1-again", "k1"))
    store.save_results("k1", "run-k1-again", evaluated=evaluated({"S1": 40.0, "S2": 55.0}), changes=changes,
                       quarantine_summary=pl.DataFrame(schema={"kind": pl.String, "source": pl.String,
                                                               "rows_read": pl.Int64, "rows_quarantined": pl.Int64,
                                                               "top_reasons": pl.List(pl.String)}),
                       as_of=AS_OF, window_start=date(2025, 7, 1), rule_set_hash="h", approved_by="run", asl=asl)
    for table, rows in ((evaluation_outcomes, 2), (proposals, 1), (actions, 1), (suppliers_seen, 2)):
        assert store.count(table) == rows, table.name  # the re-run of the same evaluation added nothing
    open_now = store.open_proposals()
    assert open_now.select("supplier_id", "name", "from_status", "to_status").rows() == [
        ("S1", "Name S1", "probation", "disqualified")]
    raised = store.actions_frame(open_only=True)
    assert raised.select("number", "kind", "supplier_id", "due", "state").rows() == [
        (1, "scar", "S2", date(2026, 7, 30), "open")]
    # a later evaluation that decides S1 again supersedes the open proposal and makes its own
    later = asl_results({"S1": ("proposed", "approved")}, proposals={"S1": ("probation", "approved")})
    save(store, "k2", date(2026, 9, 30), {"S1": 90.0}, later)
    assert store.open_proposals().select("supplier_id", "to_status", "as_of").rows() == [
        ("S1", "approved", date(2026, 9, 30))]
    with store.engine.connect() as connection:
        states = connection.execute(sa.select(proposals.c.run_key, proposals.c.state).order_by(proposals.c.id)).all()
    assert [tuple(row) for row in states] == [("k1", "superseded"), ("k2", "open")]


def test_a_save_the_database_refuses_part_way_records_nothing(store: Store) -> None:
    asl = asl_results({"S1": ("changed", "probation"), "S2": ("changed", "probation")}, actions=[("S1", "scar")])
    changes = pl.DataFrame({"supplier_id": ["S1"], "from_status": ["approved"], "to_status": ["probation"],
                            "reason": ["score 55.0 puts it in band C"]})
    refused = evaluated({"S1": 55.0, "S2": 60.0}).with_columns(  # an evaluation without a status breaks NOT NULL
        status=pl.Series([None, "probation"], dtype=pl.String))
    store.start_run(run_record("run-refused", "k1"))
    with pytest.raises(StoreError, match="refused to save results"):
        store.save_results("k1", "run-refused", evaluated=refused, changes=changes, quarantine_summary=pl.DataFrame(
            schema={"kind": pl.String, "source": pl.String, "rows_read": pl.Int64, "rows_quarantined": pl.Int64,
                    "top_reasons": pl.List(pl.String)}), as_of=AS_OF, window_start=date(2025, 7, 1),
                           rule_set_hash="h", approved_by="run", asl=asl)
    for table in (evaluations, status_changes, evaluation_outcomes, actions, suppliers_seen):
        assert store.count(table) == 0, table.name
    assert save(store, "k1", AS_OF, {"S1": 55.0, "S2": 60.0}, asl, changes) == 2  # the run again: all of it


def test_approving_and_rejecting_a_proposal_once(store: Store) -> None:
    save(store, "k1", AS_OF, {"S1": 40.0, "S2": 40.0},
         asl_results({"S1": ("proposed", "disqualified"), "S2": ("proposed", "disqualified")},
                     proposals={"S1": ("probation", "disqualified"), "S2": ("probation", "disqualified")}))
    first, second = store.open_proposals()["proposal_id"].to_list()
    change = {"supplier_id": "S1", "as_of": AS_OF, "from_status": "probation", "to_status": "disqualified",
              "reason": "score 40.0; approved: confirmed"}
    raised = asl_results({}, actions=[("S1", "block_orders")]).actions
    assert store.decide_proposal(first, approve=True, decided_by="Q. Manager", reason="confirmed", change=change,
                                 raised=raised) == [1]
    assert store.decide_proposal(first, approve=True, decided_by="Q. Manager", reason="again", change=change) is None
    assert store.decide_proposal(second, approve=False, decided_by="Q. Manager", reason="sole source") == []
    assert store.open_proposals().is_empty()
    assert store.current_statuses(excluding_run_key="-").rows() == [
        ("S1", "disqualified", AS_OF), ("S2", "approved", AS_OF)]  # S2 keeps the status its evaluation recorded
    history = store.status_history("S1").row(0, named=True)
    assert (history["approved_by"], history["run_key"]) == ("Q. Manager", f"approval-{first}")


def test_a_manual_decision_changes_the_status_and_supersedes_an_open_proposal(store: Store) -> None:
    save(store, "k1", AS_OF, {"S1": 40.0}, asl_results({"S1": ("proposed", "disqualified")},
                                                       proposals={"S1": ("probation", "disqualified")}))
    raised = asl_results({}, actions=[("S1", "scar")]).actions
    decision, numbers = store.record_manual_decision(
        supplier_id="S1", status="conditional", from_status="probation", decided_by="Q. Manager",
        reason="sole source", until=date(2026, 12, 31), as_of=date(2026, 7, 1), raised=raised)
    assert (decision, numbers) == (1, [1])
    assert store.open_proposals().is_empty()
    assert store.current_statuses(excluding_run_key="-").rows() == [("S1", "conditional", date(2026, 7, 1))]
    manual = store.latest_manual_decisions().row(0, named=True)
    assert (manual["manual_status"], manual["manual_by"], manual["manual_until"]) == (
        "conditional", "Q. Manager", date(2026, 12, 31))
    assert store.close_action(1, closed_by="Q. Manager", effective=False, note="recurred", on=date(2026, 8, 1))
    assert not store.close_action(1, closed_by="Q. Manager", effective=True, note=None, on=date(2026, 8, 2))
    closed = store.actions_frame().row(0, named=True)
    assert (closed["state"], closed["effective"], closed["note"]) == ("closed", False, "recurred")


def test_the_schedule_and_the_recent_bands_come_from_scored_official_evaluations(store: Store) -> None:
    for key, as_of, score in [("a", date(2026, 1, 31), 45.0), ("b", date(2026, 3, 31), None),
                              ("c", date(2026, 4, 30), 60.0), ("d", AS_OF, 40.0)]:
        save(store, key, as_of, {"S1": score}, asl_results({"S1": ("unchanged", "approved")}))
    store.start_run(replace(run_record("run-w", "w", date(2026, 5, 31)), changes_asl=False))  # a what-if
    store.save_evaluations("w", "run-w", evaluated({"S1": 99.0}), as_of=date(2026, 5, 31),
                           window_start=date(2025, 6, 1), rule_set_hash="h")
    assert store.last_scored(as_of=AS_OF).rows() == [("S1", date(2026, 4, 30), AS_OF)]
    bands = store.recent_bands(as_of=AS_OF, excluding_run_key="d")
    assert bands.select("as_of").to_series().to_list() == [date(2026, 4, 30), date(2026, 1, 31)]


def v1_store(url: str) -> None:
    """A store as supplier-eval wrote it before schema version 2: the version-1 tables only, with records."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            for table in (schema_info, runs, evaluations, status_changes, quarantine_summaries, outbox):
                connection.execute(CreateTable(table))
            connection.execute(schema_info.insert().values(version=1, created_at=datetime.now(UTC)))
            values = {**run_record("run-1", "k1").__dict__, "selection": "[]", "status": "succeeded",
                      "started_at": datetime.now(UTC)}
            connection.execute(runs.insert().values(**values))
            for supplier, status, band in (("S1", "approved", "A"), ("S2", "probation", "C")):
                connection.execute(evaluations.insert().values(
                    run_key="k1", run_id="run-1", supplier_id=supplier, as_of=AS_OF, window_start=date(2025, 7, 1),
                    score=90.0 if band == "A" else 60.0, band=band, status=status, previous_status="approved",
                    insufficient_reason=None, gates_hit="[]", metrics="{}", criteria="[]", rule_set_hash="h",
                    recorded_at=datetime.now(UTC)))
            connection.execute(status_changes.insert().values(
                run_key="k1", run_id="run-1", supplier_id="S2", as_of=AS_OF, from_status="approved",
                to_status="probation", reason="score 60.0 puts it in band C", approved_by="supplier-eval nightly run",
                changed_at=datetime.now(UTC)))
    finally:
        engine.dispose()


def test_a_version_1_store_opens_and_migrates_to_version_2(store_url: str) -> None:
    from rules.asl import approved_supplier_list

    v1_store(store_url)
    with Store(store_url) as store:  # opening migrates: the new tables are created, the records kept
        with store.engine.connect() as connection:
            assert connection.execute(sa.select(sa.func.max(schema_info.c.version))).scalar() == SCHEMA_VERSION == 4
            names = set(sa.inspect(connection).get_table_names())
        assert {"proposals", "manual_decisions", "actions", "suppliers_seen", "evaluation_outcomes",
                "rule_sets"} <= names
        # S1 never changed in version 1 (it kept its supplier record's status): its evaluation's status stands
        assert store.current_statuses(excluding_run_key="-").rows() == [("S1", "approved", AS_OF),
                                                                         ("S2", "probation", AS_OF)]
        table = approved_supplier_list(store.asl_records(), today=AS_OF)
        assert table.select("supplier_id", "status", "score", "band", "profile").rows() == [
            ("S1", "approved", 90.0, "A", None), ("S2", "probation", 60.0, "C", None)]
        assert table["why"].to_list() == ["the status its evaluations kept (no change recorded)",
                                          "score 60.0 puts it in band C"]
        save(store, "k2", date(2026, 9, 30), {"S1": 91.0}, asl_results({"S1": ("unchanged", "approved")}))
        assert store.count(evaluation_outcomes) == 1 and store.count(evaluations) == 3
    with Store(store_url) as again, again.engine.connect() as connection:  # and later opens only check it
        assert sorted(connection.execute(sa.select(schema_info.c.version)).scalars()) == [1, 4]


def test_a_stop_while_a_connection_closes_is_not_logged_as_an_error(store: Store, monkeypatch: pytest.MonkeyPatch,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """Ctrl-C or SIGTERM (a KeyboardInterrupt) landing while the pool closes a connection still stops the command,
    without the pool's traceback on the terminal; a real error while closing is still logged."""
    store.runs_frame()  # a connection is in the pool now
    monkeypatch.setattr(store.engine.dialect, "do_close", lambda connection: (_ for _ in ()).throw(KeyboardInterrupt))
    with caplog.at_level("DEBUG"), pytest.raises(KeyboardInterrupt):
        store.engine.dispose()
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
    store.runs_frame()
    monkeypatch.setattr(store.engine.dialect, "do_close", lambda connection: (_ for _ in ()).throw(OSError("disk")))
    with caplog.at_level("ERROR"):
        store.engine.dispose()  # an Exception is logged, not raised
    assert [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], OSError)]


def test_only_an_official_run_records_the_suppliers_it_saw() -> None:
    from types import SimpleNamespace

    from suppliers.store import SEEN_FIELDS

    chosen = pl.DataFrame({"supplier_id": ["S1", "S2"], "name": ["One", "Two"], "category": ["IT", "IT"],
                           "criticality": ["high", "low"], "owner_email": ["a@x.org", "b@x.org"],
                           "active": [True, True], "contact_email": ["c@x.org", None]})
    decisions = SimpleNamespace(evaluated=pl.DataFrame({"supplier_id": ["S1", "S2"]}),
                                proposals=pl.DataFrame({"supplier_id": ["S2"]}), actions=pl.DataFrame())
    official = AslResults.of(decisions, chosen, official=True)
    assert official.seen.columns == list(SEEN_FIELDS) and official.seen["name"].to_list() == ["One", "Two"]
    assert official.outcomes is decisions.evaluated and official.proposals is decisions.proposals
    what_if = AslResults.of(decisions, chosen, official=False)
    assert what_if.seen.height == 0 and what_if.seen.columns == list(SEEN_FIELDS)
