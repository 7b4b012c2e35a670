"""Per-sample losses of your own model, as the sampler takes them: ``loss(forward, batch) -> per-sample losses``
(see :func:`stagewise.sampling.module_loss_fn`).

Token data: the next-token loss of every real token, padding masked out; per sequence, the mean over its real
predicted tokens (every sequence weighs the same in L_n). With ``bf16`` the forward pass runs under CUDA's
bfloat16 autocast and the logits are cast to float32 before the softmax, so losses and the SGLD arithmetic
(parameters, gradients' accumulation, noise) stay in float32.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

__all__ = ["classifier_loss", "sequence_loss", "token_loss"]


def _context(bf16: bool):
    return torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def _logits(output):
    return output.logits if hasattr(output, "logits") else output


def token_loss(forward, batch, bf16: bool = False) -> torch.Tensor:
    """(batch, L − 1) next-token losses (entry t: predicting token t + 1); padded positions give 0."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with _context(bf16):
        logits = _logits(forward(input_ids=ids))
    logits = logits.float() if bf16 else logits
    logp = logits[..., :-1, :].log_softmax(-1)
    losses = -logp.gather(-1, ids[..., 1:, None]).squeeze(-1)
    return losses * mask[..., 1:].to(losses.dtype)


def sequence_loss(forward, batch, bf16: bool = False) -> torch.Tensor:
    """(batch,) mean next-token loss of each sequence over its real predicted tokens."""
    mask = batch["attention_mask"][..., 1:]
    total = token_loss(forward, batch, bf16).sum(-1)
    return total / mask.sum(-1).clamp(min=1).to(total.dtype)


def classifier_loss(forward, batch, bf16: bool = False) -> torch.Tensor:
    """(batch,) cross-entropy of a classifier on (inputs, integer labels)."""
    inputs, labels = batch[0], batch[1]
    with _context(bf16):
        logits = _logits(forward(inputs))
    return F.cross_entropy(logits.float() if bf16 else logits, labels.long(), reduction="none")
