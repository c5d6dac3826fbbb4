"""Test environment: offline and quiet Prefect with a throwaway home, set before anything imports prefect."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import date
from pathlib import Path

import pytest

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="supplier-eval-tests-"))
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("SUPPLIER_EVAL_CONFIG", None)
os.environ.pop("SUPPLIER_EVAL_STORE_URL", None)
os.environ["PREFECT_HOME"] = str(_SESSION_DIR / "prefect")
os.environ["HOME"] = str(_SESSION_DIR / "home")  # nothing a test runs may write to the real home directory
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_SERVER_UI_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
(_SESSION_DIR / "home").mkdir()

from flows import runtime  # noqa: E402

runtime.configure()

SAMPLE_END = date(2026, 6, 30)


@pytest.hookimpl(trylast=True)  # after the session's fixtures are torn down
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _PREFECT_SERVER.release()  # a worker that booted it but ran no test needing it lets go too
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)
    if "PYTEST_XDIST_WORKER" not in os.environ:  # the process that made the shared folder, after its workers
        shutil.rmtree(_SHARED_DIR, ignore_errors=True)


# Shared by the session's processes (pytest -n 2: both workers inherit it from the process that starts them).
if "SUPPLIER_EVAL_TESTS_SHARED" not in os.environ:
    os.environ["SUPPLIER_EVAL_TESTS_SHARED"] = tempfile.mkdtemp(prefix="supplier-eval-shared-")
_SHARED_DIR = Path(os.environ["SUPPLIER_EVAL_TESTS_SHARED"])


class _PrefectServer:
    """The session's temporary Prefect API, started in the background as soon as the tests are collected.

    Starting it (a fresh database, its migrations) takes about ten seconds; the tests that do not need it run
    meanwhile, so the suite does not wait for it. It is the server Prefect's own test harness starts, on a
    PostgreSQL database of its own. With several workers, the first to get there starts it and the
    others use it, so each can take any test; its starter stops it only once every other worker is done with it.
    """

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.url: str | None = None
        self.server: object = None  # set in the worker that started it, which alone stops it
        self.owned = ExitStack()  # its database server, in that worker
        self.users: object = None
        self.done = False
        self.guard = threading.Lock()
        self.error: BaseException | None = None

    def boot(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._start, name="prefect-test-server", daemon=True)
            self.thread.start()

    def _start(self) -> None:
        import fcntl

        try:
            with (_SHARED_DIR / "prefect.lock").open("w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                known = _SHARED_DIR / "prefect.url"
                if known.exists():
                    self.url = known.read_text(encoding="utf-8")
                else:
                    self.server = self._serve()
                    self.url = str(self.server.api_url)
                    known.write_text(self.url, encoding="utf-8")
            with self.guard:
                if not self.done:
                    self.users = (_SHARED_DIR / "prefect.users").open("w")
                    fcntl.flock(self.users, fcntl.LOCK_SH)  # held until this worker is done with it
        except BaseException as exc:  # noqa: BLE001 - raised in the test that needs the server
            self.error = exc

    def _serve(self) -> object:
        from prefect.server.api.server import SubprocessASGIServer
        from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL, temporary_settings

        # On SQLite, flow runs from two workers at once wait on its write lock, some for a minute.
        database = f"postgresql+asyncpg://postgres@127.0.0.1:{self.owned.enter_context(_private_postgres())}/postgres"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        # Its services record task runs and events in batches (by default one database transaction each): the same
        # records, at about a third of the server's CPU time per flow run (0.57 -> 0.21 s measured, 6 evaluations).
        batched = {f"server.services.{service}.{key}": 200 for service in ("task_run_recorder", "event_persister")
                   for key in ("batch_size", "read_batch_size")}
        with temporary_settings(updates={PREFECT_SERVER_DATABASE_CONNECTION_URL: database, **batched}):
            server = SubprocessASGIServer(port=port)
            server.start(timeout=90)
        return server

    def wait(self) -> str:
        self.boot()
        assert self.thread is not None
        self.thread.join()
        if self.error is not None:
            raise self.error
        assert self.url is not None
        return self.url

    def release(self) -> None:
        """This worker is done with the server; the one that started it stops it once every other one is too."""
        import fcntl
        import time

        with self.guard:
            self.done = True
            if self.users is not None:
                self.users.close()  # lets go of its shared lock
                self.users = None
        if self.server is not None:
            with (_SHARED_DIR / "prefect.users").open("w") as users:
                deadline = time.monotonic() + 600
                while time.monotonic() < deadline:
                    try:
                        fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        time.sleep(0.1)
            self.server.stop()
            self.server = None
            self.owned.close()


_PREFECT_SERVER = _PrefectServer()


# The longest tests, started first and in this order: a long test dealt out last keeps one worker busy while the
# other waits. The two that start Prefect servers of their own go before the one that needs the session's server,
# which comes up meanwhile (a test dealt out before it is up only waits for it).
_LONGEST_FIRST = ("test_serve.py::test_serve_comes_up_alone", "test_serve.py::test_ctrl_c_in_a_terminal",
                  "test_shards.py::test_shards_on_a_local_dask_cluster")


def _start_order(item: pytest.Item) -> int:
    return next((rank for rank, name in enumerate(_LONGEST_FIRST) if name in item.nodeid), len(_LONGEST_FIRST))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_start_order)  # stable: the same order in each worker


def pytest_collection_finish(session: pytest.Session) -> None:
    if any("prefect_harness" in getattr(item, "fixturenames", ()) for item in session.items):
        _PREFECT_SERVER.boot()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[str]:
    """The session's temporary Prefect API (see _PrefectServer); yields its URL, set as Prefect's API.

    A test that runs the real command in a subprocess passes the URL on as PREFECT_API_URL, so the child
    uses this server instead of starting a temporary one of its own.
    """
    from urllib.parse import urlsplit

    from prefect.context import _temporary_global_settings_context, get_settings_context
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = _PREFECT_SERVER.wait()
    # A flow run finds this server, not a second one (Prefect keeps its temporary server here). In the worker
    # that started it, that is the server itself; in the others a stand-in this worker never starts or stops.
    server = SubprocessASGIServer(port=urlsplit(url).port)
    server.running = True
    SubprocessASGIServer._instances[None] = server
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}), \
                _temporary_global_settings_context(get_settings_context()):
            yield url
    finally:
        _drain_prefect_workers()  # as Prefect's own harness does: no log or event left to send to a stopped server
        SubprocessASGIServer._instances.pop(None, None)
        _PREFECT_SERVER.release()


def _drain_prefect_workers() -> None:
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        try:
            result = APILogWorker.instance().drain()
            if inspect.isawaitable(result):
                await result
        except RuntimeError:  # never started
            pass
        result = EventsWorker.drain_all()
        if inspect.isawaitable(result):
            await result

    run_coro_as_sync(drain())


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated data set ending on SAMPLE_END, written once as CSV (read-only for tests)."""
    from suppliers.generate import generate_frames, write_sample_data

    folder = tmp_path_factory.mktemp("sample") / "data"
    write_sample_data(generate_frames(suppliers=25, lines=2500, seed=11, end_date=SAMPLE_END), folder, "csv")
    return folder


