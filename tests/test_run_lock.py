"""One run at a time per scope: the second waits or says who holds the store; a dead holder is taken over."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import SAMPLE_END

from flows.params import RunParameters
from suppliers.holder import Holder, is_alive, process_start_time, this_process
from suppliers.store import RunLockedError, Store, evaluations, hold_run_lock, outbox, run_locks


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url = request.getfixturevalue("postgres_url")
    with Store(url) as store, store.engine.begin() as connection:
        connection.execute(run_locks.delete())
    return url


def dead_process() -> Holder:
    """A holder on this host whose process has exited."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    holder = Holder(host=this_process().host, pid=child.pid, started=process_start_time(child.pid) or "")
    child.wait()
    return holder


def test_holders_are_alive_by_pid_and_start_time() -> None:
    me = this_process()
    assert is_alive(me, lease_expired=True)  # on this host the process decides, not the lease
    assert not is_alive(Holder(host=me.host, pid=me.pid, started="1"), lease_expired=False)  # pid reused
    assert not is_alive(dead_process(), lease_expired=False)
    elsewhere = Holder(host="elsewhere.example.org", pid=me.pid, started=me.started)
    assert is_alive(elsewhere, lease_expired=False) and not is_alive(elsewhere, lease_expired=True)


def test_the_second_run_waits_then_says_who_holds_the_store(store_url: str) -> None:
    with Store(store_url) as first, Store(store_url) as second:
        with hold_run_lock(first, run_id="run-a", trigger="nightly", wait_seconds=0):
            began = time.monotonic()
            with pytest.raises(RunLockedError) as error:
                with hold_run_lock(second, run_id="run-b", trigger="adhoc", wait_seconds=0.6):
                    pytest.fail("two runs held the store at once")
            assert time.monotonic() - began >= 0.6  # it waited its time before giving up
        message = str(error.value)
        me = this_process()
        assert f"another run is writing these evaluations: run run-a (nightly) on host {me.host}, pid {me.pid}, " \
               f"since {datetime.now(UTC):%Y-%m-%d}" in message
        assert "Waited 0.6 s" in message
        with hold_run_lock(second, run_id="run-b", trigger="adhoc", wait_seconds=0):  # released: free at once
            pass


def test_a_run_waiting_gets_the_store_as_soon_as_the_first_lets_go(store_url: str) -> None:
    order: list[str] = []
    with Store(store_url) as first, Store(store_url) as second:
        def later_run() -> None:
            with hold_run_lock(second, run_id="run-b", trigger="adhoc", wait_seconds=20,
                               on_wait=lambda held: order.append(f"b waits for {held.run_id}")):
                order.append("b runs")

        with hold_run_lock(first, run_id="run-a", trigger="nightly", wait_seconds=0):
            waiting = threading.Thread(target=later_run)
            waiting.start()
            time.sleep(0.6)
            order.append("a done")
        waiting.join(timeout=20)
    assert order == ["b waits for run-a", "a done", "b runs"]


def test_a_lock_of_a_dead_process_is_taken_over_at_once_and_another_hosts_after_its_lease(store_url: str) -> None:
    with Store(store_url) as store:
        assert store.acquire_run_lock("evaluations", run_id="gone", trigger="nightly", holder=dead_process(),
                                      lease_seconds=3600) is None
        began = time.monotonic()
        with hold_run_lock(store, run_id="next", trigger="adhoc", wait_seconds=5):
            assert time.monotonic() - began < 1
        remote = Holder(host="elsewhere.example.org", pid=4242, started="x:1")
        assert store.acquire_run_lock("evaluations", run_id="remote", trigger="nightly", holder=remote,
                                      lease_seconds=3600) is None
        held = store.acquire_run_lock("evaluations", run_id="mine", trigger="adhoc", holder=this_process(),
                                      lease_seconds=60)
        assert held is not None and held.run_id == "remote" and held.holder.host == "elsewhere.example.org"
        with store.engine.begin() as connection:  # its lease runs out: it stopped renewing
            connection.execute(run_locks.update().values(lease_until=time.time() - 1))
        assert store.acquire_run_lock("evaluations", run_id="mine", trigger="adhoc", holder=this_process(),
                                      lease_seconds=60) is None


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_two_runs_at_once_take_turns_and_record_and_send_everything_once(
        database: str, workspace: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.pipeline import adhoc, nightly
    from flows.runtime import fast_flow_runs

    inside, most_inside, guard = [0], [0], threading.Lock()
    save_results = Store.save_results

    def slow_save(self: Store, *args: object, **kwargs: object) -> int:  # long enough for runs to overlap
        with guard:
            inside[0] += 1
            most_inside[0] = max(most_inside[0], inside[0])
        try:
            time.sleep(1.0)
            return save_results(self, *args, **kwargs)
        finally:
            with guard:
                inside[0] -= 1

    monkeypatch.setattr(Store, "save_results", slow_save)

    config = workspace / "supplier-eval.toml"
    if database == "postgresql":
        url = request.getfixturevalue("postgres_url")
        with Store(url) as store, store.engine.begin() as connection:  # a store of its own for this test
            for table in ("outbox", "evaluations", "runs", "run_locks"):
                connection.execute(sa.text(f"DELETE FROM {table}"))
        config.write_text(config.read_text(encoding="utf-8").replace(
            'url = "sqlite:///store/supplier-eval.db"', f'url = "{url}"'), encoding="utf-8")
    else:
        url = f"sqlite:///{workspace / 'store' / 'supplier-eval.db'}"
    params = RunParameters(config_file=str(config), as_of=SAMPLE_END, suppliers=("S0001", "S0002", "S0003"))
    outcomes: dict[str, object] = {}

    def run(name: str) -> None:
        flow = nightly if name == "nightly" else adhoc
        with fast_flow_runs():
            outcomes[name] = flow(params.model_copy(update={"suppliers": () if name == "nightly" else
                                                            params.suppliers}))

    threads = [threading.Thread(target=run, args=(name,)) for name in ("nightly", "adhoc")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert set(outcomes) == {"nightly", "adhoc"}
    with Store(url) as store:
        recorded = store.runs_frame().sort("started_at")
        with store.engine.connect() as connection:
            duplicated = connection.execute(
                sa.select(evaluations.c.run_key, evaluations.c.supplier_id).group_by(
                    evaluations.c.run_key, evaluations.c.supplier_id).having(sa.func.count() > 1)).all()
            messages = connection.execute(sa.select(outbox.c.message_key, outbox.c.status)).all()
            locks = connection.execute(sa.select(sa.func.count()).select_from(run_locks)).scalar()
    assert recorded["status"].to_list() == ["succeeded", "succeeded"]
    assert most_inside == [1]  # never two runs storing at once
    first, second = recorded.to_dicts()
    assert second["started_at"] >= first["finished_at"]  # took turns: the second began after the first finished
    assert duplicated == []
    assert messages and all(status == "sent" for _, status in messages)
    eml = list((workspace / "outbox").glob("*.eml"))
    assert len(eml) == len(messages)  # every message written once
    assert locks == 0  # both released


def test_a_store_made_before_the_lock_table_gains_it_on_first_use(store_url: str) -> None:
    with Store(store_url) as store, store.engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE run_locks"))
    with Store(store_url) as store:
        with hold_run_lock(store, run_id="run-a", trigger="nightly", wait_seconds=0):
            held = store.acquire_run_lock("evaluations", run_id="run-b", trigger="adhoc", holder=this_process(),
                                          lease_seconds=60)
    assert held is not None and held.run_id == "run-a"
