"""`serve`, `trigger adhoc` and the local Prefect server: real processes, a real Prefect server, nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SAMPLE_END

from flows.cli import main
from flows.server import free_port
from suppliers.store import Store

CLI = [sys.executable, "-c", "import sys; from flows.cli import main; sys.exit(main())"]


def children(pid: int) -> list[int]:
    """Every process below ``pid`` (children, grandchildren, ...), from /proc."""
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry.name))
                frontier.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def environment(**extra: str) -> dict[str, str]:
    """The suite's environment without a Prefect API or home: the command picks its own, next to the settings."""
    env = {key: value for key, value in os.environ.items() if key not in ("PREFECT_API_URL", "PREFECT_HOME")}
    return {**env, **extra}


@pytest.mark.slow
def test_a_sigkilled_evaluate_leaves_no_prefect_server_behind(workspace: Path) -> None:
    command = [*CLI, "evaluate", "--config", str(workspace / "supplier-eval.toml"), "--as-of", str(SAMPLE_END)]
    process = subprocess.Popen(command, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: children(process.pid), 30, "the command to start its Prefect server")
        server = children(process.pid)
        assert any("uvicorn" in Path(f"/proc/{pid}/cmdline").read_text() for pid in server)
        process.kill()
        process.wait()
        wait_for(lambda: not any(alive(pid) for pid in server), 10, "the server to die with its parent")
    finally:
        if process.poll() is None:
            process.kill()
    assert (workspace / ".prefect").is_dir()  # its state next to the settings, not in the home directory


# The command, held for a minute where it renders its reports: Ctrl-C then lands mid-run, whatever the machine;
# the step takes 3 s to stop, as a step finishing its current work does.
_HELD_AT_RENDERING = """
import sys, time
import reports.bundle
mark = sys.argv.pop()  # a file to create when the run gets there
rendered = reports.bundle.write_run_reports
def held(*args, **kwargs):
    open(mark, "w").close()
    try:
        time.sleep(60)
    except KeyboardInterrupt:  # a step finishing what it is doing first, as delivery does with a message on the wire
        time.sleep(3)
        raise
    return rendered(*args, **kwargs)
reports.bundle.write_run_reports = held
from flows.cli import main
sys.argv[0] = "supplier-eval"
sys.exit(main())
"""


@pytest.mark.slow
def test_ctrl_c_in_a_terminal_stops_an_evaluate_at_once_in_one_line(workspace: Path) -> None:
    """Ctrl-C reaches the terminal's whole foreground group: the command's own Prefect server must not stop with it
    while the run still talks to it (the run then retried for minutes and ended in a traceback)."""
    command = [sys.executable, "-c", _HELD_AT_RENDERING, "evaluate", "--config", str(workspace / "supplier-eval.toml"),
               "--as-of", str(SAMPLE_END), "--no-email", str(workspace / "rendering")]
    process = subprocess.Popen(command, env=environment(PREFECT_LOGGING_LEVEL="INFO"), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)  # a group, as in a terminal
    try:
        wait_for(lambda: (workspace / "rendering").exists(), 60, "the run to reach its reports")
        server = children(process.pid)
        assert server
        os.killpg(process.pid, signal.SIGINT)
        pressed = time.monotonic()
        said, _ = process.communicate(timeout=15)
        assert process.returncode == 128 + signal.SIGINT and time.monotonic() - pressed < 15
        assert "Stopped (SIGINT)" in said and "Traceback" not in said
        wait_for(lambda: not any(alive(pid) for pid in server), 10, "the server to stop with the command")
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.slow
def test_serve_comes_up_alone_trigger_runs_on_it_and_sigterm_leaves_nothing(workspace: Path,
                                                                             capsys: pytest.CaptureFixture) -> None:
    config = workspace / "supplier-eval.toml"
    port = free_port()
    log = workspace / "serve.log"
    with log.open("wb") as out:
        serve = subprocess.Popen([*CLI, "serve", "--config", str(config), "--port", str(port)], env=environment(),
                                 stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "Serving 'nightly/nightly'" in log.read_text() or serve.poll() is not None, 90,
                 "serve to start its server and deployments")
        assert serve.poll() is None, log.read_text()
        assert f"Prefect UI: http://127.0.0.1:{port}" in log.read_text()
        started = children(serve.pid)
        assert main(["trigger", "adhoc", "--supplier", "S0002", "--as-of", str(SAMPLE_END), "--to",
                     "officer@example.org", "--api-url", f"http://127.0.0.1:{port}/api"]) == 0
        out = capsys.readouterr().out
        assert "Suppliers evaluated: 1  (1 new evaluations recorded)" in out
        run_id = out.split("Run ", 1)[1].split()[0]
        with Store(f"sqlite:///{workspace / 'store' / 'supplier-eval.db'}", create=False) as store:
            runs = store.runs_frame()
            history = store.evaluation_history("S0002", 10)
        assert runs.filter(runs["run_id"] == run_id)["trigger"].to_list() == ["adhoc"]
        assert history.height == 1
        sent = [path.read_text() for path in (workspace / "outbox").glob("*.eml")]
        assert sent and all("To: officer@example.org" in message for message in sent)  # to whoever asked only
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=30) == 0
        wait_for(lambda: not any(alive(pid) for pid in started), 10, "serve's children to stop")
    finally:
        if serve.poll() is None:
            serve.kill()


