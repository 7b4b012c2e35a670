"""Sampler diagnostics: the chains' statistics (R̂, ESS, MCSE, settling; :mod:`stagewise.chains`) and the
sampler's own error, the O(ε) step-size bias of SGLD, measured, removed and turned into error bars.

SGLD without a Metropolis correction samples the stationary law of the discretized dynamics, O(ε) away from the
posterior; a preconditioner G scales the effective step to ε·G, so RMSProp-SGLD's bias can be several times plain
SGLD's at the same ε (the book's chapter 2). The Monte Carlo standard errors of :mod:`stagewise.influence` and
:mod:`stagewise.llc` do not include it. Two tools:

- :func:`suggest_step_size` reads the bias's scale off the model before any long run: the largest eigenvalue
  λ_max of the drift's Jacobian G^(1/2)·(nβ·H + γI)·G^(1/2) (H the Hessian of L_n; G = 1 for plain SGLD, the
  preconditioner the burn-in freezes for RMSProp), at w* and at the chains' positions after burn-in, by power
  iteration on Hessian–vector products. The Euler bias of the stiffest direction is ≈ ε·λ_max/4, and the step
  is flagged when ε·λ_max exceeds :data:`EPS_LAMBDA_MAX`, calibrated on known answers
  (benchmarks/calibrate_step_size.py, benchmarks/results/step_size_calibration.json).
- :func:`step_size_check` measures the bias of the estimates themselves: stochastic-gradient Richardson–Romberg
  extrapolation (Durmus, Şimşekli, Moulines, Badeau & Richard 2016) runs chains at ε and ε/2 driven by the same
  Brownian increments (:func:`stagewise.sampling.sample_coupled`); since θ(ε) = θ₀ + c·ε + O(ε²), the combination
  2·θ(ε/2) − θ(ε) has bias O(ε²), θ(ε) − [2·θ(ε/2) − θ(ε)] = 2·(θ(ε) − θ(ε/2)) estimates θ(ε)'s bias, and the
  coupling makes both differences far less noisy than either run. Their standard errors come from the paired
  series (draw t of both runs) through :func:`mcse_mean`.

BIFs keep the paper's sign, −Cov (negative: i helps j).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Any

import torch

from .chains import ChainReport, ess, mcse_mean, rhat, settling_report, summarize
from .config import Interval, check_value
from .influence import bif, bif_stderr
from .influence.stderr import combination_stderr
from .llc import LLCEstimate, estimate_llc
from .sampling import SGLD, SGLDConfig
from .sampling.coupled import CoupledTraces, sample_coupled
from .sampling.inputs import index, prepare_batch, to_device
from .sampling.update import call_loss

__all__ = [
    # the chains' statistics (defined in stagewise.chains, where the estimators import them from)
    "ChainReport", "ess", "mcse_mean", "rhat", "settling_report", "summarize",
    # the step-size bias
    "EPS_LAMBDA_MAX", "StepSizeCheck", "StepSizeSuggestion", "StepSizeWarning", "step_size_check",
    "suggest_step_size", "total_stderr",
]

#: The largest ε·λ_max a chapter should run at: below it the relative step-size bias of the calibration models'
#: BIF and LLC stayed under ≈ 2 % (benchmarks/results/step_size_calibration.json).
EPS_LAMBDA_MAX = 0.08


class StepSizeWarning(UserWarning):
    """The step size is large enough for the sampler's own bias to matter (see :mod:`stagewise.diagnostics`)."""


def total_stderr(stderr, bias, bias_stderr):
    """√(stderr² + bias² + bias_stderr²), elementwise: an estimate's Monte Carlo error, its estimated step-size
    bias (taken as an error of that size, in either direction) and that estimate's own Monte Carlo error."""
    return (stderr**2 + bias**2 + bias_stderr**2) ** 0.5


# --------------------------------------------------------------------------------------------------------
# The largest preconditioned curvature


