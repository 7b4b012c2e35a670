"""A text-like corpus the project generates (nothing is downloaded), its BPE tokenizer and per-token classes.

Documents are lines of words separated by spaces. Words are made of syllables, so the tokenizer splits rarer
words into several sub-tokens; word order follows a sparse bigram table (n-gram structure) over a Zipf-distributed
lexicon; some lines are indented; some groups of words are wrapped in brackets or quotes (delimiters). Most
documents also hold a *repeated span*: a run of fresh random names (like rare proper names; high entropy, so it can
be predicted only by copying) that appears twice, the second time at a random later position. Random offsets matter:
at a fixed offset a model learns a positional copy instead of an induction head.

Every token gets the classes of the paper's §5 (after Baker et al. 2025), from the generator's own record of what
each character is, never from a guess about the text. A token may be in several classes or in none:

    word_start       covers the first character of a word
    word_part        lies inside a word, covering neither its first nor its last character
    word_end         covers the last character of a word
    left_delimiter   holds an opening bracket or quote
    right_delimiter  holds a closing bracket or quote
    formatting       is whitespace holding a newline or indentation
    induction        the B of "A B … A B": a token of a span's second copy whose predecessor is in that copy
                     too, and whose first occurrence lies in the same sequence after the same token A

A reader's own plain-text file can replace the generated text (``make_corpus(text_file=…)``): its classes are
then read from the characters, and its induction tokens end runs of tokens repeated within a sequence beyond chance
(:mod:`stagewise.lm.text` states the rule). :func:`check_corpus` refuses, before any training, a file that cannot
be read as text or is too short, and a vocabulary too small for BPE merges.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from stagewise.config import check_fields, is_int, is_number
from stagewise.lm.text import (
    CLASS_NAMES,
    FORMAT,
    LEFT,
    OTHER,
    RIGHT,
    WORD,
    AnnotatedText,
    CorpusError,
    annotate_plain_text,
    core_start,
    read_documents,
    repeated_ngrams,
    token_classes,
)

__all__ = [
    "CLASS_NAMES",
    "AnnotatedText",
    "Corpus",
    "CorpusConfig",
    "CorpusError",
    "annotate_plain_text",
    "check_corpus",
    "generate_documents",
    "make_corpus",
    "min_vocab_size",
    "repeated_name_sequences",
    "token_classes",
    "train_tokenizer",
]

EOS = "<|endoftext|>"
UNK = "<unk>"
SPECIAL_TOKENS = (EOS, UNK)
# A trained vocabulary holds every character of its text, the special tokens and then its merges; below this many
# merges (sub-word tokens) a vocabulary is refused rather than silently exceeded.
MIN_MERGES = 32
# GPT-2's split without contractions: a word or a run of punctuation takes its leading space; whitespace before a
# word keeps one space for the word, so "\n    foo" becomes "\n   " (formatting) and " foo".
PRE_TOKENIZER = r" ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

DELIMITERS = (("(", ")"), ("[", "]"), ("{", "}"), ('"', '"'))


@dataclass(frozen=True)
class CorpusConfig:
    """Settings of the generated corpus (every count is ≥ 1, every probability in [0, 1]).

    num_documents:      documents generated.
    lexicon_size:       distinct words.
    syllables:          (min, max) syllables per word.
    zipf_exponent:      s in the word frequencies ∝ rank^(−s) (≥ 0).
    successors:         likely next words of each word (the bigram table).
    ngram_prob:         probability that the next word comes from the bigram table (else a Zipf draw).
    lines:              (min, max) lines per document.
    words_per_line:     (min, max) words per line.
    indent_prob:        probability that a line is indented (2 or 4 spaces).
    delimiter_prob:     probability that a line holds a bracketed or quoted group of 1–3 words.
    repeat_prob:        probability that a document holds a repeated span.
    span_words:         (min, max) words in a repeated span.
    name_syllables:     (min, max) syllables of each fresh name in a span.
    span_source:        "names": each span word is a fresh random name (``name_syllables`` syllables), seen nowhere
                        else (high entropy: only copying predicts the second copy); "lexicon": drawn uniformly from
                        the lexicon.
    seed:               seed of everything random here (≥ 0).
    """

    num_documents: int = 10000
    lexicon_size: int = 300
    syllables: tuple[int, int] = (1, 3)
    zipf_exponent: float = 1.0
    successors: int = 3
    ngram_prob: float = 0.8
    lines: tuple[int, int] = (1, 2)
    words_per_line: tuple[int, int] = (2, 5)
    indent_prob: float = 0.3
    delimiter_prob: float = 0.4
    repeat_prob: float = 0.9
    span_words: tuple[int, int] = (3, 5)
    name_syllables: tuple[int, int] = (1, 2)
    span_source: str = "names"
    seed: int = 0

    def __post_init__(self) -> None:
        def span(value) -> bool:
            return (isinstance(value, tuple) and len(value) == 2 and all(is_int(v, 1) for v in value)
                    and value[0] <= value[1])

        check_fields(self, [
            *((name, is_int(getattr(self, name), 1), "an integer ≥ 1")
              for name in ("num_documents", "lexicon_size", "successors")),
            *((name, span(getattr(self, name)), "(min, max) integers with 1 ≤ min ≤ max")
              for name in ("syllables", "lines", "words_per_line", "span_words", "name_syllables")),
            *((name, is_number(getattr(self, name)) and 0 <= getattr(self, name) <= 1, "a number in [0, 1]")
              for name in ("ngram_prob", "indent_prob", "delimiter_prob", "repeat_prob")),
            ("zipf_exponent", is_number(self.zipf_exponent) and self.zipf_exponent >= 0, "a finite number ≥ 0"),
            ("span_source", self.span_source in ("names", "lexicon"), "'names' or 'lexicon'"),
            ("seed", is_int(self.seed, 0), "an integer ≥ 0"),
        ])


# ------------------------------------------------------------------------------------------------------------
# Generation


ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "sh", "th", "br", "st", "kl"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ou"]
CODAS = ["", "", "", "n", "r", "s", "t", "m"]


def _random_word(rng: random.Random, syllables: tuple[int, int]) -> str:
    return "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(rng.randint(*syllables)))


def _lexicon(config: CorpusConfig, rng: random.Random) -> list[str]:
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < config.lexicon_size:
        word = _random_word(rng, config.syllables)
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


class _Writer:
    """Builds a text piece by piece while recording what every character is."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.kinds: list[int] = []
        self.starts: list[bool] = []
        self.ends: list[bool] = []

    def __len__(self) -> int:
        return len(self.kinds)

    def add(self, text: str, kind: int) -> None:
        self.parts.append(text)
        self.kinds += [kind] * len(text)
        self.starts += [kind == WORD and i == 0 for i in range(len(text))]
        self.ends += [kind == WORD and i == len(text) - 1 for i in range(len(text))]

    def result(self, copies: list[tuple[int, int, int]]) -> AnnotatedText:
        return AnnotatedText("".join(self.parts), np.array(self.kinds, dtype=np.int8), np.array(self.starts, bool),
                             np.array(self.ends, bool), copies)


