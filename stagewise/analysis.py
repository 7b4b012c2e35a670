"""Reading results: agreement of influence trajectories, embeddings, LLC tables.

The chapters' analysis, in one place with tests on known answers (curves over checkpoints, their crossings,
sign flips, peaks and windows, are read by :mod:`stagewise.curves`):

- agreement of two influence trajectories (checkpoint, i, j): :func:`pair_correlations`, :func:`agreement`, and
  :func:`gradient_alignment`, the γ → ∞ limit of γ·BIF;
- geometry: :func:`classical_mds`, :func:`procrustes_rotation`, :func:`readable_modes`;
- LLC estimates against known answers: :class:`KnownLLC`, :func:`known_llc_cases` (chapter 1's five models),
  :func:`sampled_llc`, :func:`llc_table`, :func:`spread_over_seeds`;
- :func:`relative_error`, the relative Frobenius error of an estimate;
- :func:`token_labels`, printable tokens for figure axes.

Sign convention of influence (as everywhere in the book): negative means i helps j.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from .llc import estimate_llc, normal_crossing_llc, regular_llc, rrr_llc
from .models.slt import ReducedRankRegression, exact_posterior, normal_crossing, sum_of_squares
from .sampling import sample

__all__ = [
    "Agreement", "KnownLLC", "agreement", "classical_mds", "gradient_alignment", "known_llc_cases", "llc_table",
    "off_diagonal_pairs", "pair_correlations", "procrustes_rotation", "readable_modes", "relative_error",
    "sampled_llc", "spread_over_seeds", "token_labels",
]


# --------------------------------------------------------------------------------------------------------
# Agreement of two influence trajectories


def off_diagonal_pairs(n: int) -> list[tuple[int, int]]:
    """Every ordered pair (i, j), i ≠ j, of n samples, row by row: n·(n − 1) pairs."""
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n = {n!r}: accepted values are integers ≥ 2")
    return [(i, j) for i in range(n) for j in range(n) if i != j]


def _trajectories(x, y, pairs) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim != 3 or x.shape != y.shape or x.shape[1] != x.shape[2]:
        raise ValueError(f"x and y: two (checkpoint, N, N) arrays of the same shape (got {x.shape} and {y.shape})")
    pairs = off_diagonal_pairs(x.shape[1]) if pairs is None else [tuple(p) for p in pairs]
    rows, cols = (list(index) for index in zip(*pairs))
    return x[:, rows, cols], y[:, rows, cols], pairs  # (checkpoint, pair) each


def pair_correlations(x, y, pairs: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
    """Pearson correlation over checkpoints of x[:, i, j] and y[:, i, j] for each pair, (P,).

    ``x``, ``y``: (checkpoint, N, N); ``pairs`` default to every i ≠ j (:func:`off_diagonal_pairs`). A constant
    trajectory has no correlation: NaN.
    """
    a, b, _ = _trajectories(x, y, pairs)
    a, b = a - a.mean(0), b - b.mean(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))
    return np.clip(r, -1.0, 1.0)


@dataclass(frozen=True)
class Agreement:
    """How well a trajectory x agrees with a reference y (checkpoint, N, N) over P pairs.

    rank_corr:      (checkpoint,) Spearman correlation of the P entries of x and y at each checkpoint; NaN where
                    the reference is all but zero (nothing to rank).
    sign_agreement: fraction of (checkpoint, pair) entries with the sign of y, among the entries where |y| is at
                    least ``counted_fraction`` of that pair's largest |y| (elsewhere y's sign means nothing).
    peak_offsets:   (P,) step of x's largest |value| minus the step of y's, per pair (training steps).
    """

    rank_corr: np.ndarray
    sign_agreement: float
    peak_offsets: np.ndarray


def agreement(x, y, steps, *, pairs: Sequence[tuple[int, int]] | None = None, live: float = 1e-3,
              counted_fraction: float = 0.1) -> Agreement:
    """Scores of the trajectory ``x`` against the reference ``y`` (both (checkpoint, N, N)); see :class:`Agreement`.

    ``steps``: (checkpoint,) training steps. ``live``: a checkpoint is ranked where the reference's largest |entry|
    exceeds it (units of y).
    """
    from scipy.stats import spearmanr

    a, b, _ = _trajectories(x, y, pairs)
    steps = np.asarray(steps)
    if steps.shape != (a.shape[0],):
        raise ValueError(f"steps: one per checkpoint, shape ({a.shape[0]},) (got {steps.shape})")
    if not 0 <= counted_fraction <= 1:
        raise ValueError(f"counted_fraction = {counted_fraction!r}: accepted values are in [0, 1]")
    ranked = np.abs(b).max(1) > live
    ranks = np.full(len(steps), np.nan)
    ranks[ranked] = [spearmanr(u, v).statistic for u, v in zip(a[ranked], b[ranked])]
    counted = np.abs(b) >= counted_fraction * np.abs(b).max(0)
    offsets = steps[np.abs(a).argmax(0)] - steps[np.abs(b).argmax(0)]
    return Agreement(ranks, float((np.sign(a) == np.sign(b))[counted].mean()), offsets)


def gradient_alignment(per_sample_loss: Callable, checkpoints: Mapping[str, torch.Tensor], batch) -> torch.Tensor:
    """−∇ℓ_i·∇ℓ_j at each checkpoint, (S, N, N): the first-order limit of γ·BIF as the localization γ → ∞.

    ``per_sample_loss(params, batch)`` returns the N per-sample losses (N,) for a dict of parameters;
    ``checkpoints`` holds those parameters stacked over S checkpoints (leading dimension S). For a tight posterior
    w ~ N(w*, I/γ), Cov(ℓ_i, ℓ_j) = ∇ℓ_i·∇ℓ_j/γ to first order, so this is γ·BIF in the book's sign.
    """
    jacobian = torch.func.vmap(torch.func.jacrev(lambda p: per_sample_loss(p, batch)))(dict(checkpoints))
    flat = torch.cat([j.flatten(2) for j in jacobian.values()], dim=-1)  # (S, N, parameters)
    return -flat @ flat.transpose(1, 2)


# --------------------------------------------------------------------------------------------------------
# Geometry: embeddings and bases


def classical_mds(points, dim: int) -> np.ndarray:
    """Classical (Torgerson) MDS: (n, d) points → (n, dim) centred coordinates that keep the pairwise distances.

    Double-centres the squared distances, B = −½·J·D²·J, and scales the top ``dim`` eigenvectors of B by the
    square roots of their eigenvalues. The result is fixed only up to a rotation or reflection.
    """
    points = np.asarray(points, dtype=float)
    if points.ndim != 2:
        raise ValueError(f"points: an (n, d) array (got shape {points.shape})")
    if not isinstance(dim, (int, np.integer)) or not 1 <= dim <= len(points):
        raise ValueError(f"dim = {dim!r}: accepted values are integers in [1, n = {len(points)}]")
    d2 = ((points[:, None] - points[None]) ** 2).sum(-1)
    centring = np.eye(len(points)) - 1.0 / len(points)
    eigenvalues, eigenvectors = np.linalg.eigh(-0.5 * centring @ d2 @ centring)
    top = np.argsort(eigenvalues)[::-1][:dim]
    return eigenvectors[:, top] * np.sqrt(np.clip(eigenvalues[top], 0, None))


def procrustes_rotation(moving, fixed) -> np.ndarray:
    """The orthogonal (d, d) matrix R (a rotation or reflection) minimising ‖moving·R − fixed‖ (Frobenius).

    ``moving``: (n, d); ``fixed``: (n, k) with k ≤ d, padded with zero columns to d (it is matched in its first
    k coordinates). Both are taken as they are, about the origin (centre them first if they are not).
    """
    from scipy.linalg import orthogonal_procrustes

    moving, fixed = np.asarray(moving, dtype=float), np.asarray(fixed, dtype=float)
    if moving.ndim != 2 or fixed.ndim != 2 or len(moving) != len(fixed) or fixed.shape[1] > moving.shape[1]:
        raise ValueError(f"moving (n, d) and fixed (n, k ≤ d): got shapes {moving.shape} and {fixed.shape}")
    fixed = np.pad(fixed, ((0, 0), (0, moving.shape[1] - fixed.shape[1])))
    return orthogonal_procrustes(moving, fixed)[0]


def readable_modes(basis):
    """The same SVD (a :class:`stagewise.toy.ModeBasis`), each block of equal singular values rotated to be readable.

    Inside a block any rotation of the modes is an SVD too; this one diagonalizes Vᵀ·diag(0, 1, …, N−1)·V, which
    separates modes that load on disjoint sets of items (subtrees), and picks the sign that makes each mode's
    first visibly loaded item positive. U·diag(s)·Vᵀ is unchanged.
    """
    u, v = basis.u.clone(), basis.v.clone()
    position = torch.diag(torch.arange(v.shape[0], dtype=v.dtype))
    for block in map(list, basis.blocks):
        _, rotation = torch.linalg.eigh(v[:, block].T @ position @ v[:, block])
        u[:, block], v[:, block] = u[:, block] @ rotation, v[:, block] @ rotation
    first = (v.abs() > 0.1 * v.abs().amax(0)).to(v.dtype).argmax(0)  # first item with a visible loading
    sign = torch.sign(v[first, torch.arange(v.shape[1])])
    return replace(basis, u=u * sign, v=v * sign)


# --------------------------------------------------------------------------------------------------------
# LLC estimates against known answers


@dataclass(frozen=True)
class KnownLLC:
    """A model whose learning coefficient λ is known, and the sampler settings to estimate it with.

    loss(w, batch) and w_star as :func:`stagewise.sampling.sample` takes them; data: its training data (None for a
    potential); exact_finite_nbeta: E[nβ·K] at this nβ when known (quadrature), else NaN.
    """

    name: str
    loss: Callable
    w_star: object
    truth: float
    nbeta: float
    step_size: float
    num_params: int
    data: object = None
    batch_size: int | None = None
    exact_finite_nbeta: float = math.nan


def known_llc_cases(*, nbeta: float, step_size: float, regular_step_size: float, rrr_nbeta: float,
                    rrr_step_size: float, localization: float, grid, data_seed: int = 0) -> list[KnownLLC]:
    """Chapter 1's five models with known λ, each with the settings to sample it.

    The regular quadratic w₁² + w₂² (λ = d/2 = 1) and the normal crossing w₁² w₂⁴ (λ = 1/4), both at w* = 0 with
    inverse temperature ``nbeta`` and step sizes ``regular_step_size`` and ``step_size``, their finite-nβ answer
    E[nβ·K] from quadrature on ``grid`` (a :class:`stagewise.models.slt.Grid2D`) with ``localization``; and
    three reduced-rank regressions with a rank-0 teacher, (M, H, N) = (2, 2, 2), (3, 1, 2), (4, 2, 3), 1,000
    samples drawn with ``data_seed``, λ from Aoyagi & Watanabe (2005), sampled at ``rrr_nbeta``, ``rrr_step_size``
    with mini-batches of 64.
    """
    w0 = torch.zeros(2, dtype=torch.float64)
    cases = []
    for name, potential, truth, eps in [
        ("regular w1^2 + w2^2", sum_of_squares(2), regular_llc(2), regular_step_size),
        ("normal crossing w1^2 w2^4", normal_crossing([1, 2]), normal_crossing_llc([1, 2]), step_size),
    ]:
        exact = exact_posterior(potential, nbeta, localization, grid)[1]
        cases.append(KnownLLC(name, potential, w0, truth, nbeta, eps, num_params=2, exact_finite_nbeta=exact))
    for m, h, n in [(2, 2, 2), (3, 1, 2), (4, 2, 3)]:
        model = ReducedRankRegression(m, h, n, num_samples=1000, seed=data_seed)
        cases.append(KnownLLC(f"reduced-rank regression M={m} H={h} N={n}", model.loss, model.init_params(),
                              rrr_llc(m, h, n), rrr_nbeta, rrr_step_size, model.num_params, data=model.data(),
                              batch_size=64))
    return cases


def relative_error(estimate, truth) -> float:
    """‖estimate − truth‖ / ‖truth‖ (Frobenius norms) of two tensors or arrays of the same shape."""
    estimate, truth = torch.as_tensor(estimate), torch.as_tensor(truth)
    if estimate.shape != truth.shape:
        raise ValueError(f"estimate {tuple(estimate.shape)} and truth {tuple(truth.shape)}: the same shape")
    return float((estimate - truth).norm() / truth.norm())


def sampled_llc(loss: Callable, w_star, data=None, *, config, **overrides):
    """LLC estimate (:class:`stagewise.llc.LLCEstimate`) at ``w_star`` from one localized SGLD run.

    ``config``: an :class:`~stagewise.sampling.SGLDConfig`; ``overrides`` replace its fields for this run, e.g.
    ``sampled_llc(loss, w0, config=base, nbeta=1e4, step_size=1e-4)``.
    """
    return estimate_llc(sample(loss, w_star, data, config=replace(config, **overrides), progress=False))


def llc_table(cases: Sequence[KnownLLC], config) -> list[dict]:
    """One row per case: name, estimate, stderr, truth, rel_error = |estimate − truth|/truth, and the settings.

    ``config`` gives the chains, draws, localization and seed; each case its own nβ, step size and batch size.
    """
    rows = []
    for case in cases:
        est = sampled_llc(case.loss, case.w_star, case.data, config=config, nbeta=case.nbeta,
                          step_size=case.step_size, batch_size=case.batch_size)
        rows.append(dict(name=case.name, estimate=est.estimate, stderr=est.stderr, truth=case.truth,
                         exact_finite_nbeta=case.exact_finite_nbeta, nbeta=case.nbeta, step_size=case.step_size,
                         params=case.num_params, rel_error=abs(est.estimate - case.truth) / case.truth))
    return rows


def spread_over_seeds(values: Mapping[int, float]) -> dict:
    """{mean, min, max, seeds, values} of one number measured at several seeds (``values``: seed → number)."""
    if not values:
        raise ValueError("values: at least one seed → number")
    seeds = sorted(values)
    numbers = [float(values[s]) for s in seeds]
    return {"mean": float(np.mean(numbers)), "min": min(numbers), "max": max(numbers), "seeds": seeds,
            "values": numbers}


# --------------------------------------------------------------------------------------------------------
# Labels


def token_labels(tokenizer, ids) -> list[str]:
    """The tokens of ``ids`` (a 1-d tensor or sequence of ids) as printable labels: ␣ for a space, ⏎ a newline."""
    ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
    return [t.replace("Ġ", "␣").replace("\n", "⏎").replace(" ", "␣") for t in tokenizer.convert_ids_to_tokens(ids)]