@dataclass(frozen=True)
class StepSizeSuggestion:
    """What :func:`suggest_step_size` reads off the model.

    lambda_max:         the largest |eigenvalue| of G^(1/2)·(nβ·H + γI)·G^(1/2) over w* and the chains after
                        burn-in (1/step units: ε·λ_max is dimensionless).
    lambda_max_center:  the same at w* only (the singular directions of a degenerate minimum have H = 0 there,
                        so its curvature at w* can be far below the curvature the chains meet).
    step_size:          the suggested ε = threshold / lambda_max.
    eps_lambda:         ε·λ_max at the config's step size.
    threshold:          the largest ε·λ_max accepted (:data:`EPS_LAMBDA_MAX` by default).
    passes:             eps_lambda ≤ threshold.
    preconditioner:     "none" or "rmsprop" (G from the config's burn-in, frozen as the sampler would).
    """

    lambda_max: float
    lambda_max_center: float
    step_size: float
    eps_lambda: float
    threshold: float
    passes: bool
    preconditioner: str

    @property
    def message(self) -> str:
        """One sentence for a warning or a chapter: ε·λ_max against the threshold, and the suggested ε."""
        verdict = "passes" if self.passes else "is above"
        return (f"ε·λ_max = {self.eps_lambda:.3g} {verdict} the threshold {self.threshold:g} (λ_max = "
                f"{self.lambda_max:.4g} with the {self.preconditioner} preconditioner); suggested step size "
                f"{self.step_size:.3g}")

    def as_dict(self) -> dict:
        return {"lambda_max": self.lambda_max, "lambda_max_center": self.lambda_max_center,
                "step_size": self.step_size, "eps_lambda": self.eps_lambda, "threshold": self.threshold,
                "passes": self.passes, "preconditioner": self.preconditioner}


def _hvp_power(loss_fn, single: bool, points: dict, precond: dict | None, batch, nbeta: float, gamma: float,
               iterations: int, tolerance: float, seed: int) -> torch.Tensor:
    """Largest |eigenvalue| of G^(1/2)·(nβ·H(w) + γI)·G^(1/2) at each of the P points (P, *shape): (P,)."""

    def mean_loss(p):
        return call_loss(loss_fn, single, p, batch).mean()

    def hvp(p, v):
        return torch.func.jvp(torch.func.grad(mean_loss), (p,), (v,))[1]

    batched = torch.func.vmap(hvp)
    root = None if precond is None else {k: g.sqrt() for k, g in precond.items()}
    generator = torch.Generator(device=next(iter(points.values())).device).manual_seed(seed)
    v = {k: torch.randn(p.shape, generator=generator, dtype=p.dtype, device=p.device) for k, p in points.items()}

    def norm(x):
        return torch.sqrt(sum(t.reshape(t.shape[0], -1).pow(2).sum(1) for t in x.values()))

    def scale(x, s):
        return {k: t / s.reshape(-1, *[1] * (t.dim() - 1)) for k, t in x.items()}

    v = scale(v, norm(v))
    value = torch.zeros(next(iter(points.values())).shape[0], dtype=torch.float64)
    for _ in range(iterations):
        u = v if root is None else {k: root[k] * t for k, t in v.items()}
        hu = batched(points, u)
        out = {k: nbeta * hu[k] + gamma * u[k] for k in u}
        out = out if root is None else {k: root[k] * t for k, t in out.items()}
        # The Rayleigh quotient vᵀ·B·v (‖v‖ = 1): its error falls like (λ₂/λ₁)^(2k), twice as fast as ‖B·v‖'s.
        new_value = sum((v[k] * out[k]).reshape(v[k].shape[0], -1).sum(1) for k in v).abs().double().cpu()
        v = scale(out, norm(out).clamp_min(torch.finfo(out[next(iter(out))].dtype).tiny))
        done = bool(((new_value - value).abs() <= tolerance * new_value).all())
        value = new_value
        if done:
            break
    return value


