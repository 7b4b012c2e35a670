"""Induction-head measurements (Olsson et al. 2022): prefix-matching score per head and loss on second copies.

Both are read on *repeated random sequences* [r_1 … r_L, r_1 … r_L] with r_i uniform over the vocabulary: the
second copy can only be predicted by looking back to the first. A head prefix-matches when position L + k
(which holds r_k) attends to position k + 1 (the token that followed r_k last time), 1-based; an induction
head forms when some head's prefix-matching score jumps and the loss on the second copy falls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from stagewise.lm.model import per_token_loss

__all__ = ["InductionScores", "induction_scores", "prefix_matching_score", "repeated_random_sequences"]


def repeated_random_sequences(vocab_size: int, length: int, num: int, seed: int = 0,
                               token_ids: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
    """``num`` sequences [r_1 … r_L, r_1 … r_L]: (num, 2·length).

    r is uniform over ``token_ids`` when given (e.g. the tokens a corpus uses, leaving out special tokens), else
    over all ``vocab_size`` tokens.
    """
    if length < 2:
        raise ValueError(f"length = {length} (accepted: an integer ≥ 2)")
    generator = torch.Generator().manual_seed(seed)
    if token_ids is None:
        first = torch.randint(0, vocab_size, (num, length), generator=generator)
    else:
        pool = torch.as_tensor(token_ids, dtype=torch.long).flatten()
        if pool.numel() < 2 or pool.min() < 0 or pool.max() >= vocab_size:
            raise ValueError(f"token_ids: {pool.numel()} ids (accepted: at least 2 ids in [0, {vocab_size - 1}])")
        first = pool[torch.randint(0, pool.numel(), (num, length), generator=generator)]
    return torch.cat([first, first], dim=1)


def prefix_matching_score(attentions: torch.Tensor | Sequence[torch.Tensor], length: int) -> torch.Tensor:
    """Mean attention from each second-copy token to the successor of its first occurrence, per layer and head.

    attentions: (layer, batch, head, 2L, 2L) or a sequence of (batch, head, 2L, 2L) patterns (query × key) on
    sequences [r_1 … r_L, r_1 … r_L] of ``length`` = L. 0-based: query L + j attends to key j + 1, averaged over
    j = 0 … L − 2 and the batch. Returns (layer, head), each in [0, 1] (1 = a perfect induction pattern).
    """
    stacked = attentions if isinstance(attentions, torch.Tensor) else torch.stack(tuple(attentions))
    if stacked.shape[-1] != 2 * length or stacked.shape[-2] != 2 * length:
        raise ValueError(f"attention patterns are {tuple(stacked.shape[-2:])}; expected ({2 * length}, {2 * length})")
    j = torch.arange(length - 1)
    return stacked[..., length + j, j + 1].mean(dim=(1, 3))


@dataclass
class InductionScores:
    """Induction measurements of one model.

    prefix_matching:   (layer, head) prefix-matching score of every head.
    second_copy_loss:  mean next-token loss (nats) on tokens 2 … L of the second copy (the predictable ones).
    first_copy_loss:   mean next-token loss (nats) on tokens 2 … L of the first copy (≈ log vocab if unlearnt).
    """

    prefix_matching: torch.Tensor
    second_copy_loss: float
    first_copy_loss: float

    @property
    def best_prefix_matching(self) -> float:
        """The largest prefix-matching score over all heads."""
        return float(self.prefix_matching.max())

    def summary(self) -> dict:
        """Plain data (for metrics files)."""
        return {
            "prefix_matching": self.prefix_matching.tolist(),
            "best_prefix_matching": self.best_prefix_matching,
            "second_copy_loss": self.second_copy_loss,
            "first_copy_loss": self.first_copy_loss,
        }


@torch.no_grad()
def induction_scores(model, length: int = 16, num: int = 64, seed: int = 0,
                     vocab_size: int | None = None,
                     token_ids: torch.Tensor | Sequence[int] | None = None,
                     sequences: torch.Tensor | None = None) -> InductionScores:
    """Prefix-matching score of every head and second-copy loss of ``model`` on repeated random sequences.

    model: a causal LM whose forward accepts ``output_attentions=True`` (the attention-only model; GPT-NeoX
    with eager attention). length: L, tokens per copy (2L must fit the context). num: sequences averaged.
    vocab_size: tokens drawn from (default: the model's vocabulary). token_ids: draw only these tokens instead
    (e.g. the tokens of the training corpus without special tokens; tokens a model never saw are off-distribution).
    sequences: (num, 2L) repeated sequences to use instead of drawing them (e.g.
    :func:`stagewise.lm.corpus.repeated_name_sequences`: random but in the training text's own style); then
    ``length``, ``num``, ``seed``, ``vocab_size`` and ``token_ids`` are not used.
    """
    if sequences is not None:
        ids = torch.as_tensor(sequences, dtype=torch.long)
        length = ids.shape[-1] // 2
        if ids.dim() != 2 or length < 2 or ids.shape[1] != 2 * length or not torch.equal(ids[:, :length],
                                                                                           ids[:, length:]):
            raise ValueError(f"sequences {tuple(ids.shape)} (accepted: (num, 2L) with L ≥ 2 and both halves equal)")
    else:
        ids = repeated_random_sequences(vocab_size or model.config.vocab_size, length, num, seed, token_ids)
    out = model(ids, output_attentions=True)
    losses = per_token_loss(out.logits, ids)  # entry t predicts token t + 1
    # token i (0-based) is predicted by entry i − 1: first copy tokens 1 … L−1, second copy tokens L+1 … 2L−1
    first = losses[:, 0:length - 1].mean()
    second = losses[:, length:2 * length - 1].mean()
    return InductionScores(prefix_matching_score(out.attentions, length), float(second), float(first))
