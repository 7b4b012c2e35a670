"""Calibrate the step-size warning: relative step-size bias against ε·λ_max on models with known answers.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calibrate_step_size.py

λ_max is :func:`stagewise.diagnostics.suggest_step_size`'s (the largest eigenvalue of G^(1/2)(nβH + γI)G^(1/2) at
w* and at the chains after burn-in). Two kinds of rows:

- the BIF of Bayesian linear regression (3 features / 20 samples, nβ = 20, and 12 features / 40 samples,
  nβ = 40; γ = 1; chapter 2's models), plain SGLD and RMSProp-SGLD frozen after 500 burn-in steps: the bias is
  exact, ‖BIF_ε − BIF‖/‖BIF‖ with BIF_ε the stationary law of the discretized chain for each chain's frozen G
  (``LinearRegression.euler_bif``), no sampling noise;
- the LLC of chapter 1's three reduced-rank regressions (nβ = 1000, γ = 1, mini-batches of 64): the bias is
  :func:`stagewise.diagnostics.step_size_check`'s Richardson–Romberg estimate |2(λ̂_ε − λ̂_ε/2)| / λ̂_extrapolated,
  with its standard error (16 chains × 2,000 draws after 500 burn-in steps).

The threshold is where the relative bias (for the sampled rows: bias + 2 s.e.) first reaches 2 % as ε·λ_max grows
(interpolated between the two rows around it), rounded down to one significant digit. Writes
benchmarks/results/step_size_calibration.json.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import write_result  # noqa: E402

from stagewise.diagnostics import EPS_LAMBDA_MAX, step_size_check, suggest_step_size  # noqa: E402
from stagewise.llc import rrr_llc  # noqa: E402
from stagewise.models.bif import LinearRegression  # noqa: E402
from stagewise.models.slt import ReducedRankRegression  # noqa: E402
from stagewise.sampling import SGLDConfig, sample  # noqa: E402

LIMIT = 0.02  # the relative bias the threshold is to keep
CHAINS, BURNIN = 16, 500
LINEAR = [(3, 20, 20.0), (12, 40, 40.0)]  # (features, samples, nβ)
LINEAR_EPS = [3e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2, 2e-2]
RRR = [(2, 2, 2), (3, 1, 2), (4, 2, 3)]
RRR_EPS = [5e-5, 1e-4, 2e-4, 4e-4]


def linear_rows() -> list[dict]:
    rows = []
    for features, samples, nbeta in LINEAR:
        model = LinearRegression(num_samples=samples, num_features=features, noise=0.5, seed=0)
        batch, w_star = model.data(), model.least_squares()
        exact = model.exact_bif(nbeta, 1.0, w_star)
        for preconditioner in ("none", "rmsprop"):
            for eps in LINEAR_EPS:
                config = SGLDConfig(step_size=eps, nbeta=nbeta, localization=1.0, num_chains=CHAINS, num_draws=1,
                                    num_burnin=BURNIN, preconditioner=preconditioner, seed=0)
                suggestion = suggest_step_size(model.loss, w_star, batch, config, warn=False)
                g = sample(model.loss, w_star, batch, config=config, progress=False).preconditioner  # the same G
                try:
                    biased = model.euler_bif(nbeta, 1.0, w_star, eps, g)
                except ValueError:  # unstable at this ε
                    continue
                rows.append({"model": f"linear regression d={features} n={samples} (BIF)",
                             "preconditioner": preconditioner, "step_size": eps,
                             "lambda_max": suggestion.lambda_max, "eps_lambda": suggestion.eps_lambda,
                             "relative_bias": float((biased - exact).norm() / exact.norm()),
                             "relative_bias_stderr": 0.0, "kind": "exact"})
                print(rows[-1])
    return rows


def rrr_rows() -> list[dict]:
    rows = []
    for m, h, n in RRR:
        model = ReducedRankRegression(m, h, n, num_samples=1000, seed=0)
        for eps in RRR_EPS:
            config = SGLDConfig(step_size=eps, nbeta=1000.0, localization=1.0, num_chains=CHAINS, num_draws=2000,
                                num_burnin=BURNIN, batch_size=64, seed=1)
            started = time.perf_counter()
            check = step_size_check(model.loss, model.init_params(), model.data(), None, config, warn=False)
            scale = abs(check.extrapolated_llc)
            rows.append({"model": f"reduced-rank regression M={m} H={h} N={n} (LLC)", "preconditioner": "none",
                         "step_size": eps, "lambda_max": check.suggestion.lambda_max,
                         "lambda_max_center": check.suggestion.lambda_max_center,
                         "eps_lambda": check.suggestion.eps_lambda,
                         "relative_bias": abs(check.llc_bias) / scale,
                         "relative_bias_stderr": check.llc_bias_stderr / scale, "kind": "richardson-romberg",
                         "llc": check.llc.estimate, "llc_stderr": check.llc.stderr,
                         "extrapolated_llc": check.extrapolated_llc,
                         "extrapolated_llc_stderr": check.extrapolated_llc_stderr, "truth": rrr_llc(m, h, n),
                         "seconds": time.perf_counter() - started})
            print(rows[-1])
    return rows


def threshold(rows: list[dict]) -> float:
    """Where the relative bias (+ 2 s.e.) first reaches LIMIT as ε·λ_max grows, rounded down to one significant
    digit: linear interpolation between the last row under the limit and the first row over it (rows sorted by
    ε·λ_max; every row below the result is under the limit)."""
    ordered = sorted(rows, key=lambda r: r["eps_lambda"])
    upper = [r["relative_bias"] + 2 * r["relative_bias_stderr"] for r in ordered]
    failing = next((k for k, u in enumerate(upper) if u > LIMIT), None)
    if failing is None or failing == 0:
        raise RuntimeError("the calibration grid does not bracket the limit: widen the step sizes")
    x0, x1 = ordered[failing - 1]["eps_lambda"], ordered[failing]["eps_lambda"]
    y0, y1 = upper[failing - 1], upper[failing]
    crossing = x0 + (LIMIT - y0) / (y1 - y0) * (x1 - x0)
    digits = -int(math.floor(math.log10(crossing)))
    return math.floor(crossing * 10**digits) / 10**digits


def main() -> None:
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    started = time.perf_counter()
    rows = linear_rows() + rrr_rows()
    chosen = threshold(rows)
    ratio = [r["relative_bias"] / r["eps_lambda"] for r in rows if r["eps_lambda"] <= 0.5]
    result = {"benchmark": "relative step-size bias against eps * lambda_max (stagewise.diagnostics)",
              "limit": LIMIT, "threshold": chosen, "threshold_in_code": EPS_LAMBDA_MAX,
              "bias_per_eps_lambda": {"min": float(np.min(ratio)), "median": float(np.median(ratio)),
                                      "max": float(np.max(ratio)), "rows_with_eps_lambda_at_most": 0.5},
              "chains": CHAINS, "burnin": BURNIN, "seconds": time.perf_counter() - started, "rows": rows}
    path = write_result("step_size_calibration.json", result)
    print(f"threshold {chosen} (in code: {EPS_LAMBDA_MAX}); bias / (ε·λ_max) median "
          f"{result['bias_per_eps_lambda']['median']:.3f}; wrote {path}")


if __name__ == "__main__":
    main()
