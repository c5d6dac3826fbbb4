"""The [schedule] keys serve reads: a cron line and a time zone, checked when the settings are read."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.settings import load_settings
from suppliers.errors import ConfigError


def settings_with(tmp_path: Path, schedule: str) -> Path:
    file = tmp_path / "supplier-eval.toml"
    file.write_text(f"[schedule]\n{schedule}\n", encoding="utf-8")
    return file


def test_the_defaults_run_at_two_in_the_morning_utc_on_port_4200(tmp_path: Path) -> None:
    schedule = load_settings(settings_with(tmp_path, "")).schedule
    assert (schedule.cron, schedule.timezone, schedule.port) == ("0 2 * * *", "UTC", 4200)


@pytest.mark.parametrize(("line", "message"), [
    ('cron = "0 2 * *"', "setting 'schedule.cron': '0 2 * *' is not a cron line: five fields"),
    ('timezone = "Europe/Berlim"', "setting 'schedule.timezone': 'Europe/Berlim' is not a time zone"),
    ("port = 0", "setting 'schedule.port': Input should be greater than or equal to 1"),
])
def test_a_bad_schedule_is_one_clear_line(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(settings_with(tmp_path, line))
    assert message in str(error.value) and error.value.exit_code == 2


def test_a_cron_line_and_zone_are_taken_as_written(tmp_path: Path) -> None:
    schedule = load_settings(settings_with(tmp_path, 'cron = "30 1 * * 1-5"\ntimezone = "Europe/Berlin"')).schedule
    assert (schedule.cron, schedule.timezone) == ("30 1 * * 1-5", "Europe/Berlin")
