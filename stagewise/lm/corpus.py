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

Modules: this one holds the settings (:class:`CorpusConfig`), the generator they drive
(:func:`generate_documents`) and the tokenized, classified sequences (:func:`make_corpus`, :func:`check_corpus`);
:mod:`stagewise.lm.synthetic` writes the words, names and documents, :mod:`stagewise.lm.bpe` is the tokenizer and
:mod:`stagewise.lm.text` holds the token classes and reads a reader's text. The names of the first two that this
module used to define are re-exported here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedTokenizerFast

from stagewise.config import Interval, OneOf, Span, check_fields
from stagewise.lm.bpe import (  # noqa: F401 (EOS … UNK: re-exported)
    EOS,
    MIN_MERGES,
    PRE_TOKENIZER,
    SPECIAL_TOKENS,
    UNK,
    check_vocab_size,
    min_vocab_size,
    train_tokenizer,
)
from stagewise.lm.synthetic import (  # noqa: F401 (CODAS … VOWELS: re-exported)
    CODAS,
    DELIMITERS,
    GENERATED_ALPHABET,
    ONSETS,
    VOWELS,
    lexicon,
    nest_delimiters,
    random_word,
    render_document,
    repeated_name_sequences,
)
from stagewise.lm.text import (
    CLASS_NAMES,
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
    delimiter_prob:     probability that a line holds a bracketed or quoted group of 1–3 words (with
                        ``paired_delimiters``: that a line opens a group, which may hold a nested one).
    paired_delimiters:  False (the default): each group sits in one line and closes within three words. True:
                        groups close 2–8 words after they open (possibly on a later line; more when the repeated
                        span lands inside), and half of those of three or more items hold a nested group of another kind, so
                        the closer at a position is set by the innermost opener still open, often many tokens back
                        (:func:`stagewise.lm.synthetic.nest_delimiters`).
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
    paired_delimiters: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        count, probability = Interval(ge=1, integer=True), Interval(ge=0, le=1)
        check_fields(self, {
            **dict.fromkeys(("num_documents", "lexicon_size", "successors"), count),
            **dict.fromkeys(("syllables", "lines", "words_per_line", "span_words", "name_syllables"), Span(ge=1)),
            **dict.fromkeys(("ngram_prob", "indent_prob", "delimiter_prob", "repeat_prob"), probability),
            "zipf_exponent": Interval(ge=0),
            "span_source": OneOf("names", "lexicon"),
            "paired_delimiters": OneOf(True, False),
            "seed": Interval(ge=0, integer=True),
        })


# ------------------------------------------------------------------------------------------------------------
# Generation


def generate_documents(config: CorpusConfig = CorpusConfig()) -> list[AnnotatedText]:
    """The annotated documents of the corpus; the same config (seed included) gives the same documents."""
    rng = random.Random(config.seed)
    words = lexicon(config.lexicon_size, config.syllables, rng)
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
            if not config.paired_delimiters and rng.random() < config.delimiter_prob:
                left, right = rng.choice(DELIMITERS)
                start = rng.randrange(len(line))
                stop = min(len(line), start + rng.randint(1, 3))
                line[start:stop] = [("open", left), *line[start:stop], ("close", right)]
            lines.append(line)
        if config.paired_delimiters:
            lines = nest_delimiters(lines, config.delimiter_prob, rng)
        span = None
        if rng.random() < config.repeat_prob:
            # two copies of a uniform random run of words, inserted at two random word slots (random offset)
            length = rng.randint(*config.span_words)
            if config.span_source == "names":
                span = [random_word(rng, config.name_syllables) for _ in range(length)]
            else:
                span = [words[rng.randrange(len(words))] for _ in range(length)]
            slots = [(i, j) for i, line in enumerate(lines) for j in range(len(line) + 1)]
            first, second = sorted(rng.sample(slots, 2)) if len(slots) > 1 else (slots[0], slots[0])
            for i, j in (second, first):  # the later slot first, so the earlier indices stay valid
                lines[i].insert(j, "span")
        indents = [rng.choice(("  ", "    ")) if rng.random() < config.indent_prob else "" for _ in lines]
        documents.append(render_document(lines, indents, words, span))
    return documents


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
            check_vocab_size(vocab_size, None)
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
