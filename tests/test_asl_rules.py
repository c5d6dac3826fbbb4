"""Clause 8.4 in full, the pure core: per-criterion evidence, profiles, gates, transition rules, actions, schedule.

Every case is computed by hand with the shipped criteria: on-time 30 % (linear 0.70 → 0, 0.98 → 100), OTIF
20 % (0.60 → 0, 0.95 → 100), PPM 30 % (≤1000: 100, ≤3000: 80, ≤10000: 50, ≤30000: 20, else 0), mean days
late 20 % (20 → 0, 2 → 100, measured over at least 3 late lines).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.asl import (
    apply_transitions,
    open_critical_ages,
    overdue_suppliers,
    raise_actions,
    schedule,
    unchanged_reason,
    with_asl_facts,
)
from rules.decide import decide
from rules.loader import default_rules_path, load_rule_set, parse_rule_set
from rules.metrics import METRIC_COLUMNS
from rules.model import RuleSet
from rules.scoring import score_suppliers
from suppliers.errors import RuleSetError

AS_OF = date(2026, 6, 30)
RULES = load_rule_set()
SHIPPED = default_rules_path().read_text(encoding="utf-8")
EMPTY_PREVIOUS = pl.DataFrame(schema={"supplier_id": pl.String, "previous_as_of": pl.Date,
                                      "previous_score": pl.Float64, "previous_band": pl.String})
NO_OFFICIAL = pl.DataFrame(schema={"supplier_id": pl.String, "official_as_of": pl.Date})


def metrics_row(supplier_id: str, **values: object) -> dict:
    row: dict = {column: None for column in METRIC_COLUMNS}
    row |= {
        "supplier_id": supplier_id, "order_lines": 20, "inspected_lines": 20, "on_time_lines": 20,
        "in_full_lines": 20, "otif_lines": 20, "late_lines": 3, "on_time_rate": 1.0, "on_time_rate_low": None,
        "on_time_rate_high": None, "in_full_rate": 1.0, "in_full_rate_low": None, "in_full_rate_high": None,
        "otif_rate": 1.0, "otif_rate_low": None, "otif_rate_high": None, "mean_days_late": 0.0, "receipts": 20,
        "inspected_receipts": 20, "units_inspected": 1000.0, "acceptance_rate": 1.0, "ppm_rejected": 0.0,
        "nonconformances": 0, "open_critical_nonconformances": 0, "feedback_entries": 0, "feedback_score": None,
    }
    row.update(values)
    return row


def suppliers_frame(ids: list[str], **columns: list) -> pl.DataFrame:
    base = {"supplier_id": ids, "name": [f"Supplier {i}" for i in ids], "category": ["parts"] * len(ids),
            "criticality": ["major"] * len(ids), "owner_email": [f"buyer.{i.lower()}@example.org" for i in ids],
            "certificate_expiry": [None] * len(ids), "current_status": ["approved"] * len(ids)}
    base.update(columns)
    return pl.DataFrame(base, schema_overrides={"certificate_expiry": pl.Date, "owner_email": pl.String})


def scored(rows: list[dict], rules: RuleSet = RULES, **columns: list) -> dict[str, dict]:
    suppliers = suppliers_frame([r["supplier_id"] for r in rows], **columns)
    result = score_suppliers(suppliers, pl.DataFrame(rows, infer_schema_length=None), rules, as_of=AS_OF)
    return {r["supplier_id"]: r for r in result.to_dicts()}


def rules_from(text: str, tmp_path: Path) -> RuleSet:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return load_rule_set(path)


# --- item 3: per-criterion evidence --------------------------------------------------------------------------


def test_one_late_line_of_356_no_longer_moves_a_99_7_percent_supplier_to_band_b() -> None:
    # The case: 356 lines judged, 355 on time (99.7 % ≥ 98 % → 100 points), one line 43 days late.
    # Mean days late over that one line is 43 → 0 points; measured, it costs 20 of 100: score 80.0, band B.
    # With the shipped minimum of 3 late lines it is not measured: (100×30 + 100×20 + 100×30) / 80 = 100.0, A.
    row = metrics_row("S1", order_lines=356, on_time_lines=355, on_time_rate=355 / 356, late_lines=1,
                      mean_days_late=43.0)
    result = scored([row])["S1"]
    assert (result["score"], result["band"], result["measured_weight"]) == (100.0, "A", 80.0)
    assert result["points_3_measured"] is False and result["points_3"] is None
    assert result["points_3_not_measured"] == "1 late lines (minimum 3)"
    without = RULES.model_copy(update={"criteria": tuple(c.model_copy(update={"minimum_evidence": None})
                                                         for c in RULES.criteria)})
    before = scored([row], without)["S1"]
    assert (before["score"], before["band"]) == (80.0, "B")


def test_at_the_minimum_the_criterion_is_measured() -> None:
    # 3 late lines, 11 days late on average → 100 × (20 − 11) / 18 = 50 points × 20 % = 10; the rest full: 90.0
    result = scored([metrics_row("S1", late_lines=3, mean_days_late=11.0)])["S1"]
    assert (result["score"], result["measured_weight"], result["points_3"]) == (90.0, 100.0, 50.0)


def test_below_minimum_evidence_under_insufficient_data_gives_no_score() -> None:
    strict = RULES.model_copy(update={"not_measured": "insufficient_data"})
    result = scored([metrics_row("S1", late_lines=2, mean_days_late=30.0)], strict)["S1"]
    assert (result["score"], result["band"], result["insufficient_data"]) == (None, None, True)
    assert result["insufficient_reason"] == "Lateness when late (mean days): 2 late lines (minimum 3)"


def test_the_criteria_rows_say_the_evidence_was_too_little() -> None:
    selected = suppliers_frame(["S1"])
    rows = [metrics_row("S1", late_lines=1, mean_days_late=43.0)]
    result = score_suppliers(selected, pl.DataFrame(rows, infer_schema_length=None), RULES, as_of=AS_OF)
    decisions = decide(selected, result, RULES, previous=EMPTY_PREVIOUS, official_as_of=NO_OFFICIAL, as_of=AS_OF,
                       official=True)
    criteria = decisions.evaluated.row(0, named=True)["criteria"]
    late = criteria[3]
    assert (late["measured"], late["not_measured_reason"], late["evidence"], late["points"]) == (
        False, "1 late lines (minimum 3)", 1, None)
    assert [c["effective_weight"] for c in criteria] == pytest.approx([37.5, 25.0, 37.5, None])


# --- item 4: profiles ------------------------------------------------------------------------------------------

PROFILED = SHIPPED.replace("""profiles:
  - name: critical
    when: { criticality: [critical] }
    reevaluate_every_days: 90
