"""Compose report emails: text and HTML alternatives, CSV attachments, deterministic Message-ID.

Nothing from the data can add a header: subject and addresses lose CR, LF and other control characters,
and addresses are validated (a bad one is a ``ConfigError``, not a silently dropped recipient).
"""

from __future__ import annotations

import email.policy
import hashlib
import re
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from reports.render import Rendered
from suppliers.addresses import is_address
from suppliers.errors import ConfigError

__all__ = ["compose_message", "clean_header", "safe_key", "parse_address"]

MESSAGE_ID_DOMAIN = "supplier-eval"
MAX_SUBJECT = 200
MAX_KEY = 120

# The addr-spec itself is checked by suppliers.addresses.is_address: the same rule record validation uses.
_NAME_ADDR = re.compile(r"(?:(?P<name>[^<>]*?)\s*<(?P<addr>[^<>\s]+)>|(?P<bare>[^<>\s]+))")
_UNSAFE_KEY = re.compile(r"[^A-Za-z0-9._+-]+")


_HEADER_POLICY = email.policy.SMTP.clone(max_line_length=998)

def compose_message(
    *,
    sender: str,
    to: Sequence[str],
    subject: str,
    rendered: Rendered,
    message_key: str,
    attachments: Sequence[tuple[str, bytes, str]] = (),
    date: datetime | None = None,
) -> EmailMessage:
    """Build one email: multipart/alternative (text, then HTML), inside multipart/mixed with attachments.

    ``message_key`` is the outbox ledger key; it makes the Message-ID (and the MIME boundaries) deterministic,
    so composing the same message twice with the same ``date`` gives the same bytes.
    """
    if isinstance(to, str):  # a bare string would otherwise be split into characters
        to = [to]
    if not to:
        raise ConfigError(
            "an email needs at least one recipient",
            where=f"message {message_key!r}",
            fix="Set the supplier's owner_email or the report recipients in the settings.",
        )
    key = safe_key(message_key)
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = parse_address(sender, role="sender")
    msg["To"] = ", ".join(str(parse_address(address, role="recipient")) for address in to)
    msg["Subject"] = clean_header(subject, limit=MAX_SUBJECT) or "(no subject)"
    msg["Date"] = format_datetime((date or datetime.now(UTC)).astimezone(UTC))
    msg["Message-ID"] = f"<{key}@{MESSAGE_ID_DOMAIN}>"
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies to a robot
    msg["X-Supplier-Eval-Key"] = key

    # Quoted-printable keeps every line under SMTP's 998-octet limit (inlined HTML has very long lines) and
    # encodes "=", so our "=="-delimited boundaries can never occur inside a part.
    msg.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    msg.set_boundary(_boundary(key, "alt"))
    if attachments:
        for filename, data, mime in attachments:
            maintype, _, subtype = mime.partition("/")
            if not maintype or not subtype:
                raise ConfigError(
                    f"attachment {filename!r} has MIME type {mime!r}",
                    fix='Give a full type such as "text/csv".',
                )
            # Text attachments (CSV) are UTF-8; saying so keeps names like "Müller" intact in mail clients.
            params = {"charset": "utf-8"} if maintype == "text" else None
            msg.add_attachment(
                bytes(data),
                maintype=maintype,
                subtype=subtype,
                filename=_clean_filename(filename),
                params=params,
            )
        msg.set_boundary(_boundary(key, "mixed"))
        alternative = msg.get_payload()[0]
        alternative.set_boundary(_boundary(key, "alt"))
    # Bodies are already encoded (quoted-printable, short lines); from here on the policy only folds headers,
    # and a Subject of up to 998 characters stays on its line: at 78 the email package moves a long Subject
    # whole onto a continuation line, which readers then show with a leading space.
    msg.policy = _HEADER_POLICY
    return msg


def clean_header(value: str, *, limit: int | None = None) -> str:
    """One line of header text: control characters (CR, LF, TAB, NUL, ...) become spaces; spaces collapse."""
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in str(value))
    text = " ".join(text.split())
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def parse_address(value: str, *, role: str = "address") -> Address:
    """``a@b.example`` or ``Name <a@b.example>`` → an ``Address``; anything else is a ``ConfigError``."""
    if value is None or not str(value).strip():
        raise ConfigError(
            f"the {role} address is missing",
            fix="Set the address (for a supplier report: the supplier's owner_email).",
        )
    raw = str(value).strip()  # a trailing newline from a spreadsheet cell is harmless; an inner one is not
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in raw):
        # An address with a line break in it is an injection attempt or a broken record: never "repair" it
        # into some other address.
        raise ConfigError(
            f"the {role} address {clean_header(raw)!r} contains a line break or control character",
            fix="Correct the address in the supplier records or the settings.",
        )
    # Parsed strictly by hand: email.utils.parseaddr "repairs" input such as "a@exa mple.com" into a different
    # address, and a recipient must be exactly what the records say or nothing.
    match = _NAME_ADDR.fullmatch(raw)
    name, addr = "", ""
    if match:
        name, addr = (match["name"] or "").strip(), match["addr"] or match["bare"]
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = re.sub(r"\\(.)", r"\1", name[1:-1])
    if not addr or not is_address(addr):
        raise ConfigError(
            f"the {role} address {raw!r} is not a valid email address",
            fix="Use the form name@example.com (ASCII only).",
        )
    local, _, domain = addr.rpartition("@")
    return Address(display_name=clean_header(name), username=local, domain=domain)


def safe_key(message_key: str) -> str:
    """The message key as a Message-ID / file-name fragment: ``[A-Za-z0-9._+-]`` only, unique, bounded length.

    When anything had to change, a short hash of the original key is appended so two keys that differ only
    in unsafe characters still get different IDs and files.
    """
    key = str(message_key)
    if not key.strip():
        raise ConfigError("an email message key is empty", fix="Give every outgoing message a ledger key.")
    cleaned = _UNSAFE_KEY.sub("-", key).strip(".-") or "message"
    if cleaned != key or len(cleaned) > MAX_KEY:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
        cleaned = f"{cleaned[: MAX_KEY - 13]}.{digest}"
    return cleaned


def _boundary(key: str, part: str) -> str:
    return f"==============={hashlib.sha256(f'{part}:{key}'.encode()).hexdigest()[:24]}=="


def _clean_filename(filename: str) -> str:
    name = clean_header(filename).replace("/", "_").replace("\\", "_").strip(". ")
    return name or "attachment"
