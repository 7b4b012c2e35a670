"""Influence trajectories of your own model: :func:`influence`, the function behind ``python -m stagewise influence``.

For each checkpoint, localized SGLD (:func:`stagewise.sampling.sample`) records the per-sample losses of the
observables at every draw; the package's estimators turn them into the BIF and its standard error
(:func:`~stagewise.influence.bif`, :func:`~stagewise.influence.bif_stderr`; class × class with
:func:`~stagewise.influence.group_bif`) and the LLC (:func:`~stagewise.llc.estimate_llc`). Sign as in the paper:
BIF(i, j) = −Cov(ℓ_i, ℓ_j), negative when up-weighting i lowers j's loss.

Each checkpoint's trace is cached under a key of what made it: the weights' hash, the data's and the queries'
hashes, the settings and the package's code; a changed checkpoint is always sampled again. The cache lives in
the project's cache folder (``$STAGEWISE_CACHE``, by default ``.cache/attribute/`` of the checkout), never in the
checkpoints' folders.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from stagewise.artifacts import cache_dir, cache_key, data_digest, source_hash
from stagewise.influence import bif, bif_stderr, group_bif, group_bif_stderr
from stagewise.influence.tokens import free_bytes
from stagewise.llc import estimate_llc
from stagewise.sampling import SampleTrace, SGLDConfig, module_loss_fn, sample
from stagewise.sampling.device import resolve_device

from .checkpoints import Checkpoint, load_checkpoints
from .data import Sequences, load_data
from .losses import classifier_loss, sequence_loss, token_loss
from .report import write_outputs
from .traces import load_trace, save_trace, trace_to_cpu

__all__ = ["Attribution", "influence", "memory_estimate", "trajectory_from_traces"]

MEMORY_FRACTION = 0.8  # a run is refused when its estimate exceeds this fraction of the free memory


@dataclass
class Attribution:
    """What :func:`influence` returns.

    table:       long table, one row per (step, i, j): columns step, i, j, bif, stderr (sign: negative = i helps j).
    diagnostics: one row per checkpoint: step, label, llc, llc_stderr, ess, rhat, init_loss, seconds, cached.
    traces:      {step: SampleTrace} (CPU), from which any estimator can be recomputed.
    files:       {name: path} of what was written to ``out`` (empty without ``out``).
    settings:    what run.json records.
    """

    table: pd.DataFrame
    diagnostics: pd.DataFrame
    traces: dict[int, SampleTrace] = field(repr=False)
    files: dict[str, Path]
    settings: dict[str, Any] = field(repr=False)

    def pair(self, i, j) -> pd.DataFrame:
        """The trajectory of one (i, j) entry: columns step, bif, stderr."""
        rows = self.table[(self.table["i"] == i) & (self.table["j"] == j)]
        return rows[["step", "bif", "stderr"]].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------- the observables


@dataclass
class _Plan:
    """What is sampled and recorded: the sampler's data, the observables, the losses, and how rows and columns
    of the table are read from the recorded losses."""

    kind: str  # "tokens" or "classifier"
    data: Any
    observables: Any
    rows: list[int]  # observables' positions of the training samples (i)
    cols: list[int]  # observables' positions of the queries (j)
    names_i: list
    names_j: list
    groups: torch.Tensor | None = None  # integer labels (observable, token) or (observable,): class mode
    bf16: bool = False
    loss: Callable | None = None  # a user's per-sample loss(forward, batch)

    def loss_fns(self):
        if self.loss is not None:
            return self.loss, self.loss
        if self.kind == "classifier":
            fn = partial(classifier_loss, bf16=self.bf16)
            return fn, fn
        train = partial(sequence_loss, bf16=self.bf16)
        return train, partial(token_loss, bf16=self.bf16) if self.groups is not None else train


def _token_classes(classes: Any, queries: Sequences, class_names: Sequence[str] | None
                   ) -> tuple[torch.Tensor, list[str]]:
    """(labels of the predicted query tokens (query, L − 1), −1 for none or padding; class names)."""
    ids = queries.input_ids[:, 1:]
    if isinstance(classes, (str, Path)):
        import json

        path = Path(classes)
        try:
            classes = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValueError(f"token_classes: {path} is not a readable JSON file ({error}); accepted: "
                             '{"class name": [token ids], …}') from None
    if isinstance(classes, Mapping):
        names = [str(k) for k in classes]
        labels = torch.full_like(ids, -1)
        for g, (name, members) in enumerate(classes.items()):
            try:
                members = torch.as_tensor([int(t) for t in members], dtype=torch.long)
            except (TypeError, ValueError):
                raise ValueError(f"token_classes[{name!r}]: accepted a list of token ids") from None
            hit = torch.isin(ids, members)
            if bool((hit & (labels >= 0)).any()):
                raise ValueError(f"token_classes: class {name!r} shares token ids with an earlier class; each token "
                                 "id may belong to one class")
            labels[hit] = g
    else:
        labels = torch.as_tensor(classes).long()
        if tuple(labels.shape) != tuple(queries.input_ids.shape):
            raise ValueError(f"token_classes: integer labels must be shaped like the queries' input_ids "
                             f"{tuple(queries.input_ids.shape)}; got {tuple(labels.shape)}")
        labels = labels[:, 1:].clone()
        names = list(class_names) if class_names is not None else [str(g) for g in range(int(labels.max()) + 1)]
    labels[queries.attention_mask[:, 1:] == 0] = -1
    present = torch.bincount(labels[labels >= 0], minlength=len(names))
    if not bool((present > 0).all()):
        empty = [names[g] for g in range(len(names)) if present[g] == 0]
        raise ValueError(f"token_classes: no query token falls in class(es) {empty}; every class needs at least one "
                         "(predicted, real) token of the queries")
    return labels, names


def _plan(data, queries, token_classes, class_names, loss, bf16) -> _Plan:
    if isinstance(data, Sequences):
        if queries is not None and not isinstance(queries, Sequences):
            raise TypeError("queries: token data need token queries (input_ids), like data")
        if token_classes is not None:
            q = queries if queries is not None else data
            labels, names = _token_classes(token_classes, q, class_names)
            rows = list(range(len(q)))
            return _Plan("tokens", data.batch(), q.batch(), rows, rows, names, names, labels, bf16, loss)
        if queries is None:
            rows = list(range(len(data)))
            return _Plan("tokens", data.batch(), data.batch(), rows, rows, rows, rows, None, bf16, loss)
        both = Sequences.concat([data, queries])
        n = len(data)
        return _Plan("tokens", data.batch(), both.batch(), list(range(n)), list(range(n, n + len(queries))),
                     list(range(n)), list(range(len(queries))), None, bf16, loss)
    if token_classes is not None and not (isinstance(token_classes, str) and token_classes == "labels"):
        raise ValueError("token_classes: for (inputs, labels) data the only accepted value is 'labels' (class × "
                         "class influence by label)")
    q = queries if queries is not None else data
    if not isinstance(q, tuple):
        raise TypeError("queries: (inputs, labels) data need (inputs, labels) queries")
    if token_classes == "labels":
        labels = q[1].long()
        names = list(class_names) if class_names is not None else [str(g) for g in range(int(labels.max()) + 1)]
        rows = list(range(len(labels)))
        return _Plan("classifier", data, q, rows, rows, names, names, labels, bf16, loss)
    if queries is None:
        rows = list(range(len(data[0])))
        return _Plan("classifier", data, data, rows, rows, rows, rows, None, bf16, loss)
    both = tuple(torch.cat([a, b]) for a, b in zip(data, queries))
    n = len(data[0])
    return _Plan("classifier", data, both, list(range(n)), list(range(n, n + len(queries[0]))),
                 list(range(n)), list(range(len(queries[0]))), None, bf16, loss)


# -------------------------------------------------------------------------------------------------- memory


def _activation_bytes_per_token(module: torch.nn.Module) -> int:
    """A rough upper bound on the activations a forward and backward pass keep per token (float32)."""
    config = getattr(module, "config", None)
    width = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None) or getattr(config, "d_model", 0)
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None) or \
        getattr(config, "n_layers", 0)
    vocab = getattr(config, "vocab_size", 0) or 0
    if not width:  # not a transformers model: count the module's largest layer outputs
        width = max((p.shape[0] for p in module.parameters() if p.dim() >= 1), default=1)
        layers = sum(1 for m in module.modules() if len(list(m.children())) == 0)
    return 4 * (24 * int(width) * max(1, int(layers)) + 3 * int(vocab))


def memory_estimate(module: torch.nn.Module, plan: _Plan, config: SGLDConfig) -> dict[str, int]:
    """Bytes a checkpoint's run needs, by part: ``sampler`` (positions, centres, gradients, noise, RMSProp state
    of every chain), ``activations`` (one training step of all chains), ``observe`` (one block of observables),
    ``trace`` (the recorded losses) and ``total``; and ``chunk``, the observables evaluated at once."""
    num_params = sum(p.numel() for p in module.parameters())
    size = next(module.parameters()).element_size()
    chains = config.num_chains
    sampler = 6 * chains * num_params * size
    if plan.kind == "tokens":
        n = plan.data["input_ids"].shape[0]
        length = plan.data["input_ids"].shape[1]
        obs_count, obs_length = plan.observables["input_ids"].shape
    else:
        n, length = plan.data[0].shape[0], 1
        obs_count, obs_length = plan.observables[0].shape[0], 1
    per_token = _activation_bytes_per_token(module)
    batch = n if config.batch_size is None else min(config.batch_size, n)
    activations = chains * batch * length * per_token
    recorded = (obs_length - 1 if plan.groups is not None and plan.kind == "tokens" else 1)
    trace = chains * config.num_draws * obs_count * recorded * size + chains * config.num_steps * size
    per_observable = chains * obs_length * per_token // 2  # no backward pass
    budget = max(per_observable, activations)  # a block of observables may take what a training step takes
    chunk = max(1, min(obs_count, budget // max(1, per_observable)))
    observe = chunk * per_observable
    return {"sampler": sampler, "activations": activations, "observe": observe, "trace": trace,
            "total": sampler + activations + observe + trace, "chunk": int(chunk)}


def _mib(count: int) -> str:
    return f"{count / 2**20:,.1f} MiB"


def _check_memory(estimate: dict[str, int], device: torch.device, limit: int | None, log) -> None:
    available = free_bytes(device) if limit is None else int(limit / MEMORY_FRACTION)
    allowed = int(MEMORY_FRACTION * available)
    line = (f"memory estimate per checkpoint: ≈ {_mib(estimate['total'])} (sampler {_mib(estimate['sampler'])}, "
            f"activations {_mib(estimate['activations'])}, observables {_mib(estimate['observe'])} in blocks of "
            f"{estimate['chunk']}, recorded losses {_mib(estimate['trace'])}); allowed {_mib(allowed)} on {device}")
    log(line)
    if estimate["total"] > allowed:
        raise MemoryError(line + ". Refused before sampling: lower --num-chains, --num-draws or --batch-size, pass "
                          "fewer queries (or --token-classes, which keeps class means), or run on a larger device")


# ------------------------------------------------------------------------------------------------ sampling


def _sample_checkpoint(checkpoint: Checkpoint, plan: _Plan, config: SGLDConfig, chunk: int,
                       progress: bool) -> tuple[SampleTrace, float]:
    """One checkpoint's sampler run (a Dask task when a cluster is used): opened in eval mode, so dropout and
    other random layers are off; the trace comes back on the CPU."""
    started = time.perf_counter()
    module = checkpoint.open()
    train_loss, record_loss = plan.loss_fns()
    params, loss_fn = module_loss_fn(module, train_loss)
    _, observable_fn = module_loss_fn(module, record_loss)
    trace = sample(loss_fn, params, plan.data, plan.observables, config,
                   observable_fn=observable_fn if record_loss is not train_loss else None,
                   observable_chunk=chunk, progress=progress)
    return trace_to_cpu(trace), time.perf_counter() - started


def _loss_name(loss: Callable | None) -> str | None:
    if loss is None:
        return None
    try:
        return f"{loss.__module__}.{getattr(loss, '__qualname__', type(loss).__name__)}:" + inspect.getsource(loss)
    except (OSError, TypeError):
        return repr(loss)


# ---------------------------------------------------------------------------------------------- estimating


def trajectory_from_traces(traces: Mapping[int, SampleTrace], rows: Sequence[int], cols: Sequence[int],
                           groups: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(steps (S,), BIF (S, I, J), standard errors (S, I, J)) from saved traces, without sampling.

    ``rows``/``cols``: the observables' positions of the training samples and the queries; ``groups``: integer
    class labels of the observables' (tokens), for the class × class BIF (then rows and cols are ignored).
    """
    steps, values, errors = [], [], []
    for step, trace in sorted(traces.items()):
        losses = trace.losses.double()
        if groups is not None:
            value = group_bif(losses, groups)
            error = group_bif_stderr(losses, groups) if losses.shape[1] >= 4 else value * math.nan
        else:
            a, b = losses[:, :, list(rows)], losses[:, :, list(cols)]
            value = bif(a, b)
            error = bif_stderr(a, b) if losses.shape[1] >= 4 else value * math.nan
        steps.append(int(step))
        values.append(value)
        errors.append(error)
    return torch.tensor(steps), torch.stack(values), torch.stack(errors)


