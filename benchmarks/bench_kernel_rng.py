"""What it costs to keep each chain's random state inside the sampler's state (stagewise.sampling.kernel).

Every ``SGLD.step`` restores each chain's generator state into a scratch generator (skipped when the scratch
generators already hold it, as from one step to the next), draws the chain's mini-batch indices and noise, and
reads the state back (a ``get_state`` per chain), so that a state replays. This times ``kernel.step`` against
the same step with the random state kept outside, in generators advanced in place (the same pieces:
``draw_batch``, ``draw_noise``, ``gradients``, ``sgld_step``, the non-finite flags), on small models, where the
round trip weighs most: linear regression with 12 parameters (float64), 4 and 64 chains, full batch and
mini-batches of 16. Per case: process CPU time per step, the two variants alternating, best of ``--rounds``
rounds of ``--steps`` steps (the minimum is the least disturbed by other load on a shared machine). Writes
benchmarks/results/kernel_rng.json.

    .venv/bin/python benchmarks/bench_kernel_rng.py [--rounds 7] [--steps 300]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import write_result  # noqa: E402

CASES = [(4, None), (4, 16), (64, 16)]  # (chains, batch size)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=300)
    args = p.parse_args()

    import torch

    from stagewise.sampling import SGLD, SGLDConfig
    from stagewise.sampling.kernel import (draw_batch, draw_noise, full_batch, gradients, make_generators,
                                           nonfinite_params)
    from stagewise.sampling.update import ChainState, sgld_step

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 12, generator=g, dtype=torch.float64)
    y = x @ torch.linspace(-1, 1, 12, dtype=torch.float64) + 0.3 * torch.randn(200, generator=g, dtype=torch.float64)

    def loss(w, batch):
        return 0.5 * (batch[1] - (batch[0] * w).sum(-1)) ** 2

    def outside(kernel, state, steps):
        """The same steps with the random state outside the state: generators advanced in place."""
        config, data = kernel.config, (x, y)
        generators = make_generators(config.seed, config.num_chains)
        chains = ChainState(state.params, None, None)
        for _ in range(steps):
            full = full_batch(data, config)
            batch = data if full else draw_batch(data, config.batch_size, generators)
            noise = draw_noise(chains.params, generators)
            grads, losses = gradients(loss, chains.params, batch, batch_per_chain=not full, tensor_params=True)
            chains = sgld_step(chains, grads, state.center, noise, config)
            ~torch.isfinite(losses), nonfinite_params(chains.params)
        return chains

    def inside(kernel, state, steps):
        for _ in range(steps):
            state, _ = kernel.step(state, (x, y))
        return state

    rows = []
    for chains, batch_size in CASES:
        kernel = SGLD(loss, SGLDConfig(step_size=1e-3, nbeta=50.0, localization=1.0, num_chains=chains,
                                       batch_size=batch_size))
        start_state = kernel.init(torch.zeros(12, dtype=torch.float64))
        assert torch.equal(inside(kernel, start_state, 5).params["w"], outside(kernel, start_state, 5).params["w"])
        times = {"inside": [], "outside": []}
        for r in range(args.rounds):
            for name in (("inside", "outside") if r % 2 == 0 else ("outside", "inside")):
                start = time.process_time()
                (inside if name == "inside" else outside)(kernel, start_state, args.steps)
                times[name].append((time.process_time() - start) / args.steps)
        a, b = min(times["inside"]), min(times["outside"])
        rows.append({"chains": chains, "batch_size": batch_size, "step_cpu_us": a * 1e6,
                     "step_cpu_us_random_state_outside": b * 1e6, "overhead": a / b - 1})
        print(f"{chains:3d} chains, batch {batch_size}: step {a * 1e6:7.0f} µs, with the random state outside "
              f"{b * 1e6:7.0f} µs: overhead {a / b - 1:+.1%}", flush=True)
    result = {
        "benchmark": "the random state inside the sampler's state: SGLD.step against the same step with "
                     "generators advanced in place",
        "model": "linear regression, 12 parameters, float64, 200 samples",
        "rows": rows,
        "rounds": args.rounds, "steps_per_round": args.steps, "torch_threads": 1,
        "loadavg_1min_at_end": os.getloadavg()[0],
        "how": "process CPU time per step, minimum over alternating rounds (both variants give the same chains)",
    }
    print(write_result("kernel_rng.json", result))


if __name__ == "__main__":
    main()
