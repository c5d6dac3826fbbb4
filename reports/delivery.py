"""Deliver composed messages: over SMTP (aiosmtplib) or, with no server configured, to an outbox folder.

SMTP delivery uses a small pool of connections (at most ``concurrency``), each reused for many messages in
turn (a refused message is followed by RSET, a dropped connection is reopened for the next message). It
retries temporary failures (connection problems, timeouts, disconnects, 4xx replies) with exponential
backoff, and never retries permanent ones (5xx replies, failed authentication, TLS certificate problems):
those come back with ``permanent=True``. A failed message is a ``DeliveryResult`` with ``ok=False`` and a
readable ``error``; nothing raises per message. Credentials are read from environment variables named in
``SmtpSettings``, never from files. :func:`stop_sending` (for a signal handler) lets the messages on the wire
finish and report, starts no other, and makes the batch raise ``KeyboardInterrupt``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import queue
import signal
import ssl
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiosmtplib
import pydantic

from reports.mail import safe_key
from suppliers.errors import ConfigError, DeliveryError
from suppliers.files import write_atomically

__all__ = ["SmtpSettings", "Transport", "OutgoingMessage", "DeliveryResult", "deliver_messages", "outbox_path",
           "stop_sending"]

MAX_BACKOFF_SECONDS = 300.0


class SmtpSettings(pydantic.BaseModel, frozen=True, extra="forbid"):
    """Where and how to send mail. Secrets are not stored here, only the names of the variables with them."""

    host: str = pydantic.Field(min_length=1, description="SMTP server host name or IP address.")
    port: int = pydantic.Field(587, ge=1, le=65535, description="587 for STARTTLS, 465 for TLS, 25 for none.")
    security: Literal["starttls", "tls", "none"] = pydantic.Field(
        "starttls",
        description="starttls: upgrade after connecting; tls: TLS from the start; none: plain text.",
    )
    timeout_seconds: float = pydantic.Field(30, gt=0, description="Timeout for each network operation.")
    username_env: str = pydantic.Field(
        "SUPPLIER_EVAL_SMTP_USER", description="Environment variable with the user."
    )
    password_env: str = pydantic.Field(
        "SUPPLIER_EVAL_SMTP_PASSWORD", description="Environment variable with the password."
    )

    @property
    def location(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class OutgoingMessage:
    """A message ready to go: its outbox-ledger key, its envelope, and its bytes of record.

    ``raw`` is sent byte for byte (only line endings are made CRLF): a message is never parsed and serialised
    again, which would re-fold its headers differently (a leading space in a long Subject).
    """

    key: str
    sender: str  # the envelope sender (MAIL FROM), a bare address
    recipients: tuple[str, ...]  # the envelope recipients (RCPT TO)
    raw: bytes

    def wire_bytes(self) -> bytes:
        return self.raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@dataclass(frozen=True)
class Transport:
    """Where messages go: an SMTP server, or (``smtp`` None) ``.eml`` files in the outbox folder."""

    smtp: SmtpSettings | None
    outbox_dir: Path
    concurrency: int = 4
    retries: int = 3

    @property
    def name(self) -> str:
        return "smtp" if self.smtp else "outbox"

    @property
    def location(self) -> str:
        return self.smtp.location if self.smtp else str(self.outbox_dir)


@dataclass(frozen=True)
class DeliveryResult:
    """What happened to one message; ``ok=True`` may carry an ``error`` when some recipients were refused."""

    key: str
    ok: bool
    transport: str  # "smtp" | "outbox"
    location: str  # the .eml path, or "host:port"
    attempts: int
    error: str | None = None
    permanent: bool = False  # failed in a way that trying again will not change (5xx, login, TLS)


def outbox_path(outbox_dir: Path, key: str) -> Path:
    """The file a message with this key is written to in outbox mode."""
    return Path(outbox_dir) / f"{safe_key(key)}.eml"


def deliver_messages(
    messages: Sequence[OutgoingMessage],
    *,
    smtp: SmtpSettings | None,
    outbox_dir: Path,
    concurrency: int = 4,
    retries: int = 3,
    backoff_seconds: float = 1.0,
    tls_context: ssl.SSLContext | None = None,
    on_result: Callable[[DeliveryResult], None] | None = None,
    on_results: Callable[[list[DeliveryResult]], None] | None = None,
) -> list[DeliveryResult]:
    """Deliver every message; return one result per message, in the input order.

    ``smtp=None`` writes ``<outbox_dir>/<key>.eml`` files instead. ``on_result`` is called in the calling
    thread as each message finishes, so the caller can mark its ledger; ``on_results`` likewise with the
    results that finished together (one ledger transaction for several). A connection takes its next message
    only once its last one is reported, so at any moment at most ``concurrency`` messages are sent but not
    recorded. If a callback raises, the batch still finishes and its first error is raised at the end. Blocks
    until all are done; safe to call from synchronous code whether or not an event loop runs in this thread.
    """
    if concurrency < 1:
        raise ConfigError(f"delivery concurrency must be at least 1, got {concurrency}")
    if retries < 0:
        raise ConfigError(f"delivery retries must be 0 or more, got {retries}")
    if backoff_seconds < 0:
        raise ConfigError(f"delivery backoff must be 0 seconds or more, got {backoff_seconds}")
    _check_unique_keys(messages)
    report = _Reporter(on_result, on_results)
    with _stop_gracefully_on_signals():
        if smtp is None:
            results = _deliver_to_outbox(messages, Path(outbox_dir), report)
        else:
            run = _SmtpRun(smtp, _credentials(smtp), concurrency, retries, backoff_seconds, tls_context)
            results = _run_sync(run, list(messages), report)
    report.raise_first_error()
    return results


# ---- stopping on a signal -----------------------------------------------------------------------------

_STOPPERS: dict[int, Callable[[], None]] = {}
_STOPPERS_LOCK = threading.Lock()


def stop_sending() -> bool:
    """Ask every batch this process is sending to stop once the messages on the wire are answered.

    Safe to call from a signal handler. Returns False when nothing is being sent (the caller may then stop
    at once).
    """
    with _STOPPERS_LOCK:
        stoppers = list(_STOPPERS.values())
    for stop in stoppers:
        stop()
    return bool(stoppers)


@contextlib.contextmanager
def _stop_gracefully_on_signals():
    """While sending, SIGTERM and Ctrl-C first stop the batch cleanly (see :func:`stop_sending`); a second one
    stops at once. Afterwards the signal is raised again for whatever handled it before (a flow engine's, the
    CLI's, the default), so the process stops as it would have, only without a message half-recorded."""
    if threading.current_thread() is not threading.main_thread():  # signals reach only the main thread
        yield
        return
    received: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signum)
        stop_sending()

    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, before in previous.items():
            if before is not None:  # None: set outside Python, cannot be put back
                signal.signal(signum, before)
        if received:
            os.kill(os.getpid(), received[0])