def _table(steps, values, errors, names_i, names_j, labels: Mapping[int, str]) -> pd.DataFrame:
    s, ni, nj = values.shape
    frame = pd.DataFrame({
        "step": steps.repeat_interleave(ni * nj).numpy(),
        "i": [names_i[a] for _ in range(s) for a in range(ni) for _ in range(nj)],
        "j": [names_j[b] for _ in range(s) for _ in range(ni) for b in range(nj)],
        "bif": values.reshape(-1).numpy(),
        "stderr": errors.reshape(-1).numpy(),
    })
    frame.insert(1, "checkpoint", frame["step"].map(labels))
    return frame


def _diagnostics(trace: SampleTrace, checkpoint: Checkpoint, seconds: float, cached: bool) -> dict[str, Any]:
    llc = estimate_llc(trace)
    return {"step": checkpoint.step, "checkpoint": checkpoint.label, "llc": llc.estimate,
            "llc_stderr": llc.stderr, "ess": llc.ess, "rhat": llc.rhat, "init_loss": trace.init_loss,
            "mean_draw_loss": float(trace.draw_loss.double().mean()), "seconds": seconds, "cached": cached}


# ----------------------------------------------------------------------------------------------- the run


def _default_cache() -> Path:

    return cache_dir("attribute")


def influence(
    checkpoints: Any,
    data: Any,
    queries: Any = None,
    *,
    out: str | Path | None = None,
    config: SGLDConfig | None = None,
    model: torch.nn.Module | None = None,
    loss: Callable | None = None,
    steps: Sequence[int] | None = None,
    revisions: Sequence[str] | None = None,
    loader: Callable | None = None,
    tokenizer: Any = None,
    max_length: int | None = None,
    token_classes: Any = None,
    class_names: Sequence[str] | None = None,
    bf16: bool = False,
    memory_limit: int | None = None,
    client: Any = None,
    cache: bool | str | Path = True,
    progress: bool = True,
    log: Callable[..., None] = print,
) -> Attribution:
    """BIF trajectories of your own model across its checkpoints.

    checkpoints: ``save_pretrained`` folders (Trainer's ``checkpoint-N`` included, or the run folder holding
                 them), a hub name with ``revisions``, or state dicts with ``model`` (see
                 :func:`~stagewise.attribute.load_checkpoints`; ``steps`` overrides the steps read).
    data:        the training data the posterior is localized on: token data (JSONL of input_ids, a
                 ``datasets.Dataset``, a DataLoader, a .txt file through ``tokenizer`` or the checkpoint's own,
                 tensors; masks and variable lengths accepted, padding masked out of the loss) or a classifier's
                 (inputs, labels) tuple (see :func:`~stagewise.attribute.load_data`).
    queries:     the samples whose losses are influenced (j); None = the training data themselves.
    config:      the sampler's settings (:class:`~stagewise.sampling.SGLDConfig`), the same at every checkpoint.
    loss:        ``loss(forward, batch) -> per-sample losses``, for a model that is neither a causal LM nor a
                 classifier (default: next-token loss per sequence, or cross-entropy).
    token_classes: class × class influence of the queries' tokens instead of sequence × sequence: a dict (or a
                 JSON file) ``{class name: [token ids]}``, integer labels shaped like the queries' input_ids
                 (−1: none; names in ``class_names``), or ``"labels"`` for a classifier (classes by label).
    bf16:        the forward passes under CUDA's bfloat16 autocast, float32 accumulation (refused on the CPU).
    memory_limit: bytes allowed (default: 80% of the free memory of the device); a run whose estimate is larger
                 is refused before sampling, with the numbers.
    client:      a ``distributed.Client``: the checkpoints are sampled as its tasks (the command line makes one
                 for ``--workers N``, a LocalCluster, or ``--scheduler ADDRESS``); None: one after another here.
    cache:       True: reuse and store each checkpoint's trace in the project's cache folder; a folder: there;
                 False: neither.
    out:         a new or empty folder to write influence.csv, diagnostics.csv, influence.png, run.json and
                 traces/ into (an existing non-empty folder is refused: nothing is overwritten).

    Returns an :class:`Attribution`. Sign: BIF(i, j) = −Cov(ℓ_i, ℓ_j), negative when i helps j.
    """
    config = config or SGLDConfig()
    if not isinstance(config, SGLDConfig):
        raise TypeError(f"config must be an SGLDConfig; got {type(config).__name__}")
    device = resolve_device(config.device, torch.device("cpu"))
    if bf16 and device.type != "cuda":
        raise ValueError(f"bf16: bfloat16 autocast runs on a CUDA device only; this run is on {device} (set "
                         "--device cuda on a GPU, or leave bf16 off: float32 on the CPU)")
    if out is not None:
        out = Path(out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise FileExistsError(f"out: {out} exists and is not empty; nothing is overwritten: name a new folder "
                                  "(--out)")
    started = time.perf_counter()
    found = load_checkpoints(checkpoints, model=model, steps=steps, revisions=revisions, loader=loader)
    if tokenizer is None and isinstance(data, (str, Path)) and str(data).endswith(".txt"):
        tokenizer = _folder_tokenizer(found)
    data = load_data(data, "data", tokenizer=tokenizer, max_length=max_length)
    if queries is not None:
        queries = load_data(queries, "queries", tokenizer=tokenizer, max_length=max_length)
    if isinstance(data, tuple):
        template = found[0].open()
        dtype = next(template.parameters()).dtype
        data = tuple(v.to(dtype) if (v.is_floating_point() or v.dtype == torch.bool) and k == 0 else v
                     for k, v in enumerate(data))
        if queries is not None:
            queries = tuple(v.to(dtype) if (v.is_floating_point() or v.dtype == torch.bool) and k == 0 else v
                            for k, v in enumerate(queries))
    plan = _plan(data, queries, token_classes, class_names, loss, bf16)
    n = plan.data["input_ids"].shape[0] if plan.kind == "tokens" else plan.data[0].shape[0]
    if config.batch_size is not None and config.batch_size > n:
        raise ValueError(f"batch_size = {config.batch_size} is larger than the data ({n} samples): accepted 1 … {n} "
                         "(--batch-size), or None for full-batch gradients")
    template = found[0].open()
    estimate = memory_estimate(template, plan, config)
    del template
    _check_memory(estimate, device, memory_limit, log)

    settings = {"sgld": asdict(config), "kind": plan.kind, "bf16": bf16, "loss": _loss_name(loss),
                "class_names": plan.names_i if plan.groups is not None else None}
    inputs_digest = data_digest(*_tensors(plan.data), *_tensors(plan.observables), plan.groups)
    keys = {c.step: cache_key(settings, c.digest, inputs_digest) for c in found}
    folder = None if cache is False else (_default_cache() if cache is True else Path(cache))
    traces: dict[int, SampleTrace] = {}
    rows = []
    todo = []
    for c in found:
        hit = _cached(folder, keys[c.step])
        if hit is not None:
            traces[c.step] = hit[0]
            rows.append(_diagnostics(hit[0], c, hit[1].get("seconds", math.nan), True))
        else:
            todo.append(c)
    if found and todo:
        log(f"sampling {len(todo)} of {len(found)} checkpoint(s) ({len(found) - len(todo)} from the cache): "
            f"{config.num_chains} chains × {config.num_draws} draws, {config.num_burnin} burn-in steps")
    results = _run_all(todo, plan, config, estimate["chunk"], progress, client)
    for c, (trace, seconds) in zip(todo, results):
        traces[c.step] = trace
        rows.append(_diagnostics(trace, c, seconds, False))
        if folder is not None:
            save_trace(trace, folder / f"trace-{keys[c.step]}", {"step": c.step, "label": c.label,
                                                                 "digest": c.digest, "seconds": seconds})
    traces = dict(sorted(traces.items()))
    step_values, values, errors = trajectory_from_traces(traces, plan.rows, plan.cols, plan.groups)
    labels = {c.step: c.label for c in found}
    table = _table(step_values, values, errors, plan.names_i, plan.names_j, labels)
    diagnostics = pd.DataFrame(sorted(rows, key=lambda r: r["step"]))
    settings.update({
        "checkpoints": [{"step": c.step, "label": c.label, "weights_sha256": c.digest, "cache_key": keys[c.step]}
                        for c in found],
        "inputs_sha256": inputs_digest, "code_sha256": source_hash(),
        "rows": plan.rows, "cols": plan.cols, "names_i": plan.names_i, "names_j": plan.names_j,
        "memory_estimate": estimate, "seconds": time.perf_counter() - started,
    })
    result = Attribution(table, diagnostics, traces, {}, settings)
    if out is not None:
        result.files = write_outputs(result, out, plan.groups)
        log(f"wrote {', '.join(str(p) for p in result.files.values())}")
    return result


def _tensors(batch) -> list[torch.Tensor]:
    if isinstance(batch, Mapping):
        return [batch[k] for k in sorted(batch)]
    return list(batch)


def _cached(folder: Path | None, key: str):
    if folder is None:
        return None
    try:
        return load_trace(folder / f"trace-{key}")
    except (OSError, ValueError):
        return None


def _folder_tokenizer(found: list[Checkpoint]):
    from transformers import AutoTokenizer

    for c in found:
        if Path(c.label).is_dir():
            try:
                return AutoTokenizer.from_pretrained(c.label, local_files_only=True)
            except (OSError, ValueError):
                continue
    return None


def _run_all(todo, plan, config, chunk, progress, client) -> list[tuple[SampleTrace, float]]:
    if not todo:
        return []
    if client is None:
        return [_sample_checkpoint(c, plan, config, chunk, progress)
                for c in tqdm(todo, desc="checkpoints", disable=not progress or len(todo) < 2, leave=False)]
    futures = [client.submit(_sample_checkpoint, c, plan, config, chunk, False, pure=False,
                             key=f"influence-step-{c.step}-{c.digest[:8]}") for c in todo]
    return client.gather(futures)
