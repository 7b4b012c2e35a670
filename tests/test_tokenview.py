"""stagewise.tokenview: the explorable token × token influence view (its HTML; tests/test_browser.py clicks it)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

from stagewise.tokenview import TokenView, token_view

TOKENS = ["␣the", "cat", "(", ")", "⏎", "</script><script>alert(1)</script>"]
CLASSES = ["word_start", "word_part", ["left_delimiter", "induction"], "right_delimiter", "formatting", "word_end"]


def _matrix(seed: int, t: int = len(TOKENS)) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(40, t))
    return -np.cov(x.T) * 1e-3  # a BIF matrix: minus a covariance, symmetric


class _Parsed(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.attrs, self.scripts, self._in_script = [], [], [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.attrs.append((tag, attrs))
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "script":
            self._in_script = attrs
            self.scripts.append([attrs, ""])

    def handle_data(self, data):
        if self._in_script is not None:
            self.scripts[-1][1] += data

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = None


def _parse(view: TokenView) -> _Parsed:
    parsed = _Parsed()
    parsed.feed(view.html)
    return parsed


def _data(view: TokenView) -> dict:
    (payload,) = [text for attrs, text in _parse(view).scripts if attrs.get("type") == "application/json"]
    return json.loads(payload)


def _full(data: dict, k: int) -> np.ndarray:
    """Checkpoint k's matrix, whole again where it was stored as a lower triangle (a symmetric one)."""
    rows = data["matrices"][k]
    if not data["symmetric"][k]:
        return np.array(rows)
    assert [len(row) for row in rows] == list(range(1, len(rows) + 1))
    return np.array([[rows[s][t] if t <= s else rows[t][s] for t in range(len(rows))] for s in range(len(rows))])


def test_the_html_holds_the_data():
    a, b = _matrix(0), _matrix(1)
    view = token_view(TOKENS, CLASSES, {"step 100": a, 4000: b}, title="Query 3")
    data = _data(view)
    assert data["tokens"] == TOKENS
    assert data["classes"][2] == "left_delimiter, induction" and data["classes"][0] == "word_start"
    assert data["labels"] == ["step 100", "4000"] and data["initial"] == 0
    assert data["symmetric"] == [True, True]
    assert [len(row) for row in data["matrices"][0]] == list(range(1, len(TOKENS) + 1))  # a lower triangle
    for k, want in enumerate((a, b)):
        got = _full(data, k)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=5e-3)  # 3 significant digits
        assert got[1, 2] == float(f"{want[1, 2]:.3g}")
    assert data["symmetric"] == [True, True]
    assert data["units"] == "nats²"
    assert view.id in view.html and "Query 3" in view.html
    assert view._repr_html_() == view.html == str(view)
    # every token is in the markup (escaped), with its classes as a tooltip, before any script runs
    spans = [a for tag, a in _parse(view).attrs if tag == "span" and "tv-token" in a.get("class", "").split()]
    assert [int(a["data-index"]) for a in spans] == list(range(len(TOKENS)))
    assert 'title="left_delimiter, induction"' in view.html


def test_default_scale_is_a_quantile_of_the_off_diagonal_values():
    # off-diagonal |BIF|: 1 … 10 at "a", 2 … 20 at "b", each twice (both halves): 40 values whose two largest
    # are 20, so the 99.5% quantile is 20; the diagonal (−100, −200) does not count
    t = 5
    m = np.full((t, t), 0.0)
    m[np.triu_indices(t, 1)] = -np.arange(1, 11)
    m = m + m.T
    m[np.diag_indices(t)] = -100.0
    m2 = 2 * m
    view = token_view(list("abcde"), ["x"] * t, {"a": m, "b": m2})
    off = np.concatenate([np.abs(x[~np.eye(t, dtype=bool)]) for x in (m, m2)])
    assert _data(view)["scale"] == pytest.approx(np.quantile(off, 0.995))
    assert _data(view)["scale"] == 20.0
    assert _data(token_view(list("abcde"), ["x"] * t, {"a": m}, scale=3))["scale"] == 3.0
    # one token: no off-diagonal entries, the diagonal sets the scale; all zeros: a scale of 1
    assert _data(token_view(["a"], ["x"], {"a": [[-2.0]]}))["scale"] == 2.0
    assert _data(token_view(["a", "b"], ["x", "y"], {"a": np.zeros((2, 2))}))["scale"] == 1.0


def test_an_asymmetric_matrix_is_marked_so_that_on_and_from_are_shown_apart():
    m = _matrix(2)
    m[0, 1] += 1e-3
    data = _data(token_view(TOKENS, CLASSES, {"s": m, "t": _matrix(3)}, initial="t"))
    assert data["symmetric"] == [False, True]
    np.testing.assert_allclose(_full(data, 0), m, rtol=5e-3)  # stored whole: BIF(0 → 1) ≠ BIF(1 → 0)
    assert data["matrices"][0][0][1] != data["matrices"][0][1][0]
    assert data["initial"] == 1


