"""Email composition and delivery against a real aiosmtpd server on 127.0.0.1 (no other network)."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import ipaddress
import socket
import ssl
import threading
from pathlib import Path

import pydantic
import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from smtp_support import HOST, Dropping, FailingTimes, Recorder, RefusingRecipient, free_port, smtp_server

from reports.delivery import DeliveryResult, OutgoingMessage, SmtpSettings, deliver_messages, outbox_path
from reports.mail import compose_message, safe_key
from reports.render import Rendered
from suppliers.errors import ConfigError

USER, PASSWORD = "reports", "s3cret-Pa55"
FAST = {"backoff_seconds": 0.01}  # keep retries quick in tests


# ---- helpers ------------------------------------------------------------------------------------------


class FlakyOnce(Recorder):
    """451 on the first DATA, then accepts."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def handle_DATA(self, server, session, envelope):
        self.calls += 1
        if self.calls == 1:
            return "451 4.3.0 Temporary local problem, try again"
        return await super().handle_DATA(server, session, envelope)


class Rejecting(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def handle_DATA(self, server, session, envelope):
        self.calls += 1
        return "550 5.7.1 Message rejected as spam"


class Slow(Recorder):
    """Holds each message for a moment and records how many sessions were in DATA at once."""

    def __init__(self) -> None:
        super().__init__()
        self.active = 0
        self.peak = 0

    async def handle_DATA(self, server, session, envelope):
        self.active += 1
        self.peak = max(self.peak, self.active)
        await asyncio.sleep(0.15)
        self.active -= 1
        return await super().handle_DATA(server, session, envelope)


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USER.encode()
        and auth_data.password == PASSWORD.encode()
    )
    # For handled=True (the default) aiosmtpd sends no reply and the client hangs; handled=False makes it answer 535.
    return AuthResult(success=True) if ok else AuthResult(success=False, handled=False)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path, bytes]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert file, key file, PEM for the client)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "supplier-eval test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (folder / "cert.pem").write_bytes(cert_pem)
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return folder / "cert.pem", folder / "key.pem", cert_pem


@pytest.fixture()
def server_tls(certificate) -> ssl.SSLContext:
    cert, key, _ = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture()
def client_tls(certificate) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=certificate[2].decode())


RENDERED = Rendered(
    html='<html><body><p style="color: red">Smith &amp; Sons &lt;Precision&gt; Ltd: band B</p></body></html>',
    text="Smith & Sons <Precision> Ltd: band B\n",
)


def make(
    key: str, to=("buyer@example.com",), subject="Supplier evaluation: S-001", **kwargs
) -> OutgoingMessage:
    message = compose_message(
        sender="Supplier Eval <eval@example.com>",
        to=list(to),
        subject=subject,
        rendered=RENDERED,
        message_key=key,
        **kwargs,
    )
    recipients = tuple(address.addr_spec for address in message["To"].addresses)
    return OutgoingMessage(key, sender=message["From"].addresses[0].addr_spec, recipients=recipients,
                           raw=message.as_bytes())


def parsed_id(item: OutgoingMessage) -> str:
    return str(email.message_from_bytes(item.raw, policy=email.policy.default)["Message-ID"])


def plain(controller, **kwargs) -> SmtpSettings:
    return SmtpSettings(host=HOST, port=controller.port, security="none", timeout_seconds=5, **kwargs)


# ---- composing ----------------------------------------------------------------------------------------


def test_message_structure_text_first_then_html_and_csv_attachment():
    item = make(
        "run-1/S-001",
        attachments=[("late lines.csv", "po_id,name\nPO-1,Müller\n".encode(), "text/csv")],
        date=dt.datetime(2026, 11, 24, 2, 0, tzinfo=dt.UTC),
    )
    parsed = email.message_from_bytes(item.raw, policy=email.policy.default)
    types = [part.get_content_type() for part in parsed.walk()]
    assert types == ["multipart/mixed", "multipart/alternative", "text/plain", "text/html", "text/csv"]
    assert parsed["Message-ID"] == f"<{safe_key('run-1/S-001')}@supplier-eval>"
    assert parsed["Date"].datetime == dt.datetime(2026, 11, 24, 2, 0, tzinfo=dt.UTC)
    attachment = next(parsed.iter_attachments())
    assert attachment.get_filename() == "late lines.csv"
    assert attachment.get_payload(decode=True) == "po_id,name\nPO-1,Müller\n".encode()
    assert attachment.get_content() == "po_id,name\nPO-1,Müller\n"
    assert "&" in parsed.get_body(("plain",)).get_content()


