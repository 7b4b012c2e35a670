"""Figures of the Bayesian influence function (chapter 2), one function per figure, each returning a ``Figure``.

- :func:`exact_scatter_figure`: a sampled BIF against its exact value, entry by entry, with error bars.
- :func:`error_decay_figure`: the relative error of sampled BIFs against the number of draws, with a
  1/√N Monte Carlo line (one or several samplers).
- :func:`classical_scatter_figure`: nβ times the local BIF against the damped classical influence function.
- :func:`degenerate_figure`: the largest influence at a degenerate minimum against the damping, classical IF
  and BIF.
- :func:`raw_normalized_figure`: the raw and the normalized BIF matrices as heat maps, one above the other.
- :func:`step_size_errors_figure`, :func:`localization_figure`: how the step size and the localization move
  the BIF of a model with a known answer.
- :func:`step_size_check_figure`: samplers checked by :func:`stagewise.diagnostics.step_size_check` against a
  known BIF: errors at ε, ε/2 and extrapolated, and the coverage of their error bars.

The chapter computes the BIFs (sampler runs, exact answers); these functions only draw them, in the book's
style (:func:`stagewise.plotting.set_style`) and colours (:data:`stagewise.plotting.COLORS`). Sign convention:
negative BIF = i helps j, drawn blue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter

from stagewise import plotting

__all__ = ["classical_scatter_figure", "degenerate_figure", "error_decay_figure", "exact_scatter_figure",
           "localization_figure", "raw_normalized_figure", "step_size_check_figure", "step_size_errors_figure"]

_COV = r"$-\mathrm{Cov}(\ell_i, \ell_j)$"


def _numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value, dtype=float)


def _plain_log_ticks(axis) -> None:
    """Tick labels of a log axis as plain numbers (300, 0.2, not 3×10², 2×10⁻¹); the minor ticks at 2, 3 and 5
    × a power of ten named too when the axis spans little more than a decade, where majors are too few."""
    def minor(value, _):
        low, high = sorted(abs(v) for v in axis.get_view_interval())
        leading = round(value / 10 ** np.floor(np.log10(value))) if value > 0 else 0
        return f"{value:g}" if low > 0 and high / low < 20 and leading in (2, 3, 5) else ""

    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(FuncFormatter(minor))


def exact_scatter_figure(exact, sampled, stderr, rel_error: float) -> plt.Figure:
    """Every entry of a ``sampled`` BIF (± 2 ``stderr``) against the ``exact`` one (same shapes, nats²), with
    the diagonal of equality; the title gives the relative Frobenius error ``rel_error``."""
    exact, sampled, stderr = (_numpy(v).ravel() for v in (exact, sampled, stderr))
    if not exact.shape == sampled.shape == stderr.shape:
        raise ValueError(f"exact, sampled and stderr: one shape each, got {exact.shape}, {sampled.shape}, "
                         f"{stderr.shape}")
    fig, ax = plt.subplots(figsize=(6.0, 5.2), layout="constrained")
    ax.errorbar(exact, sampled, yerr=2 * stderr, fmt="o", ms=3, alpha=0.6, color=plotting.COLORS["estimate"],
                label=f"sampled ± 2 s.e. (all {exact.size:,} pairs)")
    lim = float(np.abs(exact).max()) * 1.1
    ax.plot([-lim, lim], [-lim, lim], "--", color=plotting.COLORS["truth"], label="sampled = exact")
    ax.set(xlabel=f"exact BIF = {_COV}  (nats²)", ylabel="sampled BIF  (nats²)",
           title=f"Sampled against exact (relative error {rel_error:.1%})")
    ax.legend(loc="upper left")
    return fig


def error_decay_figure(draws: Sequence[float], errors: Mapping[str, Sequence[float]], *, xlabel: str,
                       title: str, reference: str | None = None, anchor: str = "first",
                       styles: Mapping[str, tuple] | None = None) -> plt.Figure:
    """The relative error of sampled BIFs (``errors``: sampler → one error per entry of ``draws``) against
    ``draws`` on log-log axes, with a dotted 1/√draws line through the ``anchor`` ("first" or "last") point of
    ``reference`` (default: the last sampler). ``styles``: sampler → (colour, matplotlib format)."""
    draws = np.asarray(draws, dtype=float)
    if not errors:
        raise ValueError("errors: give at least one sampler → errors")
    for name, values in errors.items():
        if len(values) != len(draws):
            raise ValueError(f"errors[{name!r}]: {len(values)} errors for {len(draws)} draw counts")
    styles = dict(styles or {})
    fig, ax = plt.subplots(figsize=(6.6, 4.4), layout="constrained")
    for name, values in errors.items():
        color, fmt = styles.get(name, (plotting.COLORS["estimate"], "o-"))
        ax.loglog(draws, values, fmt, color=color, label=name)
    if anchor not in ("first", "last"):
        raise ValueError(f"anchor = {anchor!r}: 'first' or 'last' (the point the 1/√draws line goes through)")
    k = 0 if anchor == "first" else -1
    through = np.asarray(errors[reference or list(errors)[-1]], dtype=float)
    ax.loglog(draws, through[k] * np.sqrt(draws[k] / draws), ":", color=plotting.COLORS["truth"],
              label=r"$\propto 1/\sqrt{\mathrm{draws}}$ (Monte Carlo)")
    for axis in (ax.xaxis, ax.yaxis):
        _plain_log_ticks(axis)
    ax.set(xlabel=xlabel, ylabel="‖sampled − exact BIF‖ / ‖exact BIF‖", title=title)
    ax.legend()
    return fig


def classical_scatter_figure(classical, local, corr: float) -> plt.Figure:
    """nβ times the local BIF (``local``) against the damped classical influence function (``classical``), one
    point per training–query pair (nats²), with the diagonal; the title gives their correlation ``corr``."""
    classical, local = _numpy(classical).ravel(), _numpy(local).ravel()
    fig, ax = plt.subplots(figsize=(6.0, 5.2), layout="constrained")
    ax.plot(classical, local, "o", ms=3, alpha=0.5, color=plotting.COLORS["estimate"],
            label=f"{classical.size:,} training–query pairs")
    lim = float(np.abs(classical).max()) * 1.1
    ax.plot([-lim, lim], [-lim, lim], "--", color=plotting.COLORS["truth"], label="equal")
    ax.set(xlabel=r"classical IF, damping $\gamma/n\beta$  (nats²)", ylabel=r"$n\beta$ · local BIF  (nats²)",
           title=f"Logistic regression: correlation {corr:.4f}")
    ax.legend(loc="upper left")
    return fig


def degenerate_figure(dampings: Sequence[float], classical_max: Sequence[float], bif_dampings: Sequence[float],
                      bif_max: Sequence[float]) -> plt.Figure:
    """The largest |influence| over pairs at a degenerate minimum: the classical IF at ``dampings`` and nβ
    times the BIF at the localizations γ plotted at damping γ/nβ (``bif_dampings``); damping shrinks to the
    right."""
    fig, ax = plt.subplots(figsize=(6.6, 4.4), layout="constrained")
    ax.loglog(dampings, classical_max, "o-", color=plotting.COLORS["singular"], label="classical IF (exact Hessian)")
    ax.loglog(bif_dampings, bif_max, "s-", color=plotting.COLORS["estimate"],
              label=r"$n\beta$ · BIF, localization $\gamma = n\beta$ · damping")
    ax.set(xlabel=r"damping  ($\gamma/n\beta$ for the BIF)", ylabel="largest |influence| over pairs  (nats²)",
           title="The classical IF diverges, the BIF does not")
    ax.invert_xaxis()
    ax.legend()
    return fig


def raw_normalized_figure(raw, normalized) -> plt.Figure:
    """The raw BIF (nats²) above the normalized one (dimensionless), both square matrices of training sample i
    × query sample j, on colour scales symmetric about zero (blue: helps, red: harms)."""
    raw, normalized = _numpy(raw), _numpy(normalized)
    if raw.ndim != 2 or raw.shape != normalized.shape:
        raise ValueError(f"raw and normalized: two matrices of one shape, got {raw.shape} and {normalized.shape}")
    fig, axes = plt.subplots(2, 1, figsize=(5.4, 9.0), layout="constrained")
    ticks = range(0, raw.shape[1], 5)
    for ax, matrix, title, unit in [(axes[0], raw, r"raw BIF $= -\mathrm{Cov}$", "raw BIF  (nats²)"),
                                    (axes[1], normalized, r"normalized BIF $= -\mathrm{corr}$",
                                     "normalized BIF  (dimensionless)")]:
        scale = float(np.abs(matrix).max())
        image = ax.imshow(matrix, cmap="RdBu_r", vmin=-scale, vmax=scale)
        ax.set(title=title, xlabel="query sample j", ylabel="training sample i", xticks=ticks,
               yticks=range(0, raw.shape[0], 5))
        ax.grid(False)
        fig.colorbar(image, ax=ax, label=unit, shrink=0.9)
    return fig


def step_size_errors_figure(step_sizes: Sequence[float], errors: Sequence[float], *, nbeta: float,
                            localization: float) -> plt.Figure:
    """The relative error of the sampled BIF against the step size ε (log axis), every run with the same
    number of steps, at inverse temperature ``nbeta`` and localization ``localization``."""
    fig, ax = plt.subplots(figsize=(6.4, 3.9), layout="constrained")
    ax.semilogx(step_sizes, errors, "o-", color=plotting.COLORS["estimate"], label="sampled BIF")
    ax.set_xticks(step_sizes, [f"{s:g}" for s in step_sizes])
    ax.minorticks_off()
    ax.set(xlabel="step size ε", ylabel="‖sampled − exact‖ / ‖exact‖", ylim=(0, None),
           title=f"Same budget of steps, different ε (nβ = {nbeta:g}, γ = {localization:g})")
    return fig


def localization_figure(localizations: Sequence[float], sizes: Sequence[float]) -> plt.Figure:
    """The size (Frobenius norm, nats²) of an exact BIF against the localization γ, log-log."""
    fig, ax = plt.subplots(figsize=(6.4, 3.9), layout="constrained")
    ax.loglog(localizations, sizes, color=plotting.COLORS["truth"], label="exact BIF")
    ax.set(xlabel="localization γ", ylabel=r"$\Vert$exact BIF$\Vert_F$  (nats²)",
           title="Localization damps influence")
    return fig


def step_size_check_figure(comparisons: Mapping[str, Mapping[str, float]], step_size: float) -> plt.Figure:
    """Two panels for samplers checked by :func:`stagewise.diagnostics.step_size_check` against a known BIF
    (``comparisons``: name → :meth:`~stagewise.diagnostics.StepSizeCheck.compare`): top, the relative error of
    the BIF at ε, at ε/2 and extrapolated; bottom, the share of entries that ±2 standard errors hold, Monte Carlo
    only and total (Monte Carlo ⊕ step-size bias), with the 95 % a correct error bar gives."""
    names = list(comparisons)
    x = np.arange(len(names))
    plotting.set_style()
    fig, (left, right) = plt.subplots(2, 1, figsize=(plotting.COLUMN_WIDTH * 0.85, 6.4), layout="constrained")
    bars = [("rel_error", f"at ε = {step_size:g}", 0.35), ("rel_error_half", "at ε/2", 0.6),
            ("rel_error_extrapolated", "extrapolated 2·BIF(ε/2) − BIF(ε)", 1.0)]
    for k, (key, label, alpha) in enumerate(bars):
        left.bar(x + (k - 1) * 0.27, [comparisons[n][key] for n in names], 0.27, label=label,
                 color=plotting.COLORS["estimate"], alpha=alpha)
    top = max(comparisons[n][key] for n in names for key, _, _ in bars)
    left.set(xticks=x, xticklabels=names, xlabel="sampler", ylabel="‖BIF − exact‖ / ‖exact‖",
             title="Error against the exact BIF",
             ylim=(0, 1.6 * top))
    left.legend(fontsize="small", loc="upper right")
    for k, (key, label, color) in enumerate([("coverage_mc", "±2 Monte Carlo s.e.", plotting.COLORS["plain"]),
                                             ("coverage_total", "±2 total s.e.", plotting.COLORS["rmsprop"])]):
        right.bar(x + (k - 0.5) * 0.35, [comparisons[n][key] for n in names], 0.35, label=label, color=color)
    right.axhline(0.95, ls="--", color=plotting.COLORS["truth"], lw=1)
    right.set(xticks=x, xticklabels=names, xlabel="sampler", ylim=(0, 1.35), ylabel="share of entries held",
              title="Coverage of the BIF at ε")
    right.legend(fontsize="small", loc="upper center", ncols=2)
    return fig
