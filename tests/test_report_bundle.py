"""A run's reports from a real evaluation: the files a run writes, buyer messages bounded in size with the rest
attached, the digest bounded whatever the number of suppliers, rendering in worker processes giving the same files,
and hostile supplier names (markup, spreadsheet formulas, line breaks) harmless everywhere."""

from __future__ import annotations

import email
import email.policy
import io
import re
import zipfile
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest

from reports.bundle import AslFollowUp, DataQuality, RunReports, write_run_reports
from reports.mail import compose_message
from reports.routing import PER_SUPPLIER, Routing, plan_messages
from rules.decide import decide
from rules.loader import load_rule_set
from rules.metrics import measure_suppliers, window_start
from rules.scoring import score_suppliers
from suppliers.generate import generate_frames
from suppliers.runs import RunRecord
from suppliers.validate import QUARANTINE_SCHEMA, SUMMARY_SCHEMA

AS_OF = date(2026, 6, 30)
RULES = load_rule_set()
SCRIPT = "<script>alert(1)</script> Ltd"
FORMULA = '=HYPERLINK("http://evil.example","click")'
HEADER = "Evil Ltd\r\nBcc: victim@example.org"
BUYER = "buyer@example.org"
MAX_MAIL_HTML = 102_000  # Gmail clips a message whose HTML passes about 102 KB


def evaluate(suppliers: int, lines: int, *, names: dict[str, str] | None = None) -> dict:
    frames = generate_frames(suppliers=suppliers, lines=lines, seed=5, end_date=AS_OF)
    chosen = frames["suppliers"].with_columns(current_status=pl.col("status"), owner_email=pl.lit(BUYER))
    if names:
        chosen = chosen.with_columns(pl.col("supplier_id").replace_strict(names, default=pl.col("name"))
                                     .alias("name"))
    performance = measure_suppliers(chosen, frames["purchase_order_lines"], frames["receipts"],
                                    frames["nonconformances"], frames["feedback"], as_of=AS_OF, window_days=365,
                                    with_records=True, **RULES.evaluation.measure_options())
    decisions = decide(chosen, score_suppliers(chosen, performance.metrics, RULES, as_of=AS_OF), RULES,
                       previous=pl.DataFrame(schema={"supplier_id": pl.String, "previous_as_of": pl.Date,
                                                     "previous_score": pl.Float64, "previous_band": pl.String}),
                       official_as_of=pl.DataFrame(schema={"supplier_id": pl.String, "official_as_of": pl.Date}),
                       as_of=AS_OF, official=True)
    return {"decisions": decisions, "performance": performance, "chosen": chosen}


def write(tmp_path: Path, evaluated: dict, *, processes: int = 1, routing: Routing | None = None,
          history: pl.DataFrame | None = None) -> RunReports:
    run = RunRecord(run_id="run-1", run_key="k" * 64, trigger="nightly", requested_by=None, as_of=AS_OF,
                    window_days=365, selection=["*active*"], rule_set_name=RULES.name, rule_set_version="1",
                    rule_set_hash=RULES.content_hash, input_fingerprint="f" * 64, code_version="0")
    decisions, performance = evaluated["decisions"], evaluated["performance"]
    empty_actions = pl.DataFrame(schema={"number": pl.Int64, "kind": pl.String, "supplier_id": pl.String,
                                         "name": pl.String, "raised_on": pl.Date, "due": pl.Date, "owner": pl.String,
                                         "description": pl.String})
    follow_up = AslFollowUp(
        proposals=pl.DataFrame(schema={"supplier_id": pl.String, "name": pl.String, "as_of": pl.Date,
                                       "from_status": pl.String, "to_status": pl.String, "reason": pl.String}),
        actions=empty_actions, overdue=pl.DataFrame(schema={"supplier_id": pl.String, "name": pl.String,
                                                            "profile": pl.String, "last_scored": pl.Date,
                                                            "next_due": pl.Date}))
    return write_run_reports(
        tmp_path, run=run, rule_set=RULES, evaluated=decisions.evaluated, changes=decisions.changes,
        late_lines=performance.late_lines, records=performance.records, window_start=window_start(AS_OF, 365),
        quality=DataQuality(summary=pl.DataFrame(schema=SUMMARY_SCHEMA),
                            quarantine=pl.DataFrame(schema=QUARANTINE_SCHEMA), previous=None, max_share=0.2,
                            read_from="data"),
        quarantine_summary=pl.DataFrame(schema={**SUMMARY_SCHEMA, "top_reasons": pl.List(pl.String)}),
        follow_up=follow_up, processes=processes, routing=routing, history=history,
        contacts=evaluated["chosen"].select("supplier_id", "contact_email"))