# every character the generator can write (the alphabet a tokenizer trained on the generated corpus holds)
GENERATED_ALPHABET = frozenset("".join(ONSETS + VOWELS + CODAS) + " \n" + "".join(a + b for a, b in DELIMITERS))


def generate_documents(config: CorpusConfig = CorpusConfig()) -> list[AnnotatedText]:
    """The annotated documents of the corpus; the same config (seed included) gives the same documents."""
    rng = random.Random(config.seed)
    words = _lexicon(config, rng)
    weights = [1.0 / (rank + 1) ** config.zipf_exponent for rank in range(len(words))]
    table = [rng.choices(range(len(words)), weights, k=config.successors) for _ in words]

    def next_word(previous: int | None) -> int:
        if previous is not None and rng.random() < config.ngram_prob:
            return rng.choice(table[previous])
        return rng.choices(range(len(words)), weights)[0]

    documents = []
    for _ in range(config.num_documents):
        # a document is a list of lines; a line is a list of items: a word index, ("open"/"close", char) or "span"
        lines: list[list] = []
        previous = None
        for _ in range(rng.randint(*config.lines)):
            line: list = []
            for _ in range(rng.randint(*config.words_per_line)):
                previous = next_word(previous)
                line.append(previous)
            if rng.random() < config.delimiter_prob:
                left, right = rng.choice(DELIMITERS)
                start = rng.randrange(len(line))
                stop = min(len(line), start + rng.randint(1, 3))
                line[start:stop] = [("open", left), *line[start:stop], ("close", right)]
            lines.append(line)
        span = None
        if rng.random() < config.repeat_prob:
            # two copies of a uniform random run of words, inserted at two random word slots (random offset)
            length = rng.randint(*config.span_words)
            if config.span_source == "names":
                span = [_random_word(rng, config.name_syllables) for _ in range(length)]
            else:
                span = [words[rng.randrange(len(words))] for _ in range(length)]
            slots = [(i, j) for i, line in enumerate(lines) for j in range(len(line) + 1)]
            first, second = sorted(rng.sample(slots, 2)) if len(slots) > 1 else (slots[0], slots[0])
            for i, j in (second, first):  # the later slot first, so the earlier indices stay valid
                lines[i].insert(j, "span")
        indents = [rng.choice(("  ", "    ")) if rng.random() < config.indent_prob else "" for _ in lines]
        documents.append(_render(lines, indents, words, span))
    return documents