def suggest_step_size(
    loss_fn,
    params,
    data=None,
    config: SGLDConfig | None = None,
    *,
    threshold: float = EPS_LAMBDA_MAX,
    burnin_steps: int | None = None,
    hessian_samples: int = 4096,
    iterations: int = 300,
    tolerance: float = 1e-7,
    warn: bool = True,
) -> StepSizeSuggestion:
    """The step size at which ε·λ_max = ``threshold``, with λ_max the drift's largest curvature (module docstring).

    loss_fn, params, data, config: as for :func:`stagewise.sampling.sample` (config gives nβ, γ, the
    preconditioner and its settings, the chains, the seed and the step size being checked). The chains run
    ``burnin_steps`` steps (default the config's burn-in, at least 100) from w* with the config's sampler, which for
    RMSProp adapts and freezes G exactly as a run would; λ_max is then taken at w* and at every chain's position
    with its own G (power iteration, stopped after ``iterations`` Hessian–vector products or when the estimate
    changes by less than ``tolerance``, relative). The Hessian is that of the mean loss on the data (on
    ``hessian_samples`` of them, drawn once with the seed, when there are more). ``warn``: issue a
    :class:`StepSizeWarning` when the step does not pass.
    """
    config = SGLDConfig() if config is None else config
    check_value("threshold", threshold, Interval(gt=0))
    burnin = max(config.num_burnin, 100) if burnin_steps is None else burnin_steps
    check_value("burnin_steps", burnin, Interval(ge=1, integer=True))
    rmsprop = config.preconditioner == "rmsprop"
    run_config = replace(config, num_burnin=burnin, num_draws=1,
                         rmsprop_adapt="burnin" if rmsprop else config.rmsprop_adapt)
    kernel = SGLD(loss_fn, run_config)
    state = kernel.init(params)
    first = next(iter(state.params.values()))
    n = None
    if data is not None:
        data, n = prepare_batch(data, "data")
        data = to_device(data, first.device, first.dtype)
    for _ in range(burnin):
        state, _ = kernel.step(state, data)
    precond = state.precond if rmsprop else None
    hessian_batch = data
    if n is not None and n > hessian_samples:
        pick = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed))[:hessian_samples]
        hessian_batch = index(data, pick.to(first.device))
    points = {k: torch.cat([state.center[k], state.params[k]]) for k in state.center}
    g = None if precond is None else {k: torch.cat([v, v]) for k, v in precond.items()}
    values = _hvp_power(loss_fn, state.tensor_params, points, g, hessian_batch, config.nbeta, config.localization,
                        iterations, tolerance, config.seed)
    at_center = float(values[:config.num_chains].max())
    lam = float(values.max())
    eps_lambda = config.step_size * lam
    out = StepSizeSuggestion(lam, at_center, threshold / lam, eps_lambda, float(threshold), eps_lambda <= threshold,
                             config.preconditioner)
    if warn and not out.passes:
        warnings.warn(StepSizeWarning(f"step size {config.step_size:g}: " + out.message), stacklevel=2)
    return out


# --------------------------------------------------------------------------------------------------------
# Richardson–Romberg: the estimates at ε and ε/2, their extrapolation and the bias


