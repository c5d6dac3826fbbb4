"""Progress on a terminal only, moved on by the run's task-run log lines."""

from __future__ import annotations

import logging

import pytest

from flows import runtime


def finished(task_name: str) -> logging.LogRecord:
    record = logging.LogRecord("prefect.task_runs", logging.INFO, __file__, 1, "Finished in state Completed()", (),
                               None)
    record.task_name = task_name
    return record


def test_each_finished_step_moves_the_bar_to_the_next_one() -> None:
    from rich.progress import Progress

    progress = Progress()
    bar = progress.add_task("load sources", total=len(runtime.RUN_STEPS))
    handler = runtime._StepProgress(progress, bar)
    handler.emit(finished("validate"))
    assert progress.tasks[0].completed == 2 and progress.tasks[0].description == "read schedule"
    handler.emit(finished("some other task"))  # not a step of the run: no move
    assert progress.tasks[0].completed == 2
    handler.emit(finished("deliver"))
    assert progress.tasks[0].completed == len(runtime.RUN_STEPS)


def test_no_progress_bar_in_a_pipe_or_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    assert runtime.shows_progress() is False  # pytest captures stderr: not a terminal
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    monkeypatch.setenv("CI", "true")
    assert runtime.shows_progress() is False
    before = list(logging.getLogger("prefect.task_runs").handlers)
    with runtime.run_progress():
        assert logging.getLogger("prefect.task_runs").handlers == before  # nothing attached
