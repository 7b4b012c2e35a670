"""Data for your own model: token sequences (JSONL of ``input_ids``, a ``datasets.Dataset``, a DataLoader, text files
through the checkpoint's tokenizer, tensors or lists) with attention masks and variable lengths, or (inputs,
labels) tensors for a classifier.

Sequences are stored right-padded with a mask: a causal model's real tokens never attend to later positions, so
right padding leaves their losses exactly as without it, and the padded positions are masked out of every loss.
A left-padded mask (padding first, as some tokenizers make it) is moved to the right; a mask with holes is refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["Sequences", "load_data"]


@dataclass
class Sequences:
    """Token sequences, right-padded: ``input_ids`` (n, L) long and ``attention_mask`` (n, L) long (1 real, 0 pad)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def lengths(self) -> torch.Tensor:
        return self.attention_mask.sum(1)

    def batch(self) -> dict[str, torch.Tensor]:
        """The sampler's batch: a dict of both tensors (mini-batches index them together)."""
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask}

    def padded_to(self, length: int) -> Sequences:
        extra = length - self.input_ids.shape[1]
        if extra <= 0:
            return self
        return Sequences(torch.nn.functional.pad(self.input_ids, (0, extra)),
                         torch.nn.functional.pad(self.attention_mask, (0, extra)))

    @staticmethod
    def concat(parts: Sequence[Sequences]) -> Sequences:
        width = max(p.input_ids.shape[1] for p in parts)
        parts = [p.padded_to(width) for p in parts]
        return Sequences(torch.cat([p.input_ids for p in parts]), torch.cat([p.attention_mask for p in parts]))


def _sequences(rows: Sequence[Sequence[int]], masks: Sequence[Sequence[int]] | None, name: str) -> Sequences:
    """Right-padded tensors from lists of ids (and masks); the real tokens of each row kept in order."""
    kept = []
    for k, ids in enumerate(rows):
        ids = [int(t) for t in ids]
        if masks is not None:
            mask = [int(m) for m in masks[k]]
            if len(mask) != len(ids):
                raise ValueError(f"{name}: row {k} has {len(ids)} input_ids but {len(mask)} attention_mask entries")
            real = [t for t, m in zip(ids, mask) if m]
            ones = [i for i, m in enumerate(mask) if m]
            if ones and ones[-1] - ones[0] + 1 != len(ones):
                raise ValueError(f"{name}: row {k}'s attention_mask has holes (0 between 1s); accepted: one run of "
                                 "real tokens, padded on the left or the right")
            ids = real
        if len(ids) < 2:
            raise ValueError(f"{name}: row {k} has {len(ids)} real token(s); a sequence needs at least 2 (the loss "
                             "is that of predicting each token from those before it)")
        if min(ids) < 0:
            raise ValueError(f"{name}: row {k} holds a negative token id ({min(ids)})")
        kept.append(ids)
    if not kept:
        raise ValueError(f"{name} holds no sequences")
    width = max(len(r) for r in kept)
    ids = torch.zeros(len(kept), width, dtype=torch.long)
    mask = torch.zeros(len(kept), width, dtype=torch.long)
    for k, r in enumerate(kept):
        ids[k, :len(r)] = torch.tensor(r)
        mask[k, :len(r)] = 1
    return Sequences(ids, mask)


def _rows_of(table: Mapping[str, Any], name: str) -> Sequences:
    if "input_ids" not in table:
        raise ValueError(f"{name}: no 'input_ids' (found {sorted(table)}); accepted: rows with input_ids and, "
                         "optionally, attention_mask")
    ids = table["input_ids"]
    masks = table.get("attention_mask")
    if isinstance(ids, (torch.Tensor, np.ndarray)):
        ids = torch.as_tensor(ids)
        if ids.dim() != 2:
            raise ValueError(f"{name}: input_ids must be (sequence, token); got shape {tuple(ids.shape)}")
        ids = ids.tolist()
    if isinstance(masks, (torch.Tensor, np.ndarray)):
        masks = torch.as_tensor(masks).tolist()
    return _sequences(list(ids), None if masks is None else list(masks), name)