class Text(HTMLParser):
    """What a reader sees of an HTML document: its text, and any element a mail client would run."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.scripts = 0
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.scripts += tag == "script"

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.parts).split())


@pytest.fixture(scope="module")
def many() -> dict:
    return evaluate(300, 30_000)


def test_a_run_writes_one_report_file_per_supplier_and_its_tables_and_nothing_else(tmp_path: Path, many: dict) -> None:
    reports = write(tmp_path, many)
    evaluated = many["decisions"].evaluated
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "data-quality.html", "data-quality.txt", "digest.html", "digest.txt", "evaluations.csv", "quarantine.csv",
        "records.csv", "suppliers"]
    assert sorted(p.name for p in (tmp_path / "suppliers").iterdir()) == sorted(
        f"{supplier}.html" for supplier in evaluated["supplier_id"])
    records = pl.read_csv(tmp_path / "records.csv", infer_schema_length=0)
    assert records.height == many["performance"].records.height
    assert len(reports.suppliers) == evaluated.height and len(reports.buyers) == 1


@pytest.fixture
def workers_from_100(monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker processes from 100 suppliers (400 by default), so that 300 are rendered by two of them."""
    import reports.bundle

    monkeypatch.setattr(reports.bundle, "PARALLEL_FROM", 100)


def test_worker_processes_write_the_same_reports(tmp_path: Path, many: dict, workers_from_100: None) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    write(one, many, processes=1)
    write(two, many, processes=2)
    def without_clock(path: Path) -> str:  # each run stamps the minute it was generated
        return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "", path.read_text(encoding="utf-8"))

    for path in (one / "suppliers").iterdir():
        assert without_clock(path) == without_clock(two / "suppliers" / path.name)


def test_workers_stopped_by_a_run_under_prefect_print_no_traceback(tmp_path: Path, many: dict,
                                                                     workers_from_100: None,
                                                                     capfd: pytest.CaptureFixture[str]) -> None:
    """A Prefect run installs a SIGTERM handler that raises; the render's worker processes are forked with it and
    stopped with SIGTERM when they are done: they must end quietly, not print its traceback into the run's log."""
    import multiprocessing.context
    import signal

    from prefect.utilities.engine import _prefect_sigterm_handler  # what a flow run installs

    forked = []
    real_pool = multiprocessing.context.ForkContext.Pool

    def pool(context: object, processes: int, *args: object, **kwargs: object) -> object:
        forked.append(processes)
        return real_pool(context, processes, *args, **kwargs)

    previous = signal.signal(signal.SIGTERM, _prefect_sigterm_handler)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(multiprocessing.context.ForkContext, "Pool", pool)
            write(tmp_path, many, processes=2)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert forked == [2]  # rendered by two worker processes
    assert len(list((tmp_path / "suppliers").iterdir())) == many["decisions"].evaluated.height
    printed = capfd.readouterr()
    assert "Traceback" not in printed.err + printed.out
    assert "TerminationSignal" not in printed.err + printed.out


def test_a_buyer_with_many_suppliers_gets_one_bounded_message_and_the_rest_attached(tmp_path: Path,
                                                                                    many: dict) -> None:
    reports = write(tmp_path, many)
    [message] = reports.buyers
    html, text = message.rendered.html, message.rendered.text
    assert len(html.encode()) < MAX_MAIL_HTML and len(text.encode()) < MAX_MAIL_HTML
    assert message.subject.startswith("Supplier evaluations as of 2026-06-30: 300 suppliers")
    seen = Text(html).text
    assert "… and 275 more; every supplier is in the attached suppliers-buyer.csv." in seen  # 25 rows shown
    found = re.search(r"Below: the full (?:reports of the first (\d+) suppliers|report of the first supplier);", seen)
    shown = int(found[1] or 1)
    assert 1 <= shown <= 5 and f"those of the other {300 - shown} are attached as more-reports-buyer.zip" in seen
    attached = {name: content for name, content, _ in message.attachments}
    assert set(attached) == {"suppliers-buyer.csv", "more-reports-buyer.zip", "records-buyer.csv"}
    summary = pl.read_csv(attached["suppliers-buyer.csv"])
    assert summary.height == 300 and summary["supplier_id"].n_unique() == 300
    attention = summary.filter(pl.col("attention").is_not_null())
    assert summary.head(attention.height).equals(attention)  # those needing attention come first
    with zipfile.ZipFile(io.BytesIO(attached["more-reports-buyer.zip"])) as archive:  # every other report, in full
        assert len(archive.namelist()) == 300 - shown
        assert all(archive.read(name) == (tmp_path / "suppliers" / name).read_bytes() for name in archive.namelist())
    assert len(attached["more-reports-buyer.zip"]) < sum(  # a fifth or less of the files: mail-sized
        (tmp_path / "suppliers" / name).stat().st_size for name in archive.namelist()) / 5


