"""Who holds a run or an outbox claim: this process (host, pid, start time), and whether a holder is still alive.

A holder on this host is alive while its process is (the start time tells a reused pid from the holder); a holder
on another host is alive while its lease, renewed every few seconds by :class:`LeaseKeeper`, has not run out.
So a claim left by a killed process is free at once on its own host, and within a lease on any other.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

__all__ = ["Holder", "LEASE", "RENEW_EVERY", "this_process", "process_start_time", "is_alive", "LeaseKeeper"]

LEASE = timedelta(seconds=45)
RENEW_EVERY = timedelta(seconds=10)


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    started: str  # the process start time as the system counts it ("" where it cannot be read)

    def describe(self) -> str:
        return f"host {self.host}, pid {self.pid}"


def this_process() -> Holder:
    pid = os.getpid()
    return Holder(host=socket.gethostname(), pid=pid, started=process_start_time(pid) or "")


def is_alive(holder: Holder, *, lease_expired: bool, here: str | None = None) -> bool:
    """Is the holder's process still running? Known for this host; elsewhere its lease decides."""
    if holder.host != (here or socket.gethostname()):
        return not lease_expired
    started = process_start_time(holder.pid)
    if started is not None:
        return not holder.started or started == holder.started
    if Path("/proc/self/stat").exists():  # Linux, and the pid is gone (or a zombie)
        return False
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process, so not a reused pid of ours
        return True
    return not lease_expired  # the pid exists; without its start time, a lease run out means it was reused


def process_start_time(pid: int) -> str | None:
    """The start time of a live process, from /proc (clock ticks since boot); None when it is gone or unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the name in parentheses may hold spaces
    if fields[0] in ("Z", "X"):  # killed, not yet reaped by its parent: gone all the same
        return None
    return fields[19]


class LeaseKeeper:
    """Renews a lease from a background thread until stopped (or until the process dies, which is the point)."""

    def __init__(self, renew: Callable[[], object], every: timedelta = RENEW_EVERY) -> None:
        self._renew = renew
        self._every = every.total_seconds()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="supplier-eval-lease", daemon=True)

    def start(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopped.wait(self._every):
            try:
                self._renew()
            except Exception:  # noqa: BLE001 - a missed renewal is retried; the lease outlives several
                continue
