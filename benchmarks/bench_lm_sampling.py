"""Chapter 6's sampler job: K checkpoints × C chains in one batched pass vs one checkpoint at a time.

The model is the chapter's attention-only transformer (vocabulary 64, context 64, width 64, 2 layers × 4 heads,
layer norm; 45,952 parameters). Per checkpoint: 4 chains of RMSProp-SGLD, mini-batches of 8 training sequences,
and at every draw the per-token losses of 8 query sequences, as in the chapter. "batched" runs the 8 checkpoints'
32 chains as one vmapped batch (``sample_many``, what ``class_influence(checkpoints_per_pass=8)`` does);
"loop" calls ``sample`` once per checkpoint. The checkpoints are 8 perturbed copies of one initialization (the
cost does not depend on the weights). Runs alternate (batched, loop, …); the result is the median of the per-pair
time ratios. Writes benchmarks/results/lm_sampling.json.

    .venv/bin/python benchmarks/bench_lm_sampling.py [--repeats 3] [--threads 2] [--steps 30]
"""

from __future__ import annotations

import argparse
import platform
import statistics

import torch
from timing import alternate, pair_ratios, write_result

from stagewise.lm import AttentionOnlyConfig, AttentionOnlyForCausalLM, lm_loss_fn
from stagewise.sampling import SGLDConfig, sample, sample_many


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="alternating (batched, loop) pairs")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (the chapter uses 2)")
    parser.add_argument("--steps", type=int, default=30, help="SGLD steps per chain")
    parser.add_argument("--checkpoints", type=int, default=8, help="checkpoints K")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = AttentionOnlyForCausalLM(AttentionOnlyConfig()).eval()
    params, loss_fn = lm_loss_fn(model)
    checkpoints = [{k: v + 0.01 * torch.randn_like(v) for k, v in params.items()} for _ in range(args.checkpoints)]
    generator = torch.Generator().manual_seed(1)
    data = torch.randint(0, 64, (2048, 64), generator=generator)
    queries = torch.randint(0, 64, (8, 64), generator=generator)
    config = SGLDConfig(step_size=1e-5, nbeta=3000.0, localization=1e4, num_chains=4, num_draws=args.steps,
                        batch_size=8, preconditioner="rmsprop", rmsprop_adapt="always")

    def batched():
        return sample_many(loss_fn, checkpoints, data, queries, config, progress=False)

    def loop():
        return [sample(loss_fn, c, data, queries, config, progress=False) for c in checkpoints]

    batched(), loop()  # warm-up: first calls pay for vmap tracing and allocations
    times = alternate({"batched": batched, "loop": loop}, args.repeats)
    speedup, ratios = pair_ratios(times["loop"], times["batched"])
    steps = args.checkpoints * args.steps
    result = {
        "lm_batched_checkpoints_speedup": speedup,
        "batched_median_s": statistics.median(times["batched"]),
        "loop_median_s": statistics.median(times["loop"]),
        "batched_ms_per_checkpoint_step": 1000 * statistics.median(times["batched"]) / steps,
        "loop_ms_per_checkpoint_step": 1000 * statistics.median(times["loop"]) / steps,
        "ratios": ratios,
        "checkpoints": args.checkpoints,
        "chains_per_checkpoint": config.num_chains,
        "steps": args.steps,
        "parameters": sum(v.numel() for v in params.values()),
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
    write_result("lm_sampling.json", result)
    print(f"{args.checkpoints} checkpoints × 4 chains × {args.steps} steps: batched {result['batched_median_s']:.2f} s, "
          f"loop {result['loop_median_s']:.2f} s, speedup ×{speedup:.2f} (median of {args.repeats} pairs)")


if __name__ == "__main__":
    main()
