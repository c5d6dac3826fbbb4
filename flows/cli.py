"""The ``supplier-eval`` command line: each command parses, calls one library function, prints the outcome.

Exit codes: 0 ok, 1 the run failed, 2 bad usage or settings. A user error is one line on stderr.
"""

from __future__ import annotations

import os
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from flows import runtime
from suppliers.errors import ConfigError, SupplierEvalError

if TYPE_CHECKING:
    from flows.params import RunSummary

DEMO_DIR = Path("demo-work")


class _DateType(click.ParamType):
    name = "DATE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date:
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a date; use YYYY-MM-DD, e.g. 2026-06-30", param, ctx)


DATE = _DateType()

CONFIG_OPTION = click.option("--config", "config_file", type=click.Path(path_type=Path),
                             help="Settings file (TOML).")
SUPPLIER_OPTION = click.option("--supplier", "suppliers", multiple=True, metavar="ID",
                               help="Supplier id (repeatable); default: all active.")
AS_OF_OPTION = click.option("--as-of", type=DATE, help="Evaluate as of this date (YYYY-MM-DD); default today.")
WINDOW_OPTION = click.option("--window-days", type=click.IntRange(1, 3660),
                             help="Days to look back; default: the rule set's.")
TO_OPTION = click.option("--to", "recipients", multiple=True, metavar="EMAIL",
                         help="Send the digest and reports to this address instead (repeatable).")
NO_EMAIL_OPTION = click.option("--no-email", is_flag=True, help="Store and render, but send nothing.")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="supplier-eval")
def cli() -> None:
    """Evaluate suppliers against ISO 9001:2015 clause 8.4 rules: validate, score, record, report.

    \b
    Example:
      supplier-eval demo
    """


@cli.command()
@click.option("--work-dir", type=click.Path(path_type=Path), default=DEMO_DIR, show_default=True,
              help="Folder for the sample data, store, reports and outbox.")
@click.option("--suppliers", "supplier_count", type=click.IntRange(5, 100_000), default=60, show_default=True)
@click.option("--lines", type=click.IntRange(10), default=6000, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
def demo(work_dir: Path, supplier_count: int, lines: int, seed: int) -> None:
    """Generate sample data and run the nightly flow on it, on embedded defaults (SQLite, outbox folder).

    \b
    Example:
      supplier-eval demo --work-dir demo-work
    """
    from suppliers.generate import generate_frames, write_sample_data

    work_dir = work_dir.resolve()
    today = date.today()
    click.echo(f"Generating sample data: {supplier_count} suppliers, {lines:,} order lines (seed {seed}) ...")
    frames = generate_frames(suppliers=supplier_count, lines=lines, seed=seed, end_date=today)
    paths = write_sample_data(frames, work_dir / "data", "csv")
    click.echo(f"  wrote {', '.join(p.name for p in paths.values())} to {work_dir / 'data'}")
    config = work_dir / "supplier-eval.toml"
    config.write_text(_demo_settings(), encoding="utf-8")
    click.echo(f"  settings: {config}")
    click.echo("Running the nightly flow (with a local Prefect API server that stops with this command) ...")
    from flows.params import RunParameters

    params = RunParameters(trigger="nightly", requested_by="demo", as_of=today, config_file=str(config))
    summary = _run_flow("nightly", params)
    _print_summary(summary, store=str(work_dir / "supplier-eval.db"))
    click.echo("")
    for label, command in demo_commands(config, first_supplier=str(frames["suppliers"]["supplier_id"][0])):
        click.echo(f"{label + ':':<42}{command}")


@cli.command()
@SUPPLIER_OPTION
@AS_OF_OPTION
@WINDOW_OPTION
@click.option("--rules", "rules_file", type=click.Path(path_type=Path), help="Rule file (YAML).")
@CONFIG_OPTION
@TO_OPTION
@NO_EMAIL_OPTION
@click.option("--compare-with", "compare_file", type=click.Path(path_type=Path),
              help="What-if: compare this rule file (A) with --rules or the settings' rules (B); prints each "
                   "supplier's band under both, stores and sends nothing.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv"]),
              help="How --compare-with prints the comparison  [default: table]")
@click.option("--shards", type=click.IntRange(1, 100_000),
              help="Measure and score the suppliers in this many shards (by a hash of the id)  [default: 1, "
                   "8 with --task-runner dask]")
@click.option("--task-runner", type=click.Choice(["thread", "dask"]), default="thread", show_default=True,
              help="Where the shards run: threads of this process, or an existing Dask cluster (--dask-address).")