""", """profiles:
  - name: critical
    when: { criticality: [critical] }
    reevaluate_every_days: 90
    minimum_evidence: { order_lines: 30, receipts: 3 }
    criteria:
      - name: On-time delivery
        weight: 50
      - name: Lateness when late (mean days)
        weight: 0.5
        minimum_evidence: 1
      - name: Quality of goods received (rejects per million)
        weight: 29.5
        scale:
          steps: [{ at_most: 100, points: 100 }]
          otherwise: 0
  - name: electronics
    when: { category: [electronics] }
    reevaluate_every_days: 120
  - name: major electronics
    when: { criticality: [major], category: [electronics, cables] }
    reevaluate_every_days: 60
""")


def test_profiles_match_first_by_criticality_and_category_with_a_default(tmp_path: Path) -> None:
    rules = rules_from(PROFILED, tmp_path)
    rows = [metrics_row(i) for i in ("C1", "E1", "E2", "M1", "N1")]
    result = scored(rows, rules, criticality=["critical", "major", "minor", "major", "minor"],
                    category=["electronics", "electronics", "electronics", "cables", "castings"])
    # C1 is critical and electronics: the first match (critical) wins. E1 and E2: electronics (major
    # electronics comes after it and never gets E1). M1: major + cables matches 'major electronics' (both
    # conditions hold), N1 matches nothing before the default, minor.
    assert {k: (v["profile"], v["reevaluate_every_days"]) for k, v in result.items()} == {
        "C1": ("critical", 90), "E1": ("electronics", 120), "E2": ("electronics", 120),
        "M1": ("major electronics", 60), "N1": ("minor", 365)}


def test_a_profile_scores_with_its_own_weights_scales_and_minimum_evidence(tmp_path: Path) -> None:
    rules = rules_from(PROFILED, tmp_path)
    # Both: on time 0.85 → 100 × 0.15 / 0.28 = 53.57 points; OTIF 1.0 → 100; PPM 500; one late line, 8 days.
    row = {"on_time_rate": 0.85, "ppm_rejected": 500.0, "late_lines": 1, "mean_days_late": 8.0}
    result = scored([metrics_row("CRIT", order_lines=40, **row), metrics_row("MIN", order_lines=40, **row)], rules,
                    criticality=["critical", "minor"])
    # critical: weights 50/20/29.5/0.5; PPM 500 > 100 → 0 points (its own scale); mean days late measured
    # (1 late line ≥ its minimum 1): 100 × (20 − 8) / 18 = 66.67 points.
    #   53.57×0.5 + 100×0.2 + 0×0.295 + 66.67×0.005 = 26.79 + 20 + 0 + 0.33 = 47.12 → 47.1, band D
    crit = result["CRIT"]
    assert [crit[f"points_{i}_weight"] for i in range(4)] == [50.0, 20.0, 29.5, 0.5]
    assert [crit[f"points_{i}"] for i in range(4)] == pytest.approx([750 / 14, 100.0, 0.0, 200 / 3])
    assert (crit["score"], crit["band"]) == (47.1, "D")
    # minor (the shipped criteria): PPM 500 → 100 points; 1 late line < 3: not measured.
    #   (53.57×30 + 100×20 + 100×30) / 80 = (1607.14 + 5000) / 80 = 82.59 → 82.6, band B
    low = result["MIN"]
    assert [low[f"points_{i}_weight"] for i in range(4)] == [30.0, 20.0, 30.0, 20.0]
    assert (low["measured_weight"], low["score"], low["band"]) == (80.0, 82.6, "B")
    # the critical profile needs 30 order lines
    few = scored([metrics_row("CRIT", order_lines=20, **row)], rules, criticality=["critical"])["CRIT"]
    assert few["insufficient_reason"] == "20 order lines due in the window (minimum 30)"


def test_the_evaluation_records_the_profile_and_the_next_due_date() -> None:
    selected = suppliers_frame(["K", "J", "N"], criticality=["critical", "major", "minor"])
    rows = [metrics_row("K"), metrics_row("J"), metrics_row("N", order_lines=2)]
    result = score_suppliers(selected, pl.DataFrame(rows, infer_schema_length=None), RULES, as_of=AS_OF)
    evaluated = decide(selected, result, RULES, previous=EMPTY_PREVIOUS, official_as_of=NO_OFFICIAL, as_of=AS_OF,
                       official=True).evaluated
    assert evaluated.select("supplier_id", "profile", "next_due").rows() == [
        ("K", "critical", date(2026, 9, 28)),  # 2026-06-30 + 90 days
        ("J", "major", date(2026, 12, 27)),  # + 180 days
        ("N", "minor", None),  # insufficient data: due again at once
    ]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("  - name: minor                    # minor", "  - name: minor\n    when: { criticality: [minor] }  #",
         "the last profile (minor) is the default: leave out its 'when'"),
        ("    when: { criticality: [major] }\n", "", "profile major: only the last profile may leave out 'when'"),
        ("    reevaluate_every_days: 90\n", "    reevaluate_every_days: 90\n    criteria: [{name: Speed, weight: 5}]\n",
         "profile critical: no criterion named 'Speed'"),
        ("    reevaluate_every_days: 90\n",
         "    reevaluate_every_days: 90\n    criteria: [{name: On-time delivery, weight: 50}]\n",
         "profile critical: criterion weights add up to 120, not 100"),
        ("    cap_status: conditional\n", "    cap_status: conditional\n    force_status: probation\n",
         "needs exactly one of cap_status or force_status"),
        ("    cap_status: conditional\n", "    cap_status: conditional\n    older_than_days: 3\n",
         "'older_than_days' belongs to a 'open_critical_nonconformance' gate"),
        ("    bands: [B, C, D]\n", "", "a 'repeated_low_score' gate needs 'bands'"),
        ("    bands: [B, C, D]\n", "    bands: [B, X]\n", "no band 'X'"),
        ("  needs_approval: [disqualified, probation]", "  needs_approval: [banned]", "got 'banned'"),
    ],
)
def test_profile_gate_and_transition_mistakes_are_named(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in SHIPPED
    with pytest.raises(RuleSetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        rules_from(SHIPPED.replace(old, new, 1), tmp_path)


# --- item 5: gates ---------------------------------------------------------------------------------------------

GATED = SHIPPED.replace("""gates:
  - name: Quality certificate expired
    when: certificate_expired
    cap_status: conditional
