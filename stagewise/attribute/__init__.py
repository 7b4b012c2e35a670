"""Your own model: influence trajectories across the checkpoints of any PyTorch or Hugging Face model.

    from stagewise.attribute import influence
    from stagewise.sampling import SGLDConfig

    result = influence(["run/checkpoint-100", "run/checkpoint-200"], "train.jsonl", "queries.jsonl",
                       out="attribution", config=SGLDConfig(num_chains=4, num_draws=100, batch_size=16))
    result.table          # step, checkpoint, i, j, bif, stderr (negative BIF: i helps j)

or ``python -m stagewise influence run/checkpoint-* --data train.jsonl --queries queries.jsonl --out attribution``.

Modules, by job:

    checkpoints  folders (Trainer's checkpoint-N), hub revisions, state dicts → steps and weights' hashes
    data         JSONL / Dataset / DataLoader / text / tensors → right-padded sequences with masks
    losses       per-sample losses: next-token (padding masked), classifier cross-entropy; bf16 autocast
    run          :func:`influence`: memory check, keyed cache of traces, Dask tasks, the estimators
    traces       saved traces (safetensors + JSON), loaded back to recompute any estimator
    report       influence.csv, diagnostics.csv, influence.png, run.json
"""

from .checkpoints import Checkpoint, checkpoint_step, load_checkpoints, weights_digest
from .data import Sequences, load_data
from .losses import classifier_loss, sequence_loss, token_loss
from .run import Attribution, influence, memory_estimate, trajectory_from_traces
from .traces import load_trace, load_traces, save_trace

__all__ = [
    "Attribution",
    "Checkpoint",
    "Sequences",
    "checkpoint_step",
    "classifier_loss",
    "influence",
    "load_checkpoints",
    "load_data",
    "load_trace",
    "load_traces",
    "memory_estimate",
    "save_trace",
    "sequence_loss",
    "token_loss",
    "trajectory_from_traces",
    "weights_digest",
]