@click.option("--dask-address", metavar="tcp://HOST:PORT", help="The Dask scheduler of --task-runner dask.")
def evaluate(suppliers: tuple[str, ...], as_of: date | None, window_days: int | None, rules_file: Path | None,
             config_file: Path | None, recipients: tuple[str, ...], no_email: bool, compare_file: Path | None,
             fmt: str | None, shards: int | None = None, task_runner: str = "thread",
             dask_address: str | None = None) -> None:
    """Run an ad-hoc evaluation (the adhoc flow) and deliver its reports.

    With --compare-with nothing is run, stored or sent: the suppliers are scored in this process under that
    rule file (A) and under --rules, or the settings' rules without it (B), from one measurement per window,
    with the current statuses read from the store if there is one; each supplier's score, band and status
    under A and B and what moved from A to B are printed, then the counts.

    \b
    Example:
      supplier-eval evaluate --supplier S0003 --as-of 2026-06-30 --window-days 180 --to buyer@example.org
      supplier-eval evaluate --rules stricter.yaml --compare-with rules/iso9001-8.4.yaml --format csv
      supplier-eval evaluate --task-runner dask --dask-address tcp://10.0.0.5:8786 --shards 64
    """
    if compare_file is not None:
        if recipients:
            raise ConfigError("a comparison sends nothing", where="--to",
                              fix="Drop --to, or drop --compare-with to run an evaluation and deliver it")
        from flows.settings import load_settings
        from rules.compare import compare_rule_sets

        settings = load_settings(config_file)
        comparison = compare_rule_sets(compare_file, rules_file or settings.rules_file, data_dir=settings.data_dir,
                                       mapping_file=settings.mapping_file, store_url=settings.store_url,
                                       as_of=as_of or date.today(), supplier_ids=suppliers, window_days=window_days,
                                       max_quarantine_share=settings.validation.max_quarantine_share)
        _print_comparison(comparison, fmt or "table")
        return
    if fmt is not None:
        raise ConfigError("only a comparison is printed in a chosen format", where="--format",
                          fix="Use it with --compare-with FILE, or leave it out")
    params = _run_parameters(suppliers=suppliers, as_of=as_of, window_days=window_days,
                             rules_file=str(rules_file) if rules_file else None,
                             config_file=str(config_file) if config_file else None, recipients=recipients,
                             send_email=not no_email, trigger="adhoc",
                             shards=shards or (DASK_SHARDS if task_runner == "dask" else 1))
    if (task_runner == "dask") != (dask_address is not None):
        raise ConfigError("--task-runner dask and --dask-address go together", where="--dask-address",
                          fix="Give both to run the shards on a Dask cluster, or neither")
    store = _preflight(params)
    _print_summary(_run_flow("adhoc", params, dask_address=dask_address), store=store)


def _run_parameters(**fields: Any) -> Any:
    """The run model from the command's options; an address it refuses is a usage error naming --to."""
    from pydantic import ValidationError

    from flows.params import RunParameters

    try:
        return RunParameters(**fields)
    except ValidationError as exc:
        raise ConfigError(str(exc.errors()[0]["msg"]).removeprefix("Value error, "), where="--to") from None


DASK_SHARDS = 8  # shards when the user names a Dask cluster but no count (the --shards help says 8)


def _on_task_runner(flow: Any, dask_address: str | None) -> Any:
    """The flow as it is, or on the Dask cluster at ``dask_address`` (its shards spread over the workers)."""
    if dask_address is None:
        return flow
    from flows.shards import dask_task_runner

    return flow.with_options(task_runner=dask_task_runner(dask_address))


def _print_comparison(comparison: Any, fmt: str) -> None:
    """A rule-set comparison (rules.compare.RuleSetComparison) as a fixed-width table and its counts, or CSV."""
    rows = comparison.rows
    if fmt == "csv":
        from suppliers.files import spreadsheet_safe

        click.echo(spreadsheet_safe(rows).write_csv(), nl=False)
        return
    echo, summary = click.echo, comparison.summary
    echo(f"What-if comparison as of {comparison.as_of}, {summary.suppliers} suppliers: nothing is stored or sent.")
    for label, file, rule_set, window in (("A", comparison.rules_a, comparison.rule_set_a, comparison.window_a),
                                          ("B", comparison.rules_b, comparison.rule_set_b, comparison.window_b)):
        echo(f"  {label}: {file}  ({rule_set.name} {rule_set.version}, {window}-day window, on-time tolerance "
             f"{rule_set.evaluation.on_time_tolerance_days} days)")
    echo(f"  Current statuses from {comparison.statuses_from}")
    echo(f"  Quarantined rows (not scored): {comparison.quarantined_rows}")
    width = min(28, max([4, *(len(name) for name in rows["name"].to_list())]))
    status_width = max(8, *(len(s) for s in (*rows["status_a"].to_list(), *rows["status_b"].to_list()) if s))
    echo("")
    echo(f"{'supplier':<10} {'name':<{width}} {'score A':>7} {'band A':<6} {'status A':<{status_width}}  "
         f"{'score B':>7} {'band B':<6} {'status B':<{status_width}}  moved")
    for row in rows.iter_rows(named=True):
        moved = row["movement"] + (f" {abs(row['band_steps'])} bands" if abs(row["band_steps"] or 0) > 1 else "")
        moved += ", status changed" if row["status_changed"] else ""
        cells = []
        for side in ("a", "b"):
            score = row[f"score_{side}"]
            cells.append(f"{'-' if score is None else f'{score:.1f}':>7} {row[f'band_{side}'] or '-':<6} "
                         f"{row[f'status_{side}']:<{status_width}}")
        echo(f"{row['supplier_id']:<10} {row['name'][:width]:<{width}} {cells[0]}  {cells[1]}  {moved}")
    echo("")
    scored = (f"; {summary.now_scored} now scored, {summary.now_insufficient} now insufficient data"
              if summary.now_scored or summary.now_insufficient else "")
    echo(f"Summary: {summary.up} supplier{'s' if summary.up != 1 else ''} moved up a band, {summary.down} down, "
         f"{summary.unchanged} unchanged{scored}; {summary.status_changes} status "
         f"change{'s' if summary.status_changes != 1 else ''}")
    for label, counts in (("A", summary.bands_a), ("B", summary.bands_b)):
        echo(f"Bands under {label}: " + ", ".join(f"{band} {count}" for band, count in counts.items()))


@cli.command("nightly")
@AS_OF_OPTION
@CONFIG_OPTION
@NO_EMAIL_OPTION
def nightly_command(as_of: date | None, config_file: Path | None, no_email: bool) -> None:
    """Run the nightly flow once, recorded as nightly: for scheduling with cron or a systemd timer.

    \b
    Example:
      supplier-eval nightly --config /etc/supplier-eval/supplier-eval.toml
      # crontab: 0 2 * * *  cd /srv/supplier-eval && .venv/bin/supplier-eval nightly --config supplier-eval.toml
    """
    from flows.params import RunParameters

    params = RunParameters(trigger="nightly", requested_by="schedule", as_of=as_of,
                           config_file=str(config_file) if config_file else None, send_email=not no_email)
    store = _preflight(params)
    _print_summary(_run_flow("nightly", params), store=store)