""", """gates:
  - name: Quality certificate expired
    when: certificate_expired
    cap_status: conditional
  - name: Certificate expires within 30 days
    when: certificate_expired
    within_days: 30
    cap_status: conditional
  - name: Band D twice
    when: repeated_low_score
    bands: [D]
    force_status: disqualified
""")


def test_certificate_expired_or_expiring_within_n_days(tmp_path: Path) -> None:
    rules = rules_from(GATED, tmp_path)
    expiry = [AS_OF - timedelta(days=1), AS_OF, AS_OF + timedelta(days=29), AS_OF + timedelta(days=30), None]
    ids = ["expired", "today", "in29", "in30", "none"]
    result = scored([metrics_row(i) for i in ids], rules, certificate_expiry=expiry)
    assert {i: result[i]["gates_hit"] for i in ids} == {
        "expired": ["Quality certificate expired", "Certificate expires within 30 days"],
        "today": ["Certificate expires within 30 days"],  # valid on its last day, but expiring
        "in29": ["Certificate expires within 30 days"],
        "in30": [],  # expires 30 days after: not within
        "none": [],  # no certificate on record is not an expired one
    }
    assert result["in29"]["status"] == "conditional"
    assert result["in29"]["gate_note"] == "Capped at conditional by: Certificate expires within 30 days."
    assert result["expired"]["gate_note"] == (
        "Capped at conditional by: Quality certificate expired, Certificate expires within 30 days.")


def test_an_open_critical_nonconformance_older_than_n_days() -> None:
    ncrs = pl.DataFrame({
        "ncr_id": ["N1", "N2", "N3", "N4", "N5", "N6"],
        "supplier_id": ["OLD", "OLD", "NEW", "CLOSED", "LATER", "MAJOR"],
        "raised_date": [AS_OF - timedelta(days=31), AS_OF - timedelta(days=5), AS_OF - timedelta(days=30),
                        AS_OF - timedelta(days=90), AS_OF + timedelta(days=1), AS_OF - timedelta(days=90)],
        "severity": ["critical", "critical", "critical", "critical", "critical", "major"],
        # CLOSED was closed after the as-of date: still open then
        "closed_date": [None, None, None, AS_OF + timedelta(days=3), None, None],
    })
    ages = dict(open_critical_ages(ncrs, AS_OF).rows())
    assert ages == {"OLD": 31, "NEW": 30, "CLOSED": 90}  # LATER was not raised yet, MAJOR is not critical
    ids = ["OLD", "NEW", "CLOSED", "NONE"]
    selected = with_asl_facts(suppliers_frame(ids), manual=pl.DataFrame(schema={"supplier_id": pl.String, **{
        k: v for k, v in {"manual_status": pl.String, "manual_by": pl.String, "manual_reason": pl.String,
                          "manual_until": pl.Date}.items()}}), previous_bands=pl.DataFrame(schema={
        "supplier_id": pl.String, "as_of": pl.Date, "band": pl.String}), nonconformances=ncrs, as_of=AS_OF)
    rows = [metrics_row(i, open_critical_nonconformances=1 if i != "NONE" else 0) for i in ids]
    result = score_suppliers(selected, pl.DataFrame(rows, infer_schema_length=None), RULES, as_of=AS_OF)
    hits = dict(result.select("supplier_id", "status").rows())
    assert hits == {"OLD": "probation", "NEW": "approved", "CLOSED": "probation", "NONE": "approved"}
    old = result.filter(pl.col("supplier_id") == "OLD").row(0, named=True)
    assert old["gate_note"] == "Capped at probation by: Critical nonconformance open over 30 days."


def test_repeated_low_scores_force_a_status(tmp_path: Path) -> None:
    rules = rules_from(GATED, tmp_path)
    # on time 0.70 → 0; OTIF 0.60 → 0; PPM 0 → 100 × 30 %; mean days late 20 → 0: score 30.0, band D
    bad = {"on_time_rate": 0.70, "otif_rate": 0.60, "mean_days_late": 20.0}
    rows = [metrics_row(i, **bad) for i in ("twice", "once", "first")] + [metrics_row("good")]
    result = scored(rows, rules, recent_bands=[["D", "A"], ["C", "D"], [], ["D"]])
    assert result["twice"]["gates_hit"] == ["Band D twice"]
    assert result["twice"]["gate_note"] == "Set to disqualified by: Band D twice."
    assert ["Band D twice" in result[i]["gates_hit"] for i in ("once", "first", "good")] == [False, False, False]
    assert result["once"]["gates_hit"] == ["Below band A three evaluations in a row"]  # D, C, D: the shipped gate
    # a forced status is forced even when the band is better
    better = rules_from(GATED.replace("force_status: disqualified", "force_status: conditional"), tmp_path)
    forced = scored([metrics_row("x", **bad)], better, recent_bands=[["D"]])["x"]
    assert (forced["band"], forced["status"], forced["gate_note"]) == (
        "D", "conditional", "Set to conditional by: Band D twice.")
    # the shipped gate: band B or worse three times in a row caps at probation
    shipped = scored([metrics_row("b3", on_time_rate=0.84), metrics_row("b2", on_time_rate=0.84)],
                     recent_bands=[["B", "C"], ["B", "A", "B"]])
    assert (shipped["b3"]["band"], shipped["b3"]["status"]) == ("A", "approved")  # this one is band A (85.0)
    worse = scored([metrics_row("b3", on_time_rate=0.80), metrics_row("b2", on_time_rate=0.80)],
                   recent_bands=[["B", "C"], ["B", "A", "B"]])
    assert (worse["b3"]["band"], worse["b3"]["status"]) == ("B", "probation")  # B, B, C in a row
    assert (worse["b2"]["band"], worse["b2"]["status"]) == ("B", "conditional")  # B, B, then A breaks the run


def test_the_action_shown_is_the_one_of_the_resulting_status_with_the_gate_named() -> None:
    selected = suppliers_frame(["S1"], certificate_expiry=[date(2026, 1, 1)])
    result = score_suppliers(selected, pl.DataFrame([metrics_row("S1")]), RULES, as_of=AS_OF)
    evaluated = decide(selected, result, RULES, previous=EMPTY_PREVIOUS, official_as_of=NO_OFFICIAL, as_of=AS_OF,
                       official=True).evaluated.row(0, named=True)
    assert (evaluated["band"], evaluated["status"]) == ("A", "conditional")
    assert evaluated["action"] == (
        "Capped at conditional by: Quality certificate expired. Action: Approved with conditions; agree an "
        "improvement plan with the supplier.")


# --- item 6: transition rules ----------------------------------------------------------------------------------


def transition(current: str, band: str, *, recent: list[str] | None = None, rules: RuleSet = RULES,
               official: bool = True, **extra: object) -> dict:
    """apply_transitions for one supplier whose band (no gate) gives ``band``'s status."""
    statuses = {b.band: b.status for b in rules.bands}
    frame = pl.DataFrame({
        "supplier_id": ["S1"], "current_status": [current], "status": [statuses[band]], "band": [band],
        "band_status": [statuses[band]], "gate_note": [None], "recent_bands": [recent or []],
        **{k: [v] for k, v in extra.items()},
    }, schema_overrides={"gate_note": pl.String, "recent_bands": pl.List(pl.String)})
    return apply_transitions(frame, rules, as_of=AS_OF, official=official).row(0, named=True)


