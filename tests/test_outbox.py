"""The outbox, called directly: who gets which message, one message per recipient, nothing composed twice."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from conftest import fresh_database
from smtp_support import HOST, FailingTimes, Recorder, RefusingRecipient, smtp_server

import reports.outbox as outbox_module
from reports.bundle import Report, RunReports
from reports.delivery import SmtpSettings, Transport
from reports.outbox import deliver_planned, deliver_run_messages, message_key, plan_messages, retry_unsent
from reports.render import Rendered
from suppliers.errors import DeliveryError
from suppliers.runs import RunRecord
from suppliers.store import PendingMessage, Store

RENDERED = Rendered(html="<p>report</p>", text="report\n")


def run_record(*, official: bool = True, run_key: str = "key-1", run_id: str = "run-1") -> RunRecord:
    return RunRecord(run_id=run_id, run_key=run_key, trigger="nightly", requested_by="test", as_of=date(2026, 6, 30),
                     window_days=365, selection=["*active*"], rule_set_name="r", rule_set_version="1",
                     rule_set_hash="h", input_fingerprint="f", code_version="0", changes_asl=official)


def run_reports(tmp_path: Path) -> RunReports:
    digest = Report("digest", None, None, "Digest", RENDERED, ())
    suppliers = (Report("supplier", "S1", "anna@example.org", "Report S1", RENDERED, ()),
                 Report("supplier", "S2", "ben@example.org", "Report S2", RENDERED, ()))
    return RunReports(out_dir=tmp_path, digest=digest, suppliers=suppliers)


def addressed(planned: list) -> list[tuple[str | None, str]]:
    return [(item.report.supplier_id, item.recipient) for item in planned]


def test_an_official_run_sends_the_digest_to_the_officers_and_each_report_to_its_buyer(tmp_path: Path) -> None:
    planned = plan_messages(run_reports(tmp_path), run=run_record(), officers=("qm@example.org", "lead@example.org"))
    assert addressed(planned) == [(None, "qm@example.org"), (None, "lead@example.org"),
                                  ("S1", "anna@example.org"), ("S2", "ben@example.org")]


def test_whoever_asked_gets_everything_instead(tmp_path: Path) -> None:
    planned = plan_messages(run_reports(tmp_path), run=run_record(), officers=("qm@example.org",),
                            requested=("me@example.org",))
    assert addressed(planned) == [(None, "me@example.org"), ("S1", "me@example.org"), ("S2", "me@example.org")]


def test_a_what_if_goes_only_to_whoever_asked(tmp_path: Path) -> None:
    reports = run_reports(tmp_path)
    assert plan_messages(reports, run=run_record(official=False), officers=("qm@example.org",)) == []
    asked = plan_messages(reports, run=run_record(official=False), officers=("qm@example.org",),
                          requested=("me@example.org",))
    assert {recipient for _, recipient in addressed(asked)} == {"me@example.org"} and len(asked) == 3


def test_a_message_is_one_report_to_one_recipient_of_one_evaluation() -> None:
    key = message_key("key-1", "supplier", "S1", "Anna@Example.org ")
    assert key == message_key("key-1", "supplier", "S1", "anna@example.org")  # an address is case-blind
    others = {message_key("key-2", "supplier", "S1", "anna@example.org"),
              message_key("key-1", "supplier", "S2", "anna@example.org"),
              message_key("key-1", "digest", None, "anna@example.org"),
              message_key("key-1", "supplier", "S1", "ben@example.org")}
    assert key not in others and len(others) == 4


@pytest.fixture
def counted_compositions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    composed: list[str] = []
    real = outbox_module.compose_message

    def counting(**kwargs: object):
        composed.append(str(kwargs["message_key"]))
        return real(**kwargs)

    monkeypatch.setattr(outbox_module, "compose_message", counting)
    return composed


def test_a_re_run_composes_and_sends_nothing_and_a_new_officer_gets_only_theirs(
    tmp_path: Path, counted_compositions: list[str]
) -> None:
    transport = Transport(smtp=None, outbox_dir=tmp_path / "outbox")
    reports = run_reports(tmp_path)
    with Store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        def deliver(officers: tuple[str, ...], run_id: str):
            return deliver_run_messages(store, run_record(run_id=run_id), reports, sender="eval@example.org",
                                        officers=officers, requested=(), transport=transport)

        first = deliver(("qm@example.org",), "run-1")
        assert (first.messages, first.sent_now, len(counted_compositions)) == (3, 3, 3)
        again = deliver(("qm@example.org",), "run-2")
        assert (again.messages, again.sent_now, len(counted_compositions)) == (3, 0, 3)
        added = deliver(("qm@example.org", "auditor@example.org"), "run-3")
        assert (added.messages, added.sent_now, len(counted_compositions)) == (4, 1, 4)
    assert counted_compositions[-1] == message_key("key-1", "digest", None, "auditor@example.org")
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 4


def test_the_envelope_is_the_ledgers_recipient_and_the_settings_sender(tmp_path: Path) -> None:
    recorder = Recorder()
    with smtp_server(recorder) as controller, Store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        smtp = SmtpSettings(host=HOST, port=controller.port, security="none", timeout_seconds=5)
        outcome = deliver_run_messages(store, run_record(), run_reports(tmp_path),
                                       sender="Supplier Eval <eval@example.org>", officers=("qm@example.org",),
                                       requested=(), transport=Transport(smtp=smtp, outbox_dir=tmp_path))
    assert outcome.sent_now == 3
    assert sorted((sender, tuple(to)) for sender, to, _ in recorder.envelopes) == [
        ("eval@example.org", ("anna@example.org",)), ("eval@example.org", ("ben@example.org",)),
        ("eval@example.org", ("qm@example.org",))]


def test_a_what_if_nobody_asked_for_touches_no_transport(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the outbox folder should be")
    with Store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        outcome = deliver_run_messages(store, run_record(official=False), run_reports(tmp_path),
                                       sender="eval@example.org", officers=("qm@example.org",), requested=(),
                                       transport=Transport(smtp=None, outbox_dir=blocked / "outbox"))
        assert store.outbox_counts() == {}
    assert (outcome.messages, outcome.sent_now, outcome.elsewhere) == (0, 0, 0)


def test_a_message_goes_from_the_sender_it_was_written_with_even_after_the_settings_change(tmp_path: Path) -> None:
    recorder = Recorder()
    with smtp_server(recorder) as controller, Store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        smtp = SmtpSettings(host=HOST, port=controller.port, security="none", timeout_seconds=5)
        down = Transport(smtp=SmtpSettings(host=HOST, port=1, security="none", timeout_seconds=1),
                         outbox_dir=tmp_path, retries=0)
        with pytest.raises(DeliveryError):  # nothing listens on port 1: every message stays in the ledger
            deliver_run_messages(store, run_record(), run_reports(tmp_path), sender="Old <old@example.org>",
                                 officers=("qm@example.org",), requested=(), transport=down)
        retried = retry_unsent(store, transport=Transport(smtp=smtp, outbox_dir=tmp_path))
    assert [result.ok for result in retried] == [True] * 3
    assert {sender for sender, _, _ in recorder.envelopes} == {"old@example.org"}
    assert {str(message["From"]) for message in recorder.messages()} == {"Old <old@example.org>"}


# ---- ledger states --------------------------------------------------------------------------------------


def smtp_transport(controller, **kwargs) -> Transport:
    smtp = SmtpSettings(host=HOST, port=controller.port, security="none", timeout_seconds=5)
    return Transport(smtp=smtp, outbox_dir=Path("unused"), **kwargs)


def test_a_550_for_one_recipient_fails_that_run_once_and_later_runs_leave_it_alone(tmp_path: Path) -> None:
    handler = RefusingRecipient("ben@example.org")
    with smtp_server(handler) as controller, Store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        def deliver(run_id: str):
            return deliver_run_messages(store, run_record(run_id=run_id), run_reports(tmp_path),
                                        sender="eval@example.org", officers=("qm@example.org",), requested=(),
                                        transport=smtp_transport(controller, retries=3))

        with pytest.raises(DeliveryError) as caught:
            deliver("run-1")
        message = str(caught.value)
        assert "1 of 3 messages were not delivered: 1 refused for good" in message
        assert "ben@example.org (550 5.1.1 No such user here)" in message
        assert "`supplier-eval outbox retry --include-permanent`" in message
        failed = store.failed_messages()
        assert failed.select("supplier_id", "recipients", "status", "attempts").rows() == [
            ("S2", ["ben@example.org"], "failed-permanent", 1)]
        assert "550" in failed["last_error"].item() and failed["last_attempt_at"].item() is not None
        again = deliver("run-2")  # the same evaluation again: nothing to send, and no error for the old refusal
        assert (again.sent_now, again.refused_before) == (0, 1) and handler.refusals == 1
        assert retry_unsent(store, transport=smtp_transport(controller)) == [] and handler.refusals == 1
        handler.refused = "nobody@example.org"  # the mailbox exists now
        retried = retry_unsent(store, transport=smtp_transport(controller), include_permanent=True)
        assert [(r.ok, r.attempts) for r in retried] == [(True, 1)]
        row = store.outbox_frame().filter(pl.col("supplier_id") == "S2").row(0, named=True)
        assert (row["status"], row["attempts"]) == ("sent", 2)
    assert sorted(to[0] for _, to, _ in handler.envelopes) == ["anna@example.org", "ben@example.org",
                                                               "qm@example.org"]


def test_a_4xx_that_outlasts_the_retries_is_failed_temporary_and_the_next_run_sends_it(tmp_path: Path) -> None:
    handler = FailingTimes(1)
    with smtp_server(handler) as controller, Store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        planned = plan_messages(run_reports(tmp_path), run=run_record(), officers=())[:1]
        with pytest.raises(DeliveryError, match="1 failed for now .*451.*stays queued: run the same"):
            deliver_planned(store, run_record(), planned, sender="eval@example.org",
                            transport=smtp_transport(controller, retries=0))
        assert store.failed_messages().select("status", "attempts").rows() == [("failed-temporary", 1)]
        assert store.delivery_failures().is_empty()  # only permanent failures go to the digest
        outcome = deliver_planned(store, run_record(run_id="run-2"), planned, sender="eval@example.org",
                                  transport=smtp_transport(controller, retries=0))
        assert outcome.sent_now == 1 and store.outbox_frame()["attempts"].to_list() == [2]


def test_the_digest_hears_of_each_permanent_failure_once(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        store.enqueue_messages("k", "run-1", [PendingMessage(f"m{i}", "supplier", f"S{i}", [f"b{i}@example.org"],
                                                             f"Report S{i}", b"x") for i in range(3)])
        store.claim_messages(["m0", "m1", "m2"], run_id="run-1")
        store.mark_message("m0", ok=False, attempts=1, transport="smtp", location="h:25", error="550 no such user",
                           permanent=True)
        store.mark_message("m1", ok=False, attempts=4, transport="smtp", location="h:25", error="451 busy")
        store.mark_message("m2", ok=True, attempts=1, transport="smtp", location="h:25", error=None)
        failures = store.delivery_failures()
        assert failures.columns == ["message_key", "kind", "supplier_id", "recipients", "subject", "status",
                                    "attempts", "last_error", "last_attempt_at"]
        assert failures.select("message_key", "recipients", "status", "last_error").rows() == [
            ("m0", ["b0@example.org"], "failed-permanent", "550 no such user")]
        assert store.mark_failures_reported(["m0", "m1"]) == 1  # only permanent failures are reported
        assert store.delivery_failures().is_empty()
        assert store.failed_messages()["message_key"].sort().to_list() == ["m0", "m1"]  # still listed


# ---- who holds a claim ----------------------------------------------------------------------------------


def dead_process() -> tuple[int, str]:
    """The pid of a process that has ended, and a start time."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid, "1"


