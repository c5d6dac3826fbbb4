"""The rule loader: the shipped file checks, and every kind of mistake names the file, the line and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.loader import default_rules_path, load_rule_set
from suppliers.errors import RuleSetError

SHIPPED = default_rules_path().read_text(encoding="utf-8")


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    lines = text.splitlines()
    hits = [number for number, line in enumerate(lines, start=1) if needle in line]
    return hits[occurrence - 1]


def test_shipped_rule_set_loads_with_weights_100_and_four_bands() -> None:
    rule_set = load_rule_set()
    assert sum(c.weight for c in rule_set.criteria) == 100
    assert [(b.band, b.status) for b in rule_set.bands] == [
        ("A", "approved"), ("B", "conditional"), ("C", "probation"), ("D", "disqualified")]
    assert [(g.when, g.cap_status) for g in rule_set.gates] == [("certificate_expired", "conditional")]
    assert len(rule_set.content_hash) == 64


def test_content_hash_changes_with_the_file(tmp_path: Path) -> None:
    changed = tmp_path / "rules.yaml"
    changed.write_text(SHIPPED.replace("window_days: 365", "window_days: 180"), encoding="utf-8")
    assert load_rule_set(changed).content_hash != load_rule_set().content_hash


@pytest.mark.parametrize(
    ("old", "new", "line_needle", "message"),
    [
        ("    weight: 20\n    scale:\n      linear: { zero_points_at: 0.60",
         "    weight: 15\n    scale:\n      linear: { zero_points_at: 0.60",
         "criteria:", "criterion weights add up to 95, not 100"),
        ("    from: 70", "    from: 72", "bands:", "gap between band C (to 70) and band B (from 72)"),
        ("    from: 70", "    from: 65", "bands:", "bands C (to 70) and B (from 65) overlap"),
        ("    from: 0\n", "    from: 5\n", "bands:", "bands must start at 0"),
        ("    metric: otif_rate", "    metric: otif_rate\n    wieght: 3", "wieght",
         "criteria[1].wieght: unknown key 'wieght'; allowed here: name, metric, weight, scale"),
        ("window_days: 365", "window_days: 365\n  windows: 3", "windows", "unknown key 'windows'"),
        ("status: probation", "status: probaton", "probaton", "'approved', 'conditional', 'probation' or "
                                                               "'disqualified', got 'probaton'"),
        ("metric: on_time_rate", "metric: ontime", "ontime", "unknown metric 'ontime'; known metrics: on_time_rate"),
        ("      otherwise: 0\n", "", "scale:", "a 'steps' scale needs 'otherwise'"),
        ("when: certificate_expired", "when: cert_expired", "cert_expired", "unknown gate condition 'cert_expired'"),
        ("  window_days: 365", "  window_days: -3", "window_days", "greater than or equal to 1"),
    ],
)
def test_mistakes_are_reported_with_file_line_and_allowed_values(
    tmp_path: Path, old: str, new: str, line_needle: str, message: str
) -> None:
    assert old in SHIPPED
    text = SHIPPED.replace(old, new, 1)
    path = tmp_path / "my-rules.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RuleSetError) as caught:
        load_rule_set(path)
    error = str(caught.value)
    occurrence = 3 if line_needle == "scale:" else 1  # the third criterion's scale is the steps one
    assert f"{path}:{line_of(text, line_needle, occurrence)}:" in error
    assert message in error
    assert caught.value.exit_code == 2


def test_every_problem_is_listed_not_just_the_first(tmp_path: Path) -> None:
    text = SHIPPED.replace("metric: on_time_rate", "metric: ontime").replace("status: probation", "status: x")
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RuleSetError) as caught:
        load_rule_set(path)
    assert "unknown metric 'ontime'" in str(caught.value) and "got 'x'" in str(caught.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name: [unclosed\n", "not valid YAML"),
        ("", "the rule file is empty"),
        ("- just\n- a list\n", "must be a mapping"),
        ("name: a\nname: b\n", "key 'name' appears twice"),
    ],
)
def test_malformed_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(RuleSetError, match=message):
        load_rule_set(path)


def test_missing_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(RuleSetError, match="rule file not found.*omit it to use iso9001-8.4.yaml"):
        load_rule_set(tmp_path / "nope.yaml")
