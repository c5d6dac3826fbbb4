"""Who holds something (a run lock, an outbox claim): host, process id and the process's start time.

A holder on this host is alive while a process with that id runs *and* started at the recorded time, so a
reused process id does not keep a dead holder alive. A holder on another host cannot be checked from here
(``holder_alive`` says None); whoever asks then goes by a lease the holder renews.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Holder", "current_holder", "holder_alive", "process_start"]


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    started: str  # the process's start as the kernel tells it ("" when it cannot): part of its identity

    def describe(self) -> str:
        return f"host {self.host}, pid {self.pid}"


def process_start(pid: int) -> str:
    """The start of process ``pid`` in clock ticks since boot, tied to this boot; "" if unknown or gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""
    return f"{boot}:{stat.rsplit(')', 1)[1].split()[19]}"  # field 22 of stat, counted after "pid (comm)"


def current_holder() -> Holder:
    return Holder(host=socket.gethostname(), pid=os.getpid(), started=process_start(os.getpid()))


def holder_alive(holder: Holder) -> bool | None:
    """True or False for a holder on this host; None for one on another host (go by its lease)."""
    if holder.host != socket.gethostname():
        return None
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        pass
    if not holder.started:
        return True
    now = process_start(holder.pid)
    return now == holder.started if now else True
