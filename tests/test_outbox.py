"""The outbox, called directly: who gets which message, one message per recipient, nothing composed twice."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from smtp_support import HOST, Recorder, smtp_server

import reports.outbox as outbox_module
from reports.bundle import Report, RunReports
from reports.delivery import SmtpSettings, Transport
from reports.outbox import deliver_run_messages, message_key, plan_messages, retry_unsent
from reports.render import Rendered
from suppliers.errors import DeliveryError
from suppliers.runs import RunRecord
from suppliers.store import Store

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