@pytest.fixture
def workspace(tmp_path: Path, sample_data: Path) -> Path:
    """A working folder with its own copy of the sample data and a settings file using the outbox folder."""
    shutil.copytree(sample_data, tmp_path / "data")
    (tmp_path / "supplier-eval.toml").write_text(
        '[data]\ndir = "data"\n[store]\nurl = "sqlite:///store/supplier-eval.db"\n[output]\ndir = "reports"\n'
        '[mail]\nsender = "supplier-eval@example.org"\nofficers = ["qm@example.org"]\noutbox_dir = "outbox"\n',
        encoding="utf-8",
    )
    return tmp_path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A private PostgreSQL server started from the machine's binaries, on 127.0.0.1, for this session."""
    with _private_postgres() as port:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"


def fresh_database(server_url: str) -> str:
    """The URL of a new, empty database on the session's PostgreSQL server (``server_url``: its postgres one)."""
    import uuid

    import sqlalchemy as sa

    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def _private_postgres() -> Iterator[int]:
    """Starts a PostgreSQL server of its own on 127.0.0.1 (user postgres, no password); yields its port."""
    import glob
    import socket
    import subprocess

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))  # Debian keeps the server binaries here
    initdb = candidates[-1] if candidates else shutil.which("initdb")
    assert initdb, "PostgreSQL server binaries (initdb, pg_ctl) are needed: apt-get install postgresql"
    bin_dir = Path(initdb).parent
    # Not under pytest's tmp folder: that one is private to root, and the server runs as 'postgres'.
    root = Path(tempfile.mkdtemp(prefix="supplier-eval-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = lambda *args: subprocess.run([*as_postgres, *args], check=True, capture_output=True, timeout=120)  # noqa: E731
    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-o",
        f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c fsync=off", "start")
    try:
        yield port
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def loopback_only(family: int, address: object) -> None:
    """Refuse, before any packet leaves, a connection that is not to this machine."""
    import ipaddress
    import socket

    if family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
        return
    host = str(address[0])
    if host == "localhost" or ipaddress.ip_address(host).is_loopback:
        return
    raise RuntimeError(f"a test tried to connect to {host}: only 127.0.0.1 / ::1 are allowed")


@pytest.fixture(autouse=True, scope="session")
def _no_network_but_loopback() -> Iterator[None]:
    import socket

    original_connect, original_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def connect(self: socket.socket, address: object) -> None:
        loopback_only(self.family, address)
        return original_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> int:
        loopback_only(self.family, address)
        return original_connect_ex(self, address)

    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex  # type: ignore[method-assign]
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex = original_connect, original_connect_ex  # type: ignore[method-assign]