def test_disqualification_needs_two_consecutive_d_evaluations_the_first_is_probation() -> None:
    first = transition("approved", "D")
    assert (first["proposed_status"], first["outcome"], first["status"]) == ("probation", "changed", "probation")
    assert first["status_note"] == ("Probation, not disqualified: disqualification needs 2 scored evaluations in "
                                    "a row in band D (1 so far).")
    # the second D in a row: disqualified, but leaving probation and entering disqualified need a person
    second = transition("probation", "D", recent=["D", "B"])
    assert (second["proposed_status"], second["outcome"], second["status"]) == (
        "disqualified", "proposed", "probation")
    assert "Proposed: probation to disqualified, awaiting a person's approval" in second["status_note"]
    assert second["action"].endswith("Action: Probation; a corrective action request (SCAR) is raised, follow it "
                                     "up by its due date.")
    # D, then C, then D: not in a row
    assert transition("probation", "D", recent=["C", "D"])["proposed_status"] == "probation"
    # already disqualified (by an approval): another D keeps it so
    assert transition("disqualified", "D")["outcome"] == "unchanged"


def test_leaving_probation_or_disqualified_needs_approval_other_moves_do_not() -> None:
    assert transition("disqualified", "A")["outcome"] == "proposed"
    assert transition("probation", "B")["outcome"] == "proposed"
    assert transition("approved", "C")["outcome"] == "changed"  # entering probation needs no one
    assert transition("conditional", "A")["outcome"] == "changed"
    assert transition("pending", "A")["outcome"] == "changed"  # a new supplier's first score sets its status
    without = RULES.model_copy(update={"transitions": RULES.transitions.model_copy(
        update={"needs_approval": (), "needs_approval_to_enter": (), "disqualify_after_consecutive": 1})})
    direct = transition("approved", "D", rules=without)
    assert (direct["outcome"], direct["status"]) == ("changed", "disqualified")


