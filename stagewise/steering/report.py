"""Chapter 7's tables and summaries: the toy model's onset shifts per mode and the language model's verdict.

Toy model (a :class:`~stagewise.steering.ToySteering`, shifts in steps, positive = earlier):

- :func:`mode_labels`: each mode named by the items it contrasts ("animal vs plant", "all items").
- :func:`stage_of_mode`: the stage (block of equal singular values, 0-based) each mode belongs to.
- :func:`shift_table`, :func:`difference_table`: seed means of the measured and predicted shifts per mode.
- :func:`exact_mode_errors`: how far the measured shifts of the modes on or off the branch (w_k ∈ {0, 1}, where
  the first-order clock is exact) lie from the prediction.
- :func:`condition_means`: the per-condition seed means of a (condition, seed, mode) array, for metrics.json.

Language model (crossing steps in optimizer steps, NaN: the score never crossed):

- :func:`crossing_summary`: mean, standard error and per-seed values of the crossing steps of one condition.
- :func:`effect_table`, :func:`verdict`: the paired differences (:func:`~stagewise.steering.paired_difference`)
  as a table and as one sentence that says what their 95 % interval allows and, for a negative result, the
  smallest effect the design could see (:func:`~stagewise.steering.min_detectable_effect`).
- :func:`selection_effects`: each selection's effect on the formation step against no up-weighting, inside and
  before the window, and inside minus before, with their intervals (the ``lm_selection_effects`` record);
  :func:`effects_table` shows them, :func:`pool_table` describes the pools, :func:`study_crossings` reads the
  crossings of a study with one seed per run, :func:`power_design` sizes the seeds from a pilot.
- :func:`window_sentence`, :func:`toy_selection_sentence`: what a run found, in words, for the prose.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from stagewise import toy
from stagewise.curves import difference_verdict
from stagewise.plotting import prose_number

from .power import seeds_for_power
from .schedule import paired_difference

__all__ = ["condition_means", "crossing_summary", "difference_table", "effect_table", "effects_table",
           "exact_mode_errors", "mode_labels", "pool_table", "power_design", "selection_effects", "shift_table",
           "stage_of_mode", "study_crossings", "toy_selection_sentence", "verdict", "window_sentence"]


def mode_labels(data: toy.HierarchicalData, basis: toy.ModeBasis, tol: float = 0.05) -> list[str]:
    """One name per mode of ``basis`` (r,), from its input singular vector v_k's loadings on the items.

    Items with loading > ``tol`` form the plus side, < −``tol`` the minus side; a side that is a branch of the
    tree is named by it ("animal"), else its items are joined by "+". A mode with no minus side is "all items"
    when it loads on every item (the root), else its plus side.
    """
    def name(group: list[str]) -> str:
        index = tuple(data.items.index(x) for x in group)
        return next((g for g, members in data.groups.items() if tuple(members) == index), "+".join(group))

    labels = []
    for k in range(len(basis.s)):
        v = basis.v[:, k].numpy()
        plus = [data.items[i] for i in np.flatnonzero(v > tol)]
        minus = [data.items[i] for i in np.flatnonzero(v < -tol)]
        if not minus:
            labels.append("all items" if len(plus) == data.num_items else "+".join(plus))
        else:
            labels.append(f"{name(plus)} vs {name(minus)}")
    return labels


def stage_of_mode(basis: toy.ModeBasis) -> np.ndarray:
    """(r,) integers: the stage of each mode, the index of its block of equal singular values (0 = learned first)."""
    stage = np.empty(len(basis.s), dtype=int)
    for b, block in enumerate(basis.blocks):
        stage[list(block)] = b
    return stage


def _modes_index(count: int) -> pd.Index:
    return pd.Index(range(1, count + 1), name="k")


def shift_table(result, labels) -> pd.DataFrame:
    """One row per mode k = 1 … r: its label, stage (1-based), w_k, its onset without extra weight (step) and, for
    each condition with extra weight, the measured and the predicted shift (steps earlier), all seed means."""
    extra = [(i, c) for i, c in enumerate(result.conditions) if c != "none"]
    columns = {"mode": list(labels), "stage": stage_of_mode(result.basis) + 1, "w_k": np.asarray(result.weights),
               "onset, no extra (step)": result.onsets[0].mean(0)}
    columns |= {f"{c}: shift": result.shift[i].mean(0) for i, c in extra}
    columns |= {f"{c}: predicted": result.predicted_shift[i].mean(0) for i, c in extra}
    return pd.DataFrame(columns, index=_modes_index(len(labels)))


def difference_table(result, labels) -> pd.DataFrame:
    """One row per mode: "inside" minus "before" shift (steps; seed mean, measured and predicted), and the largest
    |measured − predicted| shift of any seed in either condition."""
    inside, before = result.conditions.index("inside"), result.conditions.index("before")
    extra = [i for i, c in enumerate(result.conditions) if c != "none"]
    return pd.DataFrame({
        "mode": list(labels),
        "w_k": np.asarray(result.weights),
        "inside − before (steps)": (result.shift[inside] - result.shift[before]).mean(0),
        "predicted": (result.predicted_shift[inside] - result.predicted_shift[before]).mean(0),
        "largest |measured − predicted|": np.abs(result.shift[extra] - result.predicted_shift[extra]).max(axis=(0, 1)),
    }, index=_modes_index(len(labels)))


def exact_mode_errors(result) -> tuple[float, float]:
    """(seed means, single seeds): the largest |measured − predicted| shift (steps) over the conditions with extra
    weight and the modes with w_k ∈ {0, 1} (to 6 decimals), where first order is exact.

    The first compares the seed means of the shifts, the second every seed's own shift (single seeds scatter
    more: their random initial weights are not perfectly aligned with the modes).
    """
    exact = np.isin(np.round(np.asarray(result.weights, dtype=float), 6), (0.0, 1.0))
    extra = [i for i, c in enumerate(result.conditions) if c != "none"]
    measured, predicted = result.shift[extra][:, :, exact], result.predicted_shift[extra][:, :, exact]
    return (float(np.abs(measured.mean(1) - predicted.mean(1)).max()), float(np.abs(measured - predicted).max()))


def condition_means(result, values: np.ndarray) -> dict[str, list[float]]:
    """{condition: seed mean per mode (r,) as a list} of ``values`` (condition, seed, r), conditions other than
    "none" (e.g. ``result.shift``, ``result.predicted_shift``)."""
    return {c: np.asarray(values[i]).mean(0).tolist() for i, c in enumerate(result.conditions) if c != "none"}


def crossing_summary(values) -> dict:
    """Crossing steps of one condition over seeds (n,), NaN for a seed that never crossed.

    Returns {"mean": over the seeds that crossed (NaN: none did), "stderr": their standard error (NaN: fewer
    than two), "per_seed": each value or None, "crossed": how many seeds crossed}.
    """
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    return {
        "mean": float(finite.mean()) if len(finite) else float("nan"),
        "stderr": float(finite.std(ddof=1) / math.sqrt(len(finite))) if len(finite) > 1 else float("nan"),
        "per_seed": [float(v) if np.isfinite(v) else None for v in values],
        "crossed": int(len(finite)),
    }


def effect_table(rows: Mapping[str, dict]) -> pd.DataFrame:
    """One row per named paired difference (a :func:`~stagewise.steering.paired_difference` record, steps): mean,
    standard error, the Student-t and bootstrap 95 % intervals (as "low … high", whole steps) and the seeds."""
    return pd.DataFrame({
        name: {"mean": d["mean"], "s.e.": d["stderr"],
               "95% CI (t)": f"{d['ci_low']:.0f} … {d['ci_high']:.0f}",
               "95% CI (bootstrap)": f"{d['bootstrap_low']:.0f} … {d['bootstrap_high']:.0f}",
               "seeds": d["n"]}
        for name, d in rows.items()
    }).T


def verdict(effect: dict, detectable: float | None = None, target: float | None = None,
            needed: int | None = None) -> str:
    """What the inside-minus-before crossing difference (a paired-difference record, steps) allows one to say.

    Negative means "inside" crossed earlier. The verdict is :func:`~stagewise.curves.difference_verdict` of the
    95 % Student-t interval, ``detectable`` (the smallest difference the design detects with 80 % power, steps)
    and ``target`` (the advantage it was sized for, steps > 0): which condition wins when the interval excludes
    zero ("the opposite of the paper" when "before" wins); when it contains zero, "not reproduced" with the
    design's power and whether an advantage of ``target`` is ruled out, or "inconclusive" when the interval allows
    it and the design could not reliably see it (with ``needed``, the seeds that would). No comparison when the
    mean is NaN (no seed crossed the threshold in both conditions).
    """
    mean, low, high = effect["mean"], effect["ci_low"], effect["ci_high"]
    steps = lambda v: f"{prose_number(float(round(v)))} steps"  # noqa: E731
    if not np.isfinite(mean):
        return "No comparison: the induction head did not cross the threshold in these runs."
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"Inside minus before is {steps(mean)} from a single seed: no interval, so no verdict."
    interval = f"95% interval {prose_number(float(round(low)))} … {prose_number(float(round(high)))} steps"
    kind = difference_verdict(low, high, detectable, target)
    if kind == "shown":
        return (f"Reproduced: up-weighting inside the window makes the head cross {steps(-mean)} earlier than the "
                f"same extra data before it ({interval}, which excludes zero).")
    if kind == "opposite":
        return (f"The opposite of the paper: the same extra data before the window makes the head cross "
                f"{steps(mean)} earlier than inside it ({interval}, which excludes zero).")
    said = (f"{'Inconclusive' if kind == 'inconclusive' else 'Not reproduced'}: inside minus before is "
            f"{steps(mean)} ({interval}, which contains zero)")
    if detectable is not None and np.isfinite(detectable):
        said += (f"; with {effect['n']} seeds the design had 80% power to see a difference of "
                 f"{steps(detectable)}")
    if kind == "excluded":
        said += (f", and the interval rules out an advantage of inside as large as the {steps(target)} "
                 "the design was sized for")
    elif kind == "inconclusive":
        said += (f", more than the {steps(target)} it was sized for, and an advantage of inside that large "
                 "is not ruled out" + (f" (about {prose_number(needed)} seeds would see it)" if needed else ""))
    elif target is not None:
        said += f"; an advantage of inside as large as {steps(target)} is not ruled out"
    return said + "."


def selection_effects(crossing: Mapping[str, np.ndarray], names=("bif", "class", "random")) -> dict:
    """{name: {"effect", "ci", "stderr", "n", "before": {…}, "inside_minus_before": {…}}} for each selection.

    crossing: {"none": (seed,), "<name>:inside": (seed,), "<name>:before": (seed,)} crossing steps of paired
    seeds (NaN: never). "effect" and "ci" are the mean and 95 % Student-t interval of the per-seed difference
    "<name>:inside" − "none" (steps relative to no up-weighting; negative: earlier); "before" holds the same for
    "<name>:before", "inside_minus_before" the paired difference of the two timings, and "minus_random" (every pool
    but "random", when random ran) the paired difference "<name>:inside" − "random:inside": whether the pool beats
    random items of the same count, not only no extra data. Names without runs are left out.
    """
    def record(d: dict) -> dict:
        return {"effect": d["mean"], "ci": [d["ci_low"], d["ci_high"]], "stderr": d["stderr"], "n": d["n"],
                "per_seed": d["per_seed"]}

    out = {}
    for name in names:
        inside, before = crossing.get(f"{name}:inside"), crossing.get(f"{name}:before")
        if inside is None or before is None:
            continue
        out[name] = {**record(paired_difference(inside, crossing["none"])),
                     "before": record(paired_difference(before, crossing["none"])),
                     "inside_minus_before": record(paired_difference(inside, before))}
        random = crossing.get("random:inside")
        if name != "random" and random is not None:
            out[name]["minus_random"] = record(paired_difference(inside, random))
    return out


def power_design(crossings: Mapping[str, np.ndarray], differences, target_fraction: float):
    """(formation, target, sd, needed) of a paired design, from measured crossings and per-seed differences.

    formation: the mean crossing step without extra data (``crossings["none"]``, NaN when no seed crossed);
    target: ``target_fraction`` of it, the advantage the design is sized to see; sd: the standard deviation of the
    finite per-seed ``differences`` (NaN with fewer than two); needed: the paired seeds that see ``target`` with
    80 % power at the 5 % level (:func:`~stagewise.steering.seeds_for_power`), None when sd or target is not
    finite.
    """
    finite = np.asarray(differences, dtype=float)
    finite = finite[np.isfinite(finite)]
    none = np.asarray(crossings["none"], dtype=float)
    formation = float(np.nanmean(none)) if np.isfinite(none).any() else float("nan")
    sd = float(finite.std(ddof=1)) if len(finite) > 1 else float("nan")
    target = target_fraction * formation
    ok = np.isfinite(sd) and sd > 0 and np.isfinite(target) and target > 0
    return formation, target, sd, (seeds_for_power(target, sd) if ok else None)


def study_crossings(table: pd.DataFrame, conditions) -> dict[str, np.ndarray]:
    """{condition: (row,) crossing step} from a study's results (one seed per row, each row a chapter-7 run with
    one language-model seed: its column ``lm_crossing_step.<condition>.per_seed.0``; empty cells are NaN).
    Conditions without a column are left out."""
    out = {}
    for c in conditions:
        column = f"lm_crossing_step.{c}.per_seed.0"
        if column in table:
            out[c] = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
    return out


def pool_table(pools: Mapping[str, np.ndarray], class_mask, counts, bif) -> pd.DataFrame:
    """One row per pool (name → sample indices): its size, the share of it in the hand-chosen class, the mean
    count of induction tokens per sequence and the mean BIF of its members (nats²)."""
    class_mask, counts, bif = (np.asarray(a) for a in (class_mask, counts, bif))
    return pd.DataFrame({name: {"sequences": len(p), "in the hand-chosen class": float(class_mask[p].mean()),
                                "induction tokens per sequence": float(counts[p].mean()),
                                "mean BIF (nats²)": float(bif[p].mean())} for name, p in pools.items()}).T


def effects_table(effects: Mapping[str, dict]) -> pd.DataFrame:
    """One row per comparison of :func:`selection_effects` (each pool inside and before against no extra data,
    inside minus before, and inside against random items inside): the mean (steps), its 95 % interval as
    "low … high" and the seeds."""
    rows = {}
    for name, record in effects.items():
        compared = [(f"{name}: inside − none", record), (f"{name}: before − none", record["before"]),
                    (f"{name}: inside − before", record["inside_minus_before"])]
        if "minus_random" in record:
            compared.append((f"{name}: inside − random inside", record["minus_random"]))
        for label, r in compared:
            low, high = (prose_number(float(np.round(v))) for v in r["ci"])
            rows[label] = {"mean (steps)": r["effect"], "95% interval (steps)": f"{low} … {high}", "seeds": r["n"]}
    return pd.DataFrame(rows).T


def window_sentence(found, found_doubled, score_window, bif_window, window, bif_still_rising: bool) -> str:
    """What the induction window's rule found, in words: whether twice the sampling budget moves the window,
    which curve opens it, whether the self-influence still rises at the last checkpoint, and whether the window
    was cut so that "before" fits."""
    said = ("The window is the same with both budgets. " if found == found_doubled else
            f"With twice the draws the window becomes {prose_number(found_doubled.start)}–"
            f"{prose_number(found_doubled.end)} instead of {prose_number(found.start)}–{prose_number(found.end)}. ")
    said += "It opens with " + ("the score's rise" if score_window.start <= bif_window.start
                                else "the self-influence's rise")
    if bif_still_rising:
        said += (", and the self-influence is still rising at the last sampled checkpoint, so the end of its rise "
                 "window is a lower bound")
    if window.length < found.length:
        said += "; the window is cut to the steps that fit before it, so that \"before\" has the same length"
    return said + "."


def toy_selection_sentence(effects: Mapping[str, dict], predicted: Mapping[str, dict], bif_is_class: bool,
                           branch_helps: bool) -> str:
    """The toy model's selection result in words, from :func:`selection_effects` of the pools "bif", "class" and
    "random" and the clock's predicted shifts ({pool: {"inside": …}}, steps): whether the BIF picked the branch
    (and whether every branch item helps while every other item harms), each pool's advance inside the window,
    and whether timing mattered for the branch (inside minus before within a step)."""
    said = ("The BIF's most helpful items are the hand-chosen branch" if bif_is_class
            else "The BIF's most helpful items differ from the hand-chosen branch")
    if bif_is_class and branch_helps:
        said += (": at the window's start every item of the branch helps the branch's loss (negative BIF) and every "
                 "other item harms it")
    steps = lambda v, d=3: prose_number(-float(v), d)  # noqa: E731  (an advance: steps earlier)
    said += (f". Inside the window the branch brings its first mode {steps(effects['class']['effect'])} steps "
             f"earlier (the clock: {steps(predicted['class']['inside'])}), the BIF's pool "
             f"{steps(effects['bif']['effect'])} steps and random items {steps(effects['random']['effect'])} (the "
             f"clock: {steps(predicted['random']['inside'])}: a random pool puts only part of its weight on the "
             "branch). ")
    gap = effects["class"]["inside_minus_before"]["effect"]
    said += f"Inside minus before is {prose_number(float(gap), 2)} steps for the branch"
    return said + (": timing does not matter for a mode whose onset comes after both windows." if abs(gap) < 1
                   else ".")