def test_message_is_deterministic_for_the_same_key_and_date():
    when = dt.datetime(2026, 11, 24, tzinfo=dt.UTC)
    first, second = make("k-1", date=when), make("k-1", date=when)
    assert first.raw == second.raw
    assert parsed_id(first) != parsed_id(make("k-2", date=when))


def test_message_keys_are_sanitised_but_stay_distinct():
    assert safe_key("run-7.S-001") == "run-7.S-001"
    assert safe_key("a/b") != safe_key("a:b")
    assert set(safe_key("../../etc/passwd\r\n")) <= set("abcdefghijklmnopqrstuvwxyz0123456789.-")
    with pytest.raises(ConfigError):
        safe_key("  ")


def test_header_injection_from_a_supplier_name_cannot_add_a_header():
    name = "Smith & Sons\r\nBcc: evil@x.example\r\n\r\n<b>body</b>"
    item = make("inject", subject=f"Supplier evaluation: {name}")
    raw = item.raw
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Bcc"] is None
    assert "evil@x.example" not in [a.addr_spec for a in parsed["To"].addresses]
    assert "\n" not in parsed["Subject"] and "Bcc: evil@x.example" in parsed["Subject"]
    assert [key for key, _ in parsed.items()].count("Subject") == 1


@pytest.mark.parametrize(
    "bad",
    [
        "buyer@example.com\r\nBcc: evil@x.example",
        "buyer@example.com\nevil@x.example",
        "not an address",
        "buyer@",
        "@example.com",
        "buyer@exa mple.com",
        "a@b.example, evil@x.example",
        "jörg@example.de",  # passed the old lax record check, so failed the run at compose time
        '"x"@y.com',
    ],
)
def test_bad_or_injected_addresses_are_config_errors(bad):
    with pytest.raises(ConfigError):
        make("bad", to=[bad])
    with pytest.raises(ConfigError):
        compose_message(sender=bad, to=["buyer@example.com"], subject="s", rendered=RENDERED, message_key="k")


def test_missing_recipient_is_a_config_error():
    with pytest.raises(ConfigError, match="missing"):
        make("none", to=[None])
    with pytest.raises(ConfigError, match="at least one recipient"):
        make("empty", to=[])


def test_display_names_are_quoted_and_trailing_newlines_tolerated():
    item = make("names", to=['"Quality, Manager" <qm@example.com>', "buyer@example.com\n"])
    parsed = email.message_from_bytes(item.raw, policy=email.policy.default)
    assert [a.addr_spec for a in parsed["To"].addresses] == ["qm@example.com", "buyer@example.com"]
    assert parsed["To"].addresses[0].display_name == "Quality, Manager"


# ---- outbox folder ------------------------------------------------------------------------------------


def test_outbox_writes_parseable_eml_files_atomically_and_idempotently(tmp_path):
    outbox = tmp_path / "outbox"
    items = [make("run-1/S-001"), make("run-1/S-002", to=["other@example.com"])]
    seen: list[DeliveryResult] = []
    results = deliver_messages(items, smtp=None, outbox_dir=outbox, on_result=seen.append)
    assert [r.key for r in results] == ["run-1/S-001", "run-1/S-002"] and seen == results
    assert all(r.ok and r.transport == "outbox" and r.attempts == 1 and r.error is None for r in results)
    files = sorted(outbox.iterdir())
    assert [f.name for f in files] == sorted(
        Path(r.location).name for r in results
    )  # no temp files left over
    first = outbox_path(outbox, "run-1/S-001")
    parsed = email.message_from_bytes(first.read_bytes(), policy=email.policy.default)
    assert parsed["To"].addresses[0].addr_spec == "buyer@example.com"
    assert parsed.get_body(("html",)).get_content_type() == "text/html"
    before = first.read_bytes()
    again = deliver_messages(items[:1], smtp=None, outbox_dir=outbox)
    assert again[0].ok and first.read_bytes() == before and len(list(outbox.iterdir())) == 2


