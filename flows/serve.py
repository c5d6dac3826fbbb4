"""Serving the ``nightly`` (on the settings' cron) and ``adhoc`` (a form) deployments, and triggering ad-hoc runs.

Prefect cannot schedule on its temporary server, so ``serve`` uses the server PREFECT_API_URL names or starts
``prefect server start`` (API, scheduler and UI) as its own child on 127.0.0.1, state under the settings
folder's ``.prefect``, and stops it on the way out — Ctrl-C, SIGTERM or a kill of ``serve`` itself.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flows.server import API_URL_ENV, PrefectServer, configured_api_url, require_api
from flows.settings import Settings
from suppliers.errors import ConfigError, SupplierEvalError

NIGHTLY_DEPLOYMENT = "nightly/nightly"
ADHOC_DEPLOYMENT = "adhoc/adhoc"
SUMMARY_ARTIFACT = "run-summary"


class RunFailedError(SupplierEvalError):
    """A run started on the served deployment did not complete."""


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def prefect_home(settings: Settings) -> Path:
    """Where Prefect keeps its state for these settings: the user's PREFECT_HOME, else next to the settings."""
    return Path(os.environ.get("PREFECT_HOME") or settings.base_dir / ".prefect")


def build_deployments(settings: Settings, config_file: Path | None) -> list[Any]:
    """The two deployments: ``nightly`` on the settings' cron and time zone, ``adhoc`` run on demand from a form.

    Both carry the settings file as their default parameter, so a run from the UI reads the same settings.
    """
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    from flows.pipeline import adhoc, nightly

    config = str(config_file.resolve()) if config_file else None
    defaults = {"params": {"config_file": config}} if config else {}
    schedule = settings.schedule
    return [
        nightly.to_deployment(
            name="nightly", schedule=Cron(schedule.cron, timezone=schedule.timezone),
            parameters={"params": {"trigger": "nightly", "requested_by": "schedule", "config_file": config}},
            description=f"Every night ({schedule.cron}, {schedule.timezone}): the suppliers due, scored, stored, "
                        "reported.", entrypoint_type=EntrypointType.MODULE_PATH, tags=["supplier-eval"]),
        adhoc.to_deployment(
            name="adhoc", parameters=defaults, entrypoint_type=EntrypointType.MODULE_PATH, tags=["supplier-eval"],
            description="Evaluate chosen suppliers for a chosen date and window; the reports go to whoever asked."),
    ]


def serve_deployments(settings: Settings, config_file: Path | None, *, port: int | None,
                      announce: Callable[[str], None]) -> None:
    """Serve both deployments until stopped; a server this started is stopped too (even if this is killed)."""
    os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "1")  # an ad-hoc run starts within a second, not ten
    server = None
    if not configured_api_url():
        home = prefect_home(settings)
        chosen = port or settings.schedule.port
        if not port_free(chosen):
            raise ConfigError(f"port {chosen} on 127.0.0.1 is in use (another serve or Prefect server?)",
                              where="--port" if port else "[schedule] port",
                              fix="Choose another with --port, or point PREFECT_API_URL at the server already running")
        server = PrefectServer(home, kind="full", port=chosen, log_file=home / "server.log")
        announce(f"Starting a Prefect server on {server.url} (state in {home}) ...")
        server.launch()
        os.environ[API_URL_ENV] = server.api_url  # before Prefect is imported: it reads the URL once
    try:
        deployments_ready: list[Any] = []
        if server is not None:
            from flows import pipeline  # noqa: F401 - imported while the server starts

            server.wait_healthy()
            announce(f"Prefect UI: {server.url}   API: {server.api_url}")
        else:
            require_api(configured_api_url())
            announce(f"Using the Prefect server at {configured_api_url()}")
        from prefect import serve

        deployments_ready = build_deployments(settings, config_file)
        for deployment in deployments_ready:  # registered before "Serving" is said: a trigger then finds them
            deployment.apply()
        announce(f"Serving '{NIGHTLY_DEPLOYMENT}' ({settings.schedule.cron}, {settings.schedule.timezone}) and "
                 f"'{ADHOC_DEPLOYMENT}'. Start an ad-hoc run: supplier-eval trigger adhoc --supplier ID "
                 f"--api-url {configured_api_url()}. Stop with Ctrl-C.")
        # Not paused on shutdown: the next serve (or a restart by systemd) carries on with the same schedule.
        serve(*deployments_ready, pause_on_shutdown=False, print_starting_message=False)
    finally:
        if server is not None:
            os.environ.pop(API_URL_ENV, None)
            server.stop()
            announce("Prefect server stopped.")


def trigger_adhoc(params: dict[str, Any], *, api_url: str | None, timeout: float) -> Any:
    """Start a run of the served ``adhoc`` deployment, wait for it, and return its RunSummary.

    Raises a one-line error when no server answers, the deployment is not served, or the run fails.
    """
    url = require_api(api_url)
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.params import RunSummary

    with temporary_settings(updates={PREFECT_API_URL: url}):
        try:
            with get_client(sync_client=True) as client:
                served = client.read_deployment_by_name(ADHOC_DEPLOYMENT)
        except ObjectNotFound:
            raise SupplierEvalError(f"the deployment '{ADHOC_DEPLOYMENT}' is not served at {url}", where=url,
                                    fix="Start `supplier-eval serve` (it serves it), then trigger again") from None
        # a run's parameters replace the deployment's per top-level name: keep its settings file under ours
        merged = {**(served.parameters or {}).get("params", {}), **params}
        flow_run = run_deployment(served.id, parameters={"params": merged}, timeout=timeout, poll_interval=0.5,
                                  as_subflow=False)
        state = flow_run.state
        if state is None or not state.is_final():
            raise RunFailedError(f"run {flow_run.name} is still {state.name if state else 'pending'} after "
                                 f"{timeout:.0f} s", where=url,
                                 fix="Follow it in the Prefect UI, or wait longer with --timeout")
        if not state.is_completed():
            message = (state.message or state.name).removeprefix("Flow run encountered an exception: ")
            message = re.sub(r"^\w+Error: ", "", message)  # the class name says nothing to the person asking
            raise RunFailedError(f"run {flow_run.name} {state.name.lower()}: {message}", where=ADHOC_DEPLOYMENT)
        return RunSummary.model_validate(_summary_of(flow_run.id))


def _summary_of(flow_run_id: Any) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]), key=ArtifactFilterKey(any_=[SUMMARY_ARTIFACT])))
    if not found:
        raise RunFailedError("the run completed but left no summary", where=str(flow_run_id),
                             fix="See the run in the Prefect UI; serve and trigger must be the same version")
    data = found[0].data
    rows = json.loads(data) if isinstance(data, str) else data
    return dict(rows[0])


def publish_summary(summary: Any) -> None:
    """The run's summary as a one-row table in the Prefect UI; ``trigger`` reads it back from there."""
    from prefect.artifacts import create_table_artifact

    create_table_artifact([summary.model_dump(mode="json")], key=SUMMARY_ARTIFACT,
                          description="What the run did (supplier-eval's run summary).")
