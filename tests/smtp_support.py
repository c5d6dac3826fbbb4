"""A real SMTP server (aiosmtpd) on 127.0.0.1 for tests, and a handler that records what it receives."""

from __future__ import annotations

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
    """Accepts everything and keeps the envelopes."""

    def __init__(self) -> None:
        self.envelopes: list[tuple[str, list[str], bytes]] = []
        self.sessions: list[tuple[bool, bool]] = []  # (encrypted, authenticated) per delivered message

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        self.sessions.append((session.ssl is not None, bool(session.authenticated)))
        return "250 2.0.0 OK"

    def messages(self) -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(raw, policy=email.policy.default) for _, _, raw in self.envelopes]


@contextmanager
def smtp_server(handler, **kwargs):
    port = kwargs.pop("port", None) or free_port()
    controller = Controller(handler, hostname=HOST, port=port, ready_timeout=5, **kwargs)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()