def test_trigger_without_a_server_says_so_in_one_line(workspace: Path) -> None:
    port = free_port()  # nothing listens there
    result = subprocess.run([*CLI, "trigger", "adhoc", "--supplier", "S0002", "--api-url",
                             f"http://127.0.0.1:{port}/api"], env=environment(), capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: --api-url / PREFECT_API_URL: no Prefect server answers at http://127.0.0.1:{port}/api. Start "
        "`supplier-eval serve` (it prints its URL), or point PREFECT_API_URL at a running Prefect server"]
    result = subprocess.run([*CLI, "trigger", "adhoc"], env=environment(), capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2 and "PREFECT_API_URL is not set" in result.stderr


@pytest.mark.slow
def test_served_deployments_carry_the_schedule_and_the_form_and_stay_unpaused(workspace: Path,
                                                                              prefect_harness: str) -> None:
    config = workspace / "supplier-eval.toml"
    config.write_text(config.read_text(encoding="utf-8")
                      + '[schedule]\ncron = "30 1 * * 1-5"\ntimezone = "Europe/Berlin"\n', encoding="utf-8")
    log = workspace / "serve.log"
    with log.open("wb") as out:
        serve = subprocess.Popen([*CLI, "serve", "--config", str(config)], stdout=out, stderr=subprocess.STDOUT,
                                 env=environment(PREFECT_API_URL=prefect_harness))
    try:
        wait_for(lambda: "Serving 'nightly/nightly'" in log.read_text() or serve.poll() is not None, 60,
                 "serve to register its deployments")
        assert f"Using the Prefect server at {prefect_harness}" in log.read_text()
        assert not children(serve.pid)  # a server was configured: none started
        time.sleep(1.5)  # the runner is polling: registered and running
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=30) == 0
    finally:
        if serve.poll() is None:
            serve.kill()
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("nightly/nightly")
        adhoc = client.read_deployment_by_name("adhoc/adhoc")
    assert not nightly.paused and not adhoc.paused  # serve stopping does not pause them
    (schedule,) = nightly.schedules
    assert schedule.schedule.cron == "30 1 * * 1-5" and schedule.schedule.timezone == "Europe/Berlin"
    assert schedule.active
    form = adhoc.parameter_openapi_schema["definitions"]["RunParameters"]["properties"]
    assert form["window_days"]["description"].startswith("Days to look back over")
    assert any(option.get("minimum") == 1 and option.get("maximum") == 3660
               for option in form["window_days"]["anyOf"])
    assert adhoc.parameters == {"params": {"config_file": str(config.resolve())}}


def test_prefect_yaml_deploys_the_same_two_flows_with_the_default_schedule() -> None:
    import yaml
    from prefect.flows import load_flow_from_entrypoint

    from flows.settings import ScheduleSettings

    root = Path(__file__).resolve().parent.parent
    spec = yaml.safe_load((root / "prefect.yaml").read_text(encoding="utf-8"))
    deployments = {entry["name"]: entry for entry in spec["deployments"]}
    assert set(deployments) == {"nightly", "adhoc"}
    for name, entry in deployments.items():
        flow = load_flow_from_entrypoint(str(root / entry["entrypoint"]))
        assert flow.name == name
        assert list(flow.parameters.properties) == ["params"]  # the one run model is the form
    (schedule,) = deployments["nightly"]["schedules"]
    defaults = ScheduleSettings()
    assert (schedule["cron"], schedule["timezone"]) == (defaults.cron, defaults.timezone)


def test_serve_on_a_port_in_use_says_so_before_starting_anything(workspace: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([*CLI, "serve", "--config", str(workspace / "supplier-eval.toml"), "--port",
                                 str(port)], env=environment(), capture_output=True, text=True, timeout=60,
                                check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: --port: port {port} on 127.0.0.1 is in use (another serve or Prefect "
                                     "server?). Choose another with --port, or point PREFECT_API_URL at the server "
                                     "already running")
    assert not (workspace / ".prefect").exists()  # nothing started
