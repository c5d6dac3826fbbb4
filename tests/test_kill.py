"""A sending process killed part-way (SIGKILL) or stopped (SIGTERM): the rest goes at once, nothing is lost, and
at most the messages on the wire at a kill arrive twice. Real subprocesses, a real SMTP server on 127.0.0.1."""

from __future__ import annotations

import email
import email.policy
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path

import pytest
from smtp_support import HOST, Slow, smtp_server

from flows.cli import main
from reports.bundle import Report
from reports.delivery import SmtpSettings, Transport
from reports.outbox import PlannedMessage, deliver_planned, message_key
from reports.render import Rendered
from suppliers.runs import RunRecord
from suppliers.store import Store

pytestmark = pytest.mark.slow

MESSAGES = 40
CONNECTIONS = 2
RENDERED = Rendered(html="<p>Smith &amp; Sons: band B</p>", text="Smith & Sons: band B\n")

# One evaluation's run, as the pipeline does it: record the run (held by this process), then ledger and send.
RUN_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[2])
from test_kill import planned, run_record, transport
from reports.outbox import deliver_planned
from suppliers.store import Store
args = json.loads(sys.argv[1])
with Store(args["url"]) as store:
    run = run_record(args["run_id"])
    store.start_run(run)
    deliver_planned(store, run, planned(), sender="eval@example.org", transport=transport(args["port"]))
    store.finish_run(run.run_id, status="succeeded")