def test_a_manual_decision_is_respected_until_it_expires() -> None:
    manual = {"manual_status": "approved", "manual_by": "Q. Manager", "manual_reason": "sole source",
              "manual_until": date(2026, 7, 31)}
    held = transition("approved", "C", **manual)
    assert (held["outcome"], held["status"], held["proposed_status"]) == ("manual", "approved", "probation")
    assert held["status_note"] == ("Kept at approved: manual decision by Q. Manager (until 2026-07-31): sole source. "
                                   "This evaluation says probation.")
    expired = transition("approved", "C", **{**manual, "manual_until": date(2026, 6, 29)})
    assert (expired["outcome"], expired["status"]) == ("changed", "probation")
    on_the_day = transition("approved", "C", **{**manual, "manual_until": AS_OF})
    assert on_the_day["outcome"] == "manual"
    forever = transition("approved", "C", **{**manual, "manual_until": None})
    assert forever["status_note"].startswith("Kept at approved: manual decision by Q. Manager (no end date)")


def test_back_dated_and_what_if_runs_say_why_they_changed_nothing() -> None:
    later = transition("approved", "C", status_as_of=date(2026, 9, 30))
    assert (later["outcome"], later["status"]) == ("decided later", "approved")
    assert later["status_note"].startswith("Not applied: a later decision (as of 2026-09-30)")
    frame = pl.DataFrame([later, transition("approved", "A")])
    assert unchanged_reason(frame, official=True) == (
        "back-dated: 1 supplier was decided by later evaluations or decisions; their status was left as it is")
    what_if = transition("approved", "C", official=False)
    assert (what_if["outcome"], what_if["status"]) == ("what-if", "probation")
    assert unchanged_reason(pl.DataFrame([what_if]), official=False).startswith("what-if: another rule set or window")
    assert unchanged_reason(pl.DataFrame([transition("approved", "C")]), official=True) is None