@contextlib.contextmanager
def _stoppable(stop: Callable[[], None]):
    token = id(stop)
    with _STOPPERS_LOCK:
        _STOPPERS[token] = stop
    try:
        yield
    finally:
        with _STOPPERS_LOCK:
            _STOPPERS.pop(token, None)


# ---- outbox folder ------------------------------------------------------------------------------------


def _deliver_to_outbox(
    messages: Sequence[OutgoingMessage], outbox_dir: Path, report: Callable[[DeliveryResult], None]
) -> list[DeliveryResult]:
    try:
        outbox_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeliveryError(
            f"cannot create the outbox folder: {exc.strerror or exc}",
            where=str(outbox_dir),
            fix="Choose a writable folder for the outbox, or configure an SMTP server.",
        ) from exc
    results = []
    stopped = threading.Event()
    with _stoppable(stopped.set):
        for item in messages:
            if stopped.is_set():
                raise KeyboardInterrupt
            results.append(_write_to_outbox(item, outbox_dir))
            report([results[-1]])
    return results


def _write_to_outbox(item: OutgoingMessage, outbox_dir: Path) -> DeliveryResult:
    path = outbox_path(outbox_dir, item.key)
    try:
        # CRLF whatever policy the message was parsed with: the same message always gives the same file.
        write_atomically(path, item.wire_bytes())
    except OSError as exc:
        return DeliveryResult(item.key, False, "outbox", str(path), 1, f"could not write {path}: {exc.strerror or exc}")
    return DeliveryResult(item.key, True, "outbox", str(path), 1, None)