def _render(lines: list[list], indents: list[str], words: list[str], span: list[str] | None) -> AnnotatedText:
    out = _Writer()
    span_starts = []
    span_length = 0
    for number, (line, indent) in enumerate(zip(lines, indents)):
        if number:
            out.add("\n", FORMAT)
        if indent:
            out.add(indent, FORMAT)
        glue = False  # no space after an opening delimiter or at the start of a line
        for item in line:
            is_close = isinstance(item, tuple) and item[0] == "close"
            if glue and not is_close:
                out.add(" ", OTHER)
            if item == "span":
                span_starts.append(len(out))
                for k, w in enumerate(span):
                    if k:
                        out.add(" ", OTHER)
                    out.add(w, WORD)
                span_length = len(out) - span_starts[-1]
            elif isinstance(item, tuple):
                out.add(item[1], LEFT if item[0] == "open" else RIGHT)
            else:
                out.add(words[item], WORD)
            glue = not (isinstance(item, tuple) and item[0] == "open")
    copies = [(span_starts[0], span_starts[1], span_length)] if len(span_starts) == 2 else []
    return out.result(copies)


# ------------------------------------------------------------------------------------------------------------
# Tokenizer


def min_vocab_size(texts: Sequence[str] | None = None) -> int:
    """Smallest vocabulary accepted for ``texts``: their distinct characters + 2 special tokens + MIN_MERGES.

    texts=None: the generated corpus (the characters its generator can write).
    """
    alphabet = GENERATED_ALPHABET if texts is None else set().union(*map(set, texts))
    return len(alphabet) + len(SPECIAL_TOKENS) + MIN_MERGES


def _check_vocab_size(vocab_size: int, texts: Sequence[str] | None) -> None:
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
    _check_vocab_size(vocab_size, texts)
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(PRE_TOKENIZER), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, UNK], show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS, unk_token=UNK, pad_token=EOS,
                                   clean_up_tokenization_spaces=False)


# ------------------------------------------------------------------------------------------------------------
# Token classes and sequences


@dataclass
class Corpus:
    """Token sequences with their classes.

    input_ids:   (sequence, n_ctx) token ids: documents joined by <|endoftext|>, cut into equal sequences.
    classes:     (class, sequence, n_ctx) bool membership, classes in the order of ``class_names`` (the layout
                 :func:`stagewise.influence.group_bif` takes).
    class_names: CLASS_NAMES.
    tokenizer:   the tokenizer that made the ids.
    documents:   the annotated source documents.
    """

    input_ids: torch.Tensor
    classes: torch.Tensor
    class_names: tuple[str, ...]
    tokenizer: PreTrainedTokenizerFast
    documents: list[AnnotatedText]


