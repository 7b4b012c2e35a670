"""The paired-delimiter corpus (CorpusConfig.paired_delimiters) on known answers; the default corpus unchanged."""

import hashlib
import random

import pytest
import torch

from stagewise.lm.corpus import CorpusConfig, generate_documents, make_corpus
from stagewise.lm.synthetic import DELIMITERS, GROUP_ITEMS, nest_delimiters
from stagewise.lm.text import LEFT, RIGHT, WORD

# sha256 of the first 200 default documents (text, character kinds, copies), recorded before the option existed
DEFAULT_200 = "8ceb5358ec265596dddcf740a7b6d7d204c3072aa7575891d74f66d33744fbea"
CLOSER = dict(DELIMITERS)


def digest(documents) -> str:
    h = hashlib.sha256()
    for d in documents:
        h.update(d.text.encode())
        h.update(d.kind.tobytes())
        h.update(repr(d.copies).encode())
    return h.hexdigest()


def groups(doc):
    """(opener position, closer position, depth) of every group of a document, checking that each closer
    matches the innermost open opener; the stack is empty at the end."""
    stack, out = [], []
    for i, (ch, kind) in enumerate(zip(doc.text, doc.kind)):
        if kind == LEFT:
            stack.append(i)
        elif kind == RIGHT:
            assert stack, f"a closer with no opener in {doc.text!r}"
            opener = stack.pop()
            assert ch == CLOSER[doc.text[opener]], f"{doc.text[opener]!r} closed by {ch!r} in {doc.text!r}"
            out.append((opener, i, len(stack) + 1))
    assert not stack, f"an unclosed opener in {doc.text!r}"
    return out


def test_default_corpus_is_unchanged():
    assert not CorpusConfig().paired_delimiters
    assert digest(generate_documents(CorpusConfig(num_documents=200))) == DEFAULT_200
    assert digest(generate_documents(CorpusConfig(num_documents=200, paired_delimiters=False))) == DEFAULT_200


def test_paired_delimiters_close_their_openers_over_distance_and_nest_two_deep():
    documents = generate_documents(CorpusConfig(num_documents=400, paired_delimiters=True, seed=3))
    found = [g for d in documents for g in groups(d)]
    depths = [depth for _, _, depth in found]
    assert max(depths) == 2 and 0.1 < depths.count(2) / len(depths) < 0.5  # nested, never deeper than 2
    words = [sum(1 for k in range(a, b) if d.kind[k] == WORD and d.word_start[k])
             for d in documents for a, b, depth in groups(d) if depth == 1]
    assert max(words) >= GROUP_ITEMS[1] and sum(w >= 4 for w in words) > len(words) / 3  # 2-8 words, more with spans
    assert any("\n" in d.text[a:b] for d in documents for a, b, _ in groups(d))  # some close on a later line
    for d in documents:  # a quote never nests in a quote: the inner group is of another kind
        outer = {a: d.text[a] for a, _, depth in groups(d) if depth == 1}
        for a, b, depth in groups(d):
            if depth == 2:
                enclosing = max(o for o in outer if o < a)
                assert d.text[a] != outer[enclosing]
    # the old generator's groups sit in one line and hold 1-3 words
    old = [g for d in generate_documents(CorpusConfig(num_documents=400, seed=3)) for g in groups(d)]
    assert max(depth for *_, depth in old) == 1


def test_nest_delimiters_known_answers():
    rng = random.Random(0)
    lines = [[0, 1, 2], [3, 4]]
    assert nest_delimiters(lines, 0.0, rng) == lines  # no group
    one = nest_delimiters([[7]], 1.0, random.Random(1))  # one item: a group of that item alone
    assert one[0][1] == 7 and one[0][0][0] == "open" and one[0][2] == ("close", CLOSER[one[0][0][1]])
    for seed in range(50):
        out = nest_delimiters(lines, 1.0, random.Random(seed))
        assert [x for line in out for x in line if not isinstance(x, tuple)] == [0, 1, 2, 3, 4]  # words kept
        marks = sum(isinstance(x, tuple) for line in out for x in line)
        assert marks % 2 == 0 and 2 <= marks <= 8  # line 1 opens a group (prob 1), maybe nested, maybe a second


