"""Annotated text and its token classes; a reader's own plain-text file read safely and classified.

An :class:`AnnotatedText` records what every character of a text is (word, delimiter, formatting, other). For
the generated corpus the generator writes that record; for a reader's file :func:`annotate_plain_text` reads it
from the characters. :func:`token_classes` turns the record into the classes of the paper's §5 (after Baker et al.
2025) for the tokens a tokenizer made.

Which tokens of a reader's text are *induction* tokens cannot be read from the characters: nobody recorded which
spans are copies. :func:`repeated_ngrams` uses this rule instead. Token x_p (at position p of its sequence) is an
induction token when it ends a run of n = 3 tokens that repeats an earlier run of the same sequence, beyond chance:

1. "… A B … A → B", with the two tokens before B as the A: (x_{p−2}, x_{p−1}, x_p) equals (x_{q−2}, x_{q−1}, x_q)
   for some q ≤ p − 3 (the two runs share no token), and
2. the repeat is beyond chance: let f be the run's rate in the rest of the text (its count in the other sequences
   over the number of runs there). If runs came at their text-wide rates, the chance of meeting it at one of the
   p − 4 earlier places where a non-overlapping run ends is 1 − (1 − f)^(p−4); the repeat counts only when this
   chance is below ``alpha`` = 5%.

So a token is labelled from the third token of a repeated run on: a rare name or phrase written twice within the
context is copied, while a repeated letter pair or a common phrase ("most of them … most of them" in a text that
says it everywhere) is not. No token of the run may be a special token (``<|endoftext|>``, ``<unk>``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from stagewise.config import ConfigError

__all__ = ["CLASS_NAMES", "AnnotatedText", "CorpusError", "annotate_plain_text", "read_documents",
           "repeated_ngrams", "token_classes"]

CLASS_NAMES = ("word_start", "word_part", "word_end", "left_delimiter", "right_delimiter", "formatting", "induction")

# Character kinds in an AnnotatedText.
OTHER, WORD, LEFT, RIGHT, FORMAT = 0, 1, 2, 3, 4
# Brackets and quotes whose direction the character itself says (curly quotes and guillemets included).
OPENING, CLOSING = "([{“‘«‹", ")]}”’»›"
APOSTROPHES = "’'"  # between two letters these join a word (don’t, baker's); ’ also closes a ‘…’ quote
# ``alpha`` of the induction rule: a repeat counts when chance alone would give it with probability below this.
CHANCE = 0.05


class CorpusError(ConfigError):
    """A corpus that cannot be used: ``parameter`` names the chapter parameter to change ("text_file", …)."""

    def __init__(self, parameter: str, message: str):
        self.parameter = parameter
        super().__init__(message)


@dataclass
class AnnotatedText:
    """A text with what each character is.

    kind:        (chars,) int8: 0 other (spaces between words, punctuation), 1 word, 2 opening delimiter,
                 3 closing delimiter, 4 formatting (newline or indentation).
    word_start:  (chars,) bool: the first character of a word.  word_end: the last character of a word.
    copies:      (first_start, second_start, length) character ranges of repeated spans: the characters
                 second_start … second_start + length − 1 repeat first_start …; None = unknown (plain text).
    """

    text: str
    kind: np.ndarray
    word_start: np.ndarray
    word_end: np.ndarray
    copies: list[tuple[int, int, int]] | None = field(default_factory=list)


# ------------------------------------------------------------------------------------------------------------
# A reader's file


def read_documents(path: str | Path) -> list[str]:
    """The documents of a UTF-8 plain-text file: its paragraphs (separated by blank lines), trailing space cut.

    Raises :class:`CorpusError` (parameter "text_file") for a file that is empty or only whitespace, holds NUL
    bytes (a binary file) or is not valid UTF-8 (with the offset of the first bad byte). A UTF-8 byte-order mark
    is dropped and Windows or old Mac line ends become "\\n".
    """
    data = Path(path).expanduser().read_bytes()
    name = f"text_file = {str(path)!r}"
    nul = data.find(b"\x00")
    if nul >= 0:
        raise CorpusError("text_file", f"{name} holds a NUL byte at offset {nul} (a binary file?): accepted is a "
                                       "UTF-8 plain-text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CorpusError("text_file", f"{name} is not UTF-8 text: byte 0x{data[error.start]:02x} at offset "
                                       f"{error.start} cannot be decoded; accepted is a UTF-8 plain-text file "
                                       "(convert it first, e.g. iconv -f latin1 -t utf-8)") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    documents = [p.rstrip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    if not documents:
        raise CorpusError("text_file", f"{name} is empty ({len(data)} bytes, no text besides whitespace): "
                                       "accepted is a UTF-8 plain-text file of a few pages of text")
    return documents


def annotate_plain_text(text: str) -> AnnotatedText:
    """Classes of a reader's own text, read from its characters (no repeated spans are known: ``copies=None``).

    Words are runs of letters or digits, with an apostrophe (’ or ') between two letters inside the word (don’t);
    ( [ { “ ‘ « ‹ open and ) ] } ” » › close; ’ not inside a word closes a ‘ opened on its line (else it is other,
    as in "the players’ ball"); straight double quotes alternate between opening and closing within a line;
    newlines and the whitespace that starts a line are formatting.
    """
    kind = np.zeros(len(text), dtype=np.int8)
    quote_open = single_open = False
    line_start = True
    for i, ch in enumerate(text):
        if ch.isalnum():
            kind[i] = WORD
        elif ch in APOSTROPHES and 0 < i < len(text) - 1 and text[i - 1].isalpha() and text[i + 1].isalpha():
            kind[i] = WORD
        elif ch == "’":
            kind[i] = RIGHT if single_open else OTHER
            single_open = False
        elif ch in OPENING:
            kind[i] = LEFT
            single_open |= ch == "‘"
        elif ch in CLOSING:
            kind[i] = RIGHT
        elif ch == '"':
            kind[i] = RIGHT if quote_open else LEFT
            quote_open = not quote_open
        elif ch == "\n" or (line_start and ch.isspace()):
            kind[i] = FORMAT
        if ch == "\n":
            quote_open = single_open = False
        line_start = ch == "\n" or (line_start and ch.isspace())
    is_word = kind == WORD
    before = np.concatenate([[False], is_word[:-1]])
    after = np.concatenate([is_word[1:], [False]])
    return AnnotatedText(text, kind, is_word & ~before, is_word & ~after, None)


# ------------------------------------------------------------------------------------------------------------
# Token classes


def core_start(text: str, start: int, end: int) -> int:
    """Start of a token's characters without the leading space it takes from the pre-tokenizer (" word")."""
    return start + 1 if end - start > 1 and text[start] == " " else start


def token_classes(doc: AnnotatedText, offsets: Sequence[tuple[int, int]]) -> np.ndarray:
    """Classes of the tokens of one document: (class, token) bool, classes in the order of CLASS_NAMES.

    The induction class here marks second-copy tokens whose predecessor is in the copy too (for generated text)
    or nothing (plain text); :func:`stagewise.lm.corpus.make_corpus` then keeps only those whose first occurrence
    is in the same sequence, or applies :func:`repeated_token_pairs` to plain text.
    """
    classes = np.zeros((len(CLASS_NAMES), len(offsets)), dtype=bool)
    in_copy = np.zeros(len(offsets), dtype=bool)
    for t, (s, e) in enumerate(offsets):
        kind = doc.kind[s:e]
        has_start, has_end = doc.word_start[s:e].any(), doc.word_end[s:e].any()
        classes[0, t] = has_start
        classes[1, t] = (kind == WORD).any() and not has_start and not has_end
        classes[2, t] = has_end
        classes[3, t] = (kind == LEFT).any()
        classes[4, t] = (kind == RIGHT).any()
        classes[5, t] = (kind == FORMAT).any() and doc.text[s:e].isspace()
        core = core_start(doc.text, s, e)
        in_copy[t] = any(second <= core and e <= second + length for _, second, length in doc.copies or ())
    classes[6, 1:] = in_copy[1:] & in_copy[:-1]
    return classes


def repeated_ngrams(ids: np.ndarray, n_ctx: int, n: int = 3, special: Iterable[int] = (), alpha: float = CHANCE
                    ) -> np.ndarray:
    """Induction tokens of a plain token stream by the module's rule (an n-gram repeated beyond chance): (tokens,) bool.

    ids: (tokens,) the stream, cut into sequences of ``n_ctx`` tokens from the start. n: tokens of the repeated
    run that ends at an induction token (≥ 2). special: token ids never part of a repeat. alpha: the chance level
    (a probability) below which a repeat counts.
    """
    if not (isinstance(n, int) and n >= 2):
        raise ValueError(f"n = {n!r} (accepted: an integer ≥ 2)")
    ids = np.asarray(ids, dtype=np.int64)
    out = np.zeros(len(ids), dtype=bool)
    special = set(int(s) for s in special)
    sequences = []  # per sequence: the n-gram ending at each position p ≥ n − 1 (None if it holds a special token)
    total: dict[tuple, int] = {}
    for start in range(0, len(ids), n_ctx):
        row = ids[start:start + n_ctx].tolist()
        grams = [None] * len(row)
        for p in range(n - 1, len(row)):
            gram = tuple(row[p - n + 1:p + 1])
            if not special.intersection(gram):
                grams[p] = gram
                total[gram] = total.get(gram, 0) + 1
        sequences.append((start, grams))
    slots = sum(total.values())
    for start, grams in sequences:
        inside: dict[tuple, int] = {}
        for gram in grams:
            if gram is not None:
                inside[gram] = inside.get(gram, 0) + 1
        outside = max(slots - sum(inside.values()), 1)
        first: dict[tuple, int] = {}
        for p, gram in enumerate(grams):
            if gram is None or first.setdefault(gram, p) > p - n:  # not seen, or only overlapping this one
                continue
            rate = (total[gram] - inside[gram]) / outside
            earlier = p - 2 * n + 2  # positions q ≤ p − n at which an n-gram ends
            out[start + p] = 1.0 - (1.0 - rate) ** earlier < alpha
    return out