def make_corpus(
    config: CorpusConfig = CorpusConfig(),
    n_ctx: int = 64,
    vocab_size: int = 64,
    tokenizer: PreTrainedTokenizerFast | None = None,
    text_file: str | Path | None = None,
) -> Corpus:
    """Generate (or read), tokenize and classify a corpus.

    config:     the generated corpus' settings (ignored when ``text_file`` is given).
    n_ctx:      tokens per sequence; the remainder of the token stream is dropped.
    vocab_size: size of the BPE vocabulary trained when no ``tokenizer`` is given.
    tokenizer:  a tokenizer to reuse (e.g. the one saved with a run); None = train one on this text.
    text_file:  a reader's UTF-8 plain-text file, used instead of generated text; documents are its blank-line
                separated paragraphs (:func:`stagewise.lm.text.read_documents`).

    Raises :class:`CorpusError` naming the parameter for an unreadable, empty or too short text and a
    vocabulary too small for merges (:func:`check_corpus` makes the same checks without building the corpus).
    """
    if text_file is not None:
        documents = [annotate_plain_text(p) for p in read_documents(text_file)]
    else:
        documents = generate_documents(config)
    if tokenizer is None:
        tokenizer = train_tokenizer([d.text for d in documents], vocab_size)
    backend = tokenizer.backend_tokenizer
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    masks: list[np.ndarray] = []
    source: list[int] = []  # for each token in a second copy: the stream index of its first occurrence; else −1
    for doc in documents:
        encoding = backend.encode(doc.text, add_special_tokens=False)
        classes = token_classes(doc, encoding.offsets)
        first_token = {core_start(doc.text, s, e): len(ids) + t for t, (s, e) in enumerate(encoding.offsets)}
        for t, (s, e) in enumerate(encoding.offsets):
            src = -1
            for first, second, length in doc.copies or ():
                core = core_start(doc.text, s, e)
                if second <= core and e <= second + length:
                    src = first_token.get(core - (second - first), -1)
            source.append(src)
        ids += encoding.ids
        masks.append(classes)
        ids.append(eos)
        masks.append(np.zeros((len(CLASS_NAMES), 1), dtype=bool))
        source.append(-1)
    stream_classes = np.concatenate(masks, axis=1)
    stream_ids = np.array(ids)
    positions = np.arange(len(ids))
    if all(doc.copies is None for doc in documents):
        stream_classes[6] = repeated_ngrams(stream_ids, n_ctx, special=tokenizer.all_special_ids)
    else:
        # induction only where the first occurrence, and the token before it, lie in the same sequence,
        src = np.array(source)
        same = (src >= 0) & (src // n_ctx == positions // n_ctx) & (src % n_ctx >= 1)
        # and the first occurrence reads the same "A B" in tokens (a span after "(" starts with another A token)
        src_safe = np.maximum(src, 1)
        same &= (stream_ids[src_safe] == stream_ids) & (stream_ids[src_safe - 1] == np.roll(stream_ids, 1))
        stream_classes[6] &= same
    num = len(ids) // n_ctx
    if num == 0:
        raise CorpusError("text_file" if text_file is not None else "num_documents",
                          f"the {'text_file' if text_file is not None else 'generated corpus'} gives {len(ids)} "
                          f"tokens, fewer than one sequence of n_ctx = {n_ctx}")
    input_ids = torch.from_numpy(stream_ids[: num * n_ctx].reshape(num, n_ctx)).long()
    classes = torch.from_numpy(stream_classes[:, : num * n_ctx].reshape(len(CLASS_NAMES), num, n_ctx).copy())
    return Corpus(input_ids, classes, CLASS_NAMES, tokenizer, documents)


def check_corpus(text_file: str | Path | None = None, n_ctx: int = 64, vocab_size: int | None = 64,
                 min_sequences: int = 1) -> int | None:
    """Check a corpus' settings before any training; raise :class:`CorpusError` naming the parameter to change.

    text_file: a reader's file (None: the generated corpus, whose length this does not check). vocab_size: the
    BPE vocabulary :func:`make_corpus` will train, or None when it is given a tokenizer (e.g. a hub model's).
    min_sequences: sequences of ``n_ctx`` tokens the text must give. Returns the number of sequences the file
    gives with that vocabulary (trains the tokenizer: fast, Rust), or None when it is not known here.
    """
    if text_file is None:
        if vocab_size is not None:
            _check_vocab_size(vocab_size, None)
        return None
    documents = read_documents(text_file)
    size = sum(len(d.encode("utf-8")) for d in documents)
    need = min_sequences * n_ctx
    if vocab_size is None:  # any tokenizer gives at most one token per byte, plus one <|endoftext|> per document
        tokens, known = size + len(documents), False
    else:
        backend = train_tokenizer(documents, vocab_size).backend_tokenizer
        tokens = sum(len(e.ids) for e in backend.encode_batch(documents, add_special_tokens=False)) + len(documents)
        known = True
    if tokens < need:
        kilobytes = need * size / tokens / 1000
        raise CorpusError("text_file", f"text_file = {str(text_file)!r} is too short: its {size} bytes give "
                                       f"{'' if known else 'at most '}{tokens} tokens, {tokens // n_ctx} sequences of "
                                       f"n_ctx = {n_ctx}; accepted is a text of at least {min_sequences} sequences "
                                       f"({need} tokens, about {kilobytes:.1f} kB of text like this one), or a "
                                       "smaller n_ctx")
    return tokens // n_ctx if known else None


def repeated_name_sequences(tokenizer, length: int, num: int, seed: int = 0,
                            syllables: tuple[int, int] = (1, 2)) -> torch.Tensor:
    """``num`` sequences [r_1 … r_L, r_1 … r_L] whose copies are L tokens of fresh random names: (num, 2·length).

    Random like the spans of :func:`repeated_random_sequences`, but written in the generated corpus' own style
    (names of ``syllables`` syllables separated by spaces), so a model trained on that corpus sees familiar
    tokens: the first copy costs what an unpredictable name costs, the second what copying leaves.
    """
    if not (isinstance(length, int) and length >= 2 and isinstance(num, int) and num >= 1):
        raise ValueError(f"length = {length!r}, num = {num!r} (accepted: integers, length ≥ 2 and num ≥ 1)")
    rng = random.Random(seed)
    backend = tokenizer.backend_tokenizer
    rows = []
    for _ in range(num):
        ids: list[int] = []
        while len(ids) < length:
            ids += backend.encode(" " + _random_word(rng, syllables), add_special_tokens=False).ids
        rows.append(ids[:length] * 2)
    return torch.tensor(rows, dtype=torch.long)