@cli.command()
@CONFIG_OPTION
@click.option("--port", type=click.IntRange(1, 65535),
              help="Port of the Prefect server started on 127.0.0.1  [default: the settings' schedule.port, 4200]")
def serve(config_file: Path | None, port: int | None) -> None:
    """Serve the nightly deployment (on the settings' cron and time zone) and the adhoc one (a form in the
    Prefect UI) until stopped.

    With PREFECT_API_URL set, that Prefect server schedules the runs; otherwise a Prefect server with its UI is
    started on 127.0.0.1 as a child of this command (its state in .prefect next to the settings file) and
    stopped with it. Deployments stay unpaused when serve stops.

    \b
    Example:
      supplier-eval serve --config supplier-eval.toml
      supplier-eval trigger adhoc --supplier S0003 --to me@example.org     # from another terminal
    """
    from flows.serve import serve_deployments
    from flows.settings import find_settings_file, load_settings

    settings = load_settings(config_file)
    _preflight_settings(settings)
    runtime.configure(None)
    serve_deployments(settings, find_settings_file(config_file), port=port,
                      announce=lambda line: click.echo(line, err=True))


@cli.group()
def trigger() -> None:
    """Start a run on the deployments `supplier-eval serve` serves, and wait for its outcome.

    \b
    Example:
      supplier-eval trigger adhoc --supplier S0003 --as-of 2026-06-30 --to buyer@example.org
    """


@trigger.command("adhoc")
@SUPPLIER_OPTION
@AS_OF_OPTION
@WINDOW_OPTION
@TO_OPTION
@NO_EMAIL_OPTION
@click.option("--api-url", metavar="URL", help="The Prefect API serve uses  [default: $PREFECT_API_URL]")
@click.option("--timeout", type=click.FloatRange(1), default=3600, show_default=True,
              help="Seconds to wait for the run's outcome.")
def trigger_adhoc_command(suppliers: tuple[str, ...], as_of: date | None, window_days: int | None,
                          recipients: tuple[str, ...], no_email: bool, api_url: str | None, timeout: float) -> None:
    """Start an ad-hoc run on the served adhoc deployment (its settings are the ones serve was given), wait for
    it and print its summary.

    \b
    Example:
      supplier-eval trigger adhoc --supplier S0003 --to me@example.org --api-url http://127.0.0.1:4200/api
    """
    from flows.serve import trigger_adhoc

    params = _run_parameters(suppliers=suppliers, as_of=as_of, window_days=window_days, recipients=recipients,
                             send_email=not no_email, trigger="adhoc")
    runtime.configure(None)
    # only what was given: the deployment's defaults (its settings file) fill in the rest
    given = params.model_dump(mode="json", exclude_unset=True) | {"requested_by": params.requested_by}
    summary = trigger_adhoc(given, api_url=api_url, timeout=timeout)
    _print_summary(summary, store="the store of the settings serve was given")


