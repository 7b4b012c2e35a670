"""Every chapter's SGLD step size against the step-size rule: ε·λ_max from
:func:`stagewise.diagnostics.suggest_step_size` at the chapter's own settings (full profile's defaults).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/chapter_step_sizes.py

λ_max is taken at w* and at the chains after burn-in (the chapter's chains, burn-in and seed, at most 16 chains);
for chapters that sample around several checkpoints, the largest over a spread of them. Chapters 6 and 7 sample a
trained language model and are left out here (their training is not cached on a fresh checkout). Writes
benchmarks/results/chapter_step_sizes.json.
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import write_result  # noqa: E402

from stagewise import nonlinear, toy  # noqa: E402
from stagewise.diagnostics import EPS_LAMBDA_MAX, suggest_step_size  # noqa: E402
from stagewise.models.bif import LinearRegression, LogisticRegression, RankOneNetwork  # noqa: E402
from stagewise.models.phases import TwoClusterPrototype  # noqa: E402
from stagewise.models.slt import ReducedRankRegression, normal_crossing, sum_of_squares  # noqa: E402
from stagewise.sampling import SGLDConfig  # noqa: E402


def row(chapter: str, what: str, loss, params, data, config: SGLDConfig) -> dict:
    out = suggest_step_size(loss, params, data, replace(config, num_chains=min(config.num_chains, 16)), warn=False)
    record = {"chapter": chapter, "run": what, "step_size": config.step_size, "preconditioner": config.preconditioner,
              "nbeta": config.nbeta, "localization": config.localization, "lambda_max": out.lambda_max,
              "lambda_max_center": out.lambda_max_center, "eps_lambda": out.eps_lambda, "passes": out.passes,
              "suggested_step_size": out.step_size}
    print(record)
    return record


def checkpoints_max(chapter: str, what: str, loss, run, steps, data, config: SGLDConfig) -> dict:
    """The largest ε·λ_max over the checkpoints at ``steps`` of a toy training run."""
    rows = [row(chapter, f"{what}, step {s}", loss, {k: v[list(run.steps.tolist()).index(s)]
                                                    for k, v in run.checkpoints.items()}, data, config)
            for s in steps]
    worst = max(rows, key=lambda r: r["eps_lambda"])
    return {**worst, "run": f"{what} (worst of steps {list(steps)})", "passes": all(r["passes"] for r in rows)}


def main() -> None:
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    started = time.perf_counter()
    rows = []
    w0 = torch.zeros(2, dtype=torch.float64)
    # Chapter 1 (parameters cell: nβ 1e4, γ 1, ε 1e-4; RRR nβ 1e3, ε 2e-4, batches of 64; 32 chains; burn-in 1,000)
    base = SGLDConfig(localization=1.0, num_chains=32, num_draws=1, num_burnin=1000, seed=0)
    rows.append(row("01_slt", "normal crossing w1^2 w2^4", normal_crossing([1, 2]), w0, None,
                    replace(base, nbeta=1e4, step_size=1e-4)))
    rows.append(row("01_slt", "regular w1^2 + w2^2", sum_of_squares(2), w0, None,
                    replace(base, nbeta=1e4, step_size=0.02 / 1e4)))
    for m, h, n in [(2, 2, 2), (3, 1, 2), (4, 2, 3)]:
        model = ReducedRankRegression(m, h, n, num_samples=1000, seed=0)
        rows.append(row("01_slt", f"reduced-rank regression {m},{h},{n}", model.loss, model.init_params(),
                        model.data(), replace(base, nbeta=1e3, step_size=2e-4, batch_size=64)))
    # Chapter 2 (sections 1-6)
    linear = LinearRegression(num_samples=20, num_features=5, noise=0.5, seed=0)
    ch2 = SGLDConfig(step_size=0.01, nbeta=20.0, localization=1.0, num_chains=16, num_draws=1, num_burnin=500)
    rows.append(row("02_bif", "linear regression (section 1)", linear.loss, linear.least_squares(), linear.data(), ch2))
    logistic = LogisticRegression(num_train=100, num_query=20, num_features=3, seed=0)
    rows.append(row("02_bif", "logistic regression (section 2)", logistic.loss, logistic.fit(), logistic.data()[0],
                    replace(ch2, nbeta=100.0)))
    rank_one = RankOneNetwork(num_samples=8)
    for gamma in (10.0, 0.1):
        rows.append(row("02_bif", f"rank-one network γ={gamma:g} (section 3)", rank_one.loss, rank_one.minimum(0.3),
                        rank_one.data(), replace(ch2, step_size=1e-3, nbeta=100.0, localization=gamma)))
    twelve = LinearRegression(num_samples=40, num_features=12, noise=0.5, seed=0)
    for what, kw in [("plain", dict(step_size=0.01)), ("RMSProp", dict(step_size=1e-3, preconditioner="rmsprop"))]:
        rows.append(row("02_bif", f"12-feature regression, {what} (section 5)", twelve.loss, twelve.least_squares(),
                        twelve.data(), replace(ch2, nbeta=40.0, **kw)))
    three = LinearRegression(num_samples=20, num_features=3, noise=0.5, seed=0)
    for what, kw in [("plain", {}), ("RMSProp", dict(preconditioner="rmsprop"))]:
        rows.append(row("02_bif", f"3-feature regression, {what} (section 6)", three.loss, three.least_squares(),
                        three.data(), replace(ch2, step_size=0.005, **kw)))
    # Chapters 4 and 8: the toy's BIF at checkpoints (nβ 100, γ 1000, ε 3e-4) and chapter 8's LLC curve (γ 100)
    data = toy.hierarchical_dataset()
    run = toy.train(toy.init_params(), data, toy.TrainConfig(checkpoint_every=25))
    steps = [0, 300, 500, 900, 1600]
    toy_sgld = replace(toy.PLAIN_SGLD, step_size=3e-4, nbeta=100.0, localization=1000.0, num_chains=16)
    rows.append(checkpoints_max("04_loo", "toy BIF", toy.bif_loss_fn, run, steps, data.batch, toy_sgld))
    rows.append(checkpoints_max("08_beyond", "toy BIF (linear)", toy.bif_loss_fn, run, steps, data.batch, toy_sgld))
    rows.append(checkpoints_max("08_beyond", "LLC curve (linear)", nonlinear.loss_fn("linear"), run, steps,
                                toy.as_batch(data), replace(toy_sgld, localization=100.0)))
    # Chapter 5: the two-cluster sweep (nβ 20, γ 0, ε 0.002), in each basin at the sweep's ends
    model = TwoClusterPrototype()
    axis = np.linspace(-6, 6, 6001)
    for rho in (0.6, 2.2):
        basins = model.basins(rho, 20.0, 1.0, axis)
        for name, start in (("left", basins[0]), ("right", basins[1])):
            rho_arr = np.array([rho])
            rows.append(row("05_phases", f"two clusters ρ={rho:g}, {name} basin",
                            model.sweep_loss(rho_arr, 20.0, 1.0), torch.tensor([start], dtype=torch.float64),
                            (model.data(), model.sweep_weights(rho_arr)),
                            SGLDConfig(step_size=0.002, nbeta=20.0, localization=0.0, num_chains=16, num_draws=1,
                                       num_burnin=300)))
    write_result("chapter_step_sizes.json", {"benchmark": "each chapter's step size against eps * lambda_max",
                                             "threshold": EPS_LAMBDA_MAX, "rows": rows,
                                             "seconds": time.perf_counter() - started})


if __name__ == "__main__":
    main()