"""


def run_record(run_id: str) -> RunRecord:
    return RunRecord(run_id=run_id, run_key="key-1", trigger="nightly", requested_by="test", as_of=date(2026, 6, 30),
                     window_days=365, selection=["*active*"], rule_set_name="r", rule_set_version="1",
                     rule_set_hash="h", input_fingerprint="f", code_version="0", changes_asl=True)


def planned() -> list[PlannedMessage]:
    reports = [Report("supplier", f"S{i:03d}", f"buyer{i}@example.org", f"Report S{i:03d}", RENDERED, ())
               for i in range(MESSAGES)]
    return [PlannedMessage(message_key("key-1", "supplier", r.supplier_id, r.owner_email), r.owner_email, r)
            for r in reports]


def transport(port: int) -> Transport:
    smtp = SmtpSettings(host=HOST, port=port, security="none", timeout_seconds=5)
    return Transport(smtp=smtp, outbox_dir=Path("unused"), concurrency=CONNECTIONS, retries=0)


def received_keys(handler: Slow) -> Counter[str]:
    """Each message the server received, by its ledger key (its Message-ID)."""
    ids = [email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"] for _, _, raw in handler.envelopes]
    return Counter(str(i).strip("<>").removesuffix("@supplier-eval") for i in ids)


def wait_for(handler: Slow, count: int, process: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while len(handler.envelopes) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the sender did not get going"
        time.sleep(0.01)


def settings_file(tmp_path: Path, port: int) -> Path:
    config = tmp_path / "supplier-eval.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path / "store.db"}"\n[mail]\nsender = "eval@example.org"\n'
                      f'concurrency = {CONNECTIONS}\nretries = 0\n'
                      f'[mail.smtp]\nhost = "{HOST}"\nport = {port}\nsecurity = "none"\ntimeout_seconds = 5\n',
                      encoding="utf-8")
    return config


def enqueue_all(url: str) -> None:
    """A run that ledgered its messages and sent none (it stopped before delivering)."""
    from reports.outbox import compose_messages

    with Store(url) as store:
        store.enqueue_messages("key-1", "run-0", compose_messages(planned(), sender="eval@example.org"))


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent),
                                                                      os.environ.get("PYTHONPATH")]))}


def test_a_run_killed_while_sending_is_finished_by_the_next_run_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    handler = Slow(0.03)
    with smtp_server(handler) as controller:
        args = json.dumps({"url": url, "run_id": "killed-run", "port": controller.port})
        child = subprocess.Popen([sys.executable, "-c", RUN_SCRIPT, args, str(Path(__file__).parent)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
        wait_for(handler, MESSAGES // 2, child)
        child.kill()
        child.wait()
        got_before = sum(received_keys(handler).values())
        started = time.monotonic()
        with Store(url) as store:  # the next run of the same evaluation, in this process
            run = run_record("next-run")
            store.start_run(run)
            outcome = deliver_planned(store, run, planned(), sender="eval@example.org",
                                      transport=transport(controller.port))
            store.finish_run(run.run_id, status="succeeded")
            took = time.monotonic() - started
            statuses = dict(store.runs_frame().select("run_id", "status").rows())
            ledger = store.outbox_counts()
    got = received_keys(handler)
    assert set(got) == {item.key for item in planned()}  # nothing lost
    assert sum(got.values()) - MESSAGES <= CONNECTIONS  # at most the messages on the wire at the kill, twice
    assert outcome.sent_now == MESSAGES - got_before + (sum(got.values()) - MESSAGES) and outcome.elsewhere == 0
    assert took < 5, f"the next run waited {took:.1f} s for the killed run's claims"
    assert statuses == {"killed-run": "abandoned", "next-run": "succeeded"}
    assert ledger == {"sent": MESSAGES}


def test_outbox_retry_killed_part_way_then_run_again_sends_the_rest(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    enqueue_all(url)
    handler = Slow(0.03)
    with smtp_server(handler) as controller:
        config = settings_file(tmp_path, controller.port)
        child = subprocess.Popen([sys.executable, "-m", "flows.cli", "outbox", "retry", "--config", str(config)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
        wait_for(handler, MESSAGES // 2, child)
        child.kill()
        child.wait()
        assert main(["outbox", "--config", str(config)]) == 0
        listing = capsys.readouterr().out
        started = time.monotonic()
        assert main(["outbox", "retry", "--config", str(config)]) == 0
        took = time.monotonic() - started
    assert "message(s) they held are queued again" in listing and "sending: 0" in listing
    got = received_keys(handler)
    assert set(got) == {item.key for item in planned()}
    assert sum(got.values()) - MESSAGES <= CONNECTIONS
    assert took < 5
    assert "delivered, 0 failed" in capsys.readouterr().out


def test_sigterm_stops_cleanly_after_the_messages_on_the_wire_without_a_duplicate(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    enqueue_all(url)
    handler = Slow(0.05)
    with smtp_server(handler) as controller:
        config = settings_file(tmp_path, controller.port)
        child = subprocess.Popen([sys.executable, "-m", "flows.cli", "outbox", "retry", "--config", str(config)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
        wait_for(handler, 10, child)
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=30)
        with Store(url) as store:
            stopped = store.outbox_counts()
        assert main(["outbox", "retry", "--config", str(config)]) == 0
    assert child.returncode == 128 + signal.SIGTERM
    assert "Traceback" not in stderr and stderr.strip().splitlines() == [
        "Stopped (SIGTERM): what was not sent stays queued in the outbox ledger; the next run or "
        "`supplier-eval outbox retry` sends it."]
    assert stopped.get("sending", 0) == 0 and 10 <= stopped["sent"] < MESSAGES  # claims given back, each recorded
    got = received_keys(handler)
    assert set(got) == {item.key for item in planned()} and max(got.values()) == 1  # no duplicate at all


def test_sigterm_during_a_real_evaluate_records_every_message_it_sent(workspace: Path, prefect_harness: str) -> None:
    """The flow engine has a SIGTERM handler of its own: the messages on the wire are still answered and recorded."""
    from conftest import SAMPLE_END

    handler = Slow(0.05)
    with smtp_server(handler) as controller:
        config = workspace / "supplier-eval.toml"
        config.write_text(config.read_text(encoding="utf-8") + f'[mail.smtp]\nhost = "{HOST}"\nport = '
                          f'{controller.port}\nsecurity = "none"\n', encoding="utf-8")
        command = [sys.executable, "-m", "flows.cli", "evaluate", "--config", str(config), "--as-of", str(SAMPLE_END)]
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env={**child_env(), "PREFECT_API_URL": prefect_harness})
        wait_for(handler, 5, child, seconds=120)
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=60)
        at_stop = sum(received_keys(handler).values())
        with Store(f"sqlite:///{workspace / 'store' / 'supplier-eval.db'}") as store:
            ledger = store.outbox_counts()
        assert main(["outbox", "retry", "--config", str(config)]) == 0
    assert child.returncode == 128 + signal.SIGTERM and "Traceback" not in stderr
    assert "Stopped (SIGTERM): what was not sent stays queued" in stderr
    assert ledger.get("sending", 0) == 0 and ledger["sent"] == at_stop  # all it got, recorded as sent
    got = received_keys(handler)
    assert sum(ledger.values()) == len(got) and max(got.values()) == 1  # every message once, none twice
