"""The BIF job that stagewise and devinterp 2.0.1 run side by side, and one timed run of each.

Job: transformers' GPTNeoXForCausalLM (2 layers, width 64, 4 heads, vocabulary 512), 4 chains × 100 draws of
localized SGLD (plain and RMSProp-preconditioned) with mini-batches of 16 sequences, and at every draw the
per-sequence losses of 48 query sequences of 64 tokens; the result is the 48 × 48 normalized BIF.

Everything here takes its settings as arguments (:class:`Settings`, :class:`StagewiseOptions`, the device):
the command line (bif_vs_devinterp.py), the chain-count scaling (scaling.py) and the CPU levers
(bench_cpu_levers.py) import this module and never change it. devinterp is needed only by
:func:`run_devinterp`, in the benchmark's own virtual environment (.venv-bench), never by the package.

Sign: stagewise's normalized BIF is −corr(ℓ_i, ℓ_j); devinterp's ``bif()`` returns +corr. devinterp's matrix is
flipped in :func:`run_devinterp`, so both are returned with stagewise's sign.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_WORK = ROOT / "build" / "bench"
MODES = {"plain": ("none", "sgmcmc_sgld"), "rmsprop": ("rmsprop", "rmsprop_sgld")}  # (stagewise, devinterp)


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
        stagewise itself and the rest of the benchmark play no part in them)."""
        import inspect

        from stagewise.artifacts import cache_key, data_digest

        fields = {k: v for k, v in asdict(self).items() if k in CHECKPOINT_FIELDS}
        source = "".join(inspect.getsource(f) for f in (make_model, make_data, token_losses, prepare))
        return cache_key(fields, code=data_digest(source))


CHECKPOINT_FIELDS = (
    "layers hidden heads intermediate vocab seq_len n_train n_query data_seed topics bigram_temperature "
    "train_steps train_lr train_batch init_seed"
).split()
SETTINGS = Settings()


@dataclass(frozen=True)
class StagewiseOptions:
    """stagewise's own settings in the job (the sampler's are those of :class:`Settings`)."""

    batching: str = "loop"  # SGLDConfig.batching
    chunk: int | None = None  # SGLDConfig.observable_chunk: query sequences per call (None: all 48)
    compile: bool = False  # SGLDConfig.compile

    def as_dict(self) -> dict:
        return {"batching": self.batching, "compile": self.compile, "observable_chunk": self.chunk}


# ------------------------------------------------------------------------------------------------------------
# Model, data, checkpoint (shared by both libraries)


def make_model(s: Settings, attn: str = "eager"):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    config = GPTNeoXConfig(
        num_hidden_layers=s.layers,
        hidden_size=s.hidden,
        num_attention_heads=s.heads,
        intermediate_size=s.intermediate,
        vocab_size=s.vocab,
        max_position_embeddings=s.seq_len,
        attention_dropout=0.0,
        hidden_dropout=0.0,
        attn_implementation=attn,
    )
    return GPTNeoXForCausalLM(config)


def make_data(s: Settings):
    """(train ids (n_train, seq_len), query ids (n_query, seq_len)) from a mixture of bigram chains ("topics").

    Topic k is a random bigram chain on its own block of vocab / topics tokens; every sequence comes from one
    topic. Queries are ordered by topic (n_query / topics each), so the BIF has a block structure that a sampler
    either recovers or not (between unrelated random sequences it would be close to zero, and agreement
    between two runs would measure noise only).
    """
    import torch

    g = torch.Generator().manual_seed(s.data_seed)
    block = s.vocab // s.topics
    transition = torch.softmax(torch.randn(s.topics, block, block, generator=g) / s.bigram_temperature, dim=-1)

    def draw(topic):
        n = topic.shape[0]
        seqs = torch.empty(n, s.seq_len, dtype=torch.long)
        seqs[:, 0] = torch.randint(block, (n,), generator=g)
        for t in range(1, s.seq_len):
            seqs[:, t] = torch.multinomial(transition[topic, seqs[:, t - 1]], 1, generator=g).squeeze(1)
        return seqs + (topic * block)[:, None]

    train = draw(torch.arange(s.n_train) % s.topics)
    query = draw(torch.arange(s.n_query) // (s.n_query // s.topics))
    return train.contiguous(), query.contiguous()


def token_losses(logits, ids):
    """Per-token next-token cross entropy, (batch, seq_len − 1)."""
    import torch.nn.functional as F

    v = logits.shape[-1]
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, v), ids[:, 1:].reshape(-1), reduction="none"
    ).view(ids.shape[0], -1)


def per_sequence_loss(forward, ids):
    """stagewise's loss: the mean token loss of each sequence (``module_loss_fn``'s per-sample loss)."""
    return token_losses(forward(ids, use_cache=False, return_dict=False)[0], ids).mean(-1)


