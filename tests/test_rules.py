"""The rule loader: the shipped file checks, and every kind of mistake names the file, the line and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.catalogue import METRICS
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
    assert [(g.when, g.effect) for g in rule_set.gates] == [
        ("certificate_expired", ("cap", "conditional")), ("open_critical_nonconformance", ("cap", "probation")),
        ("repeated_low_score", ("cap", "probation"))]
    assert [(p.name, p.reevaluate_every_days) for p in rule_set.profiles] == [
        ("critical", 90), ("major", 180), ("minor", 365)]
    assert [c.minimum_evidence for c in rule_set.criteria] == [None, None, None, 3]  # mean days late: 3 late lines
    assert rule_set.transitions.disqualify_after_consecutive == 2
    assert rule_set.transitions.needs_approval == ("disqualified", "probation")
    assert rule_set.transitions.needs_approval_to_enter == ("disqualified",)
    assert rule_set.action_for("conditional").startswith("Approved with conditions")
    assert len(rule_set.content_hash) == 64



def test_the_rule_file_says_what_happens_to_a_criterion_not_measured(tmp_path: Path) -> None:
    assert load_rule_set().not_measured == "renormalise"
    path = tmp_path / "rules.yaml"
    path.write_text(SHIPPED.replace("not_measured: renormalise", "not_measured: insufficient_data"), encoding="utf-8")
    assert load_rule_set(path).not_measured == "insufficient_data"
    path.write_text(SHIPPED.replace("not_measured: renormalise\n", ""), encoding="utf-8")
    assert load_rule_set(path).not_measured == "renormalise"  # the default
    text = SHIPPED.replace("not_measured: renormalise", "not_measured: skip")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RuleSetError) as caught:
        load_rule_set(path)
    assert str(caught.value).startswith(
        f"{path}:{line_of(text, 'not_measured: skip')}: not_measured: input should be 'renormalise' or "
        "'insufficient_data', got 'skip'"
    )

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


def three_mistakes(tmp_path: Path) -> Path:
    """The shipped file with a negative window (line 12), an unknown metric (line 30) and a misspelt status (73)."""
    lines = SHIPPED.splitlines(keepends=True)
    mistakes = ((12, "window_days: 365", "window_days: -3"), (30, "metric: on_time_rate", "metric: ontime"),
                (73, "status: probation", "status: probaton"))
    for number, old, new in mistakes:
        assert old in lines[number - 1], f"the shipped rule file changed: line {number} no longer has {old!r}"
        lines[number - 1] = lines[number - 1].replace(old, new)
    path = tmp_path / "my rules.yaml"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_every_problem_is_one_error_first_in_the_message_the_others_as_details(tmp_path: Path) -> None:
    path = three_mistakes(tmp_path)
    with pytest.raises(RuleSetError) as caught:
        load_rule_set(path)
    error = caught.value
    assert error.where == f"{path}:12"
    assert error.what == "evaluation.window_days: Input should be greater than or equal to 1 (got -3)"
    assert error.details == (
        f"{path}:30: criteria[0].metric: unknown metric 'ontime'; known metrics: {', '.join(METRICS)}",
        f"{path}:73: bands[2].status: input should be 'approved', 'conditional', 'probation' or 'disqualified', "
        "got 'probaton'",
    )
    assert "\n" not in str(error) and str(error).endswith("(2 more problems below)")
    assert "supplier-eval rules check" in (error.fix or "")


def test_rules_check_prints_one_line_then_one_line_per_further_problem(tmp_path: Path, capsys) -> None:
    from flows.cli import main

    path = three_mistakes(tmp_path)
    assert main(["rules", "check", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    first, *others = captured.err.splitlines()
    assert first.startswith(f"error: {path}:12: evaluation.window_days: ")
    assert "greater than or equal to 1 (got -3)" in first and "Correct each line named" in first
    assert first.endswith("(2 more problems below)")
    assert [line.split(": ", 2)[:2] for line in others] == [[f"  {path}:30", "criteria[0].metric"],
                                                            [f"  {path}:73", "bands[2].status"]]
    assert "unknown metric 'ontime'" in others[0] and "got 'probaton'" in others[1]
    assert "Traceback" not in captured.err


def test_a_single_problem_has_no_details(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(SHIPPED.replace("metric: on_time_rate", "metric: ontime"), encoding="utf-8")
    with pytest.raises(RuleSetError) as caught:
        load_rule_set(path)
    assert caught.value.details == ()
    assert str(caught.value).startswith(f"{path}:30: criteria[0].metric: unknown metric 'ontime'")
    assert "more problem" not in str(caught.value)


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
