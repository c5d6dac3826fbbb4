"""The whole evaluation as a real Prefect flow run, delivering to a real SMTP server on 127.0.0.1."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from email.message import EmailMessage
from pathlib import Path

import polars as pl
import pytest
from conftest import SAMPLE_END
from smtp_support import HOST, Recorder, RefusingRecipient, free_port, smtp_server

from flows.params import RunParameters
from suppliers.errors import DataQualityError, DeliveryError, SourceError
from suppliers.generate import HTML_FIXTURE_NAME
from suppliers.store import Store, evaluations, outbox

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness", "runs_without_heartbeat")]


@pytest.fixture(scope="module")
def runs_without_heartbeat(prefect_harness: str) -> Iterator[None]:
    """Prefect's settings as the command sets them for its run, set once for the module's runs (about 50 ms of
    settings copying each time otherwise)."""
    from flows.runtime import fast_flow_runs

    with fast_flow_runs():
        yield


def smtp_settings(workspace: Path, port: int, *, retries: int = 1) -> Path:
    config = workspace / "supplier-eval.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            'outbox_dir = "outbox"\n', f'outbox_dir = "outbox"\nretries = {retries}\n'
        )
        + f'[mail.smtp]\nhost = "{HOST}"\nport = {port}\nsecurity = "none"\ntimeout_seconds = 5\n',
        encoding="utf-8",
    )
    return config


def run(flow_name: str, config: Path, *, as_of_override: date | None = None, **params: object):
    from flows.pipeline import adhoc, nightly

    flow = {"nightly": nightly, "adhoc": adhoc}[flow_name]
    return flow(RunParameters(config_file=str(config), as_of=as_of_override or SAMPLE_END, **params))


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None, "every message has a text part and an HTML part"
    return text.get_content(), html.get_content()


def test_nightly_flow_scores_stores_and_emails_everyone_once(workspace: Path) -> None:
    recorder = Recorder()
    with smtp_server(recorder) as controller:
        config = smtp_settings(workspace, controller.port)
        summary = run("nightly", config)
        suppliers = pl.read_csv(workspace / "data" / "suppliers.csv")
        active = suppliers.filter(pl.col("active"))
        assert summary.suppliers_evaluated == active.height
        assert summary.evaluations_added == active.height
        assert sum(summary.bands.values()) == active.height
        assert summary.bands["insufficient data"] >= 2  # the generator's sparse suppliers
        assert summary.bands["A"] > summary.bands["D"] > 0

        # the default routing: one message per buyer (owner_email) with all their suppliers, names escaped in HTML
        owners = active.group_by("owner_email").agg("name").sort("owner_email")
        messages = recorder.messages()
        assert len(messages) == owners.height + 1 == summary.messages_delivered_now
        digests = [m for m in messages if m["Subject"].startswith("Supplier evaluation digest")]
        assert len(digests) == 1 and digests[0]["To"] == "qm@example.org"
        assert digests[0]["Subject"] == f"Supplier evaluation digest as of {SAMPLE_END}: {active.height} suppliers"
        digest_text, digest_html = parts(digests[0])
        assert "Band A" in digest_text and "<table" in digest_html

        to_buyers = {m["To"]: m for m in messages if m not in digests}
        assert sorted(to_buyers) == owners["owner_email"].to_list()
        for owner, names in owners.iter_rows():
            message = to_buyers[owner]
            count = f"{len(names)} supplier" + ("s" if len(names) > 1 else "")
            assert re.fullmatch(rf"Supplier evaluations as of {SAMPLE_END}: {count}(, \d+ needs? attention)?",
                                message["Subject"])
            text, _ = parts(message)
            assert all(name[:30] in text for name in names)  # every supplier in the summary (names cut at 30)
            attached = {part.get_filename() for part in message.iter_attachments()}
            assert any(name.startswith("suppliers-") and name.endswith(".csv") for name in attached)
        tricky = next(m for m in to_buyers.values() if HTML_FIXTURE_NAME in parts(m)[0])
        text, html = parts(tricky)
        assert "Smith &amp; Sons &lt;Precision&gt; Ltd" in html and "<Precision>" not in html
        for envelope_from, rcpt_tos, _ in recorder.envelopes:
            assert envelope_from == "supplier-eval@example.org" and len(rcpt_tos) == 1

        # the same evaluation again: nothing new recorded, nothing sent twice
        again = run("nightly", config)
        assert again.run_key == summary.run_key and again.already_recorded
        assert again.evaluations_added == 0 and again.messages_delivered_now == 0
        assert len(recorder.envelopes) == owners.height + 1

    store = Store(f"sqlite:///{workspace / 'store' / 'supplier-eval.db'}")
    try:
        assert store.count(evaluations) == active.height
        runs = store.runs_frame()
        assert runs["status"].to_list() == ["succeeded", "succeeded"]
        assert runs["trigger"].unique().to_list() == ["nightly"]
        assert runs["rule_set_hash"].str.len_chars().to_list() == [64, 64]
    finally:
        store.close()
    report_dir = Path(summary.reports_dir)
    assert (report_dir / "digest.html").is_file() and (report_dir / "quarantine.csv").is_file()
    assert len(list((report_dir / "suppliers").glob("*.html"))) == active.height


def test_adhoc_for_one_supplier_reports_to_whoever_asked(workspace: Path) -> None:
    recorder = Recorder()
    with smtp_server(recorder) as controller:
        config = smtp_settings(workspace, controller.port)
        summary = run("adhoc", config, suppliers=("S0002",), recipients=("officer@example.org",))
    assert summary.suppliers_evaluated == 1 and summary.changes_asl
    assert sorted(rcpt for _, rcpts, _ in recorder.envelopes for rcpt in rcpts) == ["officer@example.org"] * 2
    subjects = [str(m["Subject"]) for m in recorder.messages()]
    assert sum(s.startswith("Supplier evaluation digest") for s in subjects) == 1
    assert sum(s.startswith("Supplier evaluation: ") and "(S0002)" in s for s in subjects) == 1, subjects


def test_a_what_if_run_is_marked_and_goes_only_to_whoever_asked(workspace: Path) -> None:
    recorder = Recorder()
    with smtp_server(recorder) as controller:
        config = smtp_settings(workspace, controller.port)
        official = run("nightly", config)
        sent_before = len(recorder.envelopes)
        quiet = run("adhoc", config, window_days=90)  # what-if with no --to: stored and rendered, not mailed
        asked = run("adhoc", config, suppliers=("S0002",), window_days=90, recipients=("officer@example.org",))
        new = recorder.messages()[sent_before:]
        # the what-if does not become the baseline of the next official evaluation
        later = run("nightly", config, as_of_override=SAMPLE_END + timedelta(days=1))
    assert not quiet.changes_asl and quiet.messages == 0 and quiet.status_changes == 0
    assert not asked.changes_asl and asked.messages == 2
    assert sorted(str(m["To"]) for m in new) == ["officer@example.org"] * 2
    assert all(str(m["Subject"]).startswith("What-if: ") for m in new)
    text, html = parts(next(m for m in new if "(S0002)" in str(m["Subject"])))
    assert "the approved supplier list was not changed" in text and "What-if evaluation" in html
    assert later.run_key != official.run_key
    with Store(f"sqlite:///{workspace / 'store' / 'supplier-eval.db'}") as store:
        previous = store.previous_evaluations(as_of=SAMPLE_END + timedelta(days=1), excluding_run_key=later.run_key)
        official_scores = dict(store.evaluation_history(limit=10_000).filter(
            pl.col("run_id") == official.run_id).select("supplier_id", "score").rows())
    assert dict(previous.select("supplier_id", "previous_score").rows()) == official_scores


def test_bad_rows_are_quarantined_and_the_run_goes_on(workspace: Path) -> None:
    lines_csv = workspace / "data" / "purchase_order_lines.csv"
    with lines_csv.open("a", encoding="utf-8") as handle:
        handle.write("PBAD1,1,S0001,IT1,Parts,2026-01-05,2026-01-20,not-a-number,1.0,EUR\n")
        handle.write("PBAD2,1,S9999,IT1,Parts,2026-01-05,2026-01-20,5,1.0,EUR\n")
    summary = run("nightly", workspace / "supplier-eval.toml")
    assert summary.quarantined_rows == 2
    quarantine = pl.read_csv(Path(summary.reports_dir) / "quarantine.csv")
    assert set(quarantine["source"]) == {"purchase_order_lines.csv"}
    assert quarantine.filter(pl.col("column") == "quantity_ordered")["value"].to_list() == ["not-a-number"]
    assert any("S9999" in reason for reason in quarantine["reason"].to_list())
    digest_text = (Path(summary.reports_dir) / "digest.txt").read_text(encoding="utf-8")
    assert "purchase_order_lines.csv" in digest_text
    # no SMTP configured: the messages are .eml files in the outbox folder, the digest and one per buyer
    active = pl.read_csv(workspace / "data" / "suppliers.csv").filter(pl.col("active"))
    assert summary.suppliers_evaluated == active.height
    buyers = active["owner_email"].drop_nulls().n_unique()
    assert len(list((workspace / "outbox").glob("*.eml"))) == summary.messages == buyers + 1


def test_a_bad_file_stops_the_run_and_is_recorded_as_failed(workspace: Path) -> None:
    receipts = workspace / "data" / "receipts.csv"
    receipts.write_text(receipts.read_text(encoding="utf-8").replace("quantity_accepted", "qty_ok", 1),
                        encoding="utf-8")
    with pytest.raises(SourceError, match="receipts.csv.*quantity_accepted"):
        run("nightly", workspace / "supplier-eval.toml")
    store = Store(f"sqlite:///{workspace / 'store' / 'supplier-eval.db'}")
    try:
        failed = store.runs_frame().row(0, named=True)
        assert failed["status"] == "failed" and "quantity_accepted" in failed["error"]
        assert store.count(evaluations) == 0
    finally:
        store.close()


def test_mail_that_could_not_go_is_sent_by_the_next_run_exactly_once(workspace: Path) -> None:
    port = free_port()  # nothing listens here yet: the first run's delivery fails
    config = smtp_settings(workspace, port, retries=0)
    with pytest.raises(DeliveryError, match="not delivered.*run the same evaluation again"):
        run("nightly", config)
    store = Store(f"sqlite:///{workspace / 'store' / 'supplier-eval.db'}")
    try:
        ledger = store.outbox_frame()
        assert ledger.height > 0 and set(ledger["status"]) == {"failed-temporary"}
        assert store.count(evaluations) > 0  # the evaluation itself was kept
    finally:
        store.close()

    recorder = Recorder()
    with smtp_server(recorder, port=port):  # the server comes up on the same port
        retried = run("nightly", config)
        assert retried.messages_delivered_now == ledger.height == len(recorder.envelopes)
        assert run("nightly", config).messages_delivered_now == 0
        assert len(recorder.envelopes) == ledger.height
    store = Store(f"sqlite:///{workspace / 'store' / 'supplier-eval.db'}")
    try:
        assert set(store.outbox_frame()["status"]) == {"sent"} and store.count(outbox) == ledger.height
    finally:
        store.close()



def write_hand_made_data(folder: Path) -> None:
    """Two suppliers whose scores are computed by hand in the test below (as of 2026-06-30, tolerance 2 days)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "suppliers.csv").write_text(
        "supplier_id,name,category,criticality,contact_email,owner_email,status,certificate_expiry,active\n"
        "H1,Perfect Parts Ltd,parts,major,sales@perfect.example.org,buyer@example.org,approved,2027-01-01,true\n"
        "H2,Tardy & Co,parts,major,sales@tardy.example.org,buyer@example.org,approved,2027-01-01,true\n",
        encoding="utf-8")
    lines = ["po_id,line_no,supplier_id,item_id,category,order_date,promised_date,quantity_ordered,unit_price,currency"]
    receipts = ["receipt_id,po_id,line_no,received_date,quantity_received,quantity_accepted,quantity_rejected"]
    # H1: five lines, each received in full on its promised date, nothing rejected.
    # H2: five lines; three on time, two received 10 and 20 days after the promise; nothing rejected.
    for supplier, delays in (("H1", [0, 0, 0, 0, 0]), ("H2", [0, 0, 0, 10, 20])):
        for n, delay in enumerate(delays, start=1):
            po, promised = f"{supplier}-P{n}", date(2026, 5, n)
            lines.append(f"{po},1,{supplier},I1,parts,2026-04-01,{promised},10,2.5,EUR")
            received = promised + timedelta(days=delay)
            receipts.append(f"{po}-R,{po},1,{received},10,10,0")
    (folder / "purchase_order_lines.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "receipts.csv").write_text("\n".join(receipts) + "\n", encoding="utf-8")


def test_scores_through_the_real_flow_match_the_hand_computed_ones(tmp_path: Path) -> None:
    # H1: every metric perfect → 100.0, band A (no late line: mean days late, needing 3, is not measured).
    # H2: on time 3/5 = 0.60 → 0 points (×30); OTIF 0.60 → 0 (×20); 0 ppm → 100 (×30);
    #     mean days late over 2 late lines: not measured (the shipped minimum is 3 late lines).
    #     Score (0 + 0 + 3000) / 80 = 37.5 → band D; its first evaluation in band D gives probation
    #     (disqualification needs two in a row).
    # Both are new to the ASL, so both start as pending: their first scores set their status.
    write_hand_made_data(tmp_path / "data")
    config = tmp_path / "supplier-eval.toml"
    config.write_text('[store]\nurl = "sqlite:///s.db"\n[mail]\nofficers = ["qm@example.org"]\n'
                      '[routing]\nsupplier_reports = "per_supplier"\n', encoding="utf-8")  # each report on its own
    summary = run("nightly", config)
    assert summary.bands == {"A": 1, "B": 0, "C": 0, "D": 1, "insufficient data": 0}
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        stored = {r["supplier_id"]: r for r in store.evaluation_history().to_dicts()}
        changes = store.status_history().select("supplier_id", "from_status", "to_status").rows()
    assert (stored["H1"]["score"], stored["H1"]["band"], stored["H1"]["status"]) == (100.0, "A", "approved")
    assert (stored["H2"]["score"], stored["H2"]["band"], stored["H2"]["status"]) == (37.5, "D", "probation")
    assert changes == [("H1", "pending", "approved"), ("H2", "pending", "probation")]
    subjects = {message_subject(p) for p in (tmp_path / "outbox").glob("*.eml")}
    assert "Supplier evaluation: Tardy & Co (H2) as of 2026-06-30: band D" in subjects


def message_subject(path: Path) -> str:
    import email
    import email.policy

    return str(email.message_from_bytes(path.read_bytes(), policy=email.policy.default)["Subject"])


def test_too_many_bad_rows_stop_the_run_and_the_quarantine_is_written(workspace: Path) -> None:
    receipts = workspace / "data" / "receipts.csv"
    header, *rows = receipts.read_text(encoding="utf-8").splitlines()
    def bad_date(row: str) -> str:
        fields = row.split(",")
        fields[3] = "not-a-date"  # received_date
        return ",".join(fields)

    broken = [bad_date(row) if i % 2 else row for i, row in enumerate(rows)]
    receipts.write_text("\n".join([header, *broken]) + "\n", encoding="utf-8")
    with pytest.raises(DataQualityError) as caught:
        run("nightly", workspace / "supplier-eval.toml")
    written = list((workspace / "reports").glob("*_failed_*/quarantine.csv"))
    assert len(written) == 1 and str(written[0]) in str(caught.value)
    report = (written[0].parent / "data-quality.html").read_text(encoding="utf-8")
    assert "nothing was scored or sent" in report and "receipts.csv" in report
    assert pl.read_csv(written[0]).filter(pl.col("source") == "receipts.csv").height >= len(rows) // 2
    with Store(f"sqlite:///{workspace / 'store' / 'supplier-eval.db'}") as store:
        assert store.count(evaluations) == 0  # nothing scored on broken data


def test_back_dated_and_what_if_runs_do_not_overwrite_the_approved_supplier_list(tmp_path: Path) -> None:
    write_hand_made_data(tmp_path / "data")
    config = tmp_path / "supplier-eval.toml"
    config.write_text('[store]\nurl = "sqlite:///s.db"\n', encoding="utf-8")
    assert run("nightly", config).status_changes == 2  # H1 → approved, H2 → probation as of 2026-06-30
    from flows.pipeline import adhoc
    from flows.runtime import fast_flow_runs

    with fast_flow_runs():
        # a back-dated evaluation (before any delivery: insufficient data) cannot undo a newer decision
        back = adhoc(RunParameters(config_file=str(config), as_of=date(2026, 3, 31)))
        # another window is a what-if: recorded, but the ASL follows the rules in force
        what_if = adhoc(RunParameters(config_file=str(config), as_of=SAMPLE_END, window_days=30))
    assert back.status_changes == 0
    assert what_if.changes_asl is False and what_if.status_changes == 0 and what_if.evaluations_added == 2
    assert what_if.unchanged_reason.startswith("what-if: another rule set or window")
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        current = dict(store.current_statuses(excluding_run_key="-").select("supplier_id", "status").rows())
    assert current == {"H1": "approved", "H2": "probation"}


def test_a_crash_after_storing_sends_every_message_exactly_once_on_the_re_run(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.pipeline as pipeline

    real_deliver = pipeline.deliver

    def crash(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("power cut")

    monkeypatch.setattr(pipeline, "deliver", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        run("nightly", workspace / "supplier-eval.toml")
    assert not (workspace / "outbox").exists()
    monkeypatch.setattr(pipeline, "deliver", real_deliver)
    summary = run("nightly", workspace / "supplier-eval.toml")
    assert summary.already_recorded  # the evaluations were kept from the crashed run
    buyers = pl.read_csv(workspace / "data" / "suppliers.csv").filter(pl.col("active"))["owner_email"].n_unique()
    assert summary.messages_delivered_now == summary.messages == buyers + 1  # the digest and one per buyer
    again = run("nightly", workspace / "supplier-eval.toml")
    assert again.messages_delivered_now == 0
    assert len(list((workspace / "outbox").glob("*.eml"))) == summary.messages


def test_a_newly_added_officer_gets_the_digest_and_no_one_gets_it_twice(workspace: Path) -> None:
    config = workspace / "supplier-eval.toml"
    first = run("nightly", config)
    config.write_text(config.read_text(encoding="utf-8").replace(
        'officers = ["qm@example.org"]', 'officers = ["qm@example.org", "auditor@example.org"]'), encoding="utf-8")
    second = run("nightly", config)
    assert second.run_key == first.run_key and second.messages_delivered_now == 1
    recipients = sorted(str(email_to(p)) for p in (workspace / "outbox").glob("digest-*.eml"))
    assert recipients == ["auditor@example.org", "qm@example.org"]


def email_to(path: Path) -> str:
    import email
    import email.policy

    return str(email.message_from_bytes(path.read_bytes(), policy=email.policy.default)["To"])


@pytest.mark.parametrize("interruption", [RuntimeError("killed while sending"), KeyboardInterrupt()],
                         ids=["crash", "ctrl-c"])
def test_an_interrupted_send_is_finished_by_the_next_run_straight_away(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, interruption: BaseException
) -> None:
    import reports.outbox as outbox_module

    real_send = outbox_module.deliver_messages

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise interruption

    monkeypatch.setattr(outbox_module, "deliver_messages", interrupted)
    with pytest.raises(type(interruption)):
        run("nightly", workspace / "supplier-eval.toml")
    with Store(f"sqlite:///{workspace / 'store' / 'supplier-eval.db'}") as store:
        assert set(store.outbox_frame()["status"]) == {"queued"}  # the claims were given back
        assert store.runs_frame()["status"].to_list() == ["failed"]  # not left "running"
    monkeypatch.setattr(outbox_module, "deliver_messages", real_send)
    summary = run("nightly", workspace / "supplier-eval.toml")
    assert summary.messages_delivered_now == summary.messages > 0
    assert len(list((workspace / "outbox").glob("*.eml"))) == summary.messages


def test_a_run_opens_the_store_once_and_with_no_email_composes_nothing(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.pipeline as pipeline
    import reports.outbox as outbox_module

    opened: list[str] = []
    composed: list[object] = []

    class CountingStore(Store):
        def __init__(self, url: str, **kwargs: object) -> None:
            opened.append(url)
            super().__init__(url, **kwargs)

    monkeypatch.setattr(pipeline, "Store", CountingStore)
    monkeypatch.setattr(outbox_module, "compose_message", lambda **kwargs: composed.append(kwargs))
    summary = run("nightly", workspace / "supplier-eval.toml", send_email=False)
    assert len(opened) == 1
    assert summary.evaluations_added == summary.suppliers_evaluated > 0 and summary.messages == 0
    assert composed == [] and not (workspace / "outbox").exists()
    assert (Path(summary.reports_dir) / "digest.html").is_file()  # rendered and kept, just not mailed
    with Store(f"sqlite:///{workspace / 'store' / 'supplier-eval.db'}") as store:
        assert store.count(outbox) == 0


def test_a_store_task_retries_a_dropped_database_connection_for_real(postgres_url: str) -> None:
    """The server drops every connection (a restart, a failover): the read fails once, its retry succeeds."""
    import sqlalchemy as sa
    from prefect import flow

    from flows.pipeline import read_history
    from flows.runtime import fast_flow_runs
    from suppliers.errors import StoreError

    def drop_connections(store: Store) -> None:
        store.read_history(run_key="-", run_id="-", as_of=SAMPLE_END)  # the pool now holds a live connection
        admin = sa.create_engine(postgres_url)
        with admin.begin() as connection:
            connection.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                       "WHERE pid <> pg_backend_pid() AND datname = current_database()"))
        admin.dispose()

    with Store(postgres_url) as store:
        drop_connections(store)
        with pytest.raises(StoreError) as without_retry:
            read_history.fn(store, "-", "-", SAMPLE_END)
        assert without_retry.value.transient

        @flow
        def read_once() -> object:
            return read_history(store, "-", "-", SAMPLE_END)

        drop_connections(store)
        with fast_flow_runs():
            history = read_once()
    assert history.current_statuses.columns == ["supplier_id", "status", "status_as_of"]


def test_a_run_stopped_for_bad_data_mails_the_data_owner_once(workspace: Path) -> None:
    receipts = workspace / "data" / "receipts.csv"
    header, *rows = receipts.read_text(encoding="utf-8").splitlines()
    receipts.write_text("\n".join([header, *(row.replace(",", ",x", 1) if i % 2 else row
                                              for i, row in enumerate(rows))]) + "\n", encoding="utf-8")
    config = workspace / "supplier-eval.toml"
    config.write_text(config.read_text(encoding="utf-8").replace(
        "[mail]\n", '[mail]\ndata_owner = "erp.admin@example.org"\n'), encoding="utf-8")
    recorder = Recorder()
    with smtp_server(recorder) as controller:
        config = smtp_settings(workspace, controller.port)
        for _ in range(2):  # the same bad data again: the owner is not mailed twice
            with pytest.raises(DataQualityError):
                run("nightly", config)
    assert [(sender, to) for sender, to, _ in recorder.envelopes] == [("supplier-eval@example.org",
                                                                       ["erp.admin@example.org"])]
    message = recorder.messages()[0]
    assert str(message["Subject"]).startswith("Data quality as of 2026-06-30: run stopped for bad data, receipts.csv")
    text, html = parts(message)
    assert "nothing was scored or sent" in text and "<table" in html
    with Store(f"sqlite:///{workspace / 'store' / 'supplier-eval.db'}") as store:
        assert store.runs_frame()["status"].to_list() == ["failed", "failed"]
        assert store.count(evaluations) == 0


def test_the_digest_carries_the_data_quality_report(workspace: Path) -> None:
    summary = run("nightly", workspace / "supplier-eval.toml")
    assert (Path(summary.reports_dir) / "data-quality.html").is_file()
    import email
    import email.policy

    digest = next(email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                  for p in (workspace / "outbox").glob("digest-*.eml"))
    names = [part.get_filename() for part in digest.iter_attachments()]
    assert names == ["evaluations.csv", "data-quality.html"]
    assert "data-quality.html" in parts(digest)[0]


def test_a_supplier_report_carries_its_records_and_the_change_since_the_previous_evaluation(workspace: Path) -> None:
    import email
    import email.policy

    config = workspace / "supplier-eval.toml"
    config.write_text(config.read_text(encoding="utf-8") + '[routing]\nsupplier_reports = "per_supplier"\n',
                      encoding="utf-8")
    earlier = SAMPLE_END - timedelta(days=91)
    run("adhoc", workspace / "supplier-eval.toml", as_of_override=earlier)  # official: the rules in force
    for old in (workspace / "outbox").glob("*.eml"):
        old.unlink()
    summary = run("adhoc", workspace / "supplier-eval.toml")
    messages = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                for p in (workspace / "outbox").glob("*.eml")]
    reports = [m for m in messages if str(m["Subject"]).startswith("Supplier evaluation: ")]
    attached = {part.get_filename(): part.get_content() for m in reports for part in m.iter_attachments()}
    assert attached and all(name.startswith("records-") and name.endswith(".csv") for name in attached)
    folder = Path(summary.reports_dir) / "suppliers"
    everyone = pl.read_csv(Path(summary.reports_dir) / "records.csv", infer_schema_length=0)  # all in one file
    assert {f"records-{supplier}.csv" for supplier in everyone["supplier_id"].unique()} == set(attached)
    assert not list(folder.glob("records-*.csv"))
    header = next(iter(attached.values())).splitlines()[0]
    assert header.startswith("metric,why,po_id,line_no,receipt_id,")
    texts = [parts(m)[0] for m in reports]
    assert any(f"as of {earlier})" in text and "               mostly " in text for text in texts)
    assert all("Records behind the metrics" in text for text in texts)
    digest = next(parts(m)[0] for m in messages if str(m["Subject"]).startswith("Supplier evaluation digest"))
    assert f"since {earlier}, mostly " in digest.split("Largest score changes")[1]


def write_profiled_data(folder: Path) -> None:
    """Three perfect suppliers, one per criticality (profiles critical 90, major 180, minor 365 days)."""
    folder.mkdir(parents=True, exist_ok=True)
    header = "supplier_id,name,category,criticality,contact_email,owner_email,status,certificate_expiry,active\n"
    rows = [f"{sid},{name},parts,{crit},,buyer@example.org,approved,2028-01-01,true\n"
            for sid, name, crit in (("C1", "Critical Castings", "critical"), ("M1", "Major Metals", "major"),
                                    ("N1", "Minor Nuts", "minor"))]
    (folder / "suppliers.csv").write_text(header + "".join(rows), encoding="utf-8")
    lines = ["po_id,line_no,supplier_id,item_id,category,order_date,promised_date,quantity_ordered,unit_price,currency"]
    receipts = ["receipt_id,po_id,line_no,received_date,quantity_received,quantity_accepted,quantity_rejected"]
    for supplier in ("C1", "M1", "N1"):
        for n in range(1, 6):
            po, promised = f"{supplier}-P{n}", date(2026, 5, n)
            lines.append(f"{po},1,{supplier},I1,parts,2026-04-01,{promised},10,2.5,EUR")
            receipts.append(f"{po}-R,{po},1,{promised},10,10,0")
    (folder / "purchase_order_lines.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "receipts.csv").write_text("\n".join(receipts) + "\n", encoding="utf-8")


def test_the_nightly_run_evaluates_only_the_suppliers_due(tmp_path: Path) -> None:
    write_profiled_data(tmp_path / "data")
    config = tmp_path / "supplier-eval.toml"
    config.write_text('[store]\nurl = "sqlite:///s.db"\n[mail]\nofficers = ["qm@example.org"]\n', encoding="utf-8")
    first = run("nightly", config)  # never evaluated: every one is due
    assert (first.selection, first.suppliers_evaluated, first.status_changes) == ("due", 3, 3)
    again = run("nightly", config)  # the same night again: the same suppliers, the same evaluation
    assert again.run_key == first.run_key and again.already_recorded and again.messages_delivered_now == 0
    # 90 days on: only the critical supplier is due (2026-06-30 + 90 = 2026-09-28)
    assert run("nightly", config, as_of_override=date(2026, 9, 28)).suppliers_evaluated == 1
    assert run("nightly", config, as_of_override=date(2026, 10, 28)).suppliers_evaluated == 0  # nobody due
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        evaluated_on = store.evaluation_history().select("supplier_id", "as_of").sort("as_of", "supplier_id").rows()
    assert evaluated_on == [("C1", SAMPLE_END), ("M1", SAMPLE_END), ("N1", SAMPLE_END), ("C1", date(2026, 9, 28))]
    # An ad-hoc run for C1 as of 2027-01-10: M1 was due 2026-12-27 (180 days) and is overdue; N1 is due 2027-06-30.
    adhoc_run = run("adhoc", config, as_of_override=date(2027, 1, 10), suppliers=("C1",))
    assert (adhoc_run.selection, adhoc_run.suppliers_evaluated, adhoc_run.overdue) == ("chosen", 1, 1)
    digest = (Path(adhoc_run.reports_dir) / "digest.txt").read_text(encoding="utf-8")
    assert "Re-evaluation overdue" in digest and "- Major Metals (M1), major: due 2026-12-27, last scored 2026-06-30" \
        in digest and "Minor Nuts (N1)" not in digest.split("Re-evaluation overdue")[1].split("\n\n")[0]
    # with [schedule] evaluate = "all" the nightly run evaluates every active supplier again
    config.write_text(config.read_text(encoding="utf-8") + '[schedule]\nevaluate = "all"\n', encoding="utf-8")
    assert run("nightly", config, as_of_override=date(2026, 10, 29)).suppliers_evaluated == 3


def test_two_d_evaluations_a_scar_an_approval_from_the_cli_and_a_manual_decision(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from flows.cli import main

    write_hand_made_data(tmp_path / "data")
    config = tmp_path / "supplier-eval.toml"
    config.write_text('[store]\nurl = "sqlite:///s.db"\n[mail]\nofficers = ["qm@example.org"]\n'
                      '[routing]\nsupplier_reports = "per_supplier"\n', encoding="utf-8")  # each report on its own
    url = f"sqlite:///{tmp_path / 's.db'}"
    first = run("nightly", config)  # H2's first D: probation, and a SCAR for it
    assert (first.status_changes, first.actions_raised) == (2, 1)
    assert run("nightly", config).already_recorded  # the same evaluation again raises no second SCAR
    with Store(url) as store:
        assert store.actions_frame().select("number", "kind", "supplier_id").rows() == [(1, "scar", "H2")]
    # a month later H2 is in band D again: disqualified, but leaving probation needs a person: proposed
    second = run("adhoc", config, as_of_override=date(2026, 7, 31), suppliers=("H2",))
    assert (second.status_changes, second.proposals, second.awaiting_approval) == (0, 1, 1)
    digest = (Path(second.reports_dir) / "digest.txt").read_text(encoding="utf-8")
    top = digest.split("Status changes\n--------------")[0]
    assert "AWAITING YOUR APPROVAL" in top and "- Tardy & Co (H2): probation -> disqualified, as of 2026-07-31." in top
    import email
    import email.policy

    mailed = [email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
              for path in (tmp_path / "outbox").glob("*.eml")]
    [h2] = [m for m in mailed if "(H2) as of 2026-07-31" in str(m["Subject"])]
    report = parts(h2)[0]  # the text part, as the buyer reads it
    assert "Awaiting       probation -> disqualified, proposed as of 2026-07-31" in report
    assert "SCAR-0001 Corrective action request (SCAR), raised 2026-06-30, due 2026-07-30 (OVERDUE)" in report

    assert main(["asl", "approve", "H2", "--by", "Q. Manager", "--reason", "two D in a row", "--config",
                 str(config)]) == 0
    assert "H2: probation -> disqualified, approved by Q. Manager; raised BLOCK-0002" in capsys.readouterr().out
    assert main(["actions", "close", "SCAR-0001", "--by", "Q. Manager", "--effective", "no", "--config",
                 str(config)]) == 0
    capsys.readouterr()
    # a manual decision: conditional for 30 days from today, whatever the evaluations say
    today = date.today()
    assert main(["asl", "set", "H2", "conditional", "--by", "Q. Manager", "--reason", "new owner, audit passed",
                 "--until", (today + timedelta(days=30)).isoformat(), "--config", str(config)]) == 0
    assert capsys.readouterr().out.startswith("H2: disqualified -> conditional by Q. Manager")
    kept = run("adhoc", config, as_of_override=today + timedelta(days=10), suppliers=("H2",))
    assert (kept.status_changes, kept.proposals, kept.kept_by_manual_decision) == (0, 0, 1)
    # once it has expired, the evaluations decide again: a third D in a row proposes disqualification again
    after = run("adhoc", config, as_of_override=today + timedelta(days=40), suppliers=("H2",))
    assert (after.kept_by_manual_decision, after.proposals) == (0, 1)
    assert main(["asl", "--config", str(config)]) == 0
    h2 = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("H2 "))
    assert "conditional" in h2 and "proposed: disqualified (awaiting approval)" in h2 and "BLOCK-0002" in h2


def test_a_message_refused_for_good_is_shown_in_the_next_digest_once(workspace: Path) -> None:
    owners = pl.read_csv(workspace / "data" / "suppliers.csv").filter(pl.col("active"))["owner_email"].unique().sort()
    refused = owners[0]
    handler = RefusingRecipient(refused)
    with smtp_server(handler) as controller:
        config = smtp_settings(workspace, controller.port)
        with pytest.raises(DeliveryError, match="refused for good"):
            run("adhoc", config)
        assert handler.refusals == 1
        first_digest = next(m for m in handler.messages() if m["Subject"].startswith("Supplier evaluation digest"))
        assert "DELIVERY FAILURES" not in parts(first_digest)[0]  # refused after this digest went out
        handler.refused = "nobody@example.org"  # the buyer's mailbox works again for new mail

        def digest_of(as_of: date) -> tuple[str, str]:
            before = len(handler.messages())
            run("adhoc", config, as_of_override=as_of)  # an official evaluation: the digest goes to the officers
            new = handler.messages()[before:]
            return parts(next(m for m in new if m["Subject"].startswith("Supplier evaluation digest")))

        text, html = digest_of(SAMPLE_END + timedelta(days=1))
        assert "DELIVERY FAILURES" in text and "1 message was refused for good" in text
        assert f"to {refused}: 1 attempt, " in text and "550" in text
        assert re.search(r"<h2[^>]*>Delivery failures</h2>", html) and refused in html
        # the refused message was not tried again: the buyer got only this evaluation's new message
        assert sum(m["To"] == refused for m in handler.messages()) == 1

        text, _ = digest_of(SAMPLE_END + timedelta(days=2))
        assert "DELIVERY FAILURES" not in text  # reported once; `supplier-eval outbox` still lists it