def checkpoint_path(s: Settings, work: Path) -> Path:
    """The checkpoint w* with its data: one safetensors file (``model.<name>`` weights, ``train``, ``query``)."""
    return work / f"checkpoint-{s.key()}.safetensors"


def load_checkpoint(s: Settings, work: Path):
    """(model with w* loaded, train ids, query ids) from :func:`checkpoint_path`; nothing is unpickled."""
    from stagewise.artifacts import load_safetensors

    saved = load_safetensors(checkpoint_path(s, work))
    model = make_model(s, "eager")  # sdpa has no vmap batching rule (a slow fallback); eager is fastest here
    model.load_state_dict({k[len("model."):]: v for k, v in saved.items() if k.startswith("model.")})
    return model, saved["train"], saved["query"]


def prepare(s: Settings, work: Path, threads: int) -> dict:
    """Make (or reuse) the checkpoint w* and the data; returns a description."""
    import torch

    torch.set_num_threads(threads)
    work.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(s, work)
    train, query = make_data(s)
    if not path.exists():
        torch.manual_seed(s.init_seed)
        model = make_model(s)
        opt = torch.optim.AdamW(model.parameters(), lr=s.train_lr)
        g = torch.Generator().manual_seed(s.init_seed)
        t0 = time.perf_counter()
        for _ in range(s.train_steps):
            ids = train[torch.randint(s.n_train, (s.train_batch,), generator=g)]
            loss = token_losses(model(ids, use_cache=False).logits, ids).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"trained the checkpoint: {s.train_steps} AdamW steps in {time.perf_counter() - t0:.1f} s", flush=True)
        from stagewise.artifacts import write_safetensors

        write_safetensors(path, {**{f"model.{k}": v for k, v in model.state_dict().items()},
                                 "train": train, "query": query})
    model, train, query = load_checkpoint(s, work)
    with torch.no_grad():
        l_train = float(token_losses(model(train[:256], use_cache=False).logits, train[:256]).mean())
        l_query = float(token_losses(model(query, use_cache=False).logits, query).mean())
    return {
        "path": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "train_loss": l_train,
        "query_loss": l_query,
        "uniform_loss": float(torch.log(torch.tensor(float(s.vocab)))),
    }


# ------------------------------------------------------------------------------------------------------------
# One run of each library: (BIF matrix with stagewise's sign, wall seconds of the job, RSS before it, extras)


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def stagewise_config(s: Settings, mode: str, seed: int, device: str, options: StagewiseOptions):
    """The SGLDConfig of the job: devinterp's sampler settings, and stagewise's own options."""
    from stagewise.sampling import SGLDConfig

    return SGLDConfig(
        step_size=s.step_size,
        nbeta=s.nbeta,
        localization=s.localization,
        num_chains=s.chains,
        num_draws=s.draws,
        batch_size=s.batch_size,
        preconditioner=MODES[mode][0],
        rmsprop_alpha=s.rmsprop_alpha,
        rmsprop_eps=s.rmsprop_eps,
        rmsprop_adapt="always",  # devinterp's rule: the preconditioner adapts at every step
        seed=seed,
        device=device,
        batching=options.batching,
        compile=options.compile,
        observable_chunk=options.chunk,
    )


def run_stagewise(s: Settings, mode: str, seed: int, work: Path, device: str, options: StagewiseOptions):
    from stagewise.influence import bif
    from stagewise.sampling import module_loss_fn, sample

    model, train, query = load_checkpoint(s, work)
    config = stagewise_config(s, mode, seed, device, options)
    rss_before = rss_kib()
    t0, c0 = time.perf_counter(), time.process_time()
    params, loss_fn = module_loss_fn(model, per_sequence_loss)
    trace = sample(loss_fn, params, train, query, config, progress=False)
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


