"""A Prefect API server run as a child of this command, which dies with it — even when this process is SIGKILLed.

Prefect's own temporary server (started at the first flow call when no ``PREFECT_API_URL`` is set) is an
ordinary subprocess: a killed command leaves it running. Ours asks Linux to send it SIGTERM when its parent
dies (``prctl(PR_SET_PDEATHSIG)``), and it is started *before* Prefect is imported, so its start-up overlaps
the import instead of following it.

Two kinds: ``"api"`` is the API alone (what Prefect's temporary server is: no UI, no scheduler), for one-shot
commands; ``"full"`` is ``prefect server start`` with the UI and the scheduler, which ``serve`` needs.
Neither imports prefect in this process; only the standard library.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from suppliers.errors import ConfigError, SupplierEvalError

API_URL_ENV = "PREFECT_API_URL"
_PR_SET_PDEATHSIG = 1


class ServerStartError(SupplierEvalError):
    """The Prefect server this command started did not come up."""

    exit_code = 1


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A ``preexec_fn``: SIGTERM this child when its parent dies; exit at once if the parent is already gone."""

    def arm() -> None:
        if sys.platform.startswith("linux"):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died between fork and prctl: nobody would stop us
            os._exit(0)

    return arm


class PrefectServer:
    """A Prefect server child process on 127.0.0.1, its database in ``home``; ``start``/``stop`` or ``with``."""

    def __init__(self, home: Path, *, kind: Literal["api", "full"] = "api", port: int | None = None,
                 log_file: Path | None = None) -> None:
        self.home = home
        self.kind = kind
        self.port = port or free_port()
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None
        self.process_returncode: int | None = None
        self._log: object = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def command(self) -> list[str]:
        if self.kind == "full":
            return [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                    "--port", str(self.port), "--log-level", "WARNING"]
        import importlib.util

        spec = importlib.util.find_spec("prefect")  # the folder uvicorn imports the app from, without importing it
        assert spec is not None and spec.origin is not None
        return [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(spec.origin).parent.parent), "--factory",
                "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
                "--log-level", "error", "--lifespan", "on"]

    def environment(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key != API_URL_ENV}
        env["PREFECT_HOME"] = str(self.home)
        if self.kind == "full":
            env.update(PREFECT_SERVER_UI_ENABLED="true", PREFECT_UI_ENABLED="true",
                       PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="true")
        else:  # as Prefect's temporary server: API only, no background services
            env.update(PREFECT_SERVER_UI_ENABLED="false", PREFECT_UI_ENABLED="0", PREFECT__SERVER_EPHEMERAL="1",
                       PREFECT__SERVER_FINAL="1")
        return env

    def launch(self) -> None:
        """Start the child without waiting for it (``wait_healthy`` waits)."""
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115 - closed in stop
        self._log = log
        # A session of its own: a terminal's Ctrl-C goes to its whole foreground process group, and a server stopped
        # by it left the run talking to nothing for minutes. This command stops it on the way out, and it dies with
        # this command if that is killed outright.
        self.process = subprocess.Popen(self.command(), env=self.environment(), stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=log, preexec_fn=_die_with_parent(os.getpid()),
                                        start_new_session=True)

    def wait_healthy(self, timeout: float = 90.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise ServerStartError(f"the Prefect server exited with code {self.process_returncode} at start",
                                       where=str(self.log_file or self.home),
                                       fix="See its log; another server may hold the database, or set "
                                           "PREFECT_API_URL to a running server")
            if healthy(self.api_url, timeout=1.0):
                return
            time.sleep(0.1)
        self.stop()
        raise ServerStartError(f"the Prefect server did not answer within {timeout:.0f} s", where=self.url,
                               fix="The machine may be overloaded; try again, or set PREFECT_API_URL to a running "
                                   "server")

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            self.process_returncode = process.returncode
        if hasattr(self._log, "close"):
            self._log.close()  # type: ignore[attr-defined]
        self._log = None

    def __enter__(self) -> PrefectServer:
        self.launch()
        self.wait_healthy()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    """True when a Prefect API answers its health check at ``api_url``."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def configured_api_url() -> str | None:
    """The Prefect API this process is set to use: $PREFECT_API_URL, or Prefect's settings once it is imported."""
    if os.environ.get(API_URL_ENV):
        return os.environ[API_URL_ENV]
    if "prefect" in sys.modules:
        from prefect.settings import get_current_settings

        url = get_current_settings().api.url
        return str(url) if url else None
    return None


@contextmanager
def prefect_api(home: Path, *, before_wait: Callable[[], None] | None = None) -> Iterator[str | None]:
    """Make sure flows in this process talk to a Prefect API that dies with this command.

    With an API configured (``PREFECT_API_URL``), that server is used and nothing is started (yields None).
    Otherwise an API-only server is started as a child and this process pointed at it; ``before_wait``
    (importing the flows) runs while it starts; it is stopped on the way out.
    """
    if configured_api_url():
        if before_wait is not None:
            before_wait()
        yield None
        return
    server = PrefectServer(home, kind="api", log_file=home / "server.log")
    server.launch()
    try:
        os.environ[API_URL_ENV] = server.api_url  # read by Prefect when it is imported after this
        if before_wait is not None:
            before_wait()
        server.wait_healthy()
        with _pointed_at(server.api_url):
            yield server.api_url
    finally:
        os.environ.pop(API_URL_ENV, None)
        with contextlib.suppress(Exception):
            _drain_prefect()
        server.stop()


@contextmanager
def _pointed_at(api_url: str) -> Iterator[None]:
    """Prefect's settings for this process point at ``api_url`` (needed when prefect was imported earlier)."""
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    if str(get_current_settings().api.url or "") == api_url:
        yield
        return
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        yield


def _drain_prefect() -> None:
    """Send Prefect's queued logs and events before its server stops, so none is lost or retried into the void."""
    if "prefect" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    with contextlib.suppress(RuntimeError):
        APILogWorker.drain_all(timeout=5)
    EventsWorker.drain_all(timeout=5)


def require_api(url: str | None) -> str:
    """The API URL to reach, or a one-line error saying how to get one."""
    url = url or os.environ.get(API_URL_ENV)
    if not url:
        raise ConfigError("no Prefect server to send the run to: PREFECT_API_URL is not set", where="environment",
                          fix="Start `supplier-eval serve` and pass the URL it prints with --api-url, or set "
                              "PREFECT_API_URL")
    if not healthy(url):
        raise SupplierEvalError(f"no Prefect server answers at {url}", where="--api-url / PREFECT_API_URL",
                                fix="Start `supplier-eval serve` (it prints its URL), or point PREFECT_API_URL at a "
                                    "running Prefect server")
    return url
