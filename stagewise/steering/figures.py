"""Chapter 7's figures, each returned as a matplotlib figure for :func:`show` to save and glue.

- :func:`toy_shifts_figure`: top, the up-weighted items' influence over training with both windows and the stage
  onsets; bottom, each mode's onset shift per condition against Saxe's clock.
- :func:`window_figure`: the run that finds the language model's induction window: the best head's
  prefix-matching score and −BIF(induction → induction), with both windows.
- :func:`conditions_figure`: the three conditions over seeds: induction score, second-copy loss and the step at
  which each seed's score crosses the threshold.
- :func:`effects_figure`: each selection's effect on the formation step against no up-weighting, inside and
  before the window, with 95 % intervals (and, for the toy model, the shifts Saxe's clock predicts).
- :func:`power_figure`: the power of the paired comparison against the number of seeds, for the effect the
  design is sized for, with the seeds the power calculation asks for and those that ran.

Colours and legend labels of the conditions are :data:`CONDITION_COLORS` and :data:`CONDITION_LABELS`.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from stagewise import plotting

from .power import paired_power

__all__ = ["CONDITION_COLORS", "CONDITION_LABELS", "conditions_figure", "effects_figure", "power_figure", "show",
           "toy_shifts_figure", "window_figure"]

#: One colour per condition: grey for no extra weight, the book's orange inside the window, blue before it.
CONDITION_COLORS = {"none": "0.45", "inside": plotting.COLORS["rmsprop"], "before": plotting.COLORS["estimate"]}
CONDITION_LABELS = {"none": "no extra weight", "inside": "extra weight inside the window",
                    "before": "the same extra weight before it"}


def show(fig: plt.Figure, name: str, folder: str | Path = ".") -> Path:
    """Save ``fig`` as ``<folder>/<name>.png``, glue it as ``name`` for a captioned ``{glue:figure}`` and close it."""
    from myst_nb import glue

    path = plotting.save(fig, name, folder)
    glue(name, fig, display=False)
    plt.close(fig)
    return path


def toy_shifts_figure(result, influence_curve, labels, target: str) -> plt.Figure:
    """Two panels for a :class:`~stagewise.steering.ToySteering` ``result``.

    Top: ``influence_curve`` (num_steps + 1,), the mean |dℓ_j/dβ_i| of the up-weighted items on the others at
    every step (nats per unit weight), the "inside" and "before" windows shaded, and each stage's mean onset
    without extra weight (dotted). Bottom: one pair of bars per mode (``labels``, (r,)): the seed-mean onset
    shift (steps earlier, ± s.d. over seeds) in each condition with extra weight, with black ticks at the
    shifts Saxe's clock predicts. ``target`` names the up-weighted items in the legend.
    """
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7.5, 8.4), layout="constrained")
    num_steps = len(influence_curve) - 1
    onset_none = result.onsets[0].mean(0)
    ax1.plot(np.arange(num_steps + 1), influence_curve, color=plotting.COLORS["analytic"], lw=2,
             label=f"|influence| of {target} items on the others")
    for c in ("inside", "before"):
        window = result.windows[c]
        ax1.axvspan(window.start, window.end, color=CONDITION_COLORS[c], alpha=0.22, label=f"window: {c}")
    for b, block in enumerate(result.basis.blocks):
        ax1.axvline(onset_none[list(block)].mean(), color="0.3", ls=":", lw=1.2,
                    label="stage onsets (no extra)" if b == 0 else None)
    ax1.set(xlabel="training step", ylabel="mean |dℓ_j/dβ_i|  (nats per unit weight)", xlim=(0, num_steps),
            title="Where the up-weighted items' influence peaks")
    ax1.legend(fontsize=8.5, loc="upper right")
    x = np.arange(len(labels))
    for offset, c in zip((-0.18, 0.18), ("inside", "before")):
        i = result.conditions.index(c)
        measured = result.shift[i]
        ax2.bar(x + offset, measured.mean(0), width=0.34, color=CONDITION_COLORS[c], alpha=0.8,
                yerr=measured.std(0, ddof=1) if measured.shape[0] > 1 else None, capsize=2,
                label=f"{c}: gradient descent (± s.d. over seeds)")
        ax2.plot(x + offset, result.predicted_shift[i].mean(0), "_", color="k", ms=16, mew=2.2,
                 label="Saxe's clock: predicted" if c == "inside" else None)
    ax2.axhline(0, color="k", lw=0.6)
    ax2.set_xticks(x, [f"{k + 1}: {label}" for k, label in enumerate(labels)], rotation=35, ha="right",
                   fontsize=8.5)
    means = result.shift[1:].mean(1)
    ax2.set(ylabel="onset shift  (steps earlier)", title="How far each mode's onset moves",
            ylim=(min(-10, 1.2 * means.min()), 1.5 * means.max()))  # room for the legend
    ax2.legend(fontsize=8.5, loc="upper left")
    return fig


def window_figure(baseline, influence_steps, influence, window, before, threshold: float,
                  doubled=None, budgets: tuple[str, str] = ("", "")) -> plt.Figure:
    """The run that finds the induction window (a :class:`~stagewise.steering.SteeredRun` ``baseline``).

    Left axis: its best prefix-matching score (0–1) at every measured step, with ``threshold`` dashed. Right axis:
    ``influence`` (K,), −BIF(induction → induction) in nats², at ``influence_steps`` (K,), and ``doubled`` (K,),
    the same with twice the sampling budget (dashed; ``budgets`` names both in the legend). Shaded: ``window``
    ("inside") and ``before``.
    """
    fig, ax1 = plt.subplots(figsize=(7.5, 4.0), layout="constrained")
    ax1.plot(baseline.steps, baseline.best, color=CONDITION_COLORS["none"], marker=".",
             label="best prefix-matching score")
    ax1.axhline(threshold, color="k", lw=0.8, ls="--", label=f"threshold {threshold:g}")
    ax1.set(xlabel="training step", ylabel="prefix-matching score (attention weight, 0–1)", ylim=(0, 1))
    twin = ax1.twinx()
    twin.plot(influence_steps, influence, color=plotting.COLORS["analytic"], marker="s", ms=4,
              label=f"−BIF(induction → induction) {budgets[0]}".strip())
    if doubled is not None:
        twin.plot(influence_steps, doubled, color=plotting.COLORS["analytic"], marker="o", ms=4, ls="--",
                  label=f"the same, {budgets[1] or 'twice the draws'}")
    twin.set_ylabel("−BIF(induction → induction)  (nats²)")
    twin.grid(False)
    for w, c in ((window, "inside"), (before, "before")):
        ax1.axvspan(w.start, w.end, color=CONDITION_COLORS[c], alpha=0.2, label=f"window: {c}")
    handles = ax1.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax1.legend(handles=handles, fontsize=8.5, loc="upper left")
    ax1.set_title("The induction window: where the score and the induction self-influence rise")
    return fig


def conditions_figure(runs: dict, crossing: dict, window, before, threshold: float) -> plt.Figure:
    """Three panels over the conditions of ``runs`` ({condition: [SteeredRun per seed]}).

    Top: the best prefix-matching score (0–1), mean ± one standard error over seeds (bands: only with ≥ 2
    seeds), ``threshold`` dashed. Middle: the loss on the probe's second copies (nats per token), the same way.
    Both shade ``window`` and ``before``. Bottom: ``crossing`` ({condition: (seeds,) steps, NaN: never}), one dot
    per seed and the mean ± standard error of those that crossed (a diamond, with ≥ 2 of them).
    """
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(7.5, 11.5), layout="constrained")
    for condition, rs in runs.items():
        color = CONDITION_COLORS[condition]
        for ax, values in ((ax1, np.stack([r.best for r in rs])),
                           (ax2, np.stack([r.second_copy_loss for r in rs]))):
            mean = values.mean(0)
            ax.plot(rs[0].steps, mean, color=color, lw=2, label=CONDITION_LABELS[condition])
            if len(rs) > 1:
                err = values.std(0, ddof=1) / np.sqrt(len(rs))
                ax.fill_between(rs[0].steps, mean - err, mean + err, color=color, alpha=0.2, lw=0)
    for ax in (ax1, ax2):
        for w, c in ((window, "inside"), (before, "before")):
            ax.axvspan(w.start, w.end, color=CONDITION_COLORS[c], alpha=0.1)
        ax.set_xlabel("training step")
    ax1.axhline(threshold, color="k", lw=0.8, ls="--")
    ax1.set(ylabel="best prefix-matching score (0–1)", title="Induction score (mean ± s.e. over seeds)")
    ax2.set(ylabel="loss on second copies  (nats per token)", title="Second-copy loss (mean ± s.e.)")
    ax1.legend(fontsize=8.5, loc="upper left")
    for k, (condition, values) in enumerate(crossing.items()):
        values = np.asarray(values, dtype=float)
        ax3.plot(k + np.linspace(-0.12, 0.12, len(values)), values, "o", color=CONDITION_COLORS[condition],
                 alpha=0.7)
        finite = values[np.isfinite(values)]
        if len(finite) > 1:
            ax3.errorbar(k + 0.3, finite.mean(), yerr=finite.std(ddof=1) / np.sqrt(len(finite)), fmt="D",
                         color="k", capsize=4)
    if not any(np.isfinite(np.asarray(v, dtype=float)).any() for v in crossing.values()):
        ax3.text(0.5, 0.5, f"no seed crossed\nthe threshold {threshold:g}", transform=ax3.transAxes,
                 ha="center")
    ax3.set_xticks(range(len(crossing)), list(crossing))
    ax3.set(ylabel=f"step at which the score crosses {threshold:g}", title="Crossing step per seed\n(◆ mean ± s.e.)")
    return fig


#: Colour of each timing and hatch of each selection in :func:`effects_figure`.
SELECTION_HATCH = {"bif": "", "class": "//", "random": ".."}
SELECTION_LABELS = {"bif": "BIF: most helpful", "class": "hand-chosen class", "random": "random"}


def effects_figure(effects: dict, *, predicted: dict | None = None, unit: str = "steps",
                   title: str = "") -> plt.Figure:
    """Bars of each selection's effect on the formation step against no up-weighting, inside and before.

    effects: {selection: {"effect", "ci", "before": {"effect", "ci"}, …}} (:func:`~stagewise.steering.
    selection_effects`; negative: earlier); error bars are the 95 % intervals. predicted: {selection: {"inside":
    value, "before": value}}, drawn as black ticks (the toy model's clock). ``unit`` labels the axis.
    """
    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    names = list(effects)
    x = np.arange(len(names))
    for offset, timing in zip((-0.2, 0.2), ("inside", "before")):
        for k, name in enumerate(names):
            record = effects[name] if timing == "inside" else effects[name]["before"]
            value, (low, high) = record["effect"], record["ci"]
            err = None
            if np.isfinite(low) and np.isfinite(high):
                err = [[value - low], [high - value]]
            ax.bar(x[k] + offset, value, width=0.36, color=CONDITION_COLORS[timing], alpha=0.85,
                   hatch=SELECTION_HATCH.get(name, ""), edgecolor="0.2", yerr=err, capsize=4,
                   error_kw={"ecolor": "0.15", "elinewidth": 1.4},
                   label=CONDITION_LABELS[timing] if k == 0 else None)
            if predicted is not None and name in predicted:
                ax.plot(x[k] + offset + 0.1, predicted[name][timing], "D", color="k", ms=6,
                        label="Saxe's clock: predicted" if (k == 0 and timing == "inside") else None)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(x, [SELECTION_LABELS.get(n, n) for n in names])
    ax.set(ylabel=f"shift of the formation step  ({unit}; < 0: earlier)",
           title=title or "Effect of the extra data on the formation step (mean, 95% interval)")
    ax.legend(fontsize=8.5, loc="best")
    return fig


def power_figure(sd: float, target: float, needed: int | None, ran: int | None = None,
                 max_seeds: int | None = None, alpha: float = 0.05) -> plt.Figure:
    """The power of the paired t-test over seeds against the number of seeds, for a true difference of
    ``target`` (and of half and twice it) when the per-seed differences have standard deviation ``sd`` (steps):
    the 80 % line, the ``needed`` seeds and, when given, the seeds that ``ran``. Without a finite ``sd`` and
    ``target`` (fewer than two seeds crossed) the panel says so instead."""
    fig, ax = plt.subplots(figsize=(7.0, 3.8), layout="constrained")
    ax.set(xlabel="paired seeds", ylabel="power (probability of detection)", ylim=(0, 1.02))
    if not (np.isfinite(sd) and sd > 0 and np.isfinite(target) and needed):
        ax.text(0.5, 0.5, "no power curve: fewer than two seeds crossed\nthe threshold in both conditions",
                transform=ax.transAxes, ha="center", va="center")
        return fig
    top = max_seeds or max(2 * needed, (ran or 0) + 2, 10)
    n = np.arange(2, top + 1)
    for factor, style in ((2.0, ":"), (1.0, "-"), (0.5, "--")):
        effect = factor * target
        ax.plot(n, [paired_power(effect, sd, int(k), alpha) for k in n], ls=style, color=plotting.COLORS["estimate"],
                lw=2 if factor == 1 else 1.4, label=f"a true difference of {effect:,.0f} steps")
    ax.axhline(0.8, color="k", lw=0.8, ls="--", label="80% power")
    ax.axvline(needed, color=plotting.COLORS["rmsprop"], lw=1.6, label=f"needed: {needed} seeds")
    if ran is not None:
        ax.axvline(ran, color="0.3", lw=1.6, ls="-.", label=f"ran: {ran} seeds")
    ax.set(xlabel="paired seeds", ylabel="power (probability of detection)", ylim=(0, 1.02), xlim=(2, top),
           title=f"Power of the paired comparison (s.d. per seed {sd:,.0f} steps)")
    ax.legend(fontsize=8.5, loc="lower right")
    return fig
