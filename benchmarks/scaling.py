"""Wall time and peak memory of the BIF job as the number of chain-runs grows (1, 4, 16, 64, 256 by default).

Three implementations on the job of devinterp_job.py (GPT-NeoX 2×64, mini-batches of 16, the 48 query
sequences at every draw): stagewise batched (``batching="vmap"``), stagewise looped (``batching="loop"``) and
devinterp 2.0.1 (its chains one after another). Each point is a fresh process; the order of the three
implementations rotates from one chain count to the next. Called by ``bif_vs_devinterp.py`` (key ``scaling``
of its results), or on its own:

    .venv-bench/bin/python benchmarks/scaling.py --chains 1 4 16 --steps 5 [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import devinterp_job as job  # noqa: E402

IMPLS = ("stagewise_batched", "stagewise_looped", "devinterp_sequential")
OBSERVABLE_CHUNK = 16  # query sequences per call, all chains at once: bounds memory at 256 chain-runs


def child(impl: str, chains: int, steps: int, threads: int, device: str, work: Path) -> dict:
    import torch

    torch.set_num_threads(threads)
    settings = replace(job.SETTINGS, chains=chains, draws=steps)
    gpu = device.startswith("cuda")
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    if impl == "devinterp_sequential":
        job.run_devinterp(settings, "plain", 0, work, device)
    else:
        options = job.StagewiseOptions(batching="vmap" if impl == "stagewise_batched" else "loop",
                                       chunk=OBSERVABLE_CHUNK)
        job.run_stagewise(settings, "plain", 0, work, device, options)
    if gpu:
        torch.cuda.synchronize()
    row = {"chain_runs": chains, "impl": impl, "device": device, "steps": steps,
           "seconds": time.perf_counter() - wall0, "cpu_seconds": time.process_time() - cpu0,
           "peak_mem_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if gpu:
        row["gpu_peak_mem_mib"] = torch.cuda.max_memory_allocated() / 2**20
        row["peak_mem_mib"] = row["gpu_peak_mem_mib"]
        row["host_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def run_all(chain_counts, steps: int, threads: int, device: str, work: Path, impls=IMPLS) -> list[dict]:
    """Every (chain count, implementation) in its own process; returns the ``scaling`` rows."""
    rows = []
    chosen = tuple(impls)
    for k, chains in enumerate(chain_counts):
        impls = chosen[k % len(chosen):] + chosen[:k % len(chosen)]  # rotate the order
        for impl in impls:
            load = os.getloadavg()[0]
            env = dict(os.environ, TQDM_DISABLE="1", PYTHONWARNINGS="ignore", OMP_NUM_THREADS=str(threads))
            proc = subprocess.run([sys.executable, __file__, "run", "--impl", impl, "--chains", str(chains),
                                   "--steps", str(steps), "--threads", str(threads), "--device", device,
                                   "--work", str(work)], capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                rows.append({"chain_runs": chains, "impl": impl, "device": device, "error":
                             (proc.stderr or proc.stdout)[-600:]})
                print(f"  scaling {impl} × {chains}: failed", flush=True)
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row["loadavg_1min_before"] = load
            rows.append(row)
            print(f"  scaling {impl:22s} {chains:4d} chains: {row['seconds']:8.1f} s wall, "
                  f"{row['cpu_seconds']:8.1f} s CPU, peak {row['peak_mem_mib']:7.0f} MiB (load {load:.1f})",
                  flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", nargs="?", default="all", choices=["all", "run"])
    p.add_argument("--impl", choices=IMPLS)
    p.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    p.add_argument("--chains", type=int, nargs="+", default=[1, 4, 16, 64, 256])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--work", default=str(job.DEFAULT_WORK))
    p.add_argument("--out", default=None, help="also write the rows here (JSON)")
    args = p.parse_args()
    work = Path(args.work)
    if args.command == "run":
        print(json.dumps(child(args.impl, args.chains[0], args.steps, args.threads, args.device, work)))
        return
    job.prepare(job.SETTINGS, work, args.threads)
    rows = run_all(args.chains, args.steps, args.threads, args.device, work, args.impls)
    if args.out:
        from stagewise.artifacts import write_json

        write_json({"scaling": rows, "torch_threads": args.threads, "steps": args.steps,
                    "device": args.device, "device_name": job.device_name(args.device),
                    "machine": job.machine(), "versions": job.versions(),
                    "how": "one fresh process per point: load the checkpoint, L_n(w*) on the 1,024 training "
                           "sequences, `steps` SGLD steps per chain each followed by the 48 query losses, the "
                           "48 × 48 normalized BIF; seconds = wall, cpu_seconds = process CPU time, peak_mem_mib "
                           "= ru_maxrss (GPU: max_memory_allocated)"}, Path(args.out))


if __name__ == "__main__":
    main()
