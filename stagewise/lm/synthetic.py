"""The building blocks of the generated corpus' text: syllables, words and names, and documents written with a
record of what every character is. :class:`~stagewise.lm.corpus.CorpusConfig` and
:func:`~stagewise.lm.corpus.generate_documents` decide what to write; this module writes it, and
:func:`repeated_name_sequences` writes probe sequences in the same style.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from stagewise.lm.text import FORMAT, LEFT, OTHER, RIGHT, WORD, AnnotatedText

__all__ = ["CODAS", "DELIMITERS", "GENERATED_ALPHABET", "GROUP_ITEMS", "NEST_PROB", "ONSETS", "VOWELS", "lexicon",
           "nest_delimiters", "random_word", "render_document", "repeated_name_sequences"]

DELIMITERS = (("(", ")"), ("[", "]"), ("{", "}"), ('"', '"'))
ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "sh", "th", "br", "st", "kl"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ou"]
CODAS = ["", "", "", "n", "r", "s", "t", "m"]


def random_word(rng: random.Random, syllables: tuple[int, int]) -> str:
    """A word of ``syllables`` = (min, max) random syllables (onset, vowel, coda)."""
    return "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(rng.randint(*syllables)))


def lexicon(size: int, syllables: tuple[int, int], rng: random.Random) -> list[str]:
    """``size`` distinct random words of ``syllables`` = (min, max) syllables, in the order drawn."""
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < size:
        word = random_word(rng, syllables)
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


# Paired delimiters (CorpusConfig.paired_delimiters): a group covers GROUP_ITEMS = (min, max) items, and one of
# three or more items holds a nested group of another kind with probability NEST_PROB.
GROUP_ITEMS = (2, 8)
NEST_PROB = 0.5


def nest_delimiters(lines: list[list], prob: float, rng: random.Random) -> list[list]:
    """The lines with groups of paired delimiters that close over distance, possibly nested two deep.

    lines: a document's lines of items (word indices). Reading the items in order across lines, each line
    opens, with probability ``prob``, a group at a random item of it not inside an earlier group; the group covers
    GROUP_ITEMS items (fewer at the document's end), so its closer may come many tokens and a line later. A group
    of three or more items holds, with probability NEST_PROB, a nested group of a different kind around a part
    of it (a proper part: not the whole group), so a quote never nests in a quote and the closer wanted at a
    position is the innermost open group's. Opening items ("open", char) go before the item a group starts at,
    closing ones ("close", char) after the item it ends at, innermost first.
    """
    slots = [(i, j) for i, line in enumerate(lines) for j in range(len(line))]
    opens: dict[int, list] = {}
    closes: dict[int, list] = {}
    free = 0  # the first item after the last group
    for i in range(len(lines)):
        here = [f for f, (line, _) in enumerate(slots) if line == i and f >= free]
        if not here or rng.random() >= prob:
            continue
        start = rng.choice(here)
        end = min(start + rng.randint(*GROUP_ITEMS) - 1, len(slots) - 1)
        outer = rng.choice(DELIMITERS)
        groups = [(start, end, outer)]
        if end - start >= 2 and rng.random() < NEST_PROB:
            inner = rng.choice([d for d in DELIMITERS if d != outer])
            first, last = start, end
            while (first, last) == (start, end):  # a proper part of the outer group
                first, last = sorted((rng.randint(start, end), rng.randint(start, end)))
            groups.append((first, last, inner))
        for first, last, (left, right) in groups:
            opens.setdefault(first, []).append(("open", left))
        for first, last, (left, right) in reversed(groups):
            closes.setdefault(last, []).append(("close", right))
        free = end + 1
    out: list[list] = [[] for _ in lines]
    for f, (i, j) in enumerate(slots):
        out[i] += [*opens.get(f, []), lines[i][j], *closes.get(f, [])]
    return out


# every character the generator can write (the alphabet a tokenizer trained on the generated corpus holds)
GENERATED_ALPHABET = frozenset("".join(ONSETS + VOWELS + CODAS) + " \n" + "".join(a + b for a, b in DELIMITERS))


def render_document(lines: list[list], indents: list[str], words: list[str],
                    span: list[str] | None) -> AnnotatedText:
    """A document from its lines of items (a word index, ("open"/"close", char) or "span"), with the record
    of every character and, when "span" occurs twice, the (first, second, length) of its copies."""
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
            ids += backend.encode(" " + random_word(rng, syllables), add_special_tokens=False).ids
        rows.append(ids[:length] * 2)
    return torch.tensor(rows, dtype=torch.long)