@cli.command()
@click.option("--suppliers", "supplier_count", type=click.IntRange(5), default=60, show_default=True)
@click.option("--lines", type=click.IntRange(10), default=6000, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Folder to write into.")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
@click.option("--end", "end_date", type=DATE, help="Last day of the history (YYYY-MM-DD); default today.")
def generate(supplier_count: int, lines: int, seed: int, out_dir: Path, fmt: str, end_date: date | None) -> None:
    """Generate realistic sample records (same seed and end date: same files).

    \b
    Example:
      supplier-eval generate --suppliers 200 --lines 50000 --seed 1 --out data --format parquet
    """
    from suppliers.generate import generate_frames, write_sample_data

    frames = generate_frames(suppliers=supplier_count, lines=lines, seed=seed, end_date=end_date or date.today())
    for kind, path in write_sample_data(frames, out_dir, fmt).items():
        click.echo(f"{path}  {frames[kind].height:,} {kind.replace('_', ' ')}")


@cli.command()
@CONFIG_OPTION
@click.option("--data", "data_dir", type=click.Path(path_type=Path), help="Data folder (overrides the settings).")
@click.option("--quarantine-out", type=click.Path(path_type=Path), help="Write every quarantined row to this CSV.")
@click.option("--report", "report_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the data-quality report (HTML) to this file, and its text part next to it (.txt).")
def validate(config_file: Path | None, data_dir: Path | None, quarantine_out: Path | None,
             report_file: Path | None) -> None:
    """Check the input records without scoring: counts per source and why rows would be quarantined.

    With --report, also write the data-quality report, written even when there are too many bad rows, and
    compared with the last run recorded in the store (if there is one: validate never creates a store).

    \b
    Example:
      supplier-eval validate --data data --quarantine-out quarantine.csv
      supplier-eval validate --config supplier-eval.toml --report data-quality.html
    """
    import polars as pl

    from flows.settings import load_settings
    from reports.context import quarantine_summary_with_reasons
    from suppliers.errors import DataQualityError
    from suppliers.files import write_csv_safely
    from suppliers.mapping import load_inputs
    from suppliers.runs import fields_a_run_reads
    from suppliers.validate import validate_inputs

    settings = load_settings(config_file)
    mapping_file = None if data_dir else settings.mapping_file
    loaded = load_inputs(data_dir or settings.data_dir, mapping_file, fields_a_run_reads())  # as a run reads them
    read_from = str(mapping_file or data_dir or settings.data_dir)

    def write_report(path: Path, summary: pl.DataFrame, quarantine: pl.DataFrame, *, stopped: bool) -> None:
        from reports.quality import quality_context, render_quality_report, write_quality_report
        from suppliers.errors import StoreError
        from suppliers.store import Store

        previous, unavailable = None, None
        try:
            with Store(settings.store_url, create=False) as store:  # never creates one: no store, no comparison
                previous = store.previous_quarantine_summary()
        except StoreError as error:
            unavailable = error.what
        context = quality_context(summary, quarantine, previous, run={"trigger": "validate", "read_from": read_from},
                                  stopped=stopped,
                                  max_share=settings.validation.max_quarantine_share,
                                  previous_unavailable=unavailable)
        text_file = write_quality_report(path, render_quality_report(context))
        click.echo(f"Data-quality report written to {path} (text: {text_file})")

    try:
        result = validate_inputs(loaded.raw, formats=loaded.formats,
                                 max_quarantine_share=settings.validation.max_quarantine_share,
                                 quarantine_path=quarantine_out)
    except DataQualityError as stop:  # too many bad rows: the report says so, then the error as before
        if report_file is not None and stop.summary is not None and stop.quarantine is not None:
            write_report(report_file, stop.summary, stop.quarantine, stopped=True)
        raise
    summary = quarantine_summary_with_reasons(result.summary, result.quarantine)
    for row in summary.iter_rows(named=True):
        click.echo(f"{row['kind']:<22} {row['source']:<32} {row['rows_read']:>10,} rows  "
                   f"{row['rows_quarantined']:>8,} quarantined")
        for reason in row["top_reasons"]:
            click.echo(f"    {reason}")
    if quarantine_out is not None:
        write_csv_safely(result.quarantine, quarantine_out)
        click.echo(f"Quarantined rows written to {quarantine_out}")
    if report_file is not None:
        write_report(report_file, result.summary, result.quarantine, stopped=False)


@cli.group()
def rules() -> None:
    """Work with rule files.

    \b
    Example:
      supplier-eval rules check rules/iso9001-8.4.yaml
    """


@rules.command("check")
@click.argument("rule_file", type=click.Path(path_type=Path), required=False)
def rules_check(rule_file: Path | None) -> None:
    """Check a rule file and summarise it; errors name the file and line.

    \b
    Example:
      supplier-eval rules check my-rules.yaml
    """
    from rules.loader import load_rule_set

    rule_set = load_rule_set(rule_file)
    click.echo(f"{rule_set.name} (version {rule_set.version}) is valid; sha256 {rule_set.content_hash[:16]}")
    click.echo(f"  window {rule_set.evaluation.window_days} days, on-time tolerance "
               f"{rule_set.evaluation.on_time_tolerance_days} days, a criterion not measured: "
               f"{rule_set.not_measured.replace('_', ' ')}")
    for criterion in rule_set.criteria:
        click.echo(f"  {criterion.weight:>5g}  {criterion.name}  [{criterion.metric}]")
    for band in rule_set.bands:
        click.echo(f"  band {band.band}: {band.lower:g}-{band.upper:g} -> {band.status}")
    for gate in rule_set.gates:
        click.echo(f"  gate {gate.name}: caps status at {gate.cap_status}")


@cli.group()
def mapping() -> None:
    """Work with mapping files (how your exports become supplier-eval's records).

    \b
    Example:
      supplier-eval mapping check examples/usaid-scms/mapping.yaml
    """


@mapping.command("check")
@click.argument("mapping_file", type=click.Path(path_type=Path))
def mapping_check(mapping_file: Path) -> None:
    """Check a mapping file and show what each record kind is made from; errors name the file and line.

    \b
    Example:
      supplier-eval mapping check examples/usaid-scms/mapping.yaml
    """
    from suppliers.mapping import load_mapping

    checked = load_mapping(mapping_file)
    click.echo(f"{mapping_file} is valid; sha256 {checked.content_hash[:16]}")
    for name, source in checked.file.sources.items():
        click.echo(f"  source {name}: {source.path or source.query} ({checked.spec(name).format})")
    for kind, record in checked.file.records.items():
        filters = f", {len(record.where)} filter{'s' if len(record.where) != 1 else ''}" if record.where else ""
        click.echo(f"  {kind} <- {record.source}{filters}: {', '.join(record.fields)}")
    click.echo("Read the data through it with: supplier-eval validate --config <your settings file>")


@cli.command()
@click.option("--supplier", "supplier_id", metavar="ID", help="One supplier's history.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@CONFIG_OPTION
def history(supplier_id: str | None, limit: int, config_file: Path | None) -> None:
    """Show recorded evaluations, newest first (the clause 8.4 evaluation records).

    \b
    Example:
      supplier-eval history --supplier S0003 --config demo-work/supplier-eval.toml
    """
    from flows.settings import load_settings
    from suppliers.store import Store

    with Store(load_settings(config_file).store_url, create=False) as store:
        frame = store.evaluation_history(supplier_id, limit)
    if frame.is_empty():
        click.echo("No evaluations recorded yet. Run: supplier-eval evaluate")
        return
    for row in frame.iter_rows(named=True):
        score = f"{row['score']:5.1f}" if row["score"] is not None else "  -  "
        note = row["insufficient_reason"] or ""
        if not row["official"]:
            note = f"what-if, ASL unchanged {note}".strip()
        click.echo(f"{row['as_of']}  {row['supplier_id']:<10} {score}  {row['band'] or '-':<2} "
                   f"{row['previous_status'] or '-':>12} -> {row['status']:<12} {note}")


@cli.command()
@click.option("--from", "start", type=DATE, required=True, help="First day of the period (YYYY-MM-DD).")
@click.option("--to", "end", type=DATE, required=True, help="Last day of the period (YYYY-MM-DD), included.")
@CONFIG_OPTION
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Folder to write into; default: the settings' output folder.")
def evidence(start: date, end: date, config_file: Path | None, out_dir: Path | None) -> None:
    """Write the clause 8.4 audit evidence for a period: one printable HTML document and an Excel workbook of the
    same tables (rule sets with their full text, the ASL and its changes with reasons and approvers, every
    evaluation, actions, runs with their input fingerprints, data quality). Reads the store only.

    \b
    Example:
      supplier-eval evidence --from 2026-01-01 --to 2026-06-30 --out audit --config supplier-eval.toml
    """
    from flows.settings import load_settings
    from reports.evidence import (
        collect_evidence,
        describe_counts,
        evidence_file_names,
        known_rule_texts,
        render_evidence_html,
        write_evidence_workbook,
    )
    from suppliers.files import write_atomically
    from suppliers.runs import code_version
    from suppliers.store import Store, redact_url

    settings = load_settings(config_file)
    with Store(settings.store_url, create=False) as store:
        pack = collect_evidence(store, start, end, organisation=settings.organisation.name,
                                scope=settings.organisation.scope, rule_texts=known_rule_texts(settings.rules_file),
                                code_version=code_version(), store_name=redact_url(settings.store_url))
    folder = out_dir or settings.output_dir
    html_name, workbook_name = evidence_file_names(start, end)
    write_atomically(folder / html_name, render_evidence_html(pack).encode("utf-8"))
    write_evidence_workbook(pack, folder / workbook_name)
    click.echo(f"Evidence {start} to {end}: "
               + ("no records in this period" if pack.is_empty() else describe_counts(pack)))
    click.echo(str(folder / html_name))
    click.echo(str(folder / workbook_name))


BY_OPTION = click.option("--by", "by", required=True, metavar="NAME", help="Who decides (recorded as approver).")
REASON_OPTION = click.option("--reason", required=True, metavar="TEXT", help="Why (recorded with the decision).")


@cli.group(invoke_without_command=True)
@CONFIG_OPTION
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "xlsx"]), default="table", show_default=True,
              help="A table on screen, or a spreadsheet export.")