@pytest.mark.parametrize(("host", "pid", "started", "lease", "free"), [
    ("here", "dead", "1", 60, True),  # its process ended: free at once, whatever the lease says
    ("here", "parent", "1", 60, True),  # its pid belongs to another process now (another start time)
    ("here", "parent", "actual", 60, False),  # alive
    ("elsewhere", "parent", "1", 60, False),  # another host: alive while its lease runs
    ("elsewhere", "parent", "1", -1, True),  # another host, lease run out
])
def test_a_claim_is_free_when_its_holder_is_gone(tmp_path: Path, host: str, pid: str, started: str, lease: int,
                                                 free: bool) -> None:
    from suppliers.holder import this_process
    from suppliers.store import holders, runs

    me = this_process()
    pids = {"dead": dead_process()[0], "parent": os.getppid()}
    start_of = Path(f"/proc/{os.getppid()}/stat").read_text().rsplit(")", 1)[1].split()[19]
    with Store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        store.enqueue_messages("key-1", "run-2", [PendingMessage("m1", "digest", None, ["a@example.org"], "S", b"x")])
        with store.engine.begin() as connection:  # run-2, running, held by the process described
            connection.execute(runs.insert().values(**{**run_record(run_id="run-2").__dict__, "selection": "[]",
                                                       "status": "running", "started_at": datetime.now(UTC)}))
            connection.execute(holders.insert().values(
                holder_id="run-2", host=me.host if host == "here" else "another-host", pid=pids[pid],
                process_started=start_of if started == "actual" else started,
                lease_until=datetime.now(UTC) + timedelta(seconds=lease)))
        assert store.claim_messages(["m1"], run_id="run-2") != []  # run-2 claims it, then is killed
        assert (store.claim_messages(["m1"], run_id="run-3") != []) is free
        status = dict(store.runs_frame().select("run_id", "status").rows())["run-2"]
    assert status == ("abandoned" if free else "running")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return fresh_database(request.getfixturevalue("postgres_url"))