def test_a_buyer_message_attaches_what_a_mail_server_accepts_and_says_where_the_rest_is(
        tmp_path: Path, many: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """A buyer of thousands of suppliers: the other reports are zipped in the message's order while the zip stays
    within the limit, the records only if they fit in what is left; the message says where the rest is."""
    import reports.bundle as bundle

    limit = 40_000  # a few reports of the 300
    monkeypatch.setattr(bundle, "MAX_BUYER_ATTACHMENT_BYTES", limit)
    [message] = write(tmp_path, many).buyers
    attached = {name: content for name, content, _ in message.attachments}
    assert set(attached) == {"suppliers-buyer.csv", "more-reports-buyer.zip"}  # the records did not fit
    assert len(attached["more-reports-buyer.zip"]) <= limit
    seen = Text(message.rendered.html).text
    found = re.search(r"Below: the full (?:reports of the first (\d+) suppliers|report of the first supplier);", seen)
    shown = int(found[1] or 1)
    with zipfile.ZipFile(io.BytesIO(attached["more-reports-buyer.zip"])) as archive:
        zipped = archive.namelist()
    assert 0 < len(zipped) < 300 - shown
    summary = pl.read_csv(attached["suppliers-buyer.csv"])  # the message's order: the zip holds the next ones
    assert zipped == [f"{sid}.html" for sid in summary["supplier_id"][shown:shown + len(zipped)]]
    folder = tmp_path  # the run's report folder: the suppliers' files are in it, and records.csv
    assert (f"those of the next {len(zipped)} are attached as more-reports-buyer.zip. The reports of the other "
            f"{300 - shown - len(zipped)} are not attached, to keep this message small enough to be delivered: they "
            f"are in the suppliers folder of the run's report folder, {folder}.") in seen
    assert f"The records behind the metrics are not attached, to keep this message small enough to be delivered: " \
           f"they are in records.csv in the run's report folder, {folder}." in seen
    assert f"{300 - shown - len(zipped)} are not attached" in message.rendered.text


def test_the_digest_stays_small_whatever_the_number_of_suppliers(tmp_path: Path, many: dict) -> None:
    reports = write(tmp_path, many)
    html = reports.digest.rendered.html
    assert len(html.encode()) < MAX_MAIL_HTML
    seen = Text(html).text
    bands = many["decisions"].evaluated.group_by("band").len()
    largest = bands.filter(pl.col("band").is_not_null()).sort("len")[-1]
    assert f"… and {largest['len'].item() - 5:,} more: all are in evaluations.csv, attached." in seen  # 5 a band
    for band, count in bands.drop_nulls().iter_rows():
        share = round(100 * count / 300)
        assert re.search(rf"{band} \w+ {count:,} \({share} %\)", seen), band  # the distribution chart's bars


def test_a_report_charts_its_score_over_past_evaluations(tmp_path: Path) -> None:
    evaluated = evaluate(5, 1000)
    supplier = evaluated["decisions"].evaluated.filter(pl.col("score").is_not_null())["supplier_id"][0]
    history = pl.DataFrame({"supplier_id": [supplier] * 2, "as_of": [date(2025, 12, 31), date(2026, 3, 31)],
                            "score": [40.0, 75.5], "band": ["D", "B"]})
    reports = write(tmp_path, evaluated, history=history)
    report = next(r for r in reports.suppliers if r.supplier_id == supplier)
    html = report.rendered.html
    chart = html[html.index("Score over the last 3 evaluations"):html.index("Scores of the scored official")]
    assert [int(h) for h in re.findall(r'height="(\d+)"', chart)][:2] == [24, 45]  # 60 px for 100: 40 → 24, 75.5 → 45
    assert "40.0" in chart and "75.5" in chart and "2025-12-31" in chart
    assert re.search(r"Trend +2025-12-31 40\.0 \(D\) -> 2026-03-31 75\.5 \(B\) -> 2026-06-30 \d+\.\d \(\w\)",
                     report.rendered.text)
    legend = Text(html).text
    assert "Bands Band Score Status What it means A 85 to 100 approved" in legend


def test_hostile_supplier_names_are_harmless_in_every_report_file_and_message(tmp_path: Path) -> None:
    names = {"S0001": SCRIPT, "S0002": FORMULA, "S0003": HEADER}
    evaluated = evaluate(5, 1000, names=names)
    reports = write(tmp_path, evaluated, routing=Routing(supplier_reports=PER_SUPPLIER, supplier_contact=True))
    buyer_reports = write(tmp_path / "buyers", evaluated)
    documents = [path.read_text(encoding="utf-8") for path in (tmp_path / "suppliers").iterdir()]
    documents += [reports.digest.rendered.html, *(b.rendered.html for b in buyer_reports.buyers)]
    for html in documents:
        parsed = Text(html)
        assert parsed.scripts == 0 and "<script>" not in html
    everything = " ".join(Text(html).text for html in documents)
    assert SCRIPT in everything and FORMULA in everything  # shown as written, as text

    run = RunRecord(run_id="run-1", run_key="k" * 64, trigger="nightly", requested_by=None, as_of=AS_OF,
                    window_days=365, selection=["*active*"], rule_set_name=RULES.name, rule_set_version="1",
                    rule_set_hash=RULES.content_hash, input_fingerprint="f" * 64, code_version="0")
    planned = [*plan_messages(reports, run=run, officers=("qm@example.org",)),
               *plan_messages(buyer_reports, run=run, officers=())]
    for item in planned:
        raw = compose_message(sender="se@example.org", to=[item.recipient], subject=item.report.subject,
                              rendered=item.report.rendered, message_key=item.key,
                              attachments=item.report.attachments).as_bytes()
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert parsed["Bcc"] is None and "\n" not in str(parsed["Subject"]) and "\r" not in str(parsed["Subject"])
        for part in parsed.iter_attachments():
            if part.get_filename().endswith(".csv"):
                cells = pl.read_csv(part.get_content().encode(), infer_schema_length=0)
                values = [v for column in cells.columns for v in cells[column].drop_nulls().to_list()]
                assert not [v for v in values if v[:1] in ("=", "+", "@")]  # a formula is text, quoted
    subjects = {item.report.subject for item in planned}
    assert "Supplier evaluation: Evil Ltd Bcc: victim@example.org (S0003) as of 2026-06-30: " in " ".join(subjects)
    [summary] = [content for b in buyer_reports.buyers for name, content, _ in b.attachments
                 if name.startswith("suppliers-")]
    assert "'=HYPERLINK(" in summary.decode()


_SLOW_RENDER = """
import signal, sys, time
from pathlib import Path
import reports.bundle as bundle

# Ctrl-C as in a terminal's foreground job: a command started in the background (a test run with `&`, some CI
# runners) inherits SIGINT ignored, and Python then leaves it so.
signal.signal(signal.SIGINT, signal.default_int_handler)

def slow(bounds):  # a report that takes 20 ms: 400 of them keep two workers busy for 4 s
    for _ in range(bounds[1] - bounds[0]):
        time.sleep(0.02)
    return bounds[1] - bounds[0]

bundle._render_range, bundle.PARALLEL_FROM = slow, 100
print("rendering", flush=True)
try:
    bundle._render_suppliers([(f"s{i}", {}) for i in range(400)], Path(sys.argv[1]), processes=2)
    print("finished", flush=True)
except KeyboardInterrupt:
    print("stopped", flush=True)
"""


def test_ctrl_c_stops_the_report_workers_at_once_and_leaves_none(tmp_path: Path) -> None:
    """Ctrl-C reaches the whole process group: the run stops within a moment, and no worker is left behind."""
    import os
    import signal
    import subprocess
    import sys
    import time

    child = subprocess.Popen([sys.executable, "-c", _SLOW_RENDER, str(tmp_path)], stdout=subprocess.PIPE,
                             text=True, start_new_session=True, cwd=Path(__file__).parents[1])
    assert child.stdout is not None and child.stdout.readline() == "rendering\n"
    time.sleep(1.0)  # the workers are at work
    workers = subprocess.run(["pgrep", "-P", str(child.pid)], capture_output=True, text=True).stdout.split()
    assert len(workers) == 2
    os.killpg(child.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    pressed = time.monotonic()
    assert child.stdout.read() == "stopped\n"
    assert child.wait(timeout=10) == 0 and time.monotonic() - pressed < 1.5
    assert not [pid for pid in workers if os.path.exists(f"/proc/{pid}")]


@pytest.mark.parametrize("listed_by_supplier", [True, False])
def test_the_records_of_some_suppliers_come_in_the_order_asked(listed_by_supplier: bool) -> None:
    from reports.bundle import _records_by_supplier

    records = pl.DataFrame({"supplier_id": ["A", "A", "B", "C", "C", "C"], "n": [1, 2, 3, 4, 5, 6]})
    if not listed_by_supplier:
        records = records.reverse()
    of = _records_by_supplier(records)
    assert of(["C"])["n"].to_list() == ([4, 5, 6] if listed_by_supplier else [6, 5, 4])
    assert of(["A", "C"])["n"].to_list() == ([1, 2, 4, 5, 6] if listed_by_supplier else [2, 1, 6, 5, 4])
    assert of(["C", "A"])["n"].to_list() == ([4, 5, 6, 1, 2] if listed_by_supplier else [6, 5, 4, 2, 1])
    assert of(["Z"]).height == 0 and of(["Z"]).columns == ["supplier_id", "n"]
