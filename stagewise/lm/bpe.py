"""The corpus' BPE tokenizer (HF tokenizers): every character kept, and a floor on the number of merges."""

from __future__ import annotations

from typing import Sequence

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from stagewise.lm.synthetic import GENERATED_ALPHABET
from stagewise.lm.text import CorpusError

__all__ = ["EOS", "MIN_MERGES", "PRE_TOKENIZER", "SPECIAL_TOKENS", "UNK", "check_vocab_size", "min_vocab_size",
           "train_tokenizer"]

EOS = "<|endoftext|>"
UNK = "<unk>"
SPECIAL_TOKENS = (EOS, UNK)
# A trained vocabulary holds every character of its text, the special tokens and then its merges; below this many
# merges (sub-word tokens) a vocabulary is refused rather than silently exceeded.
MIN_MERGES = 32
# GPT-2's split without contractions: a word or a run of punctuation takes its leading space; whitespace before a
# word keeps one space for the word, so "\n    foo" becomes "\n   " (formatting) and " foo".
PRE_TOKENIZER = r" ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def min_vocab_size(texts: Sequence[str] | None = None) -> int:
    """Smallest vocabulary accepted for ``texts``: their distinct characters + 2 special tokens + MIN_MERGES.

    texts=None: the generated corpus (the characters its generator can write).
    """
    alphabet = GENERATED_ALPHABET if texts is None else set().union(*map(set, texts))
    return len(alphabet) + len(SPECIAL_TOKENS) + MIN_MERGES


def check_vocab_size(vocab_size: int, texts: Sequence[str] | None) -> None:
    """Raise :class:`CorpusError` when ``vocab_size`` is below :func:`min_vocab_size` of ``texts``."""
    smallest = min_vocab_size(texts)
    if vocab_size < smallest:
        chars = smallest - len(SPECIAL_TOKENS) - MIN_MERGES
        raise CorpusError("vocab_size", f"vocab_size = {vocab_size} is too small for this text: its {chars} distinct "
                                        f"characters, {len(SPECIAL_TOKENS)} special tokens and at least {MIN_MERGES} "
                                        f"BPE merges (sub-word tokens) need {smallest}; accepted values are integers "
                                        f">= {smallest}")


def train_tokenizer(texts: Sequence[str], vocab_size: int = 256) -> PreTrainedTokenizerFast:
    """A BPE tokenizer trained on ``texts`` with HF tokenizers, as a transformers tokenizer.

    Pre-tokenization keeps every character (decode(encode(text)) == text); ``<|endoftext|>`` (id 0) separates
    documents and ``<unk>`` (id 1) stands for characters never seen in training. A ``vocab_size`` below
    :func:`min_vocab_size` raises :class:`CorpusError` (the trainer would keep every character and merge nothing).
    Save it with the run through ``save_pretrained``; reopen with ``PreTrainedTokenizerFast.from_pretrained``.
    """
    texts = list(texts)
    check_vocab_size(vocab_size, texts)
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(PRE_TOKENIZER), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, UNK], show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS, unk_token=UNK, pad_token=EOS,
                                   clean_up_tokenization_spaces=False)
