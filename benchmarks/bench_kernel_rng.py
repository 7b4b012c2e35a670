"""What it costs to keep each chain's random state inside the sampler's state (stagewise.sampling.kernel).

Every ``SGLD.step`` restores each chain's generator state into a scratch generator, draws the chain's mini-batch
indices and noise, and reads the state back (one ``set_state`` and one ``get_state`` per chain), so that a state
replays. This times that round trip against the whole step on small models, where it weighs most: linear
regression with 12 parameters (float64), 4 and 64 chains, full batch and mini-batches of 16. Per case: the
process CPU time per step of ``kernel.step`` and of the round trip alone, best of ``--rounds`` rounds of
``--steps`` steps (the minimum is the least disturbed by other load on a shared machine). Writes
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
    from stagewise.sampling.kernel import generator_states, restore

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 12, generator=g, dtype=torch.float64)
    y = x @ torch.linspace(-1, 1, 12, dtype=torch.float64) + 0.3 * torch.randn(200, generator=g, dtype=torch.float64)

    def loss(w, batch):
        return 0.5 * (batch[1] - (batch[0] * w).sum(-1)) ** 2

    rows = []
    for chains, batch_size in CASES:
        kernel = SGLD(loss, SGLDConfig(step_size=1e-3, nbeta=50.0, localization=1.0, num_chains=chains,
                                       batch_size=batch_size))
        state = kernel.init(torch.zeros(12, dtype=torch.float64))
        for _ in range(20):  # warm-up
            state, _ = kernel.step(state, (x, y))
        step_s, rng_s = [], []
        for _ in range(args.rounds):
            start = time.process_time()
            for _ in range(args.steps):
                state, _ = kernel.step(state, (x, y))
            step_s.append((time.process_time() - start) / args.steps)
            start = time.process_time()
            for _ in range(args.steps):
                generator_states(restore(state.rng, state.device))
            rng_s.append((time.process_time() - start) / args.steps)
        rows.append({"chains": chains, "batch_size": batch_size, "step_cpu_us": min(step_s) * 1e6,
                     "rng_round_trip_cpu_us": min(rng_s) * 1e6, "share_of_step": min(rng_s) / min(step_s)})
        print(f"{chains:3d} chains, batch {batch_size}: step {min(step_s) * 1e6:7.0f} µs, random-state round trip "
              f"{min(rng_s) * 1e6:6.1f} µs ({min(rng_s) / min(step_s):.1%})", flush=True)
    result = {
        "benchmark": "the random state inside the sampler's state: set_state + get_state per chain and step",
        "model": "linear regression, 12 parameters, float64, 200 samples",
        "rows": rows,
        "rounds": args.rounds, "steps_per_round": args.steps, "torch_threads": 1,
        "loadavg_1min_at_end": os.getloadavg()[0],
        "how": "process CPU time per step, minimum over rounds; the round trip is timed alone on the same states",
    }
    print(write_result("kernel_rng.json", result))


if __name__ == "__main__":
    main()
