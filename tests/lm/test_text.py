"""A reader's own text file as chapter 6's corpus (stagewise.lm.text, make_corpus(text_file=…)): reading, classes,
the induction rule for plain text, and the refusals the chapter turns into exit status 2."""

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stagewise.lm import (
    CLASS_NAMES,
    CorpusError,
    annotate_plain_text,
    check_corpus,
    make_corpus,
    min_vocab_size,
    read_documents,
    repeated_ngrams,
    train_tokenizer,
)
from stagewise.lm.corpus import MIN_MERGES
from stagewise.lm.text import FORMAT, LEFT, OTHER, RIGHT, WORD

ROOT = Path(__file__).resolve().parents[2]
CLASS = {name: k for k, name in enumerate(CLASS_NAMES)}

# A few paragraphs of English prose written for these tests; english_prose() repeats them with variation.
PARAGRAPHS = [
    "The harbour was quiet that morning. {name} walked along the sea wall with a basket of bread, counting the "
    "boats that had come back in the night. “Seven,” {she} said to nobody in particular, “and the eighth one is "
    "late again.” The gulls did not answer; they rarely do.",
    "Nobody in the village remembered when the lighthouse had last been painted. The keeper, an old man called "
    "{name}, said that paint was a luxury (like sugar, or sleep) and that the light itself was what mattered. "
    "{name} kept the lamp clean and the log book up to date, and that was enough.",
    "On market days the square filled with stalls: fish on ice, cheese wrapped in cloth, apples from the farms up "
    "the valley [some of them sour, most of them sweet]. Children ran between the tables, and the baker’s dog "
    "followed them, hoping for crumbs. It wasn’t a large market, but it was a loud one.",
    "‘You can’t sail in this weather,’ the harbour master told {name}. ‘Wait until the wind turns.’ But {she} had "
    "waited for three days already, and the cargo would not keep much longer. {She} checked the ropes twice, "
    "looked at the sky once, and decided to go anyway.",
    "In the evening the fishermen sat outside the inn and argued about the weather, the price of diesel and whose "
    "nets were the worst. The arguments never changed and never ended, which was, perhaps, the point of them. "
    "When the lamps came on, {name} closed the shutters and the talk moved inside.",
    "The school had one room, two windows and a stove that smoked whenever the wind came from the north. The "
    "teacher wrote the day’s lesson on the board: rivers, their sources, and the seas they reach. {name} copied "
    "it carefully, word by word, into a notebook with a blue cover.",
]
FIRST_NAMES = ["Anna", "Tomas", "Ruth", "Piet", "Ilse", "Jonah"]
SURNAME_PARTS = (["Mar", "Tel", "Bron", "Ed", "Wil", "Ros", "Gal", "Fen", "Har", "Lud", "Quin", "Cor", "Ost", "Pel"],
                 ["wick", "bury", "ton", "mere", "dale", "ford", "ley", "worth", "combe", "stead", "holt", "shaw"])


def english_prose(target_chars: int = 25_000, seed: int = 0) -> str:
    """About ``target_chars`` of the paragraphs above, each with a fresh name and sometimes two sentences swapped."""
    rng = random.Random(seed)
    out, size = [], 0
    while size < target_chars:
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAME_PARTS[0])}{rng.choice(SURNAME_PARTS[1])}"
        she = rng.choice(["she", "he"])
        text = rng.choice(PARAGRAPHS).format(name=name, she=she, She=she.capitalize())
        sentences = text.removesuffix(".").split(". ")
        if len(sentences) > 2 and rng.random() < 0.5:
            sentences[1], sentences[2] = sentences[2], sentences[1]
        out.append(". ".join(sentences) + ".")
        size += len(out[-1]) + 2
    return "\n\n".join(out) + "\n"