# ---- SMTP ---------------------------------------------------------------------------------------------


def _credentials(smtp: SmtpSettings) -> tuple[str, str] | None:
    username = os.environ.get(smtp.username_env) or None
    password = os.environ.get(smtp.password_env) or None
    if username is None and password is None:
        return None
    if username is None or password is None:
        missing = smtp.username_env if username is None else smtp.password_env
        present = smtp.password_env if username is None else smtp.username_env
        raise ConfigError(
            f"{present} is set but {missing} is not",
            where="SMTP settings",
            fix=f"Set both {smtp.username_env} and {smtp.password_env}, or neither for no login.",
        )
    if smtp.security == "none" and not _is_loopback(smtp.host):
        raise ConfigError(
            f"refusing to send the SMTP password unencrypted to {smtp.location}",
            where="SMTP settings",
            fix='Set security to "starttls" or "tls".',
        )
    return username, password


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _SmtpRun:
    """One batch of SMTP deliveries over a small pool of connections, each reused for many messages."""

    def __init__(
        self,
        smtp: SmtpSettings,
        credentials: tuple[str, str] | None,
        concurrency: int,
        retries: int,
        backoff_seconds: float,
        tls_context: ssl.SSLContext | None,
    ) -> None:
        self.smtp = smtp
        self.credentials = credentials
        self.concurrency = concurrency
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.tls_context = tls_context
        self.connections_opened = 0
        self.stopping = False
        self._wake: asyncio.Queue[tuple[OutgoingMessage, int] | None] | None = None
        self._broken: BaseException | None = None  # a permanent connection failure: every message would meet it

    def stop(self) -> None:
        """Take no new message; the ones on the wire finish and are reported (called in the loop's thread)."""
        self.stopping = True
        if self._wake is not None:
            for _ in range(self.concurrency):
                self._wake.put_nowait(None)

    async def deliver_all(self, messages: list[OutgoingMessage], record: _Record) -> list[DeliveryResult]:
        loop = asyncio.get_running_loop()
        with _stoppable(lambda: loop.call_soon_threadsafe(self.stop)):
            return await self._deliver_all(messages, record)

    async def _deliver_all(self, messages: list[OutgoingMessage], record: _Record) -> list[DeliveryResult]:
        work: asyncio.Queue[tuple[OutgoingMessage, int] | None] = asyncio.Queue()
        self._wake = work
        for item in messages:
            work.put_nowait((item, 0))
        results: dict[str, DeliveryResult] = {}
        outstanding = len(messages)
        waiting: set[asyncio.Task[None]] = set()
        unrecorded: list[tuple[DeliveryResult, asyncio.Future[None]]] = []

        async def record_together() -> None:
            nonlocal unrecorded
            await asyncio.sleep(0)  # the results that come in with this one are recorded with it
            while unrecorded:
                batch, unrecorded = unrecorded, []
                await record([result for result, _ in batch])
                for _, recorded in batch:
                    recorded.set_result(None)

        async def finish(result: DeliveryResult) -> None:
            nonlocal outstanding
            results[result.key] = result
            recorded = asyncio.get_running_loop().create_future()
            unrecorded.append((result, recorded))
            if len(unrecorded) == 1:
                task = asyncio.create_task(record_together())
                waiting.add(task)
                task.add_done_callback(waiting.discard)
            await recorded
            outstanding -= 1
            if outstanding == 0:
                for _ in range(workers):
                    work.put_nowait(None)

        async def retry_later(item: OutgoingMessage, attempts: int, delay: float) -> None:
            await asyncio.sleep(delay)
            work.put_nowait((item, attempts))

        async def worker() -> None:
            client: aiosmtplib.SMTP | None = None
            try:
                while not self.stopping and (job := await work.get()) is not None:
                    if self.stopping:
                        break
                    item, attempts = job
                    attempts += 1
                    try:
                        client = await self._connected(client)
                        errors, _ = await client.sendmail(item.sender, list(item.recipients), item.wire_bytes(),
                                                          timeout=self.smtp.timeout_seconds)
                    except Exception as exc:  # every failure becomes a result, never an exception
                        if client is not None and not client.is_connected:
                            client = None  # dropped: the next message opens a new connection
                        temporary = _is_temporary(exc)
                        if temporary and attempts <= self.retries and not self.stopping:
                            delay = min(self.backoff_seconds * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)
                            task = asyncio.create_task(retry_later(item, attempts, delay))
                            waiting.add(task)
                            task.add_done_callback(waiting.discard)
                            continue
                        await finish(self._failure(item, attempts, exc, temporary))
                        continue
                    await finish(self._success(item, attempts, errors))
            finally:
                if client is not None:
                    with contextlib.suppress(Exception):
                        await client.quit(timeout=min(self.smtp.timeout_seconds, 5))

        workers = min(self.concurrency, max(len(messages), 1))
        if messages:
            await asyncio.gather(*(worker() for _ in range(workers)))
        for task in waiting:
            task.cancel()
        if self.stopping:
            raise KeyboardInterrupt
        return [results[item.key] for item in messages]

    async def _connected(self, client: aiosmtplib.SMTP | None) -> aiosmtplib.SMTP:
        if client is not None and client.is_connected:
            return client
        if self._broken is not None:
            raise self._broken
        username, password = self.credentials or (None, None)
        client = aiosmtplib.SMTP(
            hostname=self.smtp.host,
            port=self.smtp.port,
            username=username,
            password=password,
            timeout=self.smtp.timeout_seconds,
            use_tls=self.smtp.security == "tls",
            # Explicit False for "none": aiosmtplib's default (None) upgrades opportunistically.
            start_tls=self.smtp.security == "starttls",
            tls_context=self.tls_context,
        )
        try:
            await client.connect()
        except Exception as exc:
            client.close()  # a connection left half-open would hold the server's session until it times out
            if not _is_temporary(exc):
                self._broken = exc  # a refused login or an untrusted certificate will not pass for the next one
            raise
        self.connections_opened += 1
        return client

    def _failure(self, item: OutgoingMessage, attempts: int, exc: BaseException, temporary: bool) -> DeliveryResult:
        verdict = (
            "permanent failure, not retried"
            if not temporary
            else f"gave up after {attempts} attempt{'s' if attempts != 1 else ''}"
        )
        return DeliveryResult(item.key, False, "smtp", self.smtp.location, attempts,
                              f"{_describe(exc, self.smtp)} ({verdict})", permanent=not temporary)

    def _success(self, item: OutgoingMessage, attempts: int, errors: dict[str, Any]) -> DeliveryResult:
        # Accepted for at least one recipient. Retrying would send it again to the ones that got it, so a
        # partial refusal is reported but counts as delivered.
        warning = None
        if errors:
            refused = "; ".join(
                f"{address} ({response.code} {response.message})" for address, response in sorted(errors.items())
            )
            warning = f"delivered, but the server refused some recipients: {refused}"
        return DeliveryResult(item.key, True, "smtp", self.smtp.location, attempts, warning)


