"""The same BIF job run by stagewise and by devinterp 2.0.1, side by side.

Job: transformers' GPTNeoXForCausalLM (2 layers, width 64, 4 heads, vocabulary 512), 4 chains × 100 draws of
localized SGLD (plain and RMSProp-preconditioned) with mini-batches of 16 sequences, and at every draw the
per-sequence losses of 48 query sequences of 64 tokens; the result is the 48 × 48 normalized BIF.

    python benchmarks/bif_vs_devinterp.py                 # the whole benchmark (what `make bench` runs)
    python benchmarks/bif_vs_devinterp.py --pairs 1       # a quicker look
    python benchmarks/bif_vs_devinterp.py --profile       # also profile one run of each library
    python benchmarks/bif_vs_devinterp.py --device cuda   # the same on a GPU (…_gpu.json; not yet measured)
    python benchmarks/bif_vs_devinterp.py --no-scaling    # skip the chain-count scaling (benchmarks/scaling.py)
    python benchmarks/bif_vs_devinterp.py --sw-compile    # stagewise with SGLDConfig(compile=True)

stagewise runs with its best measured CPU settings unless told otherwise: ``batching="loop"`` (on a GPU "auto",
i.e. vmap) and all 48 query sequences in one call (``--sw-batching``, ``--sw-chunk``; the levers are in
benchmarks/results/cpu_levers.json).

Every timed run is a fresh subprocess (``run`` sub-command), so its peak resident memory (ru_maxrss) is its own;
runs alternate stagewise, devinterp, stagewise, devinterp … and the ratio is taken per pair. Each run has its own
seed, so the stagewise runs of one mode also give the reseeded agreement band. devinterp is needed only here, in
the benchmark's own virtual environment (.venv-bench), never by the package.

Sign: stagewise's normalized BIF is −corr(ℓ_i, ℓ_j); devinterp's ``bif()`` returns +corr. devinterp's matrix is
flipped before any comparison, and both are stored with stagewise's sign.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from stagewise.artifacts import write_json

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_OUT = HERE / "results" / "bif_vs_devinterp.json"
DEFAULT_WORK = ROOT / "build" / "bench"

PROFILE_DRAWS = 25  # profiles cover a quarter of the job (torch.profiler keeps every op event in memory)
MODES = {"plain": ("none", "sgmcmc_sgld"), "rmsprop": ("rmsprop", "rmsprop_sgld")}


@dataclass(frozen=True)
class Settings:
    # model: transformers GPTNeoXForCausalLM
    layers: int = 2
    hidden: int = 64
    heads: int = 4
    intermediate: int = 256
    vocab: int = 512
    seq_len: int = 64
    # data: random bigram Markov chains over the vocabulary
    n_train: int = 1024
    n_query: int = 48
    data_seed: int = 0
    topics: int = 8  # a mixture of 8 bigram chains, each on its own block of 64 tokens
    bigram_temperature: float = 0.5  # logits of each row ~ N(0, 1)/temperature: lower = more predictable
    # checkpoint w*: a few hundred AdamW steps on the training set, so that w* is not pure noise
    train_steps: int = 300
    train_lr: float = 3e-3
    train_batch: int = 32
    init_seed: int = 0
    # sampler (identical for both libraries)
    chains: int = 4
    draws: int = 100
    batch_size: int = 16
    step_size: float = 1e-5  # ε (devinterp: lr)
    localization: float = 1000.0  # γ
    nbeta: float = 100.0  # nβ (devinterp: n_beta)
    rmsprop_alpha: float = 0.99
    rmsprop_eps: float = 0.1

    def key(self) -> str:
        """Cache key of the checkpoint and the data: their settings (not the sampler's) and the code that makes them,
        the source of make_model, make_data, token_losses and prepare (:func:`stagewise.artifacts.cache_key`;
        stagewise itself and the rest of this script play no part in them)."""
        import inspect

        from stagewise.artifacts import cache_key, data_digest

        fields = {k: v for k, v in asdict(self).items() if k in _CHECKPOINT_FIELDS}
        source = "".join(inspect.getsource(f) for f in (make_model, make_data, token_losses, prepare))
        return cache_key(fields, code=data_digest(source))


_CHECKPOINT_FIELDS = (
    "layers hidden heads intermediate vocab seq_len n_train n_query data_seed topics bigram_temperature "
    "train_steps train_lr train_batch init_seed"
).split()
S = Settings()


# ------------------------------------------------------------------------------------------------------------
# Model, data, checkpoint (shared by both libraries)


def make_model(attn: str = "eager"):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    config = GPTNeoXConfig(
        num_hidden_layers=S.layers,
        hidden_size=S.hidden,
        num_attention_heads=S.heads,
        intermediate_size=S.intermediate,
        vocab_size=S.vocab,
        max_position_embeddings=S.seq_len,
        attention_dropout=0.0,
        hidden_dropout=0.0,
        attn_implementation=attn,
    )
    return GPTNeoXForCausalLM(config)


def make_data():
    """(train ids (n_train, seq_len), query ids (n_query, seq_len)) from a mixture of bigram chains ("topics").

    Topic k is a random bigram chain on its own block of vocab / topics tokens; every sequence comes from one
    topic. Queries are ordered by topic (n_query / topics each), so the BIF has a block structure that a sampler
    either recovers or not (between unrelated random sequences it would be close to zero, and agreement
    between two runs would measure noise only).
    """
    import torch

    g = torch.Generator().manual_seed(S.data_seed)
    block = S.vocab // S.topics
    transition = torch.softmax(torch.randn(S.topics, block, block, generator=g) / S.bigram_temperature, dim=-1)

    def draw(topic):
        n = topic.shape[0]
        seqs = torch.empty(n, S.seq_len, dtype=torch.long)
        seqs[:, 0] = torch.randint(block, (n,), generator=g)
        for t in range(1, S.seq_len):
            seqs[:, t] = torch.multinomial(transition[topic, seqs[:, t - 1]], 1, generator=g).squeeze(1)
        return seqs + (topic * block)[:, None]

    train = draw(torch.arange(S.n_train) % S.topics)
    query = draw(torch.arange(S.n_query) // (S.n_query // S.topics))
    return train.contiguous(), query.contiguous()


def token_losses(logits, ids):
    """Per-token next-token cross entropy, (batch, seq_len − 1)."""
    import torch.nn.functional as F

    v = logits.shape[-1]
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, v), ids[:, 1:].reshape(-1), reduction="none"
    ).view(ids.shape[0], -1)


def checkpoint_path(work: Path) -> Path:
    """The checkpoint w* with its data: one safetensors file (``model.<name>`` weights, ``train``, ``query``)."""
    return work / f"checkpoint-{S.key()}.safetensors"


def load_checkpoint(work: Path):
    """(model with w* loaded, train ids, query ids) from :func:`checkpoint_path`; nothing is unpickled."""
    from stagewise.artifacts import load_safetensors

    saved = load_safetensors(checkpoint_path(work))
    model = make_model("eager")  # sdpa has no vmap batching rule (a slow fallback); eager is fastest here
    model.load_state_dict({k[len("model."):]: v for k, v in saved.items() if k.startswith("model.")})
    return model, saved["train"], saved["query"]


def prepare(work: Path, threads: int) -> dict:
    """Make (or reuse) the checkpoint w* and the data; returns a description."""
    import torch

    torch.set_num_threads(threads)
    work.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(work)
    train, query = make_data()
    if not path.exists():
        torch.manual_seed(S.init_seed)
        model = make_model()
        opt = torch.optim.AdamW(model.parameters(), lr=S.train_lr)
        g = torch.Generator().manual_seed(S.init_seed)
        t0 = time.perf_counter()
        for _ in range(S.train_steps):
            ids = train[torch.randint(S.n_train, (S.train_batch,), generator=g)]
            loss = token_losses(model(ids, use_cache=False).logits, ids).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"trained the checkpoint: {S.train_steps} AdamW steps in {time.perf_counter() - t0:.1f} s", flush=True)
        from stagewise.artifacts import write_safetensors

        write_safetensors(path, {**{f"model.{k}": v for k, v in model.state_dict().items()},
                                 "train": train, "query": query})
    model, train, query = load_checkpoint(work)
    with torch.no_grad():
        l_train = float(token_losses(model(train[:256], use_cache=False).logits, train[:256]).mean())
        l_query = float(token_losses(model(query, use_cache=False).logits, query).mean())
    return {
        "path": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "train_loss": l_train,
        "query_loss": l_query,
        "uniform_loss": float(torch.log(torch.tensor(float(S.vocab)))),
    }


# ------------------------------------------------------------------------------------------------------------
# One timed run (in its own process)


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def run_stagewise(mode: str, seed: int, work: Path):
    import torch

    from stagewise.influence import bif
    from stagewise.sampling import SGLDConfig, module_loss_fn, sample

    model, train, query = load_checkpoint(work)

    def per_sequence_loss(forward, ids):
        return token_losses(forward(ids, use_cache=False, return_dict=False)[0], ids).mean(-1)

    config = SGLDConfig(
        step_size=S.step_size,
        nbeta=S.nbeta,
        localization=S.localization,
        num_chains=S.chains,
        num_draws=S.draws,
        batch_size=S.batch_size,
        preconditioner=MODES[mode][0],
        rmsprop_alpha=S.rmsprop_alpha,
        rmsprop_eps=S.rmsprop_eps,
        rmsprop_adapt="always",  # devinterp's rule: the preconditioner adapts at every step
        seed=seed,
        device=ARGS.device,
        batching=ARGS.sw_batching,
        compile=ARGS.sw_compile,
    )
    rss_before = _rss_kib()
    t0, c0 = time.perf_counter(), time.process_time()
    params, loss_fn = module_loss_fn(model, per_sequence_loss)
    trace = sample(loss_fn, params, train, query, config, observable_chunk=ARGS.sw_chunk or None, progress=False)
    matrix = bif(trace.losses, normalized=True)  # −corr, (48, 48)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    extra = {
        "cpu_s": cpu,
        "init_loss": trace.init_loss,
        "mean_draw_loss": float(trace.draw_loss.mean()),
        "mean_query_loss": float(trace.losses.mean()),
    }
    return matrix.numpy(), wall, rss_before, extra


def devinterp_seed(seed: int) -> int:
    """devinterp seeds chain c with init_seed + c: runs get init_seed 1000 + 10·seed so no chain seed is reused."""
    return 1000 + 10 * seed


def run_devinterp(mode: str, seed: int, work: Path):
    import numpy as np
    import torch
    from datasets import Dataset
    from devinterp.slt.bif import bif

    model, train, query = load_checkpoint(work)
    train_ds = Dataset.from_dict({"input_ids": train.tolist()}).with_format("torch")
    query_ds = Dataset.from_dict({"input_ids": query.tolist()}).with_format("torch")
    batches_per_draw = S.n_query // S.batch_size  # devinterp evaluates batch_size × batches_per_draw sequences
    assert batches_per_draw * S.batch_size == S.n_query

    def loss_fn(m, ids):  # the same per-token loss as stagewise's (devinterp's default adds a finiteness check)
        return token_losses(m(ids, use_cache=False, return_dict=False)[0], ids)

    out_dir = Path(tempfile.mkdtemp(prefix="devinterp-", dir=work))
    kwargs = {"device": ARGS.device, "bif_device": ARGS.device}
    if mode == "rmsprop":
        kwargs.update(rmsprop_alpha=S.rmsprop_alpha, rmsprop_eps=S.rmsprop_eps)
    rss_before = _rss_kib()
    t0, c0 = time.perf_counter(), time.process_time()
    result = bif(
        model,
        train_ds,
        {"query": (query_ds, batches_per_draw)},
        lr=S.step_size,
        n_beta=S.nbeta,
        localization=S.localization,
        num_chains=S.chains,
        num_draws=S.draws,
        batch_size=S.batch_size,
        sampling_method=MODES[mode][1],
        correlation_method="sequence",
        # L_n(w*) from 16 batches × 4 chains = 1024 sequences: the forward work of stagewise's full-data L_n(w*)
        num_init_loss_batches=max(1, S.n_train // (S.batch_size * S.chains)),
        init_seed=devinterp_seed(seed),
        output_path=out_dir / "samples.zarr",
        loss_fn=loss_fn,
        **kwargs,
    )
    corr = np.asarray(result["influences"].values, dtype=np.float64)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    # devinterp shuffles the query order (DeterministicShuffledSampler): map rows back to ours by their tokens.
    ids = np.asarray(result["input_ids"].values)
    where = {tuple(row): i for i, row in enumerate(query.numpy().tolist())}
    perm = np.array([where[tuple(row)] for row in ids.tolist()])
    matrix = np.empty_like(corr)
    matrix[np.ix_(perm, perm)] = corr
    shutil.rmtree(out_dir, ignore_errors=True)
    return -matrix, wall, rss_before, {"cpu_s": cpu,
                                       "query_order_permuted": bool((perm != np.arange(len(perm))).any())}


def child_run(args) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    fn = run_stagewise if args.lib == "stagewise" else run_devinterp
    matrix, wall, rss_before, extra = fn(args.mode, args.seed, work)
    np.save(args.out + ".npy", matrix)
    record = {
        "lib": args.lib,
        "mode": args.mode,
        "seed": args.seed,
        "wall_s": wall,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_job_mib": rss_before / 1024,
        "torch_threads": torch.get_num_threads(),
        **extra,
    }
    write_json(record, args.out + ".json")


# ------------------------------------------------------------------------------------------------------------
# FLOPs, matmul peak, profile


def count_flops() -> dict:
    """FLOPs of the job (library-independent), from FlopCounterMode on the plain module."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = make_model("eager")
    train, query = make_data()
    ids = train[: S.batch_size]
    with FlopCounterMode(display=False) as fc:
        token_losses(model(ids, use_cache=False).logits, ids).mean().backward()
    step = fc.get_total_flops()  # one chain, one step: forward + backward on a mini-batch
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(query, use_cache=False)
    observe = fc.get_total_flops()  # one chain, one draw: forward on the queries
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(train[: S.batch_size], use_cache=False)
    init = fc.get_total_flops() * (S.n_train // S.batch_size)  # L_n(w*): one forward over the training set
    steps = S.chains * S.draws
    total = steps * step + steps * observe + init
    return {
        "per_step_per_chain": step,
        "per_draw_observables_per_chain": observe,
        "init_loss": init,
        "sgld_steps": steps * step,
        "observables": steps * observe,
        "total": total,
        "counted_by": "torch.utils.flop_counter.FlopCounterMode (matmul/attention FLOPs; elementwise ops not counted)",
    }


def child_matmul_peak(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    best = {}
    gpu = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    for n in ((4096, 8192) if gpu else (1024, 2048, 3072)):
        a, b = torch.randn(n, n, device=args.device), torch.randn(n, n, device=args.device)
        a @ b
        sync()
        reps = max(2, int((2e12 if gpu else 2e10) / (2 * n**3)))
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync()
        best[n] = 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9
    print(json.dumps(best))


def child_profile(args) -> None:
    """Run one job under torch.profiler; print a JSON summary: time by op, matmul vs the rest vs Python, and for
    stagewise the time of its SGLD steps and of its observables (record_function labels around the runner's
    ``step`` and ``observe``)."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    global S
    torch.set_num_threads(args.threads)
    S = replace(S, draws=PROFILE_DRAWS)
    fn = run_stagewise if args.lib == "stagewise" else run_devinterp
    if args.lib == "stagewise":
        from stagewise.sampling import runner

        def labelled(name, inner):
            def call(*a, **k):
                with record_function(name):
                    return inner(*a, **k)
            return call

        runner.step = labelled("stagewise.sgld_step", runner.step)
        runner.observe = labelled("stagewise.observables", runner.observe)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        _, wall, _, _ = fn(args.mode, args.seed, Path(args.work))
    averages = prof.key_averages()
    ops = [(e.key, e.self_cpu_time_total / 1e6, e.count) for e in averages if e.key.startswith("aten::")]
    ops.sort(key=lambda x: -x[1])
    matmul_names = {"aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::addbmm"}
    aten_total = sum(t for _, t, _ in ops)
    matmul = sum(t for k, t, _ in ops if k in matmul_names)
    phases = {e.key: {"s": e.cpu_time_total / 1e6, "calls": e.count} for e in averages
              if e.key.startswith("stagewise.")}
    print(
        json.dumps(
            {
                "lib": args.lib,
                "mode": args.mode,
                "draws": S.draws,
                "stagewise_settings": stagewise_settings(args) if args.lib == "stagewise" else None,
                "wall_s_under_profiler": wall,
                "aten_self_s": aten_total,
                "matmul_self_s": matmul,
                "other_aten_self_s": aten_total - matmul,
                "outside_aten_s": wall - aten_total,
                "aten_op_calls": sum(c for _, _, c in ops),
                "phases": phases,
                "top_ops": [{"op": k, "self_s": round(t, 3), "calls": c} for k, t, c in ops[:15]],
            }
        )
    )


# ------------------------------------------------------------------------------------------------------------
# The orchestrator


def _child(args_list, timeout=1800) -> subprocess.CompletedProcess:
    env = dict(os.environ, TQDM_DISABLE="1", PYTHONWARNINGS="ignore", OMP_NUM_THREADS=str(ARGS.threads))
    cmd = [sys.executable, str(Path(__file__).resolve()), *args_list, "--threads", str(ARGS.threads),
           "--device", ARGS.device, *stagewise_flags(ARGS)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise SystemExit(f"benchmark child failed: {' '.join(args_list)}")
    return proc


def stagewise_flags(args) -> list[str]:
    """The command-line flags of the stagewise settings, passed on to every child."""
    return ["--sw-batching", args.sw_batching, "--sw-chunk", str(args.sw_chunk),
            "--sw-compile" if args.sw_compile else "--no-sw-compile"]


def stagewise_settings(args) -> dict:
    return {"batching": args.sw_batching, "compile": args.sw_compile,
            "observable_chunk": args.sw_chunk or None}


def _timed_run(lib: str, mode: str, seed: int, work: Path, tmp: Path) -> dict:
    import numpy as np

    out = tmp / f"{lib}-{mode}-{seed}"
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    _child(["run", "--lib", lib, "--mode", mode, "--seed", str(seed), "--work", str(work), "--out", str(out)])
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


def machine() -> dict:
    import torch

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "simd": sorted(flags & {"avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16"}),
        "memory_gib": mem,
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "blas": "MKL" if torch.backends.mkl.is_available() else "other",
    }


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("stagewise", "devinterp", "torch", "transformers", "datasets", "xarray", "zarr", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    try:
        out["stagewise_git"] = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip() or None
    except OSError:
        out["stagewise_git"] = None
    return out


def orchestrate(args) -> None:
    import numpy as np

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="runs-", dir=work))
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    print(f"bench: {args.pairs} pairs × modes {args.modes}, torch threads {args.threads}", flush=True)
    checkpoint = prepare(work, 1)
    print(f"checkpoint: {checkpoint}", flush=True)
    peaks = [json.loads(_child(["matmul-peak"]).stdout.strip().splitlines()[-1])]
    flops = count_flops()

    modes_out = {}
    all_ratios, all_vs, all_reseed, all_fraction, all_cpu_ratios, loads = [], [], [], [], [], []
    for mode in args.modes:
        runs = []
        for i in range(args.pairs):
            for lib in ("stagewise", "devinterp"):  # A B A B …
                r = _timed_run(lib, mode, args.seed0 + i, work, tmp)
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
            "stagewise_preconditioner": MODES[mode][0],
            "devinterp_sampling_method": MODES[mode][1],
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
    peaks.append(json.loads(_child(["matmul-peak"]).stdout.strip().splitlines()[-1]))
    peak = max(max(p.values()) for p in peaks)
    for m in modes_out.values():
        for key in ("stagewise_gflops", "devinterp_gflops"):
            m[key.replace("gflops", "roofline_fraction")] = {k: (v / peak if k != "n" else v) for k, v in m[key].items()}

    profiles = []
    if args.profile:
        for lib in ("stagewise", "devinterp"):
            proc = _child(["profile", "--lib", lib, "--mode", args.modes[-1], "--seed", "99", "--work", str(work)])
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
        import scaling as chain_scaling

        scaling = chain_scaling.run_all(args.scaling_chains, args.scaling_steps, args.threads, args.device, work)
    result = {
        "benchmark": "BIF job, stagewise vs devinterp 2.0.1",
        "device": args.device,
        "device_name": _device_name(args.device),
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
        "settings": asdict(S),
        "protocol": {
            "pairs_per_mode": args.pairs,
            "order": "alternating: stagewise, devinterp, stagewise, devinterp, … (one fresh process per run)",
            "seeds": f"pair i uses seed i = {args.seed0}+i: stagewise SGLDConfig(seed=i); devinterp init_seed=1000+10·i "
            "(devinterp seeds chain c with init_seed+c, so runs share no chain seed)",
            "torch_threads": args.threads,
            "loadavg_1min_before_runs": _band(loads),
            "stagewise_settings": stagewise_settings(args),
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
        "machine": machine(),
        "versions": versions(),
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


ARGS = None


def _device_name(device: str) -> str:
    import torch

    from stagewise.sampling.device import describe, resolve_device

    return describe(resolve_device(device, torch.device("cpu")))



def main(argv=None) -> None:
    global ARGS
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", nargs="?", default="bench", choices=["bench", "run", "matmul-peak", "profile"])
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "1")),
                   help="torch threads of every run (default 1: the 2-core machines are shared, and 2 OpenMP threads "
                        "on a loaded machine slow both libraries down several-fold)")
    p.add_argument("--seed0", type=int, default=0)
    p.add_argument("--profile", action="store_true", help="also profile one run of each library")
    p.add_argument("--work", default=str(DEFAULT_WORK))
    p.add_argument("--out", default=None, help="default results/bif_vs_devinterp.json (…_gpu.json on a GPU)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (both libraries run there)")
    p.add_argument("--no-scaling", dest="scaling", action="store_false",
                   help="skip the scaling of wall time and memory with the number of chains")
    p.add_argument("--scaling-chains", type=int, nargs="+", default=[1, 4, 16, 64, 256])
    p.add_argument("--scaling-steps", type=int, default=10, help="SGLD steps (each a draw) per chain there")
    p.add_argument("--sw-batching", default=None, choices=["auto", "vmap", "loop"],
                   help="stagewise's SGLDConfig.batching (default: loop on the CPU, 1.2x vmap per draw at one "
                        "thread; auto = vmap on a GPU)")
    p.add_argument("--sw-compile", action=argparse.BooleanOptionalAction, default=False,
                   help="stagewise's SGLDConfig.compile (torch.compile of the step and the observables)")
    p.add_argument("--sw-chunk", type=int, default=0,
                   help="stagewise's observable_chunk: query sequences per call (default 0: all 48 in one call)")
    p.add_argument("--lib", choices=["stagewise", "devinterp"])
    p.add_argument("--mode", choices=list(MODES))
    p.add_argument("--seed", type=int, default=0)
    ARGS = p.parse_args(argv)
    if ARGS.device == "auto":  # devinterp takes a torch device name
        import torch

        ARGS.device = "cuda" if torch.cuda.is_available() else "cpu"
    if ARGS.device != "cpu":  # a GPU this machine lacks stops here, with what it has, before any run
        from stagewise.config import ConfigError
        from stagewise.sampling.device import check_device

        try:
            check_device(ARGS.device)
        except ConfigError as error:
            raise SystemExit(f"bif_vs_devinterp: {error}") from None
    if ARGS.sw_batching is None:
        ARGS.sw_batching = "loop" if ARGS.device == "cpu" else "auto"
    if ARGS.out is None:
        ARGS.out = str(DEFAULT_OUT if ARGS.device == "cpu" else DEFAULT_OUT.with_name("bif_vs_devinterp_gpu.json"))
    if ARGS.command == "run":
        child_run(ARGS)
    elif ARGS.command == "matmul-peak":
        child_matmul_peak(ARGS)
    elif ARGS.command == "profile":
        child_profile(ARGS)
    else:
        orchestrate(ARGS)


if __name__ == "__main__":
    main()