def test_tokens_and_titles_are_escaped():
    view = token_view(TOKENS, CLASSES, {"<b>step</b>": _matrix(0)}, title="<i>x</i> & y")
    assert "alert(1)</script>" not in view.html and "<i>x</i>" not in view.html
    assert "&lt;i&gt;x&lt;/i&gt; &amp; y" in view.html
    scripts = _parse(view).scripts
    assert len(scripts) == 2  # the data and the code: a token cannot open or close a script
    assert _data(view)["tokens"][-1] == TOKENS[-1] and _data(view)["labels"] == ["<b>step</b>"]
    assert "&lt;b&gt;step&lt;/b&gt;" in view.html  # the selector's option


def test_nothing_is_loaded_from_anywhere():
    view = token_view(TOKENS, CLASSES, {"a": _matrix(0)}, emphasize="induction")
    parsed = _parse(view)
    links = [(tag, key, value) for tag, attrs in parsed.attrs for key, value in attrs.items()
             if key in ("src", "href", "srcset", "data", "action", "poster")]
    assert not links, links  # no external file, and no local one either: all is inline
    assert not re.search(r"https?:|@import|url\(|\bimport\(|fetch\(|XMLHttpRequest", view.html)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", view.html)


def test_ids_are_unique_within_and_across_views():
    one = token_view(TOKENS, CLASSES, {"a": _matrix(0)})
    two = token_view(TOKENS, CLASSES, {"a": _matrix(0)})
    ids_one, ids_two = _parse(one).ids, _parse(two).ids
    assert len(set(ids_one)) == len(ids_one) and len(set(ids_two)) == len(ids_two)
    assert not set(ids_one) & set(ids_two)
    assert one.id != two.id
    # the radio group names are per view too, and every id a label or script refers to exists in its view
    assert not {a["name"] for t, a in _parse(one).attrs if "name" in a} & {a["name"] for t, a in _parse(two).attrs
                                                                           if "name" in a}
    for view, ids in ((one, ids_one), (two, ids_two)):
        for _, attrs in _parse(view).attrs:
            if "for" in attrs:
                assert attrs["for"] in ids
        assert json.dumps(view.id) in view.html  # the script finds its own root


def test_write_makes_a_standalone_page(tmp_path):
    view = token_view(TOKENS, CLASSES, {"a": _matrix(0)}, title="Σ page")
    path = view.write(tmp_path / "view.html")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in text and view.html in text
    assert "<title>Σ page</title>" in text


def test_torch_tensors_and_integer_steps_are_accepted():
    m = _matrix(0)
    data = _data(token_view(TOKENS, CLASSES, {np.int64(7): torch.tensor(m)}))
    assert data["labels"] == ["7"]
    np.testing.assert_allclose(_full(data, 0), m, rtol=5e-3)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"tokens": []}, ValueError, "tokens is empty"),
    ({"tokens": "abc"}, TypeError, "tokens = 'abc' must be a list of strings"),
    ({"tokens": ["a", 2, "c", "d", "e", "f"]}, TypeError, r"tokens\[1\] = 2 is not a string"),
    ({"classes": CLASSES[:-1]}, ValueError, "classes has 5 entries and tokens 6: give one per token"),
    ({"classes": CLASSES[:-1] + [3]}, TypeError, r"classes\[5\] = 3 must be a string or a list of strings"),
    ({"influence": [np.zeros((6, 6))]}, TypeError, "influence = .* must be a dict"),
    ({"influence": {}}, ValueError, "influence is empty"),
    ({"influence": {"a": np.zeros((5, 5))}}, ValueError,
     r"influence\['a'\] has shape \(5, 5\); expected \(6, 6\): one row and one column per token"),
    ({"influence": {"a": np.zeros(36)}}, ValueError, r"influence\['a'\] has shape \(36,\)"),
    ({"influence": {"a": np.full((6, 6), np.nan)}}, ValueError, r"influence\['a'\] has 36 non-finite values"),
    ({"influence": {"a": np.eye(6), "b": np.diag([1, 2, np.inf, 0, 0, 0])}}, ValueError,
     r"influence\['b'\] has 1 non-finite values \(first at \(2, 2\): inf\)"),
    ({"influence": {"a": [["x"] * 6] * 6}}, TypeError, r"influence\['a'\] is not an array of numbers"),
    ({"influence": {"1": np.eye(6), 1: np.eye(6)}}, ValueError, "two checkpoints labelled '1'"),
    ({"influence": {" ": np.eye(6)}}, ValueError, "influence key ' ' is blank"),
    ({"influence": {(1, 2): np.eye(6)}}, TypeError, r"influence key \(1, 2\) must be a string or an integer"),
    ({"initial": "later"}, ValueError, r"initial = 'later' \(accepted: one of the checkpoint labels \['a'\]\)"),
    ({"scale": 0}, ValueError, "scale = 0.0 must be a positive finite number"),
    ({"scale": float("nan")}, ValueError, "scale = nan must be a positive finite number"),
    ({"scale": "big"}, TypeError, "scale = 'big' must be a positive number"),
    ({"emphasize": "verbs"}, ValueError, r"emphasize = 'verbs' \(accepted: None or a class some token has: "),
    ({"title": 3}, TypeError, "title = 3 must be a string"),
])
def test_bad_input_gets_a_clear_error(kwargs, error, match):
    arguments = {"tokens": TOKENS, "classes": CLASSES, "influence": {"a": _matrix(0)}} | kwargs
    with pytest.raises(error, match=match):
        token_view(arguments.pop("tokens"), arguments.pop("classes"), arguments.pop("influence"), **arguments)