def test_a_message_stored_as_bytes_is_delivered_unchanged_to_the_ledgers_envelope(tmp_path):
    # The flows keep composed messages in the outbox ledger as bytes, with their recipients, and send those.
    rendered = Rendered(html="<p>" + "Müller &amp; Söhne — " * 300 + "</p>", text="Müller & Söhne\n" * 3)
    original = compose_message(
        sender="eval@example.com",
        to=["buyer@example.com"],
        subject="Müller & Söhne",
        rendered=rendered,
        message_key="ledger-1",
    )
    stored = original.as_bytes()
    ledger_message = OutgoingMessage("ledger-1", sender="eval@example.com", recipients=("buyer@example.com",),
                                     raw=stored)
    handler = Recorder()
    with smtp_server(handler) as controller:
        result = deliver_messages([ledger_message], smtp=plain(controller), outbox_dir=tmp_path)[0]
    assert result.ok
    assert handler.envelopes[0][:2] == ("eval@example.com", ["buyer@example.com"])
    raw = handler.envelopes[0][2]
    assert raw.rstrip(b"\r\n") == stored.rstrip(b"\r\n")  # the ledger's bytes, not a re-serialisation
    headers, _, body = raw.partition(b"\r\n\r\n")
    assert max(len(line) for line in headers.split(b"\r\n")) <= 998  # RFC 5322's hard limit
    assert max(len(line) for line in body.split(b"\r\n")) <= 78  # quoted-printable: no over-long lines
    got = handler.messages()[0]
    assert got["Message-ID"] == "<ledger-1@supplier-eval>" and got["Subject"] == "Müller & Söhne"
    assert got.get_body(("html",)).get_content().rstrip() == rendered.html
    files = [
        deliver_messages([ledger_message], smtp=None, outbox_dir=tmp_path / "outbox")[0].location
        for _ in range(2)
    ]
    assert Path(files[0]).read_bytes() == stored  # the outbox file is byte-for-byte the composed message


def test_a_failing_callback_does_not_stop_the_batch(tmp_path):
    handler = Recorder()
    calls: list[str] = []

    def flaky_ledger(result: DeliveryResult) -> None:
        calls.append(result.key)
        raise RuntimeError("ledger is locked")

    with smtp_server(handler) as controller, pytest.raises(RuntimeError, match="ledger is locked"):
        deliver_messages(
            [make("cb-1"), make("cb-2"), make("cb-3")],
            smtp=plain(controller),
            outbox_dir=tmp_path,
            on_result=flaky_ledger,
        )
    assert len(handler.envelopes) == 3  # every message still went out before the error was raised
    assert sorted(calls) == ["cb-1", "cb-2", "cb-3"]  # and the callback was offered every result


def test_duplicate_keys_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="share the key"):
        deliver_messages([make("same"), make("same")], smtp=None, outbox_dir=tmp_path)


# ---- SMTP ---------------------------------------------------------------------------------------------


def test_smtp_delivers_recipients_subject_text_and_html(tmp_path):
    handler = Recorder()
    with smtp_server(handler) as controller:
        results = deliver_messages(
            [
                make("m-1", to=["a@example.com", "Quality <q@example.com>"], subject="Report A"),
                make("m-2", to=["b@example.com"], subject="Report B"),
            ],
            smtp=plain(controller),
            outbox_dir=tmp_path,
            **FAST,
        )
    assert [(r.key, r.ok, r.transport, r.attempts, r.error) for r in results] == [
        ("m-1", True, "smtp", 1, None),
        ("m-2", True, "smtp", 1, None),
    ]
    assert results[0].location == f"{HOST}:{controller.port}"
    by_subject = {
        m["Subject"]: (env, m) for env, m in zip(handler.envelopes, handler.messages(), strict=True)
    }
    (sender, rcpts, _), message = by_subject["Report A"]
    assert sender == "eval@example.com" and sorted(rcpts) == ["a@example.com", "q@example.com"]
    assert (
        message.get_body(("plain",)).get_content().replace("\r\n", "\n") == RENDERED.text
    )  # CRLF on the wire
    assert "Smith &amp; Sons" in message.get_body(("html",)).get_content()
    assert by_subject["Report B"][0][1] == ["b@example.com"]
    assert not list(tmp_path.iterdir())  # SMTP mode writes no outbox files