@pytest.mark.parametrize("version", [2, 3])
def test_an_older_store_migrates_its_outbox(store_url: str, version: int) -> None:
    import sqlalchemy as sa

    with Store(store_url) as store:
        store.enqueue_messages("k", "run", [PendingMessage(key, "digest", None, ["q@example.org"], "s", b"x")
                                            for key in "abc"])
    engine = sa.create_engine(store_url)
    with engine.begin() as connection:  # the outbox as versions 2 and 3 had it, with its two old states
        for column in ("last_attempt_at", "reported_at"):
            connection.execute(sa.text(f"ALTER TABLE outbox DROP COLUMN {column}"))
        connection.execute(sa.text("DROP TABLE holders"))
        for key, status in (("a", "pending"), ("b", "failed"), ("c", "sent")):
            connection.execute(sa.text("UPDATE outbox SET status = :s WHERE message_key = :k"),
                               {"k": key, "s": status})
        connection.execute(sa.text("UPDATE schema_info SET version = :v"), {"v": version})
    engine.dispose()
    for _ in range(2):  # and opening it again changes nothing
        with Store(store_url) as store:
            assert dict(store.outbox_frame().select("message_key", "status").rows()) == {
                "a": "queued", "b": "failed-temporary", "c": "sent"}
            assert store.unsent_message_keys() == ["a", "b"]
    with Store(store_url) as store:
        store.claim_messages(["b"], run_id="r")  # the new columns are there to write
        store.mark_message("b", ok=False, attempts=1, transport="smtp", location="h", error="550", permanent=True)
        assert store.delivery_failures()["message_key"].to_list() == ["b"]
        assert store.mark_failures_reported(["b"]) == 1 and store.delivery_failures().is_empty()