@pytest.fixture(scope="module")
def prose_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prose") / "prose.txt"
    path.write_text(english_prose(), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def prose_corpus(prose_file):
    return make_corpus(text_file=prose_file, n_ctx=64, vocab_size=256)


# --- reading a file ------------------------------------------------------------------------------------


@pytest.mark.parametrize("content, expected", [
    (b"", "is empty"),
    (b"\n\n   \n\t\n", "is empty"),
    (b"Caf\xe9 cr\xe8me\n", r"not UTF-8 text: byte 0xe9 at offset 3"),
    (b"PK\x03\x04\x00\x00binary", "NUL byte at offset 4"),
])
def test_read_documents_refuses_files_that_are_not_text(tmp_path, content, expected):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(CorpusError, match=expected) as error:
        read_documents(path)
    assert error.value.parameter == "text_file" and "text_file = " in str(error.value)
    assert isinstance(error.value, ValueError)
    with pytest.raises(CorpusError, match=expected):  # make_corpus refuses the same way, before any tokenizing
        make_corpus(text_file=path, vocab_size=256)


def test_read_documents_splits_paragraphs_and_normalizes_line_ends(tmp_path):
    path = tmp_path / "windows.txt"
    path.write_bytes("\ufeffFirst line\r\n  indented\r\n\r\n \r\nSecond paragraph.  \r\n".encode("utf-8"))
    assert read_documents(path) == ["First line\n  indented", "Second paragraph."]


# --- classes from the characters -----------------------------------------------------------------------


def test_curly_quotes_are_delimiters_and_apostrophes_join_words():
    text = "“Seven,” she said. ‘You can’t,’ he said; the players’ ball «here» (x)."
    doc = annotate_plain_text(text)
    kind = dict(zip(range(len(text)), doc.kind.tolist()))

    def at(sub, k=0):
        return kind[text.index(sub) + k]

    assert at("“") == LEFT and at("”") == RIGHT and at("‘") == LEFT
    assert at("can’t", 3) == WORD  # the apostrophe inside "can’t" is part of the word
    assert at(",’", 1) == RIGHT  # this ’ closes the ‘ opened before "You"
    assert at("players’", 7) == OTHER  # a trailing apostrophe with no ‘ open: not a delimiter
    assert at("«") == LEFT and at("»") == RIGHT and at("(") == LEFT and at(")") == RIGHT
    start = text.index("can’t")
    assert doc.word_start[start] and not doc.word_end[start + 2] and doc.word_end[start + 4]  # one word
    assert annotate_plain_text("a\n  b").kind.tolist() == [WORD, FORMAT, FORMAT, FORMAT, WORD]


# --- the induction rule for plain text -----------------------------------------------------------------


def test_repeated_ngrams_known_answers():
    n_ctx = 12
    filler = [[20 + (3 * s + k) % 7 for k in range(n_ctx)] for s in range(30)]  # a 7-cycle of 20–26 everywhere
    sequences = [
        [1, 2, 3, 4, 5, 1, 2, 3, 6, 7, 8, 9],  # (1, 2, 3) again, ending at position 7: an induction token
        [9, 9, 9, 9, 9, 4, 5, 6, 7, 8, 1, 3],  # (9, 9, 9) ends at 2, 3, 4: the runs overlap, no repeat
        [1, 0, 3, 4, 1, 0, 3, 4, 5, 5, 6, 6],  # repeats only through 0, a special token
        [5, 1, 2, 3, 7, 7, 7, 7, 7, 7, 8, 8],  # (1, 2, 3) was in sequence 0, not here; (7, 7, 7) at 6 and 9
    ]
    ids = np.array([t for s in sequences + filler for t in s])
    out = repeated_ngrams(ids, n_ctx, special=[0]).reshape(-1, n_ctx)
    expected = np.zeros((4, n_ctx), dtype=bool)
    expected[0, 7] = expected[3, 9] = True
    assert np.array_equal(out[:4], expected)
    assert not out[4:].any()  # the filler repeats its runs in every sequence: what chance gives, none counts
    expected[2, 6] = expected[2, 7] = True  # without 0 special: (1, 0, 3) and (0, 3, 4) repeat
    assert np.array_equal(repeated_ngrams(ids, n_ctx).reshape(-1, n_ctx)[:4], expected)
    assert repeated_ngrams(ids, n_ctx, n=2, special=[0]).reshape(-1, n_ctx)[0, 6]  # pairs: (1, 2) counts at 6
    # a run that is common elsewhere: (1, 2, 3) in 12 filler sequences too. Its rate outside sequence 0 is 13 of
    # 324 runs (34 sequences × 10, less 6 through the special token, less sequence 0's 10), so the chance of
    # meeting it at one of the 3 earlier places is 1 − (1 − 13/324)³ = 0.116: it counts at alpha 0.2, not at 0.1
    common = [s[:3] + [1, 2, 3] + s[6:] for s in filler[:12]] + filler[12:]
    ids = np.array([t for s in sequences + common for t in s])
    assert not repeated_ngrams(ids, n_ctx, special=[0])[7]
    assert repeated_ngrams(ids, n_ctx, special=[0], alpha=0.2)[7]
    assert not repeated_ngrams(ids, n_ctx, special=[0], alpha=0.1)[7]
    with pytest.raises(ValueError, match="n = 1"):
        repeated_ngrams(ids, n_ctx, n=1)


# --- vocabulary size -----------------------------------------------------------------------------------


def test_vocab_size_below_alphabet_plus_merges_is_refused():
    texts = english_prose(4000).split("\n\n")
    smallest = len(set("".join(texts))) + 2 + MIN_MERGES
    assert min_vocab_size(texts) == smallest
    with pytest.raises(CorpusError, match=f"vocab_size = {smallest - 1} is too small.*>= {smallest}") as error:
        train_tokenizer(texts, vocab_size=smallest - 1)
    assert error.value.parameter == "vocab_size"
    tokenizer = train_tokenizer(texts, vocab_size=smallest)
    merged = [t for t in tokenizer.get_vocab() if len(t) > 1 and t not in tokenizer.all_special_tokens]
    assert len(tokenizer) == smallest and len(merged) == MIN_MERGES
    # the generated corpus: 29 characters its generator can write + 2 + MIN_MERGES; the chapter's 64 is accepted
    assert min_vocab_size() == 29 + 2 + MIN_MERGES <= 64
    with pytest.raises(CorpusError, match="vocab_size = 40"):
        check_corpus(None, vocab_size=40)
    assert check_corpus(None, vocab_size=64) is None


def test_check_corpus_counts_sequences_as_make_corpus_does(prose_file, prose_corpus, tmp_path):
    num = prose_corpus.input_ids.shape[0]
    assert check_corpus(prose_file, n_ctx=64, vocab_size=256, min_sequences=32) == num
    with pytest.raises(CorpusError, match="is too short") as error:
        check_corpus(prose_file, n_ctx=64, vocab_size=256, min_sequences=num + 1)
    tokens = int(re.search(r"give (\d+) tokens", str(error.value)).group(1))
    assert tokens // 64 == num and error.value.parameter == "text_file"
    assert f"at least {num + 1} sequences ({(num + 1) * 64} tokens" in str(error.value)
    with pytest.raises(CorpusError, match="vocab_size = 64 is too small"):
        check_corpus(prose_file, n_ctx=64, vocab_size=64)
    # a given tokenizer (vocab_size=None): only the bound of one token per byte is checked
    short = tmp_path / "short.txt"
    short.write_text("Only a line or two of text.\n\nAnd another.\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="its 39 bytes give at most 41 tokens"):  # 27 + 12 bytes, 2 documents
        check_corpus(short, n_ctx=64, vocab_size=None, min_sequences=1)
    assert check_corpus(prose_file, n_ctx=64, vocab_size=None, min_sequences=32) is None


# --- ordinary English prose ----------------------------------------------------------------------------


def test_english_prose_gets_sensible_classes(prose_corpus):
    tok = prose_corpus.tokenizer
    ids, classes = prose_corpus.input_ids, prose_corpus.classes
    texts = tok.convert_ids_to_tokens(ids.flatten().tolist())
    flat = classes.flatten(1)
    # sub-word BPE tokens: multi-character tokens, and words split into several tokens
    assert sum(len(t.strip()) > 1 for t in set(texts)) > 100
    assert flat[CLASS["word_part"]].float().mean() > 0.05
    assert (flat[CLASS["word_start"]] & ~flat[CLASS["word_end"]]).any()
    # curly quotes are delimiters, apostrophes inside words are not
    for t, text in enumerate(texts):
        closes = any(c in text for c in "”)]") or ("’" in text and not flat[CLASS["word_part"], t])
        assert flat[CLASS["left_delimiter"], t] == any(c in text for c in "“‘(["), text
        assert flat[CLASS["right_delimiter"], t] == closes, text
    assert any("”" in t for t in texts) and any("’," in t or "’" == t.strip() for t in texts)
    assert any(t == "’" and flat[CLASS["word_part"], k] for k, t in enumerate(texts))  # baker’s, can’t
    # induction: rare, and only where a pair repeats in the sequence and is rare in the rest of the text
    induction = classes[CLASS["induction"]]
    assert 0 < induction.float().mean() < 0.01
    rows = ids.tolist()
    runs = [{} for _ in rows]  # per sequence: run of 3 tokens -> end positions
    counts: dict[tuple, int] = {}
    for s, row in enumerate(rows):
        for p in range(2, 64):
            runs[s].setdefault(tuple(row[p - 2:p + 1]), []).append(p)
            counts[tuple(row[p - 2:p + 1])] = counts.get(tuple(row[p - 2:p + 1]), 0) + 1
    slots = sum(counts.values())
    for s, p in zip(*(x.tolist() for x in torch.nonzero(induction, as_tuple=True))):
        run = tuple(rows[s][p - 2:p + 1])
        assert min(runs[s][run]) <= p - 3  # the same three tokens end earlier in the sequence, not overlapping
        rate = (counts[run] - len(runs[s][run])) / (slots - 62)
        assert 1 - (1 - rate) ** (p - 4) < 0.05  # and chance would give that repeat less than 5% of the time
    # a fresh surname named twice within a sequence is copied: its later tokens are induction tokens
    labelled = "".join(t if induction.flatten()[k] else "|" for k, t in enumerate(texts))
    surnames = {a + b for a in SURNAME_PARTS[0] for b in SURNAME_PARTS[1]}
    assert any(any(piece in name for name in surnames) for piece in labelled.split("|") if len(piece) > 1)
    # and the text's most frequent pairs never are, though they repeat within sequences (the old bigram rule)
    pairs: dict[tuple, int] = {}
    for row in rows:
        for p in range(1, 64):
            pairs[tuple(row[p - 1:p + 1])] = pairs.get(tuple(row[p - 1:p + 1]), 0) + 1
    frequent = set(sorted(pairs, key=pairs.get)[-50:])
    repeats = 0
    for s, row in enumerate(rows):
        for p in range(3, 64):
            if tuple(row[p - 1:p + 1]) in frequent:
                repeats += tuple(row[p - 1:p + 1]) in {tuple(row[q - 1:q + 1]) for q in range(1, p - 1)}
                assert not induction[s, p], texts[s * 64 + p - 2:s * 64 + p + 1]
    assert repeats > 20


@pytest.mark.slow
def test_chapter_refuses_a_short_text_file_with_exit_status_2(tmp_path):
    """The validation cell turns a refusal into a parameter error: exit 2, one message naming the parameter.

    (An empty or undecodable file takes the same path, through read_documents; one kernel start is enough here.)
    """
    path = tmp_path / "mine.txt"
    path.write_text(english_prose(2500), encoding="utf-8")
    env = {**os.environ, "STAGEWISE_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "stagewise", "--notebooks-dir", str(ROOT / "notebooks"), "run", "06",
                           "--runs-dir", str(tmp_path / "runs"), "--profile", "quick", "-p", "vocab_size", "256",
                           "-p", "text_file", str(path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(errors) == 1 and f"ParameterError: text_file = {str(path)!r} is too short" in errors[0], done.stderr
