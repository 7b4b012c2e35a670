"""Time and peak memory of ``python -m stagewise influence`` against the low-level path with the same settings.

The model is the "your own model" page's GPT-2 (1 layer, n_embd 32, 2 heads, vocabulary 64, 16-token sequences,
4 checkpoint-N folders). Each round runs, in fresh processes and alternating their order, (a) the command (cache
off, so every checkpoint is sampled) and (b) the low-level path: ``load_checkpoint`` + ``lm_loss_fn`` +
``bif_trajectory`` on the same data, queries and SGLDConfig, then ``bif_stderr`` is in both. Peak memory is the
child's maximum resident set size (``ru_maxrss``). devinterp is not installed in this environment and is not
compared here.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_own_model.py [--rounds 3]

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
import json, sys, torch
from pathlib import Path
from stagewise.influence import bif_trajectory
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
                        train=range(n), query=range(n, n + len(queries)), progress=False)
print(tuple(result.values.shape))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        make_run(run)
        results = {"command": [], "low_level": []}
        for k in range(args.rounds):
            order = ("command", "low_level") if k % 2 == 0 else ("low_level", "command")
            for which in order:
                if which == "command":
                    options = []
                    for name, value in SETTINGS.items():
                        options += [f"--{name.replace('_', '-')}", str(value)]
                    argv = [sys.executable, "-m", "stagewise", "influence", str(run), "--data", str(run / "train.jsonl"),
                            "--queries", str(run / "queries.jsonl"), "--out", str(Path(tmp) / f"out-{k}"),
                            "--no-cache", *options]
                else:
                    argv = [sys.executable, "-c", LOW_LEVEL, str(run), json.dumps(SETTINGS)]
                # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: measure each child in a fresh helper
                measured = json.loads(subprocess.run(
                    [sys.executable, __file__, "--measure", json.dumps(argv)], capture_output=True, text=True,
                    check=True).stdout)
                results[which].append(measured)
                print(which, k, measured, flush=True)
    summary = {}
    for which, runs in results.items():
        seconds = sorted(r["seconds"] for r in runs)
        summary[which] = {"median_seconds": seconds[len(seconds) // 2],
                          "peak_rss_mib": max(r["peak_rss_mib"] for r in runs), "runs": runs}
    record = {
        "what": "python -m stagewise influence (cache off, writes table, figure, traces) vs load_checkpoint + "
                "lm_loss_fn + bif_trajectory, same SGLD settings, 4 checkpoints of the page's GPT-2, 96 training "
                "and 8 query sequences of 16 tokens; fresh process each, alternating order",
        "settings": SETTINGS,
        "machine": f"{os.cpu_count()} cores, OMP_NUM_THREADS=1",
        "devinterp": "not installed in this environment; not compared",
        **summary,
        "ratio_seconds": summary["command"]["median_seconds"] / summary["low_level"]["median_seconds"],
    }
    out = HERE / "results" / "own_model.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k not in ("command", "low_level")}, indent=2))
    print({k: (summary[k]["median_seconds"], summary[k]["peak_rss_mib"]) for k in summary})


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--measure":
        print(json.dumps(child(json.loads(sys.argv[2]))))
    else:
        main()