def test_starttls_with_self_signed_certificate_and_auth_from_environment(
    tmp_path, monkeypatch, server_tls, client_tls
):
    monkeypatch.setenv("SUPPLIER_EVAL_SMTP_USER", USER)
    monkeypatch.setenv("SUPPLIER_EVAL_SMTP_PASSWORD", PASSWORD)
    handler = Recorder()
    with smtp_server(
        handler,
        tls_context=server_tls,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    ) as controller:
        settings = SmtpSettings(host=HOST, port=controller.port, security="starttls", timeout_seconds=5)
        results = deliver_messages(
            [make("tls-1")], smtp=settings, outbox_dir=tmp_path, tls_context=client_tls, **FAST
        )
    assert results[0].ok, results[0].error
    assert handler.envelopes[0][1] == ["buyer@example.com"]
    assert handler.sessions == [(True, True)]  # upgraded to TLS, then logged in


def test_wrong_password_is_a_permanent_failure_without_hanging(tmp_path, monkeypatch, server_tls, client_tls):
    monkeypatch.setenv("SUPPLIER_EVAL_SMTP_USER", USER)
    monkeypatch.setenv("SUPPLIER_EVAL_SMTP_PASSWORD", "wrong")
    handler = Recorder()
    with smtp_server(
        handler,
        tls_context=server_tls,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    ) as controller:
        settings = SmtpSettings(host=HOST, port=controller.port, timeout_seconds=5)
        results = deliver_messages(
            [make("auth-1")], smtp=settings, outbox_dir=tmp_path, tls_context=client_tls, retries=3, **FAST
        )
    result = results[0]
    assert not result.ok and result.attempts == 1
    assert "refused the login" in result.error and "535" in result.error and "not retried" in result.error
    assert handler.envelopes == []


def test_untrusted_certificate_is_reported_not_retried(tmp_path, server_tls):
    with smtp_server(Recorder(), tls_context=server_tls, require_starttls=True) as controller:
        settings = SmtpSettings(host=HOST, port=controller.port, timeout_seconds=5)
        result = deliver_messages([make("untrusted")], smtp=settings, outbox_dir=tmp_path, **FAST)[0]
    assert not result.ok and result.attempts == 1 and "TLS" in result.error


def test_implicit_tls(tmp_path, server_tls, client_tls):
    handler = Recorder()
    with smtp_server(handler, ssl_context=server_tls) as controller:
        settings = SmtpSettings(host=HOST, port=controller.port, security="tls", timeout_seconds=5)
        result = deliver_messages(
            [make("tls-direct")], smtp=settings, outbox_dir=tmp_path, tls_context=client_tls, **FAST
        )[0]
    assert result.ok, result.error  # a plain-text client could not have talked to this TLS-only listener
    assert len(handler.envelopes) == 1


def test_451_is_retried_and_delivered_on_the_second_attempt(tmp_path):
    handler = FlakyOnce()
    with smtp_server(handler) as controller:
        result = deliver_messages([make("flaky")], smtp=plain(controller), outbox_dir=tmp_path, **FAST)[0]
    assert result.ok and result.attempts == 2 and result.error is None
    assert handler.calls == 2 and len(handler.envelopes) == 1


def test_550_is_not_retried(tmp_path):
    handler = Rejecting()
    with smtp_server(handler) as controller:
        result = deliver_messages(
            [make("spam")], smtp=plain(controller), outbox_dir=tmp_path, retries=3, **FAST
        )[0]
    assert not result.ok and result.attempts == 1 and handler.calls == 1
    assert "550" in result.error and "not retried" in result.error