@click.option("--out", "out_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the list to this file (csv: else to the screen; xlsx needs it).")
@click.pass_context
def asl(ctx: click.Context, config_file: Path | None, fmt: str, out_file: Path | None) -> None:
    """The approved supplier list: every supplier evaluated, with its status, since when and why, its last score
    and band, its profile and when it is next due; and the decisions a person takes on it.

    A change that needs a person's approval (see the rule set's transitions) is listed as proposed until
    someone approves or rejects it; `asl set` records a manual decision that later runs respect.

    \b
    Example:
      supplier-eval asl --config demo-work/supplier-eval.toml
      supplier-eval asl --format xlsx --out asl.xlsx
    """
    if ctx.invoked_subcommand is not None:
        return
    from flows.settings import load_settings
    from rules.asl import read_approved_supplier_list

    if fmt == "xlsx" and out_file is None:
        raise ConfigError("an xlsx export needs a file", where="--format xlsx", fix="Add --out FILE.xlsx.")
    frame = read_approved_supplier_list(load_settings(config_file).store_url, today=date.today())
    if fmt != "table":
        _export(frame, fmt, out_file)
        return
    if frame.is_empty():
        click.echo("No supplier evaluated yet. Run: supplier-eval evaluate")
        return
    _print_asl(frame, today=date.today())


def _export(frame: Any, fmt: str, out_file: Path | None) -> None:
    """A frame as spreadsheet-safe CSV (to ``out_file`` or the screen) or an Excel workbook."""
    from suppliers.files import spreadsheet_safe, write_atomically, write_csv_safely

    if fmt == "csv" and out_file is None:
        click.echo(spreadsheet_safe(frame).write_csv(), nl=False)
        return
    assert out_file is not None
    if fmt == "csv":
        write_csv_safely(frame, out_file)
    else:
        write_atomically(out_file, lambda path: spreadsheet_safe(frame).write_excel(
            path, worksheet="ASL", autofit=True, freeze_panes=(1, 1)))
    click.echo(f"{frame.height} suppliers written to {out_file}")


def _print_asl(frame: Any, *, today: date) -> None:
    """One line per supplier (a few dozen to a few thousand: printing is the only loop), then the notes."""
    width = min(28, max([4, *(len(name or "") for name in frame["name"].to_list())]))
    click.echo(f"{'supplier':<10} {'name':<{width}} {'status':<12} {'since':<10} {'score':>5} {'band':<4} "
               f"{'profile':<9} {'next due':<11} why")
    for row in frame.iter_rows(named=True):
        score = f"{row['score']:5.1f}" if row["score"] is not None else "    -"
        due = row["next_due"]
        due_text = "now" if due is None else f"{due}{'*' if due < today else ''}"
        extra = [f"proposed: {row['proposed']} (awaiting approval)"] if row["proposed"] else []
        extra += [f"open: {row['open_actions']}"] if row["open_actions"] else []
        click.echo(f"{row['supplier_id']:<10} {(row['name'] or '-')[:width]:<{width}} {row['status']:<12} "
                   f"{str(row['since'] or '-'):<10} {score} {row['band'] or '-':<4} {row['profile'] or '-':<9} "
                   f"{due_text:<11} {'; '.join([row['why'], *extra])}")
    click.echo(f"\n{frame.height} suppliers; next due * = overdue for re-evaluation, now = never scored. "
               "Approve or reject a proposed change: supplier-eval asl approve|reject SUPPLIER --by NAME --reason TEXT")


def _decision_store(config_file: Path | None) -> tuple[Any, Any, Any]:
    from flows.settings import load_settings
    from rules.loader import load_rule_set

    settings = load_settings(config_file)
    return settings, load_rule_set(settings.rules_file), settings.store_url