def _read_jsonl(path: Path, name: str) -> Sequences:
    ids, masks, with_mask = [], [], []
    with path.open(encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as error:
                raise ValueError(f"{name}: {path} line {line_number} is not JSON ({error})") from None
            if not isinstance(row, dict) or "input_ids" not in row:
                raise ValueError(f"{name}: {path} line {line_number} has no 'input_ids' (accepted: one JSON object "
                                 'per line, {"input_ids": [...], "attention_mask": [...]} with the mask optional)')
            ids.append(row["input_ids"])
            masks.append(row.get("attention_mask", [1] * len(row["input_ids"])))
            with_mask.append("attention_mask" in row)
    return _sequences(ids, masks if any(with_mask) else None, f"{name} ({path})")


def _tokenize(lines: list[str], tokenizer: Any, max_length: int | None, name: str) -> Sequences:
    if tokenizer is None:
        raise ValueError(f"{name}: a text file needs a tokenizer: the checkpoint folders hold none (save it with "
                         "tokenizer.save_pretrained into a checkpoint folder) and none was passed (tokenizer=...)")
    rows = []
    for line in lines:
        ids = tokenizer(line)["input_ids"] if callable(tokenizer) else tokenizer.encode(line)
        rows.append(list(ids)[:max_length] if max_length else list(ids))
    return _sequences([r for r in rows if len(r) >= 2] or rows, None, name)


def _from_loader(loader: Iterable, name: str) -> Sequences | tuple:
    parts, pairs = [], []
    for batch in loader:
        if isinstance(batch, Mapping):
            parts.append(_rows_of(batch, name))
        elif isinstance(batch, (tuple, list)) and all(isinstance(v, torch.Tensor) for v in batch):
            pairs.append(tuple(batch))
        elif isinstance(batch, torch.Tensor):
            parts.append(_rows_of({"input_ids": batch}, name))
        else:
            raise TypeError(f"{name}: the DataLoader yields {type(batch).__name__}; accepted: dicts with input_ids "
                            "(and attention_mask), id tensors, or (inputs, labels) tuples of tensors")
    if pairs:
        return tuple(torch.cat([p[k] for p in pairs]) for k in range(len(pairs[0])))
    if not parts:
        raise ValueError(f"{name}: the DataLoader yielded no batches")
    return Sequences.concat(parts)


def load_data(source: Any, name: str = "data", *, tokenizer: Any = None,
              max_length: int | None = None) -> Sequences | tuple[torch.Tensor, ...]:
    """``source`` as :class:`Sequences` (token data) or a tuple of tensors (a classifier's inputs and labels).

    Accepted: a ``.jsonl`` file (one ``{"input_ids": [...], "attention_mask": [...]}`` per line, the mask
    optional); a ``.txt`` file (one sequence per line, through ``tokenizer``, cut at ``max_length``); a
    ``datasets.Dataset`` (or anything with ``column_names`` and column access) with an ``input_ids`` column; a
    dict of ``input_ids`` / ``attention_mask``; a ``torch.utils.data.DataLoader`` (or any iterable of such
    batches); a (sequence, token) integer tensor or a list of id lists; or a tuple (inputs, labels) of tensors.
    ``name`` is the argument's name in error messages.
    """
    if isinstance(source, Sequences):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{name}: no file {path} (accepted: .jsonl of input_ids, or .txt through the "
                                    "checkpoint's tokenizer)")
        if path.suffix in (".jsonl", ".json"):
            return _read_jsonl(path, name)
        if path.suffix == ".txt":
            lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            return _tokenize(lines, tokenizer, max_length, f"{name} ({path})")
        raise ValueError(f"{name}: {path} has suffix {path.suffix!r}; accepted: .jsonl (input_ids) or .txt (text)")
    if isinstance(source, tuple) and source and all(isinstance(v, (torch.Tensor, np.ndarray)) for v in source):
        return tuple(torch.as_tensor(v) for v in source)
    if hasattr(source, "column_names") and hasattr(source, "__getitem__"):  # a datasets.Dataset, duck-typed
        columns = list(source.column_names)
        table = {k: source[k] for k in ("input_ids", "attention_mask") if k in columns}
        if "input_ids" not in table:
            raise ValueError(f"{name}: the Dataset has columns {columns}; it needs input_ids (tokenize it first: "
                             "dataset.map(lambda row: tokenizer(row['text'])))")
        return _rows_of(table, name)
    if isinstance(source, Mapping):
        return _rows_of(source, name)
    if isinstance(source, (torch.Tensor, np.ndarray)):
        tensor = torch.as_tensor(source)
        if tensor.is_floating_point() or tensor.dtype == torch.bool or tensor.dim() != 2:
            raise TypeError(f"{name}: a {tensor.dtype} tensor of shape {tuple(tensor.shape)}; token data is a "
                            "(sequence, token) integer tensor. A classifier's data is a tuple (inputs, labels)")
        return _rows_of({"input_ids": tensor}, name)
    if isinstance(source, list) and source and all(isinstance(r, (list, tuple)) for r in source):
        return _sequences(source, None, name)
    if isinstance(source, Iterable):
        return _from_loader(source, name)
    raise TypeError(f"{name}: {type(source).__name__} (accepted: a .jsonl or .txt path, a datasets.Dataset, a "
                    "DataLoader, a dict or tensor of input_ids, a list of id lists, or a tuple (inputs, labels))")