def test_connection_refused_is_retried_then_reported(tmp_path):
    settings = SmtpSettings(host=HOST, port=free_port(), security="none", timeout_seconds=2)
    result = deliver_messages([make("nobody-home")], smtp=settings, outbox_dir=tmp_path, retries=2, **FAST)[0]
    assert not result.ok and result.attempts == 3
    assert "gave up after 3 attempts" in result.error and f"{HOST}:{settings.port}" in result.error


def test_a_server_that_never_answers_times_out_and_is_retried(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:  # accepts connections, never speaks
        silent.bind((HOST, 0))
        silent.listen(8)
        settings = SmtpSettings(host=HOST, port=silent.getsockname()[1], security="none", timeout_seconds=0.3)
        result = deliver_messages([make("silent")], smtp=settings, outbox_dir=tmp_path, retries=1, **FAST)[0]
    assert not result.ok and result.attempts == 2 and "timed out" in result.error


def test_concurrency_bound_is_respected_and_results_keep_input_order(tmp_path):
    handler = Slow()
    items = [make(f"c-{i}", subject=f"Report {i}") for i in range(6)]
    seen: list[str] = []
    with smtp_server(handler) as controller:
        results = deliver_messages(
            items,
            smtp=plain(controller),
            outbox_dir=tmp_path,
            concurrency=2,
            on_result=lambda r: seen.append(r.key),
            **FAST,
        )
    assert [r.key for r in results] == [f"c-{i}" for i in range(6)] and all(r.ok for r in results)
    assert sorted(seen) == sorted(r.key for r in results)
    assert handler.peak == 2  # in parallel, but never more than the bound


def test_works_when_an_event_loop_is_already_running(tmp_path):
    handler = Recorder()
    callback_threads: set[int] = set()

    async def inside_async_code():
        # Called synchronously from a coroutine, as a Prefect task or notebook might.
        return deliver_messages(
            [make("loop-1"), make("loop-2")],
            smtp=plain(controller),
            outbox_dir=tmp_path,
            on_result=lambda r: callback_threads.add(threading.get_ident()),
            **FAST,
        )

    with smtp_server(handler) as controller:
        results = asyncio.run(inside_async_code())
    assert all(r.ok for r in results) and len(handler.envelopes) == 2
    assert callback_threads == {threading.get_ident()}  # the ledger callback runs in the caller's thread


def test_half_configured_credentials_are_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SUPPLIER_EVAL_SMTP_USER", USER)
    monkeypatch.delenv("SUPPLIER_EVAL_SMTP_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="SUPPLIER_EVAL_SMTP_PASSWORD"):
        deliver_messages([make("x")], smtp=SmtpSettings(host=HOST), outbox_dir=tmp_path)


def test_password_is_never_sent_unencrypted_to_a_remote_host(tmp_path, monkeypatch):
    monkeypatch.setenv("SUPPLIER_EVAL_SMTP_USER", USER)
    monkeypatch.setenv("SUPPLIER_EVAL_SMTP_PASSWORD", PASSWORD)
    with pytest.raises(ConfigError, match="unencrypted"):
        deliver_messages(
            [make("x")], smtp=SmtpSettings(host="mail.example.com", security="none"), outbox_dir=tmp_path
        )


def test_settings_validate_and_are_frozen():
    settings = SmtpSettings(host="mail.example.com")
    assert (settings.port, settings.security, settings.timeout_seconds) == (587, "starttls", 30)
    with pytest.raises(pydantic.ValidationError):
        settings.port = 25  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        SmtpSettings(host="mail.example.com", security="ssl")  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError):  # secrets are not settings: only env var names are
        SmtpSettings(host="mail.example.com", password="hunter2")  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError):
        SmtpSettings(host="mail.example.com", port=0)


# ---- a pool of reused connections ---------------------------------------------------------------------


def test_many_messages_go_over_a_few_reused_connections(tmp_path):
    handler = Recorder()
    items = [make(f"pool-{i}", to=[f"buyer{i}@example.com"]) for i in range(30)]
    with smtp_server(handler) as controller:
        results = deliver_messages(items, smtp=plain(controller), outbox_dir=tmp_path, concurrency=3, **FAST)
    assert all(r.ok and r.attempts == 1 for r in results)
    assert sorted(to[0] for _, to, _ in handler.envelopes) == sorted(f"buyer{i}@example.com" for i in range(30))
    assert 1 <= handler.connections <= 3  # not one connection per message