@asl.command("approve")
@click.argument("supplier_id", metavar="SUPPLIER")
@BY_OPTION
@REASON_OPTION
@CONFIG_OPTION
def asl_approve(supplier_id: str, by: str, reason: str, config_file: Path | None) -> None:
    """Approve the status change proposed for a supplier: it is applied, with you as approver.

    \b
    Example:
      supplier-eval asl approve S0031 --by "Q. Manager" --reason "second D in a row confirmed"
    """
    from rules.asl import approve_change
    from suppliers.store import Store

    settings, rule_set, url = _decision_store(config_file)
    with Store(url, create=False) as store:
        decision = approve_change(store, supplier_id, by=by, reason=reason, rule_set=rule_set,
                                  officers=settings.mail.officers)
    raised = f"; raised {', '.join(decision.actions)}" if decision.actions else ""
    click.echo(f"{supplier_id}: {decision.from_status} -> {decision.to_status}, approved by {by}{raised}")


@asl.command("reject")
@click.argument("supplier_id", metavar="SUPPLIER")
@BY_OPTION
@REASON_OPTION
@CONFIG_OPTION
def asl_reject(supplier_id: str, by: str, reason: str, config_file: Path | None) -> None:
    """Reject the status change proposed for a supplier: it keeps its status.

    \b
    Example:
      supplier-eval asl reject S0031 --by "Q. Manager" --reason "sole source; SCAR in progress"
    """
    from rules.asl import reject_change
    from suppliers.store import Store

    _, _, url = _decision_store(config_file)
    with Store(url, create=False) as store:
        decision = reject_change(store, supplier_id, by=by, reason=reason)
    click.echo(f"{supplier_id}: {decision.from_status} -> {decision.to_status} rejected by {by}; "
               f"it stays {decision.from_status}")


@asl.command("set")
@click.argument("supplier_id", metavar="SUPPLIER")
@click.argument("status")
@BY_OPTION
@REASON_OPTION
@click.option("--until", type=DATE, help="Runs respect the decision up to this date (YYYY-MM-DD); default: "
                                         "until another decision.")
@CONFIG_OPTION
def asl_set(supplier_id: str, status: str, by: str, reason: str, until: date | None,
            config_file: Path | None) -> None:
    """Set a supplier's status yourself (approved, conditional, probation, disqualified); evaluations respect
    it, changing nothing, until --until.

    \b
    Example:
      supplier-eval asl set S0016 approved --by "Q. Manager" --reason "sole source" --until 2027-03-31
    """
    from rules.asl import set_status
    from suppliers.store import Store

    settings, rule_set, url = _decision_store(config_file)
    with Store(url, create=False) as store:
        decision = set_status(store, supplier_id, status, by=by, reason=reason, until=until, rule_set=rule_set,
                              officers=settings.mail.officers, today=date.today())
    moved = (f"{decision.from_status} -> {decision.to_status}" if decision.changed
             else f"stays {decision.to_status}")
    raised = f"; raised {', '.join(decision.actions)}" if decision.actions else ""
    click.echo(f"{supplier_id}: {moved} by {by}, respected by evaluations "
               f"{f'until {until}' if until else 'until another decision'}{raised}")


@cli.group(invoke_without_command=True)
@click.option("--open", "open_only", is_flag=True, help="Only the actions still open.")
@CONFIG_OPTION
@click.pass_context
def actions(ctx: click.Context, open_only: bool, config_file: Path | None) -> None:
    """The actions status changes raised: corrective action requests (SCAR) on probation, block-new-orders
    recommendations on disqualification; close one with its effectiveness check.

    \b
    Example:
      supplier-eval actions --open --config demo-work/supplier-eval.toml
    """
    if ctx.invoked_subcommand is not None:
        return
    from flows.settings import load_settings
    from reports.context import actions_context
    from suppliers.store import Store

    with Store(load_settings(config_file).store_url, create=False) as store:
        frame = store.actions_frame(open_only=open_only)
    listed = actions_context(frame, as_of=date.today())  # open ones by due date first, with their ids
    if not listed:
        click.echo("No open actions." if open_only else "No actions raised yet.")
        return
    states = dict(zip(frame["number"].to_list(), frame.select("state", "closed_by", "closed_on", "effective")
                      .to_dicts(), strict=True))
    for action in listed:
        state = states[int(action["action_id"].rsplit("-", 1)[1])]
        if state["state"] == "open":
            status = f"open, due {action['due']} (OVERDUE)" if action["overdue"] else (
                f"open, due {action['due']}" if action["due"] else "open")
        else:
            status = (f"closed {state['closed_on']} by {state['closed_by']}, "
                      f"{'effective' if state['effective'] else 'NOT effective'}")
        click.echo(f"{action['action_id']:<11} {action['supplier_id']:<10} {(action['name'] or '-')[:28]:<28} "
                   f"{action['label']:<33} raised {action['raised_on']}  {status}  owner {action['owner'] or '-'}")


@actions.command("close")
@click.argument("action_id", metavar="ID")
@BY_OPTION
@click.option("--effective", type=click.Choice(["yes", "no"]), required=True,
              help="Did the action work (the cause removed, the problem not back)?")
@click.option("--note", metavar="TEXT", help="What the effectiveness check found.")
@CONFIG_OPTION
def actions_close(action_id: str, by: str, effective: str, note: str | None, config_file: Path | None) -> None:
    """Close an action with its effectiveness check.

    \b
    Example:
      supplier-eval actions close SCAR-0001 --by "Q. Manager" --effective yes --note "8D report accepted"
    """
    from flows.settings import load_settings
    from rules.asl import close_action
    from suppliers.store import Store

    with Store(load_settings(config_file).store_url, create=False) as store:
        name = close_action(store, action_id, by=by, effective=effective == "yes", note=note, today=date.today())
    click.echo(f"{name} closed by {by}: {'effective' if effective == 'yes' else 'not effective'}")


