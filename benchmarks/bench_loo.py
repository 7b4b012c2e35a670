"""Batched leave-one-out vs a sequential loop of the same 9 retrainings (full data + 8 left out).

Both use stagewise.toy.train_runs with the paper's settings (lr 0.05, 1,600 steps, checkpoints every 25); the
batched version trains the 9 runs as a leading dimension of the weights, the sequential one calls it 9 times
with one run each. Runs alternate (batched, sequential, batched, …) so that drifts in machine load hit both;
the result is the median of the per-pair time ratios. Writes benchmarks/results/loo_batched.json.

    .venv/bin/python benchmarks/bench_loo.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics

import torch
from timing import alternate, pair_ratios, write_result

from stagewise import toy


def batched(params, data, config):
    return toy.leave_one_out(params, data, config).delta


def sequential(params, data, config):
    n = data.num_items
    runs = []
    for k in range(n + 1):
        beta = torch.ones(1, n, dtype=torch.float64)
        if k > 0:
            beta[0, k - 1] = 0.0
        runs.append(toy.train_runs(params, data, config, beta).item_losses_at_checkpoints[:, 0])
    return runs[0].unsqueeze(1) - torch.stack(runs[1:], dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="alternating (batched, sequential) pairs")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = toy.hierarchical_dataset()
    params = toy.init_params()
    config = toy.TrainConfig()
    # Same numbers either way (float64; batched matmul may sum in a different order).
    a, b = batched(params, data, config), sequential(params, data, config)
    max_diff = float((a - b).abs().max())
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)

    times = alternate({"batched": lambda: batched(params, data, config),
                       "sequential": lambda: sequential(params, data, config)}, args.repeats)
    speedup, ratios = pair_ratios(times["sequential"], times["batched"])
    result = {
        "loo_batched_speedup": speedup,
        "batched_median_s": statistics.median(times["batched"]),
        "sequential_median_s": statistics.median(times["sequential"]),
        "ratios": ratios,
        "max_abs_difference": max_diff,
        "runs": data.num_items + 1,
        "steps": config.num_steps,
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
    write_result("loo_batched.json", result)
    print(f"batched LOO: {result['batched_median_s']:.3f} s, sequential: {result['sequential_median_s']:.3f} s, "
          f"speedup ×{speedup:.1f} (median of {args.repeats}); max |difference| {max_diff:.1e}")


if __name__ == "__main__":
    main()