def test_paired_corpus_tokens_and_config():
    corpus = make_corpus(CorpusConfig(num_documents=200, paired_delimiters=True), n_ctx=64, vocab_size=64)
    shares = corpus.classes.float().mean(dim=(1, 2))
    assert 0.005 < shares[3] < 0.05 and torch.isclose(shares[3], shares[4], rtol=0.2)
    with pytest.raises(ValueError, match="paired_delimiters"):
        CorpusConfig(paired_delimiters="yes")


# --- pairing scores ----------------------------------------------------------------------------------------

from types import SimpleNamespace  # noqa: E402

from stagewise.lm.corpus import token_classes, train_tokenizer  # noqa: E402
from stagewise.lm.pairing import closer_ids, matched_closers, pairing_scores  # noqa: E402
from stagewise.lm.text import annotate_plain_text  # noqa: E402

TEXT = '(ba [da] ga) "ma" {ka} ko)'


@pytest.fixture(scope="module")
def hand_built():
    tokenizer = train_tokenizer([d.text for d in generate_documents(CorpusConfig(num_documents=200,
                                                                                 paired_delimiters=True))], 64)
    doc = annotate_plain_text(TEXT)
    encoding = tokenizer.backend_tokenizer.encode(TEXT, add_special_tokens=False)
    classes = torch.from_numpy(token_classes(doc, encoding.offsets))
    ids = torch.tensor([encoding.ids])
    return tokenizer, ids, classes[3][None], classes[4][None]


def test_matched_closers_follow_the_stack(hand_built):
    tokenizer, ids, left, right = hand_built
    tokens = tokenizer.convert_ids_to_tokens(ids[0].tolist())
    matched, nested = matched_closers(ids, left, right, tokenizer)
    assert [tokens[t] for t in matched[0].nonzero().flatten()] == ["]", ")", '"', "}"]  # the last ) closes nothing
    assert [tokens[t] for t in nested[0].nonzero().flatten()] == [")"]  # its opener ( is not the latest ([)
    assert tokenizer.convert_ids_to_tokens(closer_ids(tokenizer).tolist()) == [")", "]", "}", '"']
    eos = torch.tensor([[tokenizer.eos_token_id]])
    cut = matched_closers(torch.cat([ids[:, :3], eos, ids[:, 3:]], 1), torch.cat([left[:, :3], eos * 0, left[:, 3:]], 1).bool(),
                          torch.cat([right[:, :3], eos * 0, right[:, 3:]], 1).bool(), tokenizer)[0]
    assert int(cut.sum()) == 3  # an end of text between "(" and its ")" leaves that ) unmatched


def test_pairing_scores_known_answers(hand_built):
    tokenizer, ids, left, right = hand_built
    candidates = closer_ids(tokenizer)
    matched, nested = matched_closers(ids, left, right, tokenizer)
    vocab = len(tokenizer)

    def model_ranking(first):  # logits that rank token `first` (or the true next token) first everywhere
        def forward(input_ids):
            logits = torch.zeros(*input_ids.shape, vocab)
            if first is None:
                logits[0, :-1].scatter_(1, input_ids[0, 1:, None], 5.0)
            else:
                logits[..., first] = 5.0
            return SimpleNamespace(logits=logits)
        return forward

    perfect = pairing_scores(model_ranking(None), ids, matched, nested, left, candidates)
    assert perfect["accuracy"] == 1.0 and perfect["nested_accuracy"] == 1.0
    paren = pairing_scores(model_ranking(int(candidates[0])), ids, matched, nested, left, candidates)
    assert paren["accuracy"] == 0.25 and paren["nested_accuracy"] == 1.0  # one ) among ] ) " }
    uniform = pairing_scores(lambda input_ids: SimpleNamespace(logits=torch.zeros(*input_ids.shape, vocab)),
                             ids, matched, nested, left, candidates)
    assert uniform["closer_loss"] == pytest.approx(torch.log(torch.tensor(float(vocab))).item())
