"""A real SMTP server (aiosmtpd) on 127.0.0.1 for tests, and a handler that records what it receives."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
from contextlib import contextmanager

from aiosmtpd.controller import Controller

HOST = "127.0.0.1"


def free_port() -> int:
    # aiosmtpd's Controller cannot use port 0 (its readiness probe needs the real port): ask the OS for one.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Recorder:
    """Accepts everything and keeps the envelopes, and which connection (client address) brought each."""

    def __init__(self) -> None:
        self.envelopes: list[tuple[str, list[str], bytes]] = []
        self.sessions: list[tuple[bool, bool]] = []  # (encrypted, authenticated) per delivered message
        self.peers: list[tuple[str, int]] = []  # the client's address and port, per delivered message

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        self.sessions.append((session.ssl is not None, bool(session.authenticated)))
        self.peers.append(tuple(session.peer[:2]))
        return "250 2.0.0 OK"

    def messages(self) -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(raw, policy=email.policy.default) for _, _, raw in self.envelopes]

    @property
    def connections(self) -> int:
        """How many connections delivered messages."""
        return len(set(self.peers))


class FailingTimes(Recorder):
    """Answers the first ``times`` messages with ``reply`` (a 4xx by default), then accepts."""

    def __init__(self, times: int, reply: str = "451 4.3.0 Temporary local problem, try again") -> None:
        super().__init__()
        self.times = times
        self.reply = reply
        self.calls = 0

    async def handle_DATA(self, server, session, envelope):
        self.calls += 1
        if self.calls <= self.times:
            return self.reply
        return await super().handle_DATA(server, session, envelope)


class Dropping(Recorder):
    """Hangs up, without an answer, on the messages numbered in ``drop_at`` (1-based, counted as they arrive)."""

    def __init__(self, *drop_at: int) -> None:
        super().__init__()
        self.drop_at = set(drop_at)
        self.calls = 0

    async def handle_DATA(self, server, session, envelope):
        self.calls += 1
        if self.calls in self.drop_at:
            server.transport.close()
            return "421 4.3.0 closing"
        return await super().handle_DATA(server, session, envelope)


class RefusingRecipient(Recorder):
    """Refuses one recipient for good (550 at RCPT TO); accepts everyone else."""

    def __init__(self, refused: str) -> None:
        super().__init__()
        self.refused = refused
        self.refusals = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address == self.refused:
            self.refusals += 1
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"


class Slow(Recorder):
    """Takes ``delay`` seconds over each message before accepting it."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


@contextmanager
def smtp_server(handler, **kwargs):
    port = kwargs.pop("port", None) or free_port()
    controller = Controller(handler, hostname=HOST, port=port, ready_timeout=5, **kwargs)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()