def run_devinterp(s: Settings, mode: str, seed: int, work: Path, device: str):
    import numpy as np
    from datasets import Dataset
    from devinterp.slt.bif import bif

    model, train, query = load_checkpoint(s, work)
    train_ds = Dataset.from_dict({"input_ids": train.tolist()}).with_format("torch")
    query_ds = Dataset.from_dict({"input_ids": query.tolist()}).with_format("torch")
    batches_per_draw = s.n_query // s.batch_size  # devinterp evaluates batch_size × batches_per_draw sequences
    assert batches_per_draw * s.batch_size == s.n_query

    def loss_fn(m, ids):  # the same per-token loss as stagewise's (devinterp's default adds a finiteness check)
        return token_losses(m(ids, use_cache=False, return_dict=False)[0], ids)

    out_dir = Path(tempfile.mkdtemp(prefix="devinterp-", dir=work))
    kwargs = {"device": device, "bif_device": device}
    if mode == "rmsprop":
        kwargs.update(rmsprop_alpha=s.rmsprop_alpha, rmsprop_eps=s.rmsprop_eps)
    rss_before = rss_kib()
    t0, c0 = time.perf_counter(), time.process_time()
    result = bif(
        model,
        train_ds,
        {"query": (query_ds, batches_per_draw)},
        lr=s.step_size,
        n_beta=s.nbeta,
        localization=s.localization,
        num_chains=s.chains,
        num_draws=s.draws,
        batch_size=s.batch_size,
        sampling_method=MODES[mode][1],
        correlation_method="sequence",
        # L_n(w*) from 16 batches × 4 chains = 1024 sequences: the forward work of stagewise's full-data L_n(w*)
        num_init_loss_batches=max(1, s.n_train // (s.batch_size * s.chains)),
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


# ------------------------------------------------------------------------------------------------------------
# FLOPs, matmul peak, profile


def count_flops(s: Settings) -> dict:
    """FLOPs of the job (library-independent), from FlopCounterMode on the plain module."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = make_model(s, "eager")
    train, query = make_data(s)
    ids = train[: s.batch_size]
    with FlopCounterMode(display=False) as fc:
        token_losses(model(ids, use_cache=False).logits, ids).mean().backward()
    step = fc.get_total_flops()  # one chain, one step: forward + backward on a mini-batch
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(query, use_cache=False)
    observe = fc.get_total_flops()  # one chain, one draw: forward on the queries
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(train[: s.batch_size], use_cache=False)
    init = fc.get_total_flops() * (s.n_train // s.batch_size)  # L_n(w*): one forward over the training set
    steps = s.chains * s.draws
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


def matmul_peak(threads: int, device: str) -> dict:
    """GFLOP/s of float32 n×n matmuls at a few sizes, on ``device`` with ``threads`` torch threads."""
    import torch

    torch.set_num_threads(threads)
    best = {}
    gpu = device.startswith("cuda")
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    for n in ((4096, 8192) if gpu else (1024, 2048, 3072)):
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        a @ b
        sync()
        reps = max(2, int((2e12 if gpu else 2e10) / (2 * n**3)))
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync()
        best[n] = 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9
    return best


def profile_stagewise(s: Settings, mode: str, seed: int, work: Path, device: str, options: StagewiseOptions):
    """The stagewise job as a loop over the sampler's kernel (what ``sample`` runs), with profiler labels around
    its SGLD steps ("stagewise.sgld_step") and its observables ("stagewise.observables"). Returns the wall
    seconds of the loop."""
    from torch.profiler import record_function

    from stagewise.sampling import SGLD, module_loss_fn

    model, train, query = load_checkpoint(s, work)
    config = stagewise_config(s, mode, seed, device, options)
    t0 = time.perf_counter()
    params, loss_fn = module_loss_fn(model, per_sequence_loss)
    kernel = SGLD(loss_fn, config)
    state = kernel.init(params)
    for t in range(config.num_steps):
        with record_function("stagewise.sgld_step"):
            state, _ = kernel.step(state, train)
        if t >= config.num_burnin and (t - config.num_burnin + 1) % config.thin == 0:
            with record_function("stagewise.observables"):
                kernel.observe(state, query)
    return time.perf_counter() - t0


def profile(lib: str, s: Settings, mode: str, seed: int, work: Path, device: str, options: StagewiseOptions,
            threads: int) -> dict:
    """One job under torch.profiler: time by op, matmul vs the rest vs Python, and for stagewise the time of its
    SGLD steps and of its observables (:func:`profile_stagewise`)."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.set_num_threads(threads)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        if lib == "stagewise":
            wall = profile_stagewise(s, mode, seed, work, device, options)
        else:
            _, wall, _, _ = run_devinterp(s, mode, seed, work, device)
    averages = prof.key_averages()
    ops = [(e.key, e.self_cpu_time_total / 1e6, e.count) for e in averages if e.key.startswith("aten::")]
    ops.sort(key=lambda x: -x[1])
    matmul_names = {"aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::addbmm"}
    aten_total = sum(t for _, t, _ in ops)
    matmul = sum(t for k, t, _ in ops if k in matmul_names)
    phases = {e.key: {"s": e.cpu_time_total / 1e6, "calls": e.count} for e in averages
              if e.key.startswith("stagewise.")}
    return {
        "lib": lib,
        "mode": mode,
        "draws": s.draws,
        "stagewise_settings": options.as_dict() if lib == "stagewise" else None,
        "wall_s_under_profiler": wall,
        "aten_self_s": aten_total,
        "matmul_self_s": matmul,
        "other_aten_self_s": aten_total - matmul,
        "outside_aten_s": wall - aten_total,
        "aten_op_calls": sum(c for _, _, c in ops),
        "phases": phases,
        "top_ops": [{"op": k, "self_s": round(t, 3), "calls": c} for k, t, c in ops[:15]],
    }


# ------------------------------------------------------------------------------------------------------------
# The machine and the versions, for the results


def machine() -> dict:
    import torch

    cpu = "unknown"
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
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


def device_name(device: str) -> str:
    import torch

    from stagewise.sampling.device import describe, resolve_device

    return describe(resolve_device(device, torch.device("cpu")))