# --- item 7: actions --------------------------------------------------------------------------------------------


def test_probation_raises_a_scar_and_disqualification_a_block_recommendation() -> None:
    changes = pl.DataFrame({"supplier_id": ["P", "D", "A"], "from_status": ["approved", "probation", "pending"],
                            "to_status": ["probation", "disqualified", "approved"], "reason": ["r1", "r2", "r3"]})
    owners = pl.DataFrame({"supplier_id": ["P", "D", "A"], "name": ["Pe", "De", "Ae"],
                           "owner_email": ["buyer@example.org", None, None]})
    actions = raise_actions(changes, owners, RULES, on=AS_OF, officers=["qm@example.org", "lead@example.org"])
    assert actions.rows() == [
        ("D", "block_orders", AS_OF, None, "qm@example.org, lead@example.org",
         "Block new orders to De: disqualified (r2). Source an alternative."),
        ("P", "scar", AS_OF, date(2026, 7, 30), "buyer@example.org",
         "Corrective action request to Pe: find the cause and correct it (r1)."),
    ]


# --- item 8: the schedule --------------------------------------------------------------------------------------


def test_next_due_dates_per_profile_and_who_is_due() -> None:
    suppliers = pl.DataFrame({
        "supplier_id": ["K1", "K2", "J1", "N1", "NEW", "GONE"], "name": list("abcdef"),
        "criticality": ["critical", "critical", "major", "minor", "minor", "critical"],
        "category": ["x"] * 6, "active": [True, True, True, True, True, False],
    })
    last = pl.DataFrame({
        "supplier_id": ["K1", "K2", "J1", "N1", "GONE"],
        "last_scored_before": [date(2026, 4, 1), date(2026, 3, 1), date(2026, 3, 1), date(2025, 7, 1),
                               date(2025, 1, 1)],
        "last_scored": [date(2026, 4, 1), date(2026, 3, 1), date(2026, 3, 1), date(2025, 7, 1), date(2025, 1, 1)],
    })
    plan = schedule(suppliers, last, RULES, as_of=AS_OF)
    assert plan.select("supplier_id", "profile", "next_due", "due", "overdue").rows() == [
        ("GONE", "critical", date(2025, 4, 1), True, True),
        ("J1", "major", date(2026, 8, 28), False, False),  # 2026-03-01 + 180
        ("K1", "critical", date(2026, 6, 30), True, False),  # 2026-04-01 + 90: due today, not overdue
        ("K2", "critical", date(2026, 5, 30), True, True),  # 2026-03-01 + 90
        ("N1", "minor", date(2026, 7, 1), False, False),  # 2025-07-01 + 365
        ("NEW", "minor", None, True, True),  # never scored: due, and listed as never evaluated
    ]
    overdue = overdue_suppliers(plan, suppliers, evaluated_ids=["K1", "NEW"])
    assert overdue["supplier_id"].to_list() == ["K2"]  # GONE is inactive; NEW and K1 were evaluated now


