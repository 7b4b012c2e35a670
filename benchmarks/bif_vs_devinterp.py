"""The same BIF job run by stagewise and by devinterp 2.0.1, side by side: the command line.

The job (model, data, checkpoint, one run of each library) is in devinterp_job.py, the protocol (fresh processes,
alternating the libraries, the comparison written to benchmarks/results/bif_vs_devinterp.json) in
side_by_side.py; this script parses the options and runs a sub-command.

    python benchmarks/bif_vs_devinterp.py                 # the whole benchmark (what `make bench` runs)
    python benchmarks/bif_vs_devinterp.py --pairs 1       # a quicker look
    python benchmarks/bif_vs_devinterp.py --profile       # also profile one run of each library
    python benchmarks/bif_vs_devinterp.py --device cuda   # the same on a GPU (…_gpu.json)
    python benchmarks/bif_vs_devinterp.py --no-scaling    # skip the chain-count scaling (benchmarks/scaling.py)
    python benchmarks/bif_vs_devinterp.py --sw-compile    # stagewise with SGLDConfig(compile=True)

stagewise runs with its best measured CPU settings unless told otherwise: ``batching="loop"`` (on a GPU "auto",
i.e. vmap) and all 48 query sequences in one call (``--sw-batching``, ``--sw-chunk``; the levers are in
benchmarks/results/cpu_levers.json).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

import devinterp_job as job
import side_by_side

DEFAULT_OUT = job.HERE / "results" / "bif_vs_devinterp.json"
PROFILE_DRAWS = 25  # profiles cover a quarter of the job (torch.profiler keeps every op event in memory)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", nargs="?", default="bench", choices=["bench", "run", "matmul-peak", "profile"])
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--modes", nargs="+", default=list(job.MODES), choices=list(job.MODES))
    p.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "1")),
                   help="torch threads of every run (default 1: the 2-core machines are shared, and 2 OpenMP threads "
                        "on a loaded machine slow both libraries down several-fold)")
    p.add_argument("--seed0", type=int, default=0)
    p.add_argument("--profile", action="store_true", help="also profile one run of each library")
    p.add_argument("--work", default=str(job.DEFAULT_WORK))
    p.add_argument("--out", default=None, help="default results/bif_vs_devinterp.json (…_gpu.json on a GPU)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (both libraries run there)")
    p.add_argument("--no-scaling", dest="scaling", action="store_false",
                   help="skip the scaling of wall time and memory with the number of chains")
    p.add_argument("--scaling-chains", type=int, nargs="+", default=[1, 4, 16, 64, 256])
    p.add_argument("--scaling-steps", type=int, default=10, help="SGLD steps (each a draw) per chain there")
    p.add_argument("--sw-batching", default=None, choices=["auto", "vmap", "loop"],
                   help="stagewise's SGLDConfig.batching (default: loop on the CPU, auto = vmap on a GPU; "
                        "benchmarks/results/cpu_levers.json)")
    p.add_argument("--sw-compile", action=argparse.BooleanOptionalAction, default=False,
                   help="stagewise's SGLDConfig.compile (torch.compile of the step and the observables)")
    p.add_argument("--sw-chunk", type=int, default=0,
                   help="stagewise's SGLDConfig.observable_chunk: query sequences per call (default 0: all 48 in "
                        "one call)")
    p.add_argument("--lib", choices=["stagewise", "devinterp"])
    p.add_argument("--mode", choices=list(job.MODES))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.device == "auto":  # devinterp takes a torch device name
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device != "cpu":  # a GPU this machine lacks stops here, with what it has, before any run
        from stagewise.config import ConfigError
        from stagewise.sampling import check_device

        try:
            check_device(args.device)
        except ConfigError as error:
            raise SystemExit(f"bif_vs_devinterp: {error}") from None
    if args.sw_batching is None:
        args.sw_batching = "loop" if args.device == "cpu" else "auto"
    if args.out is None:
        args.out = str(DEFAULT_OUT if args.device == "cpu" else DEFAULT_OUT.with_name("bif_vs_devinterp_gpu.json"))
    if args.command == "run":
        side_by_side.child_run(args)
    elif args.command == "matmul-peak":
        print(json.dumps(job.matmul_peak(args.threads, args.device)))
    elif args.command == "profile":
        settings = replace(job.SETTINGS, draws=PROFILE_DRAWS)
        print(json.dumps(job.profile(args.lib, settings, args.mode, args.seed, Path(args.work), args.device,
                                     side_by_side.options_of(args), args.threads)))
    else:
        side_by_side.orchestrate(args)


if __name__ == "__main__":
    main()