def test_a_server_that_fails_twice_with_4xx_gets_the_message_on_the_third_attempt(tmp_path):
    handler = FailingTimes(2)
    with smtp_server(handler) as controller:
        result = deliver_messages([make("twice")], smtp=plain(controller), outbox_dir=tmp_path, retries=3, **FAST)[0]
    assert (result.ok, result.attempts, result.error, result.permanent) == (True, 3, None, False)
    assert handler.calls == 3 and len(handler.envelopes) == 1


def test_a_dropped_connection_is_reopened_and_the_message_sent_again(tmp_path):
    handler = Dropping(2)
    items = [make(f"drop-{i}") for i in range(5)]
    with smtp_server(handler) as controller:
        results = deliver_messages(items, smtp=plain(controller), outbox_dir=tmp_path, concurrency=1, **FAST)
    assert [r.attempts for r in results] == [1, 2, 1, 1, 1] and all(r.ok for r in results)
    assert len(handler.envelopes) == 5 and handler.connections == 2  # the one that hung up, and its successor


def test_one_refused_recipient_is_permanent_and_the_connection_carries_on_after_rset(tmp_path):
    handler = RefusingRecipient("gone@example.com")
    items = [make("r-1"), make("r-2", to=["gone@example.com"]), make("r-3")]
    with smtp_server(handler) as controller:
        results = deliver_messages(items, smtp=plain(controller), outbox_dir=tmp_path, concurrency=1, retries=3,
                                   **FAST)
    refused = results[1]
    assert (refused.ok, refused.permanent, refused.attempts) == (False, True, 1) and handler.refusals == 1
    assert "gone@example.com (550 5.1.1 No such user here)" in refused.error and "not retried" in refused.error
    assert [r.ok for r in (results[0], results[2])] == [True, True]
    assert len(handler.envelopes) == 2 and handler.connections == 1  # the same connection before and after


def test_starttls_and_login_once_per_connection_for_many_messages(tmp_path, monkeypatch, server_tls, client_tls):
    monkeypatch.setenv("SUPPLIER_EVAL_SMTP_USER", USER)
    monkeypatch.setenv("SUPPLIER_EVAL_SMTP_PASSWORD", PASSWORD)
    handler = Recorder()
    with smtp_server(handler, tls_context=server_tls, require_starttls=True, authenticator=authenticator,
                     auth_required=True) as controller:
        settings = SmtpSettings(host=HOST, port=controller.port, security="starttls", timeout_seconds=5)
        results = deliver_messages([make(f"tls-{i}") for i in range(6)], smtp=settings, outbox_dir=tmp_path,
                                   tls_context=client_tls, concurrency=2, **FAST)
    assert all(r.ok for r in results)
    assert handler.sessions == [(True, True)] * 6 and handler.connections <= 2


def test_a_refused_login_fails_every_message_for_good_without_trying_each(tmp_path, monkeypatch, server_tls,
                                                                          client_tls):
    monkeypatch.setenv("SUPPLIER_EVAL_SMTP_USER", USER)
    monkeypatch.setenv("SUPPLIER_EVAL_SMTP_PASSWORD", "wrong")
    logins = []

    def counting(server, session, envelope, mechanism, auth_data):
        logins.append(tuple(session.peer[:2]))
        return authenticator(server, session, envelope, mechanism, auth_data)

    with smtp_server(Recorder(), tls_context=server_tls, require_starttls=True, authenticator=counting,
                     auth_required=True) as controller:
        settings = SmtpSettings(host=HOST, port=controller.port, timeout_seconds=5)
        results = deliver_messages([make(f"a-{i}") for i in range(10)], smtp=settings, outbox_dir=tmp_path,
                                   tls_context=client_tls, concurrency=1, retries=3, **FAST)
    assert all(not r.ok and r.permanent and r.attempts == 1 and "535" in r.error for r in results)
    assert len(set(logins)) == 1  # one connection tried to log in, not one per message
