"""The scorecard's rules on metrics with known verdicts (stagewise/scorecard.py)."""

from __future__ import annotations

import copy

import pytest

from stagewise import scorecard as sc

# Metrics shaped like a full build's, with values chosen so that every rule's verdict is known.
BUILD = {
    "02_bif": {"classical_if_damping_slope": -0.9996,
               "degenerate_bif_max": {"10": 2.78, "3": 4.74, "1": 8.33, "0.3": 10.89, "0.1": 11.23}},
    "04_loo": {"sign_flip_step": {"bif": 332.4, "loo": 382.4, "analytic": 369.2},
               "bif_dog_sparrow_phases": {"early_min_z": -3.6, "stage_max_z": 15.8},
               "bif_loo_corr_median": 0.648, "sign_agreement": 0.721, "analytic_loo_corr_median": 0.746},
    "05_phases": {"between_peak_pi_u": 0.502, "sign_flip": {"flips": True}},
    "08_beyond": {"known_transitions": [283.6, 393.4, 567.9, 950.0],
                  "transition_detection_error_steps": {"bif": {"per_stage": [55.0, 57.7, None, None], "matched": 2,
                                                               "max_abs": 57.7}}},
    "06_token_influence": {"induction_step": 4161, "induction_influence_score_corr": 0.88,
                           "induction_influence_decline": -0.75, "induction_influence_decline_stderr": 0.19,
                           "min_detectable_decline": 0.54, "induction_influence_peak_step": 10500,
                           "delimiter_flip_step": None, "delimiter_bif_harming_checkpoints": 0,
                           "sampled_steps": list(range(11))},
    "07_steering": {"lm_intervention_effect": 339.5, "lm_intervention_ci": [-892.0, 1571.0],
                    "lm_inside_minus_before": {"stderr": 286.2, "n": 3},
                    "lm_selection_effects": {"bif": {"effect": -300.0, "ci": [-500.0, -100.0]},
                                             "class": {"effect": -50.0, "ci": [-400.0, 300.0]},
                                             "random": {"effect": 10.0, "ci": [-200.0, 220.0]}}},
}


def verdicts(metrics) -> dict[str, str]:
    return {row.claim: row.verdict for row in sc.scorecard(metrics)}


def test_every_claim_has_a_row_with_a_verdict_from_the_build():
    rows = sc.scorecard(BUILD)
    assert [row.claim for row in rows] == [claim for claim, _, _ in sc.CLAIMS]
    got = [row.verdict.split(" (")[0] for row in rows]
    assert got == ["reproduced", "reproduced", "partly reproduced", "reproduced", "partly reproduced", "reproduced",
                   "not reproduced", "not reproduced", "not reproduced", "partly reproduced", "not tested"]
    # the numbers come from the metrics, formatted by the prose rule
    assert "10,500" in rows[6].measured and "+75%" in rows[6].measured and "54%" in rows[6].measured
    assert "+340 steps" in rows[8].measured and "−892 … 1,571" in rows[8].measured


def test_a_negative_verdict_names_the_power_of_the_run():
    rows = {row.claim: row for row in sc.scorecard(BUILD)}
    window = rows["Up-weighting data inside a developmental window steers formation more than before it"]
    assert window.verdict == f"not reproduced (power to see a difference of {round(sc.Z_DETECT * 286.2)} steps)"


@pytest.mark.parametrize(
    ("decline", "stderr", "detectable", "expected"),
    [
        (0.45, 0.1, 0.28, "reproduced"),  # beyond 2 s.e.
        # the estimate excludes the claimed 30%: 0.05 + 2 x 0.1 = 25%
        (0.05, 0.1, 0.28, "not reproduced (a decline of 30% is excluded: at most 25%; power to see a decline of 28%)"),
        # not detected (0.16 < 2 s0, s0 = 0.07 / 0.84), yet 0.16 + 2 x 0.07 = 30% is not excluded
        (0.16, 0.07, 0.23, ("not reproduced at 2 s.e. (a fall of 16%, 1.92 s.e. from none; power to see a decline "
                            "of 23%; up to 30% not excluded)")),
        (0.05, 0.2, 0.57, "inconclusive (the run could only see declines of 57% or more)"),
        (-0.75, 0.19, 0.54, ("not reproduced (still rising at the end of training, beyond 2 s.e.; a decline of 54% "
                            "would have been seen)")),
    ],
)
def test_decline_verdict_follows_the_chapters_rule(decline, stderr, detectable, expected):
    metrics = copy.deepcopy(BUILD)
    metrics["06_token_influence"].update(induction_influence_decline=decline,
                                         induction_influence_decline_stderr=stderr,
                                         min_detectable_decline=detectable)
    assert verdicts(metrics)["… and later peaks and declines"] == expected


@pytest.mark.parametrize(("ci", "expected"), [([-900.0, -100.0], "reproduced"),
                                              ([100.0, 900.0], "opposite"),
                                              ([-100.0, 900.0], "not reproduced")])
def test_intervention_verdict_by_where_the_interval_lies(ci, expected):
    metrics = copy.deepcopy(BUILD)
    metrics["07_steering"]["lm_intervention_ci"] = ci
    claim = "Up-weighting data inside a developmental window steers formation more than before it"
    assert verdicts(metrics)[claim].startswith(expected)