@dataclass
class StepSizeCheck:
    """The estimates at ε and ε/2 from coupled chains, their extrapolation to ε → 0 and the step-size bias.

    LLC (dimensionless):
    llc, llc_half:            :class:`~stagewise.llc.LLCEstimate` at ε and at ε/2.
    extrapolated_llc:         2·λ̂(ε/2) − λ̂(ε), bias O(ε²); extrapolated_llc_stderr its Monte Carlo error.
    llc_bias:                 estimated bias of ``llc.estimate``: 2·(λ̂(ε) − λ̂(ε/2)) (positive: too high);
                              llc_bias_stderr its Monte Carlo error.
    llc_total_stderr:         :func:`total_stderr` of ``llc.estimate``: its Monte Carlo s.e., |llc_bias| and
                              llc_bias_stderr in quadrature (the O(ε²) remainder is not included).

    BIF (I, I) over the observables, −Cov (None without observables), in their loss units squared:
    bif, bif_half, bif_stderr:  the BIF at ε and at ε/2, and the Monte Carlo s.e. of ``bif``.
    extrapolated_bif:         2·BIF(ε/2) − BIF(ε); extrapolated_bif_stderr its Monte Carlo error.
    bif_bias:                 estimated bias of ``bif``: 2·(BIF(ε) − BIF(ε/2)); bif_bias_stderr its error.
    bif_total_stderr:         :func:`total_stderr` of ``bif``, entrywise.

    relative_bias:            {"llc": |llc_bias|/|extrapolated_llc|, "bif": ‖bif_bias‖/‖extrapolated_bif‖}
                              (Frobenius norms).
    z_threshold:              the |bias|/s.e. beyond which a bias counts as measured: Bonferroni over the LLC and
                              the I(I + 1)/2 distinct BIF entries at family-wise level ``alpha``.
    biased:                   True when a bias is measured (|bias| > z_threshold·s.e. for the LLC or some BIF
                              entry) *and* its relative size exceeds ``tolerance`` for that quantity: the estimate
                              moves with the step size beyond its Monte Carlo error.
    tolerance:                that relative size (0: any measured bias counts).
    suggestion:               :func:`suggest_step_size`'s reading of the same config, or None.
    traces:                   the coupled traces (for diagnostics).
    """

    step_size: float
    llc: LLCEstimate
    llc_half: LLCEstimate
    extrapolated_llc: float
    extrapolated_llc_stderr: float
    llc_bias: float
    llc_bias_stderr: float
    llc_total_stderr: float
    bif: torch.Tensor | None
    bif_half: torch.Tensor | None
    bif_stderr: torch.Tensor | None
    extrapolated_bif: torch.Tensor | None
    extrapolated_bif_stderr: torch.Tensor | None
    bif_bias: torch.Tensor | None
    bif_bias_stderr: torch.Tensor | None
    bif_total_stderr: torch.Tensor | None
    relative_bias: dict
    z_threshold: float
    biased: bool
    tolerance: float
    suggestion: StepSizeSuggestion | None
    traces: CoupledTraces | None = None

    @property
    def message(self) -> str:
        """One sentence: whether the estimates move with the step size, by how much, and what to do."""
        parts = [f"LLC {self.llc.estimate:.4g} at ε = {self.step_size:g}, bias {self.llc_bias:+.3g} ± "
                 f"{self.llc_bias_stderr:.2g}, extrapolated {self.extrapolated_llc:.4g} ± "
                 f"{self.extrapolated_llc_stderr:.2g}"]
        if self.bif is not None:
            parts.append(f"BIF bias {self.relative_bias['bif']:.1%} of its size")
        text = "; ".join(parts)
        if self.biased:
            hint = f" (suggested step size {self.suggestion.step_size:.3g})" if self.suggestion is not None else ""
            return (f"the estimates move with the step size: {text}. Use the extrapolated values or their total "
                    f"standard errors, or lower the step size{hint}")
        return f"no step-size bias beyond the Monte Carlo error and the tolerance {self.tolerance:g}: {text}"

    def compare(self, exact_bif: torch.Tensor) -> dict[str, float]:
        """Against a known BIF (I, I): relative Frobenius errors of the BIF at ε, at ε/2 and extrapolated, and the
        share of entries that ±2 standard errors hold: Monte Carlo only and total for the BIF at ε, Monte Carlo
        for the extrapolated one."""
        if self.bif is None:
            raise ValueError("this check recorded no observables: there is no BIF to compare")
        exact = torch.as_tensor(exact_bif, dtype=self.bif.dtype)

        def error(estimate):
            return float((estimate - exact).norm() / exact.norm())

        def held(estimate, stderr):
            return float(((estimate - exact).abs() <= 2 * stderr).double().mean())

        return {"rel_error": error(self.bif), "rel_error_half": error(self.bif_half),
                "rel_error_extrapolated": error(self.extrapolated_bif),
                "coverage_mc": held(self.bif, self.bif_stderr), "coverage_total": held(self.bif, self.bif_total_stderr),
                "coverage_extrapolated": held(self.extrapolated_bif, self.extrapolated_bif_stderr)}

    def as_dict(self) -> dict[str, Any]:
        """Plain numbers for a metrics file (matrices as their relative bias and largest entries)."""
        out = {"step_size": self.step_size, "biased": self.biased, "z_threshold": self.z_threshold,
               "llc": self.llc.estimate, "llc_stderr": self.llc.stderr, "llc_half": self.llc_half.estimate,
               "extrapolated_llc": self.extrapolated_llc, "extrapolated_llc_stderr": self.extrapolated_llc_stderr,
               "llc_bias": self.llc_bias, "llc_bias_stderr": self.llc_bias_stderr,
               "llc_total_stderr": self.llc_total_stderr, "relative_bias": dict(self.relative_bias)}
        if self.suggestion is not None:
            out["suggestion"] = self.suggestion.as_dict()
        return out


def _llc_series(trace) -> torch.Tensor:
    """nβ·(L(t) − L_n(w*)) after burn-in, (chain, step), float64."""
    config = trace.config
    return config.nbeta * (trace.loss_trace[:, config.num_burnin:].double() - trace.init_loss)