@cli.group(invoke_without_command=True)
@click.option("--retry", is_flag=True, help="Same as `outbox retry` (kept for scripts that use it).")
@CONFIG_OPTION
@click.pass_context
def outbox(ctx: click.Context, retry: bool, config_file: Path | None) -> None:
    """Show the email ledger: messages per state, and each failed message with its last error.

    A message is queued, sending, sent, failed-temporary (the next run or `outbox retry` tries it again) or
    failed-permanent (refused for good: not tried again until `outbox retry --include-permanent`). A run whose
    process was killed is marked abandoned here, and what it held goes back to the queue.

    \b
    Example:
      supplier-eval outbox --config demo-work/supplier-eval.toml
      supplier-eval outbox retry --include-permanent --config demo-work/supplier-eval.toml
    """
    ctx.obj = config_file  # `outbox --config FILE retry` works as well as `outbox retry --config FILE`
    if ctx.invoked_subcommand is not None:
        return
    if retry:
        ctx.invoke(outbox_retry, include_permanent=False, config_file=config_file)
        return
    from flows.settings import load_settings
    from suppliers.store import OUTBOX_STATES, Store

    with Store(load_settings(config_file).store_url, create=False) as store:
        abandoned, released = store.release_abandoned()
        counts = store.outbox_counts()
        failed = store.failed_messages()
    if abandoned or released:
        click.echo(f"Marked {abandoned} run(s) abandoned (their process is gone); {released} message(s) they held "
                   "are queued again")
    click.echo("  ".join(f"{state}: {counts.get(state, 0)}" for state in OUTBOX_STATES))
    if failed.is_empty():
        return
    click.echo("")
    click.echo(f"{'state':<17} {'tries':>5} {'last try (UTC)':<16}  {'message':<20} {'to':<28} last error")
    for row in failed.iter_rows(named=True):
        when = row["last_attempt_at"].strftime("%Y-%m-%d %H:%M") if row["last_attempt_at"] else "-"
        what = f"{row['kind']} {row['supplier_id'] or ''}".strip()
        to = ", ".join(row["recipients"])
        click.echo(f"{row['status']:<17} {row['attempts']:>5} {when:<16}  {what[:20]:<20} {to[:28]:<28} "
                   f"{_one_line(row['last_error'])}")
    if counts.get("failed-permanent"):
        click.echo("\nRefused messages are not tried again: correct the address or the mail settings, then "
                   "`supplier-eval outbox retry --include-permanent`.")


@outbox.command("retry")
@click.option("--include-permanent", is_flag=True,
              help="Also re-queue and send the messages refused for good (after you fixed the cause).")
@CONFIG_OPTION
@click.pass_context
def outbox_retry(ctx: click.Context, include_permanent: bool, config_file: Path | None) -> None:
    """Send every message not yet sent, from any run: queued, failed for now, or held by a killed run.

    \b
    Example:
      supplier-eval outbox retry --config demo-work/supplier-eval.toml
      supplier-eval outbox retry --include-permanent
    """
    from flows.settings import load_settings, transport_of
    from reports.outbox import raise_for_failures, retry_unsent
    from suppliers.store import Store

    settings = load_settings(config_file or ctx.obj)
    transport = transport_of(settings)
    with Store(settings.store_url, create=False) as store:
        results = retry_unsent(store, transport=transport, include_permanent=include_permanent)
        refused = 0 if include_permanent else store.outbox_counts().get("failed-permanent", 0)
    failed = [r for r in results if not r.ok]
    kept = f"; {refused} refused for good left alone (--include-permanent sends them)" if refused else ""
    click.echo(f"Retried {len(results)}: {len(results) - len(failed)} delivered, {len(failed)} failed{kept}")
    raise_for_failures(results, where=transport.location,
                       again="run `supplier-eval outbox retry` again once the server takes mail")


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def _preflight(params: Any) -> str:
    """Check settings and rules before Prefect starts, so a typo costs a second, not a server start.

    Returns where the store is, for the summary (password hidden).
    """
    from flows.settings import load_settings
    from rules.loader import load_rule_set
    from suppliers.store import redact_url

    settings = load_settings(params.config_file)
    load_rule_set(params.rules_file or settings.rules_file)
    if settings.mapping_file is not None:
        from suppliers.mapping import load_mapping

        load_mapping(settings.mapping_file)
    return redact_url(settings.store_url)


def _run_flow(name: str, params: Any, *, dask_address: str | None = None) -> RunSummary:
    """Run the ``nightly`` or ``adhoc`` flow in this process on a Prefect API that does not outlive it.

    With PREFECT_API_URL set, that server records the run; otherwise a local API server is started as a child of
    this command (state under the settings folder's ``.prefect``) while Prefect is imported, and stops with it.
    """
    from flows.server import prefect_api
    from flows.settings import find_settings_file

    settings_file = find_settings_file(params.config_file)
    runtime.configure((settings_file.resolve().parent if settings_file else Path.cwd()) / ".prefect")
    flows: dict[str, Any] = {}

    def import_flows() -> None:  # Prefect is imported only now: a usage error costs no server start
        from flows import pipeline

        flows.update(nightly=pipeline.nightly, adhoc=pipeline.adhoc)

    with prefect_api(Path(os.environ["PREFECT_HOME"]), before_wait=import_flows), runtime.fast_flow_runs(), \
            runtime.run_progress():
        return _on_task_runner(flows[name], dask_address)(params)  # type: ignore[no-any-return]