def test_intervention_power_is_the_pages_own_when_it_wrote_one():
    claim = "Up-weighting data inside a developmental window steers formation more than before it"
    metrics = copy.deepcopy(BUILD)
    metrics["07_steering"]["lm_intervention_ci"] = [-100.0, 900.0]
    assert "difference of 813 steps" in verdicts(metrics)[claim]  # (2 + 0.84) x 286.2, from the standard error
    metrics["07_steering"]["lm_min_detectable_effect"] = 432.0
    assert "difference of 432 steps" in verdicts(metrics)[claim]


def test_a_chapter_missing_from_the_build_is_not_measured_and_a_malformed_one_is_an_error():
    metrics = {k: v for k, v in BUILD.items() if k != "07_steering"}
    rows = [row for row in sc.scorecard(metrics) if row.where == "07_steering"]
    assert rows and all(row.verdict == "not measured" for row in rows)
    broken = copy.deepcopy(BUILD)
    broken["04_loo"]["bif_loo_corr_median"] = "high"
    with pytest.raises(ValueError, match="04_loo"):
        sc.scorecard(broken)


def test_markdown_table_links_the_chapters_and_escapes_pipes():
    text = sc.markdown([sc.Row("a | b", "04_loo", "m", "reproduced")])
    lines = text.strip().split("\n")
    assert lines[0].startswith("| The paper's claim |") and len(lines) == 3
    assert "a \\| b" in lines[2] and "{doc}`chapters/04_loo`" in lines[2] and "**reproduced**" in lines[2]


def test_a_null_measurement_is_not_measured_but_a_null_flip_step_means_no_flip():
    metrics = copy.deepcopy(BUILD)
    metrics["06_token_influence"]["induction_step"] = None  # the quick profile's model never forms the head
    got = verdicts(metrics)
    assert got["Influence on induction tokens rises as induction heads form"] == "not measured"
    assert got["Left and right delimiters first help, then harm each other"].startswith("not reproduced")
    assert got["… and later peaks and declines"] == "not measured"
    assert got["All of the above in Pythia language models"] == "not tested"


def test_a_nan_inside_a_nested_measurement_is_not_measured():
    metrics = copy.deepcopy(BUILD)
    metrics["07_steering"]["lm_selection_effects"]["bif"] = {"effect": float("nan"), "ci": [float("nan")] * 2}
    assert verdicts(metrics)["(Beyond the paper) data chosen by the BIF steers formation"] == "not measured"


@pytest.mark.parametrize(("against", "expected"), [
    (None, "partly reproduced (BIF-chosen data speed formation; random data of the same count not run)"),
    ([-200.0, -20.0], "reproduced (BIF-chosen data speed formation, more than random data of the same count)"),
    ([-110.0, 50.0], "partly reproduced (BIF-chosen data speed formation, but not detectably more than random"),
    ([20.0, 90.0], "partly reproduced (BIF-chosen data speed formation, but less than random"),
])
def test_selection_verdict_compares_the_bif_pool_with_random_data(against, expected):
    metrics = copy.deepcopy(BUILD)
    if against is not None:
        metrics["07_steering"]["lm_selection_effects"]["bif"]["minus_random"] = {"effect": sum(against) / 2,
                                                                                 "ci": against}
    row = {r.claim: r for r in sc.scorecard(metrics)}["(Beyond the paper) data chosen by the BIF steers formation"]
    assert row.verdict.startswith(expected)
    assert ("against random sequences" in row.measured) == (against is not None)


@pytest.mark.parametrize(("ci", "detectable", "expected"), [
    ([-337.0, 254.0], 417.0, ("inconclusive (power to see a difference of 417 steps, not the 322 the design was "
                              "sized for; about 42 seeds would)")),
    ([-337.0, 254.0], 300.0, "not reproduced (power to see a difference of 300 steps)"),
    ([-100.0, 254.0], 417.0, "not reproduced (an advantage of 322 steps is excluded; power to see 417)"),
])
def test_intervention_verdict_weighs_the_power_against_the_designs_target(ci, detectable, expected):
    claim = "Up-weighting data inside a developmental window steers formation more than before it"
    metrics = copy.deepcopy(BUILD)
    metrics["07_steering"].update(lm_intervention_ci=ci, lm_min_detectable_effect=detectable,
                                  lm_study_target_effect=321.6, lm_study_seeds_needed=42)
    assert verdicts(metrics)[claim] == expected


def test_the_rise_row_reads_the_chapters_declared_rise_with_its_error_and_power():
    claim = "Influence on induction tokens rises as induction heads form"
    metrics = copy.deepcopy(BUILD)
    metrics["06_token_influence"].update(induction_influence_rise=16.81, induction_influence_rise_stderr=1.26,
                                         induction_influence_rise_detected=True, min_detectable_rise=0.214)
    row = {r.claim: r for r in sc.scorecard(metrics)}[claim]
    assert row.verdict == "reproduced" and "±" in row.measured and "21%" in row.measured
    metrics["06_token_influence"]["induction_influence_rise_detected"] = False
    assert verdicts(metrics)[claim] == "not reproduced"
