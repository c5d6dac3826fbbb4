"""Who gets which message, per routing mode, on hand-built reports: one message per buyer (the default) or per
supplier, the supplier's own contact on request, an ad-hoc run's reports to whoever asked; keys that keep a re-run
from sending twice and change when a buyer's set of suppliers does."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from flows.settings import load_settings, routing_of
from reports.bundle import Report, RunReports
from reports.render import Rendered
from reports.routing import PER_SUPPLIER, Routing, message_key, plan_messages
from suppliers.errors import ConfigError
from suppliers.runs import RunRecord

RENDERED = Rendered(html="<p>report</p>", text="report\n")
OFFICERS = ("qm@example.org",)


def run_record(*, official: bool = True, run_key: str = "key-1") -> RunRecord:
    return RunRecord(run_id="run-1", run_key=run_key, trigger="nightly", requested_by="test", as_of=date(2026, 6, 30),
                     window_days=365, selection=["*active*"], rule_set_name="r", rule_set_version="1",
                     rule_set_hash="h", input_fingerprint="f", code_version="0", changes_asl=official)


def supplier(supplier_id: str, owner: str | None, contact: str | None = None) -> Report:
    return Report("supplier", supplier_id, owner, f"Report {supplier_id}", RENDERED, (), contact_email=contact)


def buyer(owner: str, *ids: str) -> Report:
    return Report("buyer", None, owner, f"{len(ids)} suppliers", RENDERED, (), supplier_ids=ids)


# anna buys from S1 and S2, ben from S3; nobody buys from S4 (its report is in the digest only)
SUPPLIERS = (supplier("S1", "anna@example.org", "sales@s1.example"), supplier("S2", "anna@example.org"),
             supplier("S3", "ben@example.org", "anna@example.org"), supplier("S4", None, "info@s4.example"))
BUYERS = (buyer("anna@example.org", "S1", "S2"), buyer("ben@example.org", "S3"))


def reports(routing: Routing | None = None) -> RunReports:
    digest = Report("digest", None, None, "Digest", RENDERED, ())
    return RunReports(out_dir=Path("."), digest=digest, suppliers=SUPPLIERS, buyers=BUYERS,
                      routing=routing or Routing())


def addressed(planned: list) -> list[tuple[str, str | None, str]]:
    return [(item.report.kind, item.report.supplier_id, item.recipient) for item in planned]


def test_by_default_each_buyer_gets_one_message_with_all_their_suppliers() -> None:
    planned = plan_messages(reports(), run=run_record(), officers=OFFICERS)
    assert addressed(planned) == [("digest", None, "qm@example.org"), ("buyer", None, "anna@example.org"),
                                  ("buyer", None, "ben@example.org")]
    assert [item.report.supplier_ids for item in planned[1:]] == [("S1", "S2"), ("S3",)]


def test_per_supplier_each_report_goes_to_its_buyer_on_its_own() -> None:
    planned = plan_messages(reports(Routing(supplier_reports=PER_SUPPLIER)), run=run_record(), officers=OFFICERS)
    assert addressed(planned) == [("digest", None, "qm@example.org"), ("supplier", "S1", "anna@example.org"),
                                  ("supplier", "S2", "anna@example.org"), ("supplier", "S3", "ben@example.org")]


def test_the_suppliers_own_contact_gets_its_report_only_when_the_settings_say_so() -> None:
    planned = plan_messages(reports(Routing(supplier_contact=True)), run=run_record(), officers=OFFICERS)
    contacts = [entry for entry in addressed(planned) if entry[0] == "supplier"]
    # S3's contact is a buyer too: a different message (its own report), so anna gets it besides her buyer message
    assert contacts == [("supplier", "S1", "sales@s1.example"), ("supplier", "S3", "anna@example.org"),
                        ("supplier", "S4", "info@s4.example")]


def test_an_adhoc_run_sends_the_digest_and_every_report_to_whoever_asked_and_no_one_else() -> None:
    for official in (True, False):
        planned = plan_messages(reports(Routing(supplier_contact=True)), run=run_record(official=official),
                                officers=OFFICERS, requested=("me@example.org",))
        assert addressed(planned) == [("digest", None, "me@example.org")] + [
            ("supplier", supplier_id, "me@example.org") for supplier_id in ("S1", "S2", "S3", "S4")]


def test_a_what_if_nobody_asked_for_goes_to_nobody() -> None:
    assert plan_messages(reports(Routing(supplier_contact=True)), run=run_record(official=False),
                         officers=OFFICERS) == []


def test_keys_are_stable_per_run_message_and_recipient_and_follow_a_buyers_set_of_suppliers() -> None:
    first = plan_messages(reports(), run=run_record(), officers=OFFICERS)
    again = plan_messages(reports(), run=run_record(), officers=OFFICERS)
    assert [item.key for item in first] == [item.key for item in again]  # a re-run sends nothing twice
    assert len({item.key for item in first}) == len(first)
    changed = RunReports(out_dir=Path("."), digest=reports().digest, suppliers=SUPPLIERS,
                         buyers=(buyer("anna@example.org", "S1"), BUYERS[1]))
    keys = {item.recipient: item.key for item in plan_messages(changed, run=run_record(), officers=OFFICERS)}
    before = {item.recipient: item.key for item in first}
    assert keys["anna@example.org"] != before["anna@example.org"]  # S2 left anna's message: a new message
    assert keys["ben@example.org"] == before["ben@example.org"]
    assert plan_messages(reports(), run=run_record(run_key="key-2"), officers=OFFICERS)[1].key != first[1].key
    assert message_key("key-1", "supplier", "S1", " Anna@Example.org") == message_key(
        "key-1", "supplier", "S1", "anna@example.org")


def test_without_buyer_messages_the_reports_go_one_by_one() -> None:
    bare = RunReports(out_dir=Path("."), digest=reports().digest, suppliers=SUPPLIERS)
    planned = plan_messages(bare, run=run_record(), officers=OFFICERS)
    assert [entry[1] for entry in addressed(planned)] == [None, "S1", "S2", "S3"]


def test_the_settings_routing_table(tmp_path: Path) -> None:
    config = tmp_path / "s.toml"
    config.write_text("", encoding="utf-8")
    assert routing_of(load_settings(config)) == Routing()  # per buyer, no supplier contact
    config.write_text('[routing]\nsupplier_reports = "per_supplier"\nsupplier_contact = true\n', encoding="utf-8")
    assert routing_of(load_settings(config)) == Routing(supplier_reports="per_supplier", supplier_contact=True)
    config.write_text('[routing]\nsupplier_reports = "per_team"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="routing.supplier_reports"):
        load_settings(config)