def demo_commands(config: Path, *, first_supplier: str) -> list[tuple[str, str]]:
    """What to type next to reach the demo's store, from the working folder (``config`` relative when inside it)."""
    try:
        shown = config.resolve().relative_to(Path.cwd())
    except ValueError:
        shown = config.resolve()
    flag = f"--config {shown}"
    return [
        ("The approved supplier list", f"supplier-eval asl {flag}"),
        ("Evaluations recorded", f"supplier-eval history {flag}"),
        ("The email ledger", f"supplier-eval outbox {flag}"),
        ("Open corrective actions", f"supplier-eval actions --open {flag}"),
        ("One supplier, ad hoc", f"supplier-eval evaluate --supplier {first_supplier} {flag}"),
        ("The nightly run again (nothing doubled)", f"supplier-eval nightly {flag}"),
        ("Serve it every night, with the UI", f"supplier-eval serve {flag}"),
    ]


def _preflight_settings(settings: Any) -> None:
    """The rule and mapping files the settings name check, before any server starts."""
    from rules.loader import load_rule_set

    load_rule_set(settings.rules_file)
    if settings.mapping_file is not None:
        from suppliers.mapping import load_mapping

        load_mapping(settings.mapping_file)


def _demo_settings() -> str:
    return """# Settings written by `supplier-eval demo`; paths are relative to this file.
[data]
dir = "data"

[store]
url = "sqlite:///supplier-eval.db"

[output]
dir = "reports"

[mail]
sender = "supplier-eval@example.org"
officers = ["quality.manager@example.org", "procurement.lead@example.org"]
outbox_dir = "outbox"
"""


def _print_summary(summary: RunSummary, *, store: Any) -> None:
    echo = click.echo
    echo("")
    echo(f"Run {summary.run_id}  as of {summary.as_of}  ({summary.window_days}-day window)")
    recorded = ("already recorded: nothing added" if summary.already_recorded
                else f"{summary.evaluations_added} new evaluations recorded")
    chosen = "the active suppliers due for re-evaluation; " if summary.selection == "due" else ""
    echo(f"Suppliers evaluated: {summary.suppliers_evaluated}  ({chosen}{recorded})")
    if not summary.changes_asl:
        echo("What-if run (another rule set or window than the rules in force): the ASL is left unchanged, and the")
        echo("reports go only to the addresses given with --to.")
    labels = {band: f"Band {band} ({status})" for band, status in summary.band_statuses.items()}
    labels["insufficient data"] = "Insufficient data"
    width = max(len(label) for label in labels.values())
    for band, count in summary.bands.items():
        echo(f"  {labels.get(band, band):<{width}} {count:>6}  {'#' * min(count, 60)}")
    recorded_before = " (recorded by the first run)" if summary.already_recorded and summary.status_changes else ""
    echo(f"Status changes: {summary.status_changes}{recorded_before}    Quarantined rows: {summary.quarantined_rows}")
    if summary.unchanged_reason:
        echo(f"Why no status changed where the scores would have: {summary.unchanged_reason}")
    if summary.awaiting_approval:
        plural = "s" if summary.awaiting_approval != 1 else ""
        echo(f"Awaiting approval: {summary.awaiting_approval} proposed status change{plural} ({summary.proposals} "
             "from this run); `supplier-eval asl` lists them, `supplier-eval asl approve|reject SUPPLIER --by NAME "
             "--reason TEXT` decides")
    if summary.kept_by_manual_decision:
        echo(f"Kept by a manual decision in force: {summary.kept_by_manual_decision}")
    if summary.actions_raised:
        echo(f"Actions raised: {summary.actions_raised} (corrective action requests, block-orders "
             "recommendations): `supplier-eval actions --open`")
    if summary.overdue:
        echo(f"Overdue for re-evaluation and not evaluated in this run: {summary.overdue} (listed in the digest)")
    echo(f"Reports:  {summary.reports_dir}")
    how = "written as .eml files to" if summary.transport == "outbox" else "sent via"
    elsewhere = summary.messages_in_progress_elsewhere
    earlier = summary.messages - summary.messages_delivered_now - elsewhere
    notes = [f"{earlier} already sent before"] if earlier else []
    if elsewhere:
        notes.append(f"{elsewhere} being sent by another run; `supplier-eval outbox retry` sends any it leaves")
    echo(f"Emails:   {summary.messages_delivered_now} {how} {summary.delivery_location}"
         + (f" ({'; '.join(notes)})" if notes else ""))
    echo(f"Store:    {store}")


def _stop_on_signal(signum: int, _frame: Any) -> None:
    """SIGTERM and Ctrl-C: let the messages on the wire be answered and recorded, then stop (KeyboardInterrupt).

    When nothing is being sent, or at a second signal, stop at once.
    """
    global _STOP_SIGNAL
    first = _STOP_SIGNAL is None
    _STOP_SIGNAL = signum
    delivery = sys.modules.get("reports.delivery")  # not imported yet: nothing is being sent
    if first and delivery is not None and delivery.stop_sending():
        return
    raise KeyboardInterrupt


_STOP_SIGNAL: int | None = None


def main(argv: list[str] | None = None) -> int:
    import signal
    import threading

    global _STOP_SIGNAL
    _STOP_SIGNAL = None
    previous = {}
    if threading.current_thread() is threading.main_thread():  # signals reach only the main thread
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, _stop_on_signal)
    try:
        return _main(argv)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _main(argv: list[str] | None) -> int:
    import signal

    try:
        result = cli.main(args=argv, prog_name="supplier-eval", standalone_mode=False)
    except (KeyboardInterrupt, click.exceptions.Abort):
        signum = _STOP_SIGNAL or signal.SIGINT
        click.echo(f"Stopped ({signal.Signals(signum).name}): what was not sent stays queued in the outbox ledger; "
                   "the next run or `supplier-eval outbox retry` sends it.", err=True)
        return 128 + signum
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except SupplierEvalError as exc:
        click.echo(f"error: {exc}", err=True)
        for detail in exc.details:
            click.echo(f"  {detail}", err=True)
        return exc.exit_code
    except OSError as exc:  # a disk or permission problem outside any check: still one line, not a traceback
        click.echo(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