# --- properties ----------------------------------------------------------------------------------------------------

RATES = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
METRICS = {
    "on_time_rate": RATES, "otif_rate": RATES,
    "ppm_rejected": st.floats(min_value=0.0, max_value=1_000_000.0, allow_nan=False),
    "mean_days_late": st.floats(min_value=0.0, max_value=400.0, allow_nan=False),
    "late_lines": st.integers(min_value=0, max_value=50),
    "order_lines": st.integers(min_value=0, max_value=500),
    "receipts": st.integers(min_value=0, max_value=500),
}
HIGHER_IS_BETTER = {"on_time_rate": True, "otif_rate": True, "ppm_rejected": False, "mean_days_late": False}
supplier_metrics = st.fixed_dictionaries({k: st.one_of(st.none(), v) if k in HIGHER_IS_BETTER else v
                                          for k, v in METRICS.items()})


def scores_of(batch: list[dict]) -> list[dict]:
    """Score a batch of suppliers in one frame (one Polars pass per example, many suppliers each)."""
    result = scored([metrics_row(f"S{n:03d}", **values) for n, values in enumerate(batch)])
    return [result[f"S{n:03d}"] for n in range(len(batch))]


BATCHES = st.lists(supplier_metrics, min_size=1, max_size=25)


@settings(max_examples=40, deadline=None)
@given(BATCHES)
def test_scores_stay_within_0_and_100(batch: list[dict]) -> None:
    for result in scores_of(batch):
        assert result["score"] is None or 0.0 <= result["score"] <= 100.0


@settings(max_examples=40, deadline=None)
@given(BATCHES, st.sampled_from(sorted(HIGHER_IS_BETTER)), st.floats(min_value=0.0, max_value=1.0))
def test_improving_one_metric_never_lowers_the_score(batch: list[dict], metric: str, share: float) -> None:
    best = 1.0 if metric.endswith("_rate") else 0.0
    improved = [{**values, metric: None if values[metric] is None else values[metric] + (best - values[metric]) * share}
                for values in batch]  # each supplier's metric moved towards its best value
    for before, after in zip(scores_of(batch), scores_of(improved), strict=True):
        if before["score"] is not None:
            assert after["score"] >= before["score"]


@settings(max_examples=40, deadline=None)
@given(BATCHES)
def test_a_supplier_below_minimum_evidence_is_never_scored(batch: list[dict]) -> None:
    for values, result in zip(batch, scores_of(batch), strict=True):
        below = (values["order_lines"] < RULES.minimum_evidence.order_lines
                 or values["receipts"] < RULES.minimum_evidence.receipts)
        if below:
            assert result["score"] is None and result["band"] is None and result["insufficient_data"]
        late_measured = values["mean_days_late"] is not None and values["late_lines"] >= 3
        assert result["points_3_measured"] is late_measured
        if not late_measured:
            assert result["points_3"] is None  # below the criterion's minimum: no points, never 0 or 100


def test_rules_parse_from_text_the_way_they_load(tmp_path: Path) -> None:
    assert parse_rule_set(PROFILED.encode(), source_name="x.yaml").profiles[0].criteria[0].weight == 50
