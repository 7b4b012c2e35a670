"""The side-by-side benchmark's protocol: runs of devinterp_job.py's job in fresh processes, alternating stagewise
and devinterp, the per-pair ratios, agreements and roofline fractions, and the result file.

Every timed run is a fresh subprocess (the command line's ``run`` sub-command, :func:`child_run`), so its peak
resident memory (ru_maxrss) is its own; runs alternate stagewise, devinterp, stagewise, devinterp … and the ratio
is taken per pair. Each run has its own seed, so the stagewise runs of one mode also give the reseeded agreement
band.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import devinterp_job as job
import scaling as chain_scaling
from stagewise.artifacts import write_json

CLI = job.HERE / "bif_vs_devinterp.py"  # the command line whose sub-commands the child processes run


# ------------------------------------------------------------------------------------------------------------
# The sub-commands a child process runs


def child_run(args) -> None:
    """One timed run: the BIF matrix to <out>.npy, the timings and memory to <out>.json."""
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    if args.lib == "stagewise":
        out = job.run_stagewise(job.SETTINGS, args.mode, args.seed, work, args.device, options_of(args))
    else:
        out = job.run_devinterp(job.SETTINGS, args.mode, args.seed, work, args.device)
    matrix, wall, rss_before, extra = out
    np.save(args.out + ".npy", matrix)
    write_json({
        "lib": args.lib,
        "mode": args.mode,
        "seed": args.seed,
        "wall_s": wall,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_job_mib": rss_before / 1024,
        "torch_threads": torch.get_num_threads(),
        **extra,
    }, args.out + ".json")


# ------------------------------------------------------------------------------------------------------------
# The orchestrator


def _child(args, args_list, timeout=1800) -> subprocess.CompletedProcess:
    """Run the command line's ``args_list`` sub-command in a fresh process with the parent's threads, device and
    options."""
    env = dict(os.environ, TQDM_DISABLE="1", PYTHONWARNINGS="ignore", OMP_NUM_THREADS=str(args.threads))
    cmd = [sys.executable, str(CLI), *args_list, "--threads", str(args.threads),
           "--device", args.device, *stagewise_flags(args)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise SystemExit(f"benchmark child failed: {' '.join(args_list)}")
    return proc


def stagewise_flags(args) -> list[str]:
    """The command-line flags of the stagewise options, passed on to every child."""
    return ["--sw-batching", args.sw_batching, "--sw-chunk", str(args.sw_chunk),
            "--sw-compile" if args.sw_compile else "--no-sw-compile"]


def options_of(args) -> job.StagewiseOptions:
    return job.StagewiseOptions(batching=args.sw_batching, chunk=args.sw_chunk or None, compile=args.sw_compile)


def _timed_run(args, lib: str, mode: str, seed: int, work: Path, tmp: Path) -> dict:
    import numpy as np

    out = tmp / f"{lib}-{mode}-{seed}"
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    _child(args, ["run", "--lib", lib, "--mode", mode, "--seed", str(seed), "--work", str(work), "--out", str(out)])
    record = json.loads(Path(str(out) + ".json").read_text())
    record["process_wall_s"] = time.perf_counter() - t0
    record["loadavg_1min_before"] = load
    record["_matrix"] = np.load(str(out) + ".npy")
    return record


def _offdiag_corr(a, b) -> float:
    import numpy as np

    mask = ~np.eye(a.shape[0], dtype=bool)
    return float(np.corrcoef(a[mask], b[mask])[0, 1])


def _band(values: list[float]) -> dict:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def orchestrate(args) -> None:
    import numpy as np

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="runs-", dir=work))
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    print(f"bench: {args.pairs} pairs × modes {args.modes}, torch threads {args.threads}", flush=True)
    checkpoint = job.prepare(job.SETTINGS, work, 1)
    print(f"checkpoint: {checkpoint}", flush=True)
    peaks = [json.loads(_child(args, ["matmul-peak"]).stdout.strip().splitlines()[-1])]
    flops = job.count_flops(job.SETTINGS)

    modes_out = {}
    all_ratios, all_vs, all_reseed, all_fraction, all_cpu_ratios, loads = [], [], [], [], [], []
    for mode in args.modes:
        runs = []
        for i in range(args.pairs):
            for lib in ("stagewise", "devinterp"):  # A B A B …
                r = _timed_run(args, lib, mode, args.seed0 + i, work, tmp)
                r["pair"] = i
                runs.append(r)
                print(
                    f"  {mode:8s} pair {i} {lib:10s} {r['wall_s']:7.2f} s  peak RSS {r['peak_rss_mib']:6.0f} MiB"
                    f"  (load {r['loadavg_1min_before']:.2f})",
                    flush=True,
                )
        sw = [r for r in runs if r["lib"] == "stagewise"]
        dv = [r for r in runs if r["lib"] == "devinterp"]
        ratios = [d["wall_s"] / s["wall_s"] for s, d in zip(sw, dv)]
        cpu_ratios = [d["cpu_s"] / s["cpu_s"] for s, d in zip(sw, dv)]
        vs = [_offdiag_corr(s["_matrix"], d["_matrix"]) for s in sw for d in dv]
        reseed_sw = [_offdiag_corr(a["_matrix"], b["_matrix"]) for k, a in enumerate(sw) for b in sw[k + 1 :]]
        reseed_dv = [_offdiag_corr(a["_matrix"], b["_matrix"]) for k, a in enumerate(dv) for b in dv[k + 1 :]]
        fractions = [flops["total"] / r["wall_s"] / 1e9 for r in sw]
        modes_out[mode] = {
            "stagewise_preconditioner": job.MODES[mode][0],
            "devinterp_sampling_method": job.MODES[mode][1],
            "speedup_vs_devinterp": statistics.median(ratios),
            "speedup_per_pair": ratios,
            "speedup_cpu_vs_devinterp": statistics.median(cpu_ratios),
            "speedup_cpu_per_pair": cpu_ratios,
            "stagewise_cpu_s": [r["cpu_s"] for r in sw],
            "devinterp_cpu_s": [r["cpu_s"] for r in dv],
            "stagewise_wall_s": [r["wall_s"] for r in sw],
            "devinterp_wall_s": [r["wall_s"] for r in dv],
            "stagewise_peak_rss_mib": max(r["peak_rss_mib"] for r in sw),
            "devinterp_peak_rss_mib": max(r["peak_rss_mib"] for r in dv),
            "agreement_vs_devinterp": _band(vs),
            "agreement_reseeded": _band(reseed_sw) if reseed_sw else None,
            "agreement_reseeded_devinterp": _band(reseed_dv) if reseed_dv else None,
            "stagewise_gflops": _band(fractions),
            "devinterp_gflops": _band([flops["total"] / r["wall_s"] / 1e9 for r in dv]),
            "runs": [{k: v for k, v in r.items() if k != "_matrix"} for r in runs],
            "mean_bif_stagewise": np.mean([r["_matrix"] for r in sw], axis=0).round(4).tolist(),
            "mean_bif_devinterp": np.mean([r["_matrix"] for r in dv], axis=0).round(4).tolist(),
        }
        all_ratios += ratios
        all_cpu_ratios += cpu_ratios
        loads += [r["loadavg_1min_before"] for r in runs]
        all_vs += vs
        all_reseed += reseed_sw
        all_fraction += fractions
    peaks.append(json.loads(_child(args, ["matmul-peak"]).stdout.strip().splitlines()[-1]))
    peak = max(max(p.values()) for p in peaks)
    for m in modes_out.values():
        for key in ("stagewise_gflops", "devinterp_gflops"):
            m[key.replace("gflops", "roofline_fraction")] = {k: (v / peak if k != "n" else v) for k, v in m[key].items()}

    profiles = []
    if args.profile:
        for lib in ("stagewise", "devinterp"):
            proc = _child(args, ["profile", "--lib", lib, "--mode", args.modes[-1], "--seed", "99", "--work", str(work)])
            profiles.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    ceiling = None
    if profiles:
        sw = next(p for p in profiles if p["lib"] == "stagewise")
        matmul_share = sw["matmul_self_s"] / sw["wall_s_under_profiler"]
        ceiling = {
            "stagewise_matmul_share": matmul_share,
            "speedup_if_only_matmuls_remained": statistics.median(all_ratios) / matmul_share,
            "how": "stagewise's matmul self time over its wall time under the profiler (25 draws); if every other "
                   "op and all Python overhead took no time and the matmuls ran as they do, the speedup over "
                   "devinterp would be speedup_vs_devinterp / that share",
        }
    reseeded = statistics.median(all_reseed) if all_reseed else None
    scaling = None
    if args.scaling:
        scaling = chain_scaling.run_all(args.scaling_chains, args.scaling_steps, args.threads, args.device, work)
    result = {
        "benchmark": "BIF job, stagewise vs devinterp 2.0.1",
        "device": args.device,
        "device_name": job.device_name(args.device),
        "speedup_vs_devinterp": statistics.median(all_ratios),
        "speedup_cpu_vs_devinterp": statistics.median(all_cpu_ratios),
        "agreement_vs_devinterp": statistics.median(all_vs),
        "agreement_reseeded": reseeded,
        "roofline_fraction": statistics.median(all_fraction) / peak,
        "acceptance": {
            "speedup_at_least_1.5x": statistics.median(all_ratios) >= 1.5,
            "agreement_inside_reseeded_band": bool(all_reseed) and statistics.median(all_vs) >= min(all_reseed),
        },
        "definitions": {
            "speedup_vs_devinterp": "median over all pairs (both modes) of devinterp wall time / stagewise wall time; "
            "per-mode medians under modes.<mode>.speedup_vs_devinterp",
            "speedup_cpu_vs_devinterp": "the same with the process CPU time of each run (time.process_time around "
            "the job: waiting for a core on a shared machine does not count)",
            "wall_s": "time of the job inside a fresh process: from the loaded checkpoint and data tensors to the "
            "48×48 normalized BIF matrix (sampling, observables, init loss, BIF); excludes imports and model "
            "construction (devinterp's HF Dataset objects are built before the clock starts)",
            "agreement_vs_devinterp": "median over all (stagewise run, devinterp run) pairs of one mode, pooled over "
            "modes, of the Pearson correlation of the off-diagonal entries of the two 48×48 normalized BIF matrices, "
            "after flipping devinterp's sign (its bif() returns +corr; stagewise's normalized BIF is −corr)",
            "agreement_reseeded": "the same correlation between two stagewise runs with different seeds (median over "
            "pairs of runs, pooled over modes); the band (min..max) is under modes.<mode>.agreement_reseeded",
            "roofline_fraction": "job FLOPs / (stagewise wall time × measured matmul peak), median over stagewise runs",
            "peak_rss_mib": "ru_maxrss of the run's own process (imports, model and data included)",
        },
        "settings": asdict(job.SETTINGS),
        "protocol": {
            "pairs_per_mode": args.pairs,
            "order": "alternating: stagewise, devinterp, stagewise, devinterp, … (one fresh process per run)",
            "seeds": f"pair i uses seed i = {args.seed0}+i: stagewise SGLDConfig(seed=i); devinterp init_seed=1000+10·i "
            "(devinterp seeds chain c with init_seed+c, so runs share no chain seed)",
            "torch_threads": args.threads,
            "loadavg_1min_before_runs": _band(loads),
            "stagewise_settings": options_of(args).as_dict(),
            "attention": "eager in both (sdpa has no vmap batching rule; for devinterp eager and sdpa time the same)",
            "loss": "the same per-token cross entropy in both (devinterp via its loss_fn argument); stagewise samples "
            "the per-sequence mean, devinterp the per-token losses, whose mean is the same mini-batch loss",
        },
        "update_equations": {
            "both": "w ← w − (ε/2)·G·[nβ·g + γ·(w − w*)] + √(ε·G)·ξ, ξ ~ N(0, I); g = gradient of the mean "
            "mini-batch loss; plain: G = 1; RMSProp: V ← αV + (1−α)g², G = 1/(√V + eps), V starts at 0 and is "
            "updated before use, the localization term is preconditioned too (devinterp: prior_coef = G)",
            "differences": [
                "mini-batches: stagewise draws each chain's batch independently with replacement; devinterp "
                "shuffles the data once per seed and feeds every chain the same batch sequence (without "
                "replacement within an epoch; match_sampling_input_ids_across_chains=True)",
                "chains: stagewise advances all chains in one pass (vmapped, or looped over views with one backward "
                "pass: protocol.stagewise_settings); devinterp runs them one after another",
                "noise streams differ (different generators), so the two libraries' samples are not identical draws",
                "devinterp also records per-step mini-batch losses and input ids to a zarr store (part of its job)",
            ],
        },
        "flops": flops,
        "matmul_peak_gflops": {"value": peak, "measurements": peaks,
                               "how": "float32 n×n matmul, n in 1024..3072, same thread count, fresh process, "
                                      "before and after the runs; the maximum is the peak"},
        "checkpoint": checkpoint,
        "machine": job.machine(),
        "versions": job.versions(),
        "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "modes": modes_out,
        "profiles": profiles,
        "ceiling": ceiling,
        "scaling": scaling,
    }
    if args.device.startswith("cuda"):
        result["gpu_speedup_vs_devinterp"] = result["speedup_vs_devinterp"]
        result["gpu_name"] = result["device_name"]
    out = write_json(result, args.out)
    shutil.rmtree(tmp, ignore_errors=True)
    print_table(result)
    print(f"wrote {out}")


def print_table(r: dict) -> None:
    print()
    print(f"machine: {r['machine']['cpu']}, {r['machine']['logical_cpus']} CPUs, torch threads "
          f"{r['protocol']['torch_threads']}; matmul peak {r['matmul_peak_gflops']['value']:.1f} GFLOP/s; "
          f"job {r['flops']['total'] / 1e9:.0f} GFLOP")
    head = f"{'mode':8s} {'stagewise s':>12s} {'devinterp s':>12s} {'speedup':>8s} {'RSS sw/dv MiB':>15s} " \
           f"{'agree vs dv':>12s} {'reseeded':>9s} {'roofline':>9s}"
    print(head)
    print("-" * len(head))
    for mode, m in r["modes"].items():
        rs = m["agreement_reseeded"]["median"] if m["agreement_reseeded"] else float("nan")
        print(
            f"{mode:8s} {statistics.median(m['stagewise_wall_s']):12.2f} {statistics.median(m['devinterp_wall_s']):12.2f}"
            f" {m['speedup_vs_devinterp']:7.2f}× {m['stagewise_peak_rss_mib']:7.0f}/{m['devinterp_peak_rss_mib']:<7.0f}"
            f" {m['agreement_vs_devinterp']['median']:12.3f} {rs:9.3f} {m['stagewise_roofline_fraction']['median']:9.2f}"
        )
    print(f"overall: speedup {r['speedup_vs_devinterp']:.2f}×, agreement {r['agreement_vs_devinterp']:.3f} "
          f"(reseeded {r['agreement_reseeded']}), roofline fraction {r['roofline_fraction']:.2f}")


