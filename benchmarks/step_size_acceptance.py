"""The step-size check at full size: RMSProp-SGLD (frozen after burn-in) at ε = 0.005 on Bayesian linear regression
with 3 and 12 features (chapter 2's models, γ = 1), 64 chains × 8,000 draws: is the bias flagged, is the
Richardson–Romberg extrapolated BIF within 3% of the exact covariance, and do ±2 total standard errors hold ≥ 90% of
the entries at ε? Too long for the test suite (mostly the ESS-based error bars of every matrix entry);
tests/sampling/test_step_size.py runs the same check at 2,000 draws.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/step_size_acceptance.py

Writes benchmarks/results/step_size_acceptance.json.
"""

from __future__ import annotations

import json
import platform
import sys
import time
import warnings
from pathlib import Path

import torch

from stagewise.diagnostics import StepSizeWarning, step_size_check
from stagewise.models.bif import LinearRegression
from stagewise.sampling import SGLDConfig

MODELS = {3: (20, 20.0), 12: (40, 40.0)}  # features: (samples, nβ)


def run(features: int, draws: int, seed: int = 3) -> dict:
    samples, nbeta = MODELS[features]
    model = LinearRegression(num_samples=samples, num_features=features, noise=0.5, seed=0)
    batch, w_star = model.data(), model.least_squares()
    config = SGLDConfig(step_size=5e-3, nbeta=nbeta, localization=1.0, num_chains=64, num_draws=draws,
                        num_burnin=500, preconditioner="rmsprop", seed=seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StepSizeWarning)
        check = step_size_check(model.loss, w_star, batch, batch, config, suggest=False)
    exact = model.exact_bif(nbeta, 1.0, w_star)

    def relative(a):
        return float((a - exact).norm() / exact.norm())

    def covered(est, se):
        return float(((est - exact).abs() <= 2 * se).double().mean())

    return {"features": features, "chains": 64, "draws_per_chain": draws, "step_size": 5e-3, "seed": seed,
            "biased": bool(check.biased), "rel_error_at_eps": relative(check.bif),
            "rel_error_at_half_eps": relative(check.bif_half), "rel_error_extrapolated": relative(check.extrapolated_bif),
            "coverage_mc_stderr": covered(check.bif, check.bif_stderr),
            "coverage_total_stderr": covered(check.bif, check.bif_total_stderr),
            "coverage_extrapolated": covered(check.extrapolated_bif, check.extrapolated_bif_stderr),
            "seconds": round(time.perf_counter() - start, 1),
            "passes": bool(check.biased and relative(check.extrapolated_bif) < 0.03
                           and covered(check.bif, check.bif_total_stderr) >= 0.90)}


def main() -> int:
    torch.set_num_threads(1)
    rows = [run(features, 8000) for features in (3, 12)]
    for row in rows:
        print(json.dumps(row))
    out = Path(__file__).parent / "results" / "step_size_acceptance.json"
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
                               "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0 if all(row["passes"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
