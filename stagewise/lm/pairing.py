"""Delimiter pairing across checkpoints: does the model close what was opened, with the right closer?

A closer can be predicted in two parts: *that* a group closes here (its length is random in the generated corpus,
so only partly predictable) and *which* closer it takes (set by the innermost group still open, often many tokens
back). :func:`pairing_scores` measures the second part alone: at every closer whose opener lies earlier in the
same sequence, whether the model ranks the right closer first among the closer tokens ( ``)`` ``]`` ``}`` ``"`` ).
Chance is one over the number of closer tokens. *Nested* closers are those whose opener is not the latest opener
before them (an inner group opened and closed in between): a model that pairs each closer with the latest opener
gets them wrong; it has to skip the closed inner group. :func:`track_pairing` reads these at every checkpoint of a
run (:class:`PairingTrajectory`, whose :meth:`~PairingTrajectory.pairing_step` dates when pairing is learned).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from stagewise.curves import half_rise_step
from stagewise.lm.model import per_token_loss
from stagewise.lm.synthetic import DELIMITERS
from stagewise.lm.train import TrainedRun

# the closing characters a token may hold (those of the generated corpus and of a reader's text)
CLOSING_CHARS = frozenset(')]}"”’»›')

__all__ = ["PairingTrajectory", "closer_ids", "matched_closers", "pairing_scores", "track_pairing"]


def closer_ids(tokenizer) -> torch.Tensor:
    """Ids of the tokens that are exactly one closing delimiter of the generated corpus ( ) ] } " ), in that order."""
    vocab = tokenizer.get_vocab()
    return torch.tensor([vocab[right] for _, right in DELIMITERS if right in vocab], dtype=torch.long)


def matched_closers(ids: torch.Tensor, left: torch.Tensor, right: torch.Tensor, tokenizer
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(matched, nested) bool masks over (sequence, n_ctx) token ids.

    left, right: the left_delimiter and right_delimiter class masks (the same shape). Each sequence is read from
    its start with a stack of open delimiters (a left-delimiter token opens one, a right-delimiter token closes
    one per closing character it holds; an end-of-text token empties the stack): matched marks a closer token that is exactly one closer character (:func:`closer_ids`) and closes an
    opener of the same sequence; nested marks those of them whose opener is not the latest opener before them.
    """
    if not (ids.shape == left.shape == right.shape and ids.dim() == 2):
        raise ValueError(f"ids {tuple(ids.shape)}, left {tuple(left.shape)} and right {tuple(right.shape)}: "
                         "one (sequence, n_ctx) shape")
    texts = tokenizer.convert_ids_to_tokens(ids.flatten().tolist())
    singles = set(closer_ids(tokenizer).tolist())
    matched = torch.zeros_like(right, dtype=torch.bool)
    nested = torch.zeros_like(matched)
    width = ids.shape[1]
    for i in range(ids.shape[0]):
        stack: list[int] = []  # positions of the open delimiters, innermost last
        latest = -1  # position of the latest opener
        for t in range(width):
            token = int(ids[i, t])
            if token == tokenizer.eos_token_id:
                stack.clear()
                continue
            if right[i, t]:
                for _ in range(max(1, sum(ch in CLOSING_CHARS for ch in texts[i * width + t]))):
                    opened = stack.pop() if stack else None
                    if opened is not None and token in singles:
                        matched[i, t] = True
                        nested[i, t] = opened != latest
            if left[i, t]:
                stack.append(t)
                latest = t
    return matched, nested


@dataclass
class PairingTrajectory:
    """Pairing measurements at each checkpoint of a run.

    steps:           (K,) training steps.
    accuracy:        (K,) fraction of matched closers at which the right closer is ranked first among the closers.
    nested_accuracy: (K,) the same over nested closers only (NaN when there are none).
    closer_loss:     (K,) mean loss (nats) on the matched closer tokens (that and which closer).
    opener_loss:     (K,) mean loss on the left-delimiter tokens.
    chance:          one over the number of closer tokens.
    counts:          (matched closers, nested closers) scored.
    """

    steps: np.ndarray
    accuracy: np.ndarray
    nested_accuracy: np.ndarray
    closer_loss: np.ndarray
    opener_loss: np.ndarray
    chance: float
    counts: tuple[int, int]

    def pairing_step(self, margin: float = 0.2) -> int | None:
        """The step at which closer accuracy crosses half-way from its start to its maximum
        (:func:`stagewise.curves.half_rise_step`), or None if it never gets ``margin`` above chance."""
        if not self.accuracy.max() >= self.chance + margin:
            return None
        step = half_rise_step(self.steps, self.accuracy)
        return None if step is None else int(round(step))


def pairing_scores(model, ids: torch.Tensor, matched: torch.Tensor, nested: torch.Tensor, left: torch.Tensor,
                   candidates: torch.Tensor) -> dict[str, float]:
    """accuracy, nested_accuracy, closer_loss and opener_loss of ``model`` on ``ids`` (see :class:`PairingTrajectory`)."""
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    losses = per_token_loss(logits, ids)  # entry t is token t + 1
    among = logits[:, :-1, candidates].argmax(-1)  # the closer ranked first, predicting token t + 1
    right_one = candidates[among] == ids[:, 1:]
    m, n, lft = matched[:, 1:], nested[:, 1:], left[:, 1:]
    mean = lambda x, mask: float(x[mask].float().mean()) if mask.any() else float("nan")  # noqa: E731
    return {"accuracy": mean(right_one, m), "nested_accuracy": mean(right_one, n), "closer_loss": mean(losses, m),
            "opener_loss": mean(losses, lft)}


def track_pairing(run: TrainedRun, ids: torch.Tensor, left: torch.Tensor, right: torch.Tensor, tokenizer,
                  steps: Sequence[int] | None = None) -> PairingTrajectory:
    """:func:`pairing_scores` at each checkpoint of ``run`` (default: all saved) on held-out ``ids``.

    left, right: the left_delimiter and right_delimiter masks of ``ids``. Raises ValueError when no closer of
    ``ids`` closes an opener of its sequence or the vocabulary has fewer than two closer tokens.
    """
    candidates = closer_ids(tokenizer)
    matched, nested = matched_closers(ids, left, right, tokenizer)
    if len(candidates) < 2 or not matched[:, 1:].any():
        raise ValueError(f"{int(matched.sum())} matched closers and {len(candidates)} closer tokens: pairing needs "
                         "held-out text whose closers close openers of the same sequence, and ≥ 2 closer tokens")
    chosen = list(run.checkpoint_steps if steps is None else steps)
    rows = [pairing_scores(run.load(step), ids, matched, nested, left, candidates) for step in chosen]
    column = lambda key: np.array([r[key] for r in rows])  # noqa: E731
    return PairingTrajectory(np.array(chosen), column("accuracy"), column("nested_accuracy"), column("closer_loss"),
                             column("opener_loss"), 1.0 / len(candidates),
                             (int(matched[:, 1:].sum()), int(nested[:, 1:].sum())))