def step_size_check(
    loss_fn,
    params,
    data=None,
    observables=None,
    config: SGLDConfig | None = None,
    *,
    observable_fn=None,
    alpha: float = 0.05,
    tolerance: float = 0.02,
    suggest: bool = True,
    keep_traces: bool = True,
    warn: bool = True,
) -> StepSizeCheck:
    """Estimate the LLC and the BIF at ε and ε/2 with coupled chains, extrapolate, and measure the bias.

    loss_fn, params, data, observables, config: as for :func:`stagewise.sampling.sample` (ε =
    ``config.step_size``; the ε/2 chains run twice the steps over the same time, so this costs about three
    sampler runs of ``config``). The BIF is that of the observables' per-sample losses, (I, I); without
    observables only the LLC is checked. ``alpha``, ``tolerance``: see :class:`StepSizeCheck` (``biased``).
    ``suggest``: also run :func:`suggest_step_size` (without its warning). ``warn``: issue a
    :class:`StepSizeWarning` when ``biased``.
    """
    config = SGLDConfig() if config is None else config
    check_value("alpha", alpha, Interval(gt=0, lt=1))
    check_value("tolerance", tolerance, Interval(ge=0))
    traces = sample_coupled(loss_fn, params, data, observables, config, observable_fn=observable_fn)
    coarse, fine = traces.coarse, traces.fine
    if coarse.loss_trace.shape[1] - config.num_burnin < 4:
        raise ValueError(f"num_draws × thin = {config.num_draws * config.thin}: the check needs at least 4 steps "
                         "after burn-in")
    llc, llc_half = estimate_llc(coarse), estimate_llc(fine)
    s_coarse, s_fine = _llc_series(coarse), _llc_series(fine)
    pair_mean = (s_fine[:, 0::2] + s_fine[:, 1::2]) / 2  # the ε/2 chain over each ε step
    extrapolated = (2 * pair_mean - s_coarse)[:, :, None]
    bias_series = (2 * (s_coarse - pair_mean))[:, :, None]
    extrapolated_llc = float(extrapolated.mean())
    llc_bias = float(bias_series.mean())
    extrapolated_llc_stderr, llc_bias_stderr = float(mcse_mean(extrapolated)), float(mcse_mean(bias_series))
    llc_total = float(total_stderr(torch.tensor(llc.stderr), torch.tensor(llc_bias), torch.tensor(llc_bias_stderr)))
    relative = {"llc": abs(llc_bias) / abs(extrapolated_llc) if extrapolated_llc != 0 else math.inf}

    recorded = coarse.losses is not None
    if recorded and coarse.losses.dim() != 3:
        raise ValueError(f"the observables' losses are {tuple(coarse.losses.shape[2:])} per draw: step_size_check "
                         "takes one loss per sample, (chain, draw, sample)")
    count = coarse.losses.shape[2] if recorded else 0
    tests = 1 + count * (count + 1) // 2
    z = NormalDist().inv_cdf(1 - alpha / (2 * tests))
    biased = abs(llc_bias) > z * llc_bias_stderr and relative["llc"] > tolerance
    fields: dict[str, Any] = dict.fromkeys(("bif", "bif_half", "bif_stderr", "extrapolated_bif",
                                            "extrapolated_bif_stderr", "bif_bias", "bif_bias_stderr",
                                            "bif_total_stderr"))
    if recorded:
        a, b = coarse.losses.double(), fine.losses.double()
        fields["bif"], fields["bif_half"] = bif(a), bif(b)
        fields["bif_stderr"] = bif_stderr(a)
        fields["extrapolated_bif"] = 2 * fields["bif_half"] - fields["bif"]
        fields["extrapolated_bif_stderr"] = combination_stderr([(2.0, b, b), (-1.0, a, a)])
        fields["bif_bias"] = fields["bif"] - fields["extrapolated_bif"]
        fields["bif_bias_stderr"] = combination_stderr([(2.0, a, a), (-2.0, b, b)])
        fields["bif_total_stderr"] = total_stderr(fields["bif_stderr"], fields["bif_bias"], fields["bif_bias_stderr"])
        size = float(fields["extrapolated_bif"].norm())
        relative["bif"] = float(fields["bif_bias"].norm()) / size if size > 0 else math.inf
        upper = torch.triu(torch.ones(count, count, dtype=torch.bool))
        zscores = (fields["bif_bias"].abs() / fields["bif_bias_stderr"].clamp_min(1e-300))[upper]
        biased = biased or (bool((zscores > z).any()) and relative["bif"] > tolerance)
    suggestion = suggest_step_size(loss_fn, params, data, config, warn=False) if suggest else None
    out = StepSizeCheck(config.step_size, llc, llc_half, extrapolated_llc, extrapolated_llc_stderr, llc_bias,
                        llc_bias_stderr, llc_total, **fields, relative_bias=relative, z_threshold=z, biased=biased,
                        tolerance=float(tolerance), suggestion=suggestion, traces=traces if keep_traces else None)
    if warn and biased:
        warnings.warn(StepSizeWarning(out.message), stacklevel=2)
    return out
