"""Test environment: offline and quiet Prefect with a throwaway home, set before anything imports prefect."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="supplier-eval-tests-"))
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("SUPPLIER_EVAL_CONFIG", None)
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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect API for the whole session (it takes seconds to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


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