def _is_temporary(exc: BaseException) -> bool:
    """Worth trying again later? 4xx replies and network trouble are; 5xx, bad credentials and TLS are not."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [refusal.code for refusal in exc.recipients]
        return bool(codes) and all(400 <= code < 500 for code in codes)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        # Includes SMTPAuthenticationError: 535 (bad credentials) is permanent, 454 (temporary auth failure)
        # is not. Codes outside 4xx/5xx come from a garbled reply or a dropped connection: retry.
        return not 500 <= exc.code < 600
    if _tls_problem(exc):
        return False
    # Network trouble is temporary: refused or dropped connections, timeouts, resolver hiccups (aiosmtplib's
    # connect, disconnect and timeout errors are ConnectionError / TimeoutError, so OSError). Anything else
    # (SMTPNotSupported, ValueError for a bad address, a programming error) is permanent.
    return isinstance(exc, OSError)


def _tls_problem(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _describe(exc: BaseException, smtp: SmtpSettings) -> str:
    where = smtp.location
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return (
            f"{where} refused the login ({exc.code} {exc.message}); check {smtp.username_env} and "
            f"{smtp.password_env}"
        )
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refused = "; ".join(f"{r.recipient} ({r.code} {r.message})" for r in exc.recipients)
        return f"{where} refused every recipient: {refused}"
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return f"{where} refused the sender {exc.sender} ({exc.code} {exc.message})"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{where} answered {exc.code} {exc.message}"
    tls = _tls_problem(exc)
    if tls is not None:
        reason = getattr(tls, "verify_message", None) or getattr(tls, "reason", None) or str(tls)
        return f"TLS with {where} failed: {reason}; check the server certificate and the security setting"
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return f"{where} timed out after {smtp.timeout_seconds:g} s"
    if isinstance(exc, aiosmtplib.SMTPConnectError):
        cause = exc.__cause__
        if isinstance(cause, OSError) and isinstance(cause.errno, int) and cause.errno > 0:
            return f"could not connect to {where}: {os.strerror(cause.errno)}"
        return f"could not connect to {where}: {exc.message}"
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return f"{where} closed the connection: {exc.message}"
    if isinstance(exc, aiosmtplib.SMTPException):
        return f"{where}: {exc.message}"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError):
        return f"could not reach {where}: {text}"
    return f"{type(exc).__name__}: {text}"


# ---- running from synchronous code --------------------------------------------------------------------

_DONE = object()
_Record = Callable[[list[DeliveryResult]], Awaitable[None]]


class _Reporter:
    """Calls ``on_result`` for every result; its first error is raised after the batch, not in the middle.

    Stopping half-way would leave messages sent but unrecorded, and a ledger that failed once may record the
    rest, so it is offered every result.
    """

    def __init__(self, on_result: Callable[[DeliveryResult], None] | None,
                 on_results: Callable[[list[DeliveryResult]], None] | None) -> None:
        self.on_result = on_result
        self.on_results = on_results
        self.error: Exception | None = None

    def __call__(self, batch: list[DeliveryResult]) -> None:
        calls: list[Callable[[], object]] = [] if self.on_results is None else [lambda: self.on_results(batch)]
        if self.on_result is not None:
            calls += [lambda result=result: self.on_result(result) for result in batch]
        for call in calls:
            try:
                call()
            except Exception as exc:  # re-raised by raise_first_error
                self.error = self.error or exc

    def raise_first_error(self) -> None:
        if self.error is not None:
            raise self.error


def _run_sync(run: _SmtpRun, messages: list[OutgoingMessage], report: _Reporter) -> list[DeliveryResult]:
    """Run the async batch to completion from synchronous code; ``report`` always runs in this thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        async def record_here(batch: list[DeliveryResult]) -> None:
            report(batch)

        return asyncio.run(run.deliver_all(messages, record_here))

    # An event loop is already running in this thread (we were called from inside async code): run the batch
    # on its own loop in a worker thread and pump results back here, so the callback sees the caller's thread
    # (SQLite connections, for one, refuse to be used from another thread).
    events: queue.Queue[object] = queue.Queue()
    outcome: dict[str, object] = {}

    async def record_there(batch: list[DeliveryResult]) -> None:
        recorded = threading.Event()
        events.put((batch, recorded))
        await asyncio.to_thread(recorded.wait)

    def worker() -> None:
        try:
            outcome["results"] = asyncio.run(run.deliver_all(messages, record_there))
        except BaseException as exc:  # handed to the calling thread
            outcome["error"] = exc
        finally:
            events.put(_DONE)

    thread = threading.Thread(target=worker, name="supplier-eval-smtp", daemon=True)
    thread.start()
    while (event := events.get()) is not _DONE:
        batch, recorded = event  # type: ignore[misc]
        try:
            report(batch)
        finally:
            recorded.set()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["results"]  # type: ignore[return-value]


def _check_unique_keys(messages: Sequence[OutgoingMessage]) -> None:
    seen: dict[str, str] = {}
    for item in messages:
        name = safe_key(item.key)
        if name in seen:
            raise ConfigError(
                f"two outgoing messages share the key {item.key!r}"
                + (f" (same file name as {seen[name]!r})" if seen[name] != item.key else ""),
                fix="Give every message its own ledger key.",
            )
        seen[name] = item.key
