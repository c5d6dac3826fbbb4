"""Offline and quiet: loopback only, no heartbeat thread, file names safe for any supplier id."""

from __future__ import annotations

import socket

import pytest
from conftest import loopback_only

from flows.runtime import fast_flow_runs
from reports.bundle import safe_file_name


@pytest.mark.parametrize("address", [("127.0.0.1", 25), ("127.0.0.53", 53), ("::1", 25, 0, 0), ("localhost", 80)])
def test_loopback_addresses_are_allowed(address: tuple) -> None:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    loopback_only(family, address)


@pytest.mark.parametrize("address", [("192.0.2.1", 25), ("2001:db8::1", 25, 0, 0)])
def test_any_other_address_is_refused_before_connecting(address: tuple) -> None:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with pytest.raises(RuntimeError, match="only 127.0.0.1"):
        loopback_only(family, address)


def test_flow_runs_skip_the_heartbeat() -> None:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY

    with fast_flow_runs():
        assert PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() is None


def test_the_cli_turns_prefect_telemetry_off_unless_the_user_chose(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from flows import runtime

    for key in runtime.OFFLINE_DEFAULTS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PREFECT_LOGGING_COLORS", "true")  # a user's own choice is kept
    monkeypatch.delenv("PREFECT_HOME", raising=False)
    runtime.configure(tmp_path / "prefect-home")
    import os

    assert os.environ["DO_NOT_TRACK"] == "1"
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert os.environ["PREFECT_LOGGING_COLORS"] == "true"
    assert os.environ["PREFECT_HOME"] == str(tmp_path / "prefect-home")


@pytest.mark.parametrize(
    ("supplier_id", "expected"),
    [("S0001", "S0001"), ("ACME-42", "ACME-42")],
)
def test_plain_ids_are_their_own_file_names(supplier_id: str, expected: str) -> None:
    assert safe_file_name(supplier_id) == expected


def test_ids_that_clean_to_the_same_name_or_are_reserved_stay_distinct() -> None:
    names = [safe_file_name(i) for i in ("S/1", "S:1", "S 1", "S_1", "CON", "nul", "../etc")]
    assert len(set(names)) == len(names)
    assert all("/" not in n and ":" not in n and not n.startswith(".") for n in names)
    assert safe_file_name("CON").startswith("CON-")


def test_only_errors_that_say_they_are_transient_are_retried() -> None:
    from types import SimpleNamespace

    from flows.pipeline import retry_if_transient
    from suppliers.errors import SourceError, StoreError

    locked = StoreError("database is locked", transient=True)
    assert retry_if_transient(None, None, SimpleNamespace(data=locked)) is True
    assert retry_if_transient(None, None, SimpleNamespace(data=StoreError("no such table: runs"))) is False
    assert retry_if_transient(None, None, SimpleNamespace(data=SourceError("missing column"))) is False
    assert retry_if_transient(None, None, SimpleNamespace(data=ValueError("a bug"))) is False


def test_the_run_key_tells_an_official_evaluation_from_a_what_if() -> None:
    from datetime import date

    from suppliers.runs import compute_run_key

    same = {"as_of": date(2026, 6, 30), "window_days": 365, "tolerance_days": 2, "selection": ["S1"],
            "rule_hash": "h", "fingerprint": "f", "code": "0.1.0"}
    assert compute_run_key(**same, changes_asl=True) != compute_run_key(**same, changes_asl=False)
    assert compute_run_key(**same, changes_asl=True) == compute_run_key(**same, changes_asl=True)


def test_the_nightly_run_asks_for_every_active_supplier_whatever_it_is_given() -> None:
    from suppliers.runs import requested_suppliers

    assert requested_suppliers("nightly", ("S1", "S2")) == ()
    assert requested_suppliers("adhoc", ("S1", "S2")) == ("S1", "S2")


def test_an_error_with_further_problems_survives_pickling_whole() -> None:
    import pickle

    from suppliers.errors import RuleSetError

    error = RuleSetError("first problem", where="rules.yaml:3", fix="Fix it.", details=("rules.yaml:9: second",))
    again = pickle.loads(pickle.dumps(error))
    assert (str(again), repr(again), again.details) == (str(error), repr(error), error.details)
    assert "(1 more problem below)" in repr(again)
