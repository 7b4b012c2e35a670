"""The paper against the book: one row per claim of the paper, measured by the build, with a verdict.

:func:`scorecard` reads the chapters' ``metrics.json`` (a mapping chapter stem → metrics) and returns one
:class:`Row` per claim of *Influence Dynamics and Stagewise Data Attribution*: where the book tests it, what
the build measured and a verdict in words that match the evidence. Each verdict follows a rule declared here,
before any number is seen, and a negative verdict says how large an effect the run could have seen:

- **reproduced**: the statistic the claim predicts is there, beyond two standard errors where it has one;
- **partly reproduced**: part of the claim holds (say which), or the agreement is weaker than the claim;
- **not reproduced (power …)**: the effect is absent and the run could have seen it (the smallest detectable
  effect at 2 s.e. and 80% power is named);
- **inconclusive**: the effect is absent but the run could not have seen an effect of the claimed size;
- **opposite**: the run shows the reverse, beyond its uncertainty;
- **not tested**: the book does not run the experiment (why is said).

A row whose chapter is not in the build says "not measured in this build". The landing page renders
:func:`markdown` of the rows; ``tests/test_scorecard.py`` checks each rule on metrics with known verdicts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .curves import decline_verdict, difference_verdict
from .plotting import prose_number

__all__ = ["CLAIMS", "Z_DETECT", "Row", "from_build", "markdown", "scorecard"]

#: Two standard errors to call an effect, plus 0.84 for 80% power: the smallest effect a run can see is
#: ``Z_DETECT`` times its standard error.
Z_DETECT = 2.0 + 0.84

#: The decline from the peak that chapter 6 is sized to detect, when its metrics do not say (``detect_decline``).
DETECT_DECLINE = 0.3

Metrics = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class Row:
    claim: str  # what the paper says, in a sentence
    where: str  # the chapter (its stem) that tests it
    measured: str  # what this build measured, in words with numbers from its metrics
    verdict: str  # reproduced / partly reproduced / not reproduced (…) / inconclusive / opposite / not tested


class _Missing(KeyError):
    pass


def _get(metrics: Metrics, chapter: str, key: str, *, allow_none: bool = False) -> Any:
    """``metrics[chapter]`` at the dotted ``key``; _Missing when the chapter or the key is not there, or the
    value is null or NaN (the run did not reach it: the quick profile's model may never form an induction head)
    unless ``allow_none``."""
    value: Any = metrics.get(chapter)
    if value is None:
        raise _Missing(chapter)
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise _Missing(f"{chapter}:{key}")
        value = value[part]
    if (value is None or (isinstance(value, float) and math.isnan(value))) and not allow_none:
        raise _Missing(f"{chapter}:{key} is null")
    if isinstance(value, list) and any(isinstance(v, float) and math.isnan(v) for v in value):
        raise _Missing(f"{chapter}:{key} holds NaN")
    return value


def _finite(value: float) -> float:
    """``value``, or _Missing when the run could not measure it (None or NaN anywhere a rule reads)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise _Missing("a measurement is null or NaN")
    return value


def _n(value: float, digits: int = 2, **options) -> str:
    return prose_number(_finite(value), digits, **options)


def _steps(value: float, *, signed: bool = False) -> str:
    return prose_number(round(_finite(value)), signed=signed)


# ------------------------------------------------------------------------------------------- the claims


def _degenerate(m: Metrics) -> tuple[str, str]:
    slope = _get(m, "02_bif", "classical_if_damping_slope")
    bif = {float(k): v for k, v in _get(m, "02_bif", "degenerate_bif_max").items()}
    smallest, next_ = sorted(bif)[:2]
    ratio = bif[smallest] / bif[next_]
    measured = (f"as the damping shrinks the classical IF grows like damping^{_n(slope)}, while the largest BIF "
                f"changes by a factor {_n(ratio, digits=3)} between the two smallest localizations")
    if slope <= -0.8 and ratio <= 1.25:
        return measured, "reproduced"
    if slope <= -0.8:
        return measured, "partly reproduced (the classical IF diverges, but the BIF has not levelled off)"
    return measured, "not reproduced (the classical IF stays finite on this model)"


def _sign_flips(m: Metrics) -> tuple[str, str]:
    flips = _get(m, "04_loo", "sign_flip_step")
    phases = _get(m, "04_loo", "bif_dog_sparrow_phases")
    early, late = phases["early_min_z"], phases["stage_max_z"]
    measured = (f"the influence of dog on sparrow helps ({_n(abs(early))} s.e. below zero), then harms "
                f"({_n(late)} s.e. above) at the second stage; it changes sign at step {_steps(flips['bif'])} "
                f"(BIF), {_steps(flips['loo'])} (leave-one-out), {_steps(flips['analytic'])} (theory)")
    if early <= -2 and late >= 2 and all(flips.get(k) is not None for k in ("bif", "loo", "analytic")):
        return measured, "reproduced"
    return measured, "partly reproduced (one side of the flip is within 2 s.e. of zero)"


def _bif_vs_loo(m: Metrics) -> tuple[str, str]:
    corr = _get(m, "04_loo", "bif_loo_corr_median")
    sign = _get(m, "04_loo", "sign_agreement")
    theory = _get(m, "04_loo", "analytic_loo_corr_median")
    measured = (f"median correlation of a pair's BIF and leave-one-out trajectories {_n(corr)} (theory against "
                f"leave-one-out: {_n(theory)}); signs agree on {_n(sign, percent=True)} of the entries")
    if corr >= 0.7:
        return measured, "reproduced"
    if corr >= 0.4:
        return measured, ("partly reproduced (the trajectories agree in shape and sign, not closely: the BIF is "
                          "local in time, leave-one-out cumulative)")
    return measured, "not reproduced"


def _between_phases(m: Metrics) -> tuple[str, str]:
    peak = _get(m, "05_phases", "between_peak_pi_u")
    flips = _get(m, "05_phases", "sign_flip.flips")
    measured = (f"in a two-phase posterior the between-phase covariance peaks at π_U = {_n(peak)} (theory: 0.5)"
                + ("; a pair's BIF changes sign across the transition" if flips else ""))
    if abs(peak - 0.5) <= 0.1 and flips:
        return measured, "reproduced"
    if abs(peak - 0.5) <= 0.1:
        return measured, "partly reproduced (the peak is there, no sign flip)"
    return measured, "not reproduced"


def _transitions(m: Metrics) -> tuple[str, str]:
    errors = _get(m, "08_beyond", "transition_detection_error_steps")
    known = len(_get(m, "08_beyond", "known_transitions"))
    bif = errors["bif"]
    offsets = [e for e in bif["per_stage"] if e is not None]
    later = sum(e > 0 for e in offsets)
    measured = (f"the BIF's activity marks {bif['matched']} of {known} stages of the deep linear network, "
                f"{later} of them after the loss drops (between stages), within {_steps(bif['max_abs'])} steps")
    if bif["matched"] == known:
        return measured, "reproduced"
    if bif["matched"] > 0:
        return measured, "partly reproduced (not every stage is marked; the peaks fall between stages)"
    return measured, "not reproduced"


def _induction_rise(m: Metrics) -> tuple[str, str]:
    corr = _get(m, "06_token_influence", "induction_influence_score_corr")
    step = _get(m, "06_token_influence", "induction_step")
    measured = (f"the induction head forms at step {_steps(step)}; across checkpoints the self-influence of "
                f"induction tokens follows the induction score (correlation {_n(corr)})")
    try:  # the chapter's declared rise, peak window against before window, with its error and power
        rise, stderr, detected, detectable = (_get(m, "06_token_influence", k) for k in (
            "induction_influence_rise", "induction_influence_rise_stderr", "induction_influence_rise_detected",
            "min_detectable_rise"))
    except _Missing:
        detected = True
    else:
        measured += (f"; the peak window is {_n(rise, percent=True, signed=True)} ± {_n(stderr, percent=True)} "
                     f"above the before window (the run could see a rise of {_n(detectable, percent=True)})")
    if corr >= 0.5 and detected:
        return measured, "reproduced"
    return measured, "not reproduced"


def _induction_decline(m: Metrics) -> tuple[str, str]:
    c = "06_token_influence"
    _get(m, c, "induction_step")  # no head formed (a short run): nothing to decline from
    decline = _get(m, c, "induction_influence_decline")
    stderr = _get(m, c, "induction_influence_decline_stderr")
    detectable = _get(m, c, "min_detectable_decline")
    peak = _get(m, c, "induction_influence_peak_step")
    try:
        target = _get(m, c, "parameters.detect_decline")
    except _Missing:
        target = DETECT_DECLINE
    upper = decline + 2 * stderr
    measured = (f"from the early to the late window after formation the induction influence changes by "
                f"{_n(-decline, percent=True, signed=True)} ± {_n(stderr, percent=True)} (peak at step "
                f"{_steps(peak)}); the run could see a decline of {_n(detectable, percent=True)} or more")
    verdict = decline_verdict(decline, stderr, target)  # the chapter's rule
    if verdict == "declines":
        return measured, "reproduced"
    if verdict == "rises":
        return measured, (f"not reproduced (still rising at the end of training, beyond 2 s.e.; a decline of "
                          f"{_n(detectable, percent=True)} would have been seen)")
    if verdict == "excluded":
        return measured, (f"not reproduced (a decline of {_n(target, percent=True)} is excluded: at most "
                          f"{_n(upper, percent=True)}; power to see a decline of {_n(detectable, percent=True)})")
    if verdict == "not detected":
        return measured, (f"not reproduced at 2 s.e. (a fall of {_n(decline, percent=True)}, "
                          f"{_n(decline * (1 - decline) / stderr, digits=3)} s.e. from none; power to see a "
                          f"decline of {_n(detectable, percent=True)}; up to {_n(upper, percent=True)} not excluded)")
    return measured, f"inconclusive (the run could only see declines of {_n(detectable, percent=True)} or more)"


def _delimiters(m: Metrics) -> tuple[str, str]:
    c = "06_token_influence"
    flip = _get(m, c, "delimiter_flip_step", allow_none=True)
    harming = _get(m, c, "delimiter_bif_harming_checkpoints")
    checkpoints = len(_get(m, c, "sampled_steps"))
    measured = (f"left and right delimiters harm each other at {harming} of {checkpoints} checkpoints"
                + (f"; the sign flips at step {_steps(flip)}" if flip is not None else "; no sign flip"))
    try:
        detectable = _get(m, c, "delimiter_min_detectable")
        power = f" (the run could see harm of {_n(detectable, digits=2)} or more)"
    except _Missing:
        power = " (the run's power to see the flip is not measured)"
    if flip is not None:
        return measured, "reproduced"
    return measured, "not reproduced" + power


def _intervention(m: Metrics) -> tuple[str, str]:
    c = "07_steering"
    effect = _get(m, c, "lm_intervention_effect")
    low, high = _get(m, c, "lm_intervention_ci")
    seeds = _get(m, c, "lm_inside_minus_before.n")
    try:  # the page's own: 80% power of its two-sided 5% paired t-test
        detectable = _get(m, c, "lm_min_detectable_effect")
    except _Missing:
        detectable = Z_DETECT * _get(m, c, "lm_inside_minus_before.stderr")
    measured = (f"extra induction data inside the window minus the same dose before it moves formation by "
                f"{_steps(effect, signed=True)} steps (95% CI {_steps(low)} … {_steps(high)}, "
                f"{seeds} seeds)")
    target = None  # the advantage the design was sized for: the study's when the page read one
    for key in ("lm_study_target_effect", "lm_target_effect"):
        try:
            target = _get(m, c, key)
            break
        except _Missing:
            continue
    kind = difference_verdict(low, high, detectable, target)  # the chapter's rule (steering.verdict)
    if kind == "shown":
        return measured, "reproduced"
    if kind == "opposite":
        return measured, "opposite (the same data before the window speeds formation more)"
    if kind == "inconclusive":
        try:
            needed = f"; about {_steps(_get(m, c, 'lm_study_seeds_needed'))} seeds would"
        except _Missing:
            needed = ""
        return measured, (f"inconclusive (power to see a difference of {_steps(detectable)} steps, not the "
                          f"{_steps(target)} the design was sized for{needed})")
    if kind == "excluded":
        return measured, (f"not reproduced (an advantage of {_steps(target)} steps is excluded; power to see "
                          f"{_steps(detectable)})")
    return measured, f"not reproduced (power to see a difference of {_steps(detectable)} steps)"


def _selection(m: Metrics) -> tuple[str, str]:
    effects = _get(m, "07_steering", "lm_selection_effects")
    parts = []
    for name, label in (("bif", "chosen by the BIF"), ("class", "hand-chosen class"), ("random", "random")):
        if name in effects:
            e = effects[name]
            parts.append(f"{label} {_steps(e['effect'], signed=True)} steps "
                         f"({_steps(e['ci'][0])} … {_steps(e['ci'][1])})")
    measured = "shift of the formation step against no up-weighting: " + "; ".join(parts)
    bif = effects.get("bif")
    if bif is None:
        return measured, "not tested"
    against = bif.get("minus_random")  # the pool against random sequences of the same count
    if against is not None:
        low, high = against["ci"]
        measured += (f"; the BIF's choice against random sequences {_steps(against['effect'], signed=True)} steps "
                     f"({_steps(low)} … {_steps(high)})")
    if bif["ci"][0] > 0:
        return measured, "opposite (BIF-chosen data delay formation)"
    if not bif["ci"][1] < 0:
        return measured, "not reproduced (the interval contains no shift)"
    if against is None:
        return measured, "partly reproduced (BIF-chosen data speed formation; random data of the same count not run)"
    if high < 0:
        return measured, "reproduced (BIF-chosen data speed formation, more than random data of the same count)"
    if low > 0:
        return measured, ("partly reproduced (BIF-chosen data speed formation, but less than random data of the "
                          "same count)")
    return measured, ("partly reproduced (BIF-chosen data speed formation, but not detectably more than random "
                      "data of the same count)")


def _pythia(m: Metrics) -> tuple[str, str]:
    return (("the book trains a small transformer on a generated corpus in place of Pythia (no model hub is "
            "reachable where the book is built); the Pythia loading path is tested on a locally saved model"),
            "not tested")


#: (claim, chapter, rule): the rows of the scorecard, in the paper's order.
CLAIMS: list[tuple[str, str, Callable[[Metrics], tuple[str, str]]]] = [
    ("At degenerate checkpoints the classical influence function fails and the BIF does not", "02_bif",
     _degenerate),
    ("Influence changes non-monotonically, with sign flips at developmental transitions", "04_loo", _sign_flips),
    ("BIF trajectories match leave-one-out retraining in the hierarchical toy model", "04_loo", _bif_vs_loo),
    ("The between-phase term peaks where two phases are equally likely", "05_phases", _between_phases),
    ("Influence changes line up with the model's developmental stages", "08_beyond", _transitions),
    ("Influence on induction tokens rises as induction heads form", "06_token_influence", _induction_rise),
    ("… and later peaks and declines", "06_token_influence", _induction_decline),
    ("Left and right delimiters first help, then harm each other", "06_token_influence", _delimiters),
    ("Up-weighting data inside a developmental window steers formation more than before it", "07_steering",
     _intervention),
    ("(Beyond the paper) data chosen by the BIF steers formation", "07_steering", _selection),
    ("All of the above in Pythia language models", "06_token_influence", _pythia),
]


def scorecard(metrics: Metrics) -> list[Row]:
    """One :class:`Row` per claim of :data:`CLAIMS`, from ``metrics`` (chapter stem → its metrics.json)."""
    rows = []
    for claim, chapter, rule in CLAIMS:
        try:
            measured, verdict = rule(metrics)
        except _Missing:
            measured, verdict = "not measured in this build", "not measured"
        except (TypeError, ValueError, ZeroDivisionError, IndexError) as error:
            raise ValueError(f"scorecard: the metrics of {chapter} do not fit the rule for {claim!r}: "
                             f"{error}") from None
        rows.append(Row(claim, chapter, measured, verdict))
    return rows


def from_build(chapters_dir: str | Path) -> list[Row]:
    """The scorecard of a build: the metrics of every ``chapters_dir/<stem>/metrics.json``."""
    metrics = {path.parent.name: json.loads(path.read_text())
               for path in sorted(Path(chapters_dir).glob("*/metrics.json"))}
    return scorecard(metrics)


def markdown(rows: list[Row], link: Callable[[str], str] = lambda stem: f"{{doc}}`chapters/{stem}`") -> str:
    """The rows as a Markdown table (claim, where, measured, verdict), the chapter linked by ``link``."""
    lines = ["| The paper's claim | Tested in | What this build measured | Verdict |", "|---|---|---|---|"]
    for row in rows:
        cells = [row.claim, link(row.where), row.measured, f"**{row.verdict}**"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
