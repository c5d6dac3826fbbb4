"""Delivery through the real ledger path (enqueue, claim, send, mark) on SQLite to a local aiosmtpd server that
runs in its own process, then the kill experiment: a sender SIGKILLed half-way, then `outbox retry`.

    .venv/bin/python benchmarks/bench_delivery.py                      # 1,000 messages of about 30 KB, 4 connections
    .venv/bin/python benchmarks/bench_delivery.py --messages 1000 --connections 4 --kill-messages 400
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reports.bundle import Report  # noqa: E402
from reports.delivery import SmtpSettings, Transport  # noqa: E402
from reports.outbox import PlannedMessage, compose_messages, message_key, send_claimed  # noqa: E402
from reports.render import Rendered  # noqa: E402
from suppliers.store import Store  # noqa: E402

# The server: accepts everything and writes one line per message (its Message-ID and the client's port).
SERVER = """
import sys, time, email
from aiosmtpd.controller import Controller
port, log = int(sys.argv[1]), open(sys.argv[2], "a", buffering=1)
class Handler:
    async def handle_DATA(self, server, session, envelope):
        head = envelope.original_content.split(b"\\r\\n\\r\\n", 1)[0]
        mid = email.message_from_bytes(head)["Message-ID"]
        log.write(f"{mid} {session.peer[1]}\\n")
        return "250 2.0.0 OK"
controller = Controller(Handler(), hostname="127.0.0.1", port=port, ready_timeout=10)
controller.start()
print("ready", flush=True)
try:
    time.sleep(3600)
finally:
    controller.stop()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def report_html(i: int) -> str:
    """About 30 KB: a supplier report's shape (a heading, a criteria table, late lines)."""
    rows = "".join(f"<tr><td>PO-{i:05d}-{n:03d}</td><td>2026-05-{n % 28 + 1:02d}</td><td style=\"text-align:right\">"
                   f"{n * 7 % 100} days</td><td>Smith &amp; Sons &lt;Precision&gt; Ltd</td></tr>" for n in range(190))
    return (f"<html><body><h1>Supplier S{i:05d}: band B (approved)</h1><table style=\"border-collapse:collapse\">"
            f"{rows}</table></body></html>")


def planned(count: int) -> list[PlannedMessage]:
    items = []
    for i in range(count):
        html = report_html(i)
        report = Report("supplier", f"S{i:05d}", f"buyer{i}@example.org", f"Supplier evaluation: S{i:05d}",
                        Rendered(html=html, text=f"Supplier S{i:05d}: band B\n" * 40), ())
        items.append(PlannedMessage(message_key("bench", "supplier", report.supplier_id, report.owner_email),
                                    report.owner_email, report))
    return items


def start_server(log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(log)], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    return server, port


def received(log: Path) -> list[tuple[str, str]]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [tuple(line.split()) for line in lines if line.count(" ") == 1]  # type: ignore[misc]


def throughput(folder: Path, messages: int, connections: int) -> None:
    log = folder / "throughput.log"
    server, port = start_server(log)
    try:
        items = planned(messages)
        started = time.perf_counter()
        pending = compose_messages(items, sender="eval@example.org")
        composed = time.perf_counter() - started
        size = sum(len(p.body) for p in pending) / len(pending)
        transport = Transport(smtp=SmtpSettings(host="127.0.0.1", port=port, security="none"),
                              outbox_dir=folder / "unused", concurrency=connections, retries=3)
        with Store(f"sqlite:///{folder / 'throughput.db'}") as store:
            started, cpu = time.perf_counter(), time.process_time()
            store.enqueue_messages("bench", "bench-run", pending)
            claimed = store.claim_messages([p.message_key for p in pending], run_id="bench-run")
            results = send_claimed(store, "bench-run", claimed, transport=transport)
            took, cpu = time.perf_counter() - started, time.process_time() - cpu
            counts = store.outbox_counts()
        time.sleep(0.2)
        got = received(log)
    finally:
        server.terminate()
        _, _, usage = os.wait4(server.pid, 0)
    print(f"composed {messages:,} messages of {size / 1024:.1f} KB on average in {composed:.2f} s (not counted below)")
    print(f"delivered {sum(r.ok for r in results):,} of {messages:,} through the ledger (enqueue, claim, send, mark) "
          f"in {took:.2f} s: {messages / took:,.0f} messages/s over {len({peer for _, peer in got})} connections "
          f"(at most {connections}); server received {len(got):,}; ledger {counts}; this process used {cpu:.2f} s "
          f"of CPU, the server {usage.ru_utime + usage.ru_stime:.2f} s")


def kill_experiment(folder: Path, messages: int, connections: int) -> None:
    log = folder / "kill.log"
    url = f"sqlite:///{folder / 'kill.db'}"
    config = folder / "supplier-eval.toml"
    server, port = start_server(log)
    config.write_text(f'[store]\nurl = "{url}"\n[mail]\nsender = "eval@example.org"\nconcurrency = {connections}\n'
                      f'[mail.smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n', encoding="utf-8")
    items = planned(messages)
    try:
        with Store(url) as store:
            store.enqueue_messages("bench", "bench-run", compose_messages(items, sender="eval@example.org"))
        command = [sys.executable, "-m", "flows.cli", "outbox", "retry", "--config", str(config)]
        sender = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while len(received(log)) < messages // 2:
            time.sleep(0.002)
        sender.send_signal(signal.SIGKILL)
        sender.wait()
        at_kill = len(received(log))
        started = time.perf_counter()
        retry = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        took = time.perf_counter() - started
        time.sleep(0.2)
        got = Counter(mid for mid, _ in received(log))
    finally:
        server.terminate()
        server.wait()
    expected = {f"<{item.key}@supplier-eval>" for item in items}
    print(f"kill experiment: {messages} messages, SIGKILL after {at_kill} received; `outbox retry` then took "
          f"{took:.2f} s (exit {retry.returncode}: {retry.stdout.strip()})")
    print(f"  sent {len(expected & set(got))}, lost {len(expected - set(got))}, "
          f"duplicated {sum(count - 1 for count in got.values())}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--kill-messages", type=int, default=400)
    args = parser.parse_args()
    os.environ.setdefault("DO_NOT_TRACK", "1")
    print(f"bench_delivery {date.today()}: {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp:
        throughput(Path(tmp), args.messages, args.connections)
        kill_experiment(Path(tmp), args.kill_messages, args.connections)
    return 0


if __name__ == "__main__":
    sys.exit(main())
