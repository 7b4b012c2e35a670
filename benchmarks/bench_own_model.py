"""Time and peak memory of ``python -m stagewise influence`` against the low-level path and devinterp 2.0.1, same settings.

The model is the "your own model" page's GPT-2 (1 layer, n_embd 32, 2 heads, vocabulary 64, 16-token sequences,
4 checkpoint-N folders). Each round runs, in fresh processes and rotating their order, (a) the command (cache
off, so every checkpoint is sampled), (b) the low-level path: ``load_checkpoint`` + ``lm_loss_fn`` +
``bif_trajectory`` on the same data, queries and SGLDConfig, then ``bif_stderr`` is in both, and (c) devinterp
2.0.1's ``bif()`` at every checkpoint (plain SGLD, ``sampling_method="sgmcmc_sgld"``, as the command's default
``--preconditioner none``; the same chains, draws, burn-in, batch size, step size, nβ and localization, the same
96 training and 8 query sequences as observables, ``correlation_method="sequence"``). Wall and CPU seconds are
those of the whole child process; peak memory is its maximum resident set size (``ru_maxrss``).

Agreement: the low-level path also writes stagewise's normalized BIF −corr (``bif(..., normalized=True)``, 96 × 8
per checkpoint) and the devinterp path devinterp's correlation matrix, sign-flipped (its ``bif()`` returns +corr)
and mapped back to our train/query order by token ids. Per checkpoint: the Pearson correlation of the 768 entries
between every (low-level run, devinterp run) pair, and between low-level runs with different seeds (round k uses
SGLDConfig seed k; devinterp init_seed 1000 + 10·k). devinterp is needed only here, in the benchmark's own
environment:

    make .venv-bench/.installed
    OMP_NUM_THREADS=1 .venv-bench/bin/python benchmarks/bench_own_model.py [--rounds 3]

Without devinterp installed (``.venv``) the devinterp path is skipped and only (a) and (b) are timed.
Writes benchmarks/results/own_model.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SETTINGS = dict(num_chains=4, num_draws=60, num_burnin=30, step_size=1e-4, nbeta=100.0, localization=1000.0,
                batch_size=16, seed=0)

LOW_LEVEL = r"""
import json, sys, numpy as np, torch
from pathlib import Path
from stagewise.influence import bif, bif_trajectory
from stagewise.lm.model import load_checkpoint
from stagewise.lm.tracking import lm_loss_fn
from stagewise.sampling import SGLDConfig
torch.set_num_threads(1)
run = Path(sys.argv[1]); settings = json.loads(sys.argv[2])
read = lambda name: torch.tensor([json.loads(l)["input_ids"] for l in (run / name).read_text().splitlines()])
train, queries = read("train.jsonl"), read("queries.jsonl")
folders = sorted(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
models = [(int(f.name.split("-")[1]), load_checkpoint(f)) for f in folders]
_, token_loss = lm_loss_fn(models[0][1])
def per_sequence(params, ids):
    return token_loss(params, ids).mean(-1)
checkpoints = [(step, lm_loss_fn(m)[0]) for step, m in models]
observables = torch.cat([train, queries])
n = len(train)
result = bif_trajectory(per_sequence, checkpoints, train, observables, SGLDConfig(**settings),
                        train=range(n), query=range(n, n + len(queries)), progress=False,
                        keep_traces=len(sys.argv) > 3)
print(tuple(result.values.shape))
if len(sys.argv) > 3:  # stagewise's normalized BIF −corr (checkpoint, train, query), for the agreement
    np.save(sys.argv[3], torch.stack([bif(t.losses[:, :, :n], t.losses[:, :, n:], normalized=True)
                                      for t in result.traces]).numpy())
"""

# devinterp 2.0.1's bif() on the same checkpoints, data and sampler settings (patterns of bif_vs_devinterp.py).
# stagewise samples in eval mode; devinterp calls model.train(), so GPT-2's dropout (0.1 by default) is set to 0
# for it. devinterp evaluates batch_size × batches_per_draw sequences of an observable (at most its length): the 8
# queries are repeated to fill one batch of 16, and the rows are mapped back to ours by their token ids.
DEVINTERP = r"""
import json, shutil, sys, tempfile, numpy as np, torch
import torch.nn.functional as F
from pathlib import Path
from datasets import Dataset
from devinterp.slt.bif import bif
from transformers import AutoModelForCausalLM
torch.set_num_threads(1)
run = Path(sys.argv[1]); s = json.loads(sys.argv[2]); out = sys.argv[3]; init_seed = int(sys.argv[4])
read = lambda name: [json.loads(l)["input_ids"] for l in (run / name).read_text().splitlines()]
train, queries = read("train.jsonl"), read("queries.jsonl")
bs = s["batch_size"]
assert len(train) % bs == 0, "devinterp observes batch_size x batches_per_draw rows"
q_batches = -(-len(queries) // bs)
q_rows = (queries * -(-q_batches * bs // len(queries)))[:q_batches * bs]
train_ds = Dataset.from_dict({"input_ids": train}).with_format("torch")
query_ds = Dataset.from_dict({"input_ids": q_rows}).with_format("torch")
where_train = {tuple(r): i for i, r in enumerate(train)}
where_query = {tuple(r): j for j, r in enumerate(queries)}
assert len(where_train) == len(train) and not set(where_train) & set(where_query)
def loss_fn(m, ids):  # stagewise's per-token next-token cross entropy
    logits = m(ids, use_cache=False, return_dict=False)[0]
    v = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, v), ids[:, 1:].reshape(-1), reduction="none").view(ids.shape[0], -1)
folders = sorted(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
work = Path(tempfile.mkdtemp(prefix="devinterp-"))
matrices = []
for folder in folders:
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, resid_pdrop=0.0, embd_pdrop=0.0,
                                                 attn_pdrop=0.0)
    result = bif(model, train_ds, {"train": (train_ds, len(train) // bs), "query": (query_ds, q_batches)},
                 lr=s["step_size"], n_beta=s["nbeta"], localization=s["localization"], num_chains=s["num_chains"],
                 num_draws=s["num_draws"], num_burnin_steps=s["num_burnin"], batch_size=bs,
                 sampling_method="sgmcmc_sgld", correlation_method="sequence",
                 num_init_loss_batches=max(1, len(train) // (bs * s["num_chains"])), init_seed=init_seed,
                 output_path=work / f"{folder.name}.zarr", loss_fn=loss_fn, device="cpu", bif_device="cpu")
    corr = np.asarray(result["influences"].values, dtype=np.float64)
    rows = [tuple(r) for r in np.asarray(result["input_ids"].values).tolist()]
    ti = {where_train[r]: k for k, r in enumerate(rows) if r in where_train}
    qj = {}
    for k, r in enumerate(rows):
        if r in where_query:
            qj.setdefault(where_query[r], k)
    assert len(ti) == len(train) and len(qj) == len(queries)
    it = [ti[i] for i in range(len(train))]; jq = [qj[j] for j in range(len(queries))]
    matrices.append(-corr[np.ix_(it, jq)])  # devinterp's +corr -> stagewise's sign, -corr
shutil.rmtree(work, ignore_errors=True)
np.save(out, np.stack(matrices))
print(np.stack(matrices).shape)
"""


def make_run(folder: Path) -> None:
    """The page's GPT-2, trained 400 Adam steps, 4 checkpoint-N folders, train/queries JSONL."""
    import numpy as np
    import torch
    import transformers

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    vocab, length, count = 64, 16, 96
    frequent = torch.rand(count + 16, length, generator=g) < 0.8
    ids = torch.where(frequent, torch.randint(8, (count + 16, length), generator=g),
                      torch.randint(8, vocab, (count + 16, length), generator=g))
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=vocab,
                                                                 n_positions=length))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    save_at = set(np.linspace(100, 400, 4).astype(int).tolist())
    for step in range(1, 401):
        batch = ids[:count][torch.randint(count, (16,), generator=g)]
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step in save_at:
            model.save_pretrained(folder / f"checkpoint-{step}")
    for name, rows in (("train.jsonl", ids[:count]), ("queries.jsonl", ids[count:count + 8])):
        (folder / name).write_text("".join(json.dumps({"input_ids": r.tolist()}) + "\n" for r in rows))


def child(args: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return {"seconds": seconds, "cpu_seconds": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
            "peak_rss_mib": after.ru_maxrss / 1024}


def has_devinterp() -> bool:
    import importlib.util

    return importlib.util.find_spec("devinterp") is not None


def agreement(a, b) -> float:
    """Pearson correlation of the entries of two (train, query) matrices."""
    import numpy as np

    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def band(values: list[float]) -> dict:
    import statistics

    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    paths = ("command", "low_level", "devinterp") if has_devinterp() else ("command", "low_level")
    loads = []
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        make_run(run)
        steps = sorted(int(f.name.split("-")[1]) for f in run.glob("checkpoint-*"))
        results = {which: [] for which in paths}
        matrices = {"low_level": [], "devinterp": []}
        for k in range(args.rounds):
            order = paths[k % len(paths):] + paths[:k % len(paths)]  # rotated: each path takes each place
            for which in order:
                matrix = Path(tmp) / f"{which}-{k}.npy"
                if which == "command":
                    options = []
                    for name, value in SETTINGS.items():
                        options += [f"--{name.replace('_', '-')}", str(value)]
                    argv = [sys.executable, "-m", "stagewise", "influence", str(run), "--data", str(run / "train.jsonl"),
                            "--queries", str(run / "queries.jsonl"), "--out", str(Path(tmp) / f"out-{k}"),
                            "--no-cache", *options]
                elif which == "low_level":  # round k: seed k (round 0: the command's seed), for the reseeded band
                    argv = [sys.executable, "-c", LOW_LEVEL, str(run), json.dumps({**SETTINGS, "seed": k}),
                            str(matrix)]
                else:  # devinterp seeds chain c with init_seed + c: rounds share no chain seed
                    argv = [sys.executable, "-c", DEVINTERP, str(run), json.dumps(SETTINGS), str(matrix),
                            str(1000 + 10 * k)]
                # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: measure each child in a fresh helper
                load = os.getloadavg()[0]
                measured = json.loads(subprocess.run(
                    [sys.executable, __file__, "--measure", json.dumps(argv)], capture_output=True, text=True,
                    check=True).stdout)
                measured["round"] = k
                measured["loadavg_1min_before"] = load
                loads.append(load)
                results[which].append(measured)
                if which in matrices:
                    matrices[which].append(np.load(matrix))
                print(which, k, measured, flush=True)
        loads.append(os.getloadavg()[0])
    summary = {}
    for which, runs in results.items():
        seconds = sorted(r["seconds"] for r in runs)
        cpu = sorted(r["cpu_seconds"] for r in runs)
        rss = sorted(r["peak_rss_mib"] for r in runs)
        summary[which] = {"median_seconds": seconds[len(seconds) // 2], "median_cpu_seconds": cpu[len(cpu) // 2],
                          "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
                          "median_peak_rss_mib": rss[len(rss) // 2], "runs": runs}
    sw, dv = matrices["low_level"], matrices["devinterp"]
    per_checkpoint = []
    for c, step in enumerate(steps):
        entry = {"step": step,
                 "reseeded_stagewise": band([agreement(a[c], b[c]) for i, a in enumerate(sw) for b in sw[i + 1:]])
                 if len(sw) > 1 else None}
        if dv:
            entry["stagewise_vs_devinterp"] = band([agreement(a[c], b[c]) for a in sw for b in dv])
            entry["reseeded_devinterp"] = band([agreement(a[c], b[c]) for i, a in enumerate(dv)
                                                for b in dv[i + 1:]]) if len(dv) > 1 else None
        per_checkpoint.append(entry)
    record = {
        "what": "python -m stagewise influence (cache off, writes table, figure, traces) vs load_checkpoint + "
                "lm_loss_fn + bif_trajectory vs devinterp 2.0.1 bif() per checkpoint, same SGLD settings, 4 "
                "checkpoints of the page's GPT-2, 96 training and 8 query sequences of 16 tokens; fresh process "
                "each, order rotated every round",
        "settings": SETTINGS,
        "machine": f"{os.cpu_count()} cores, OMP_NUM_THREADS=1",
        "loadavg_1min": {**band(loads), "how": "os.getloadavg()[0] before every run and after the last"},
        **summary,
        "ratio_seconds": summary["command"]["median_seconds"] / summary["low_level"]["median_seconds"],
        "ratio_cpu_seconds": summary["command"]["median_cpu_seconds"] / summary["low_level"]["median_cpu_seconds"],
        "definitions": {
            "seconds, cpu_seconds, peak_rss_mib": "of the whole child process (interpreter start, imports, checkpoint "
            "loading, sampling at 4 checkpoints, BIF and, for the command, its table, figure and traces)",
            "ratio_seconds": "command / low_level, medians of wall seconds (ratio_cpu_seconds: of CPU seconds)",
        },
    }
    if "devinterp" in summary:
        record["ratio_command_vs_devinterp_seconds"] = (summary["command"]["median_seconds"]
                                                        / summary["devinterp"]["median_seconds"])
        record["ratio_command_vs_devinterp_cpu_seconds"] = (summary["command"]["median_cpu_seconds"]
                                                            / summary["devinterp"]["median_cpu_seconds"])
        record["ratio_low_level_vs_devinterp_seconds"] = (summary["low_level"]["median_seconds"]
                                                          / summary["devinterp"]["median_seconds"])
        record["ratio_low_level_vs_devinterp_cpu_seconds"] = (summary["low_level"]["median_cpu_seconds"]
                                                              / summary["devinterp"]["median_cpu_seconds"])
        record["definitions"].update({
            "ratio_command_vs_devinterp_seconds": "command / devinterp, medians of wall seconds (below 1: the "
            "command is faster; _cpu_seconds: of CPU seconds)",
            "agreement": "per checkpoint, Pearson correlation of the 96 × 8 entries of stagewise's normalized BIF "
            "(low-level path, bif(..., normalized=True) = −corr) and devinterp's bif() flipped to −corr, over every "
            "(low-level run, devinterp run) pair; reseeded_*: the same between two runs of one library with "
            "different seeds",
        })
        record["devinterp"].update({
            "version": "2.0.1",
            "call": "devinterp.slt.bif.bif(model, train, {'train': (train, 6), 'query': (queries repeated to 16, 1)}, "
                    "sampling_method='sgmcmc_sgld', correlation_method='sequence', lr=step_size, n_beta=nbeta, "
                    "localization, num_chains, num_draws, num_burnin_steps=num_burnin, batch_size, "
                    "num_init_loss_batches=1, init_seed=1000+10·round, loss_fn=the same per-token cross entropy, "
                    "device='cpu'), once per checkpoint in one process",
            "differences": [
                "mini-batches: stagewise draws each chain's batch independently (seeded by SGLDConfig.seed); "
                "devinterp shuffles the 96 sequences once (DataLoader, generator seeded by init_seed), feeds every "
                "chain the same batch sequence (match_sampling_input_ids_across_chains=True) and, with "
                "epoch_mode='cycle', replays that first-epoch order: the same 6 batches in the same order every "
                "6 steps",
                "chains: stagewise advances all 4 chains in one batched pass; devinterp runs them one after "
                "another, each on a deepcopy of the model",
                "observables: stagewise evaluates the 104 sequences once per draw and chain; devinterp evaluates "
                "96 + 16 (the 8 queries twice: an observable is batch_size × batches_per_draw rows) and writes "
                "every draw's losses and every step's mini-batch losses and input ids to a zarr store",
                "dropout: stagewise samples the model in eval mode; devinterp sets model.train(), so the "
                "checkpoints are opened with resid/embd/attn_pdrop = 0 for it (otherwise GPT-2's 0.1 dropout "
                "would be on in its chains)",
                "init loss: stagewise's L_n(w*) on all 96 sequences; devinterp's on num_init_loss_batches=1 batch "
                "of 16 per chain",
                "preconditioner: none in both (the command's default --preconditioner none = devinterp's "
                "sgmcmc_sgld); update w ← w − (ε/2)[nβ·g + γ(w − w*)] + √ε·ξ in both",
                "noise streams differ (different generators), so the samples are not the same draws",
            ],
        })
    else:
        record["devinterp"] = "not installed in this environment (use .venv-bench); not compared"
    record["agreement_per_checkpoint"] = per_checkpoint
    out = HERE / "results" / "own_model.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k not in paths}, indent=2))
    print({k: (summary[k]["median_seconds"], summary[k]["median_cpu_seconds"], summary[k]["peak_rss_mib"])
           for k in summary})


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--measure":
        print(json.dumps(child(json.loads(sys.argv[2]))))
    else:
        main()
