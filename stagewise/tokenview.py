"""An explorable token × token influence view for a notebook or a book page, working offline.

:func:`token_view` turns the tokens of one sequence, their classes and a token × token BIF matrix per
checkpoint into one self-contained ``<div>``: inline CSS, the data as embedded JSON and a short inline script
(plain JavaScript, nothing loaded from anywhere). Hovering, focusing or clicking a token shows its class, its
own BIF and its strongest influences on and from the other tokens at the checkpoint chosen in a selector, and
colours every other token by its BIF with the chosen one. Entry ``(s, t)`` of a matrix is BIF(s → t), the
influence of token s's loss on token t's loss (the book's convention: negative means s helps t, positive that
it harms). Without JavaScript the tokens still show, with their classes as tooltips.
"""

from __future__ import annotations

import html
import json
import math
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["TokenView", "token_view"]

#: Significant digits kept for the embedded values (the detail panel shows 3).
DIGITS = 3


class TokenView:
    """The HTML of one token view: shown by Jupyter and myst-nb through ``_repr_html_``; :meth:`write` saves a page."""

    def __init__(self, markup: str, element_id: str, title: str):
        self.html = markup
        self.id = element_id
        self.title = title

    def _repr_html_(self) -> str:
        return self.html

    def __str__(self) -> str:
        return self.html

    def write(self, path: str | Path) -> Path:
        """A standalone HTML page holding only this view (UTF-8); returns its path."""
        path = Path(path)
        path.write_text("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                        f"<title>{html.escape(self.title)}</title></head>\n<body>\n{self.html}\n</body></html>\n",
                        encoding="utf-8")
        return path


def token_view(tokens: Sequence[str], classes: Sequence[str | Sequence[str]],
               influence: Mapping[object, object], *, title: str = "Token × token influence",
               initial: object | None = None, scale: float | None = None, emphasize: str | None = None,
               units: str = "nats²") -> TokenView:
    """An explorable view of the token × token BIF of one sequence at several checkpoints.

    ``tokens``: the T printable tokens (e.g. from :func:`stagewise.analysis.token_labels`). ``classes``: for each
    token its class, a string, or a sequence of strings where classes overlap. ``influence``: checkpoint label
    (a string or a step) → (T, T) array whose entry (s, t) is BIF(s → t) in ``units`` (negative: s helps t);
    the labels fill the checkpoint selector in their order and ``initial`` (one of them; default the first) is
    shown first. ``scale``: the |BIF| at which the colours saturate, the same at every checkpoint; by default
    the 99.5% quantile of the off-diagonal |BIF| over all checkpoints (each token's own BIF, the diagonal, is
    far larger and would wash the colours out). ``emphasize``: a class whose tokens are shown in bold.
    """
    tokens = _check_tokens(tokens)
    classes = _check_classes(classes, len(tokens))
    labels, matrices = _check_influence(influence, len(tokens))
    if not isinstance(title, str):
        raise TypeError(f"title = {title!r} must be a string")
    if not isinstance(units, str):
        raise TypeError(f"units = {units!r} must be a string")
    if initial is None:
        start = 0
    elif str(initial) in labels:
        start = labels.index(str(initial))
    else:
        raise ValueError(f"initial = {initial!r} (accepted: one of the checkpoint labels {labels})")
    if emphasize is not None and (not isinstance(emphasize, str)
                                  or not any(emphasize in token_classes for token_classes in classes)):
        present = sorted({c for token_classes in classes for c in token_classes})
        raise ValueError(f"emphasize = {emphasize!r} (accepted: None or a class some token has: {present})")
    if scale is None:
        scale = _default_scale(matrices)
    else:
        if isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating, np.integer)):
            raise TypeError(f"scale = {scale!r} must be a positive number (or None for the default)")
        scale = float(scale)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale = {scale!r} must be a positive finite number (or None for the default)")

    element_id = f"stagewise-tokenview-{uuid.uuid4().hex[:12]}"
    symmetric = [_symmetric(m) for m in matrices]
    data = {  # a symmetric matrix is stored as its lower triangle (row s: entries 0 … s): half the page weight
        "tokens": tokens, "classes": [", ".join(c) for c in classes], "labels": labels, "initial": start,
        "matrices": [[[_rounded(v) for v in (row[:s + 1] if sym else row)] for s, row in enumerate(m)]
                     for m, sym in zip(matrices, symmetric)],
        "symmetric": symmetric, "scale": scale, "units": units,
    }
    return TokenView(_markup(element_id, title, data, tokens, classes, emphasize), element_id, title)


# ------------------------------------------------------------------------------------------------ validation


def _check_tokens(tokens) -> list[str]:
    if isinstance(tokens, str) or not isinstance(tokens, Sequence):
        raise TypeError(f"tokens = {_short(tokens)} must be a list of strings, one per token")
    if len(tokens) == 0:
        raise ValueError("tokens is empty: give the tokens of one sequence (at least 1)")
    bad = [i for i, t in enumerate(tokens) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"tokens[{bad[0]}] = {tokens[bad[0]]!r} is not a string: give printable token labels "
                        "(e.g. stagewise.analysis.token_labels)")
    return list(tokens)


def _check_classes(classes, length: int) -> list[tuple[str, ...]]:
    if isinstance(classes, str) or not isinstance(classes, Sequence):
        raise TypeError(f"classes = {_short(classes)} must be a list with one class (or list of classes) per token")
    if len(classes) != length:
        raise ValueError(f"classes has {len(classes)} entries and tokens {length}: give one per token")
    out = []
    for i, c in enumerate(classes):
        if isinstance(c, str):
            out.append((c,))
        elif isinstance(c, Sequence) and all(isinstance(x, str) for x in c):
            out.append(tuple(c))
        else:
            raise TypeError(f"classes[{i}] = {c!r} must be a string or a list of strings")
    return out


def _check_influence(influence, length: int) -> tuple[list[str], list[np.ndarray]]:
    if not isinstance(influence, Mapping):
        raise TypeError(f"influence = {_short(influence)} must be a dict: checkpoint label → (T, T) array")
    if len(influence) == 0:
        raise ValueError("influence is empty: give at least one checkpoint label → (T, T) array")
    labels, matrices = [], []
    for key, value in influence.items():
        if not isinstance(key, (str, int, np.integer)) or isinstance(key, bool):
            raise TypeError(f"influence key {key!r} must be a string or an integer step")
        label = str(key)
        if not label.strip():
            raise ValueError(f"influence key {key!r} is blank: label each checkpoint (e.g. 'step 4,000')")
        if label in labels:
            raise ValueError(f"influence has two checkpoints labelled {label!r}: labels must differ as strings")
        if hasattr(value, "detach"):  # a torch tensor
            value = value.detach().cpu().numpy()
        try:
            matrix = np.asarray(value, dtype=float)
        except (TypeError, ValueError) as error:
            raise TypeError(f"influence[{label!r}] is not an array of numbers ({error})") from None
        if matrix.shape != (length, length):
            raise ValueError(f"influence[{label!r}] has shape {matrix.shape}; expected ({length}, {length}): "
                             f"one row and one column per token of tokens (len {length})")
        finite = np.isfinite(matrix)
        if not finite.all():
            s, t = np.argwhere(~finite)[0]
            raise ValueError(f"influence[{label!r}] has {int((~finite).sum())} non-finite values (first at "
                             f"({s}, {t}): {matrix[s, t]}): drop or re-estimate that checkpoint")
        labels.append(label)
        matrices.append(matrix)
    return labels, matrices


def _default_scale(matrices: list[np.ndarray]) -> float:
    off = np.concatenate([np.abs(m[~np.eye(len(m), dtype=bool)]) for m in matrices])
    values = off if off.size and off.max() > 0 else np.concatenate([np.abs(np.diag(m)) for m in matrices])
    scale = float(np.quantile(values, 0.995)) if values.size else 0.0
    if not scale > 0:
        scale = float(values.max()) if values.size and values.max() > 0 else 1.0
    return scale


def _symmetric(matrix: np.ndarray) -> bool:
    """Symmetric up to rounding (a covariance is): BIF(s → t) = BIF(t → s), so "on" and "from" coincide."""
    return bool(np.abs(matrix - matrix.T).max() <= 1e-6 * np.abs(matrix).max())


def _rounded(value: float) -> float:
    return float(f"{value:.{DIGITS}g}")


def _short(value) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------------------------------- markup


def _script_json(value) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' that could end it or start a comment."""
    return (json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _markup(element_id: str, title: str, data: dict, tokens: list[str], classes: list[tuple[str, ...]],
            emphasize: str | None) -> str:
    esc = html.escape
    options = "".join(f'<option value="{k}"{" selected" if k == data["initial"] else ""}>{esc(label)}</option>'
                      for k, label in enumerate(data["labels"]))
    spans = "".join(
        f'<span class="tv-token{" tv-emph" if emphasize in c else ""}" tabindex="0" role="button" '
        f'aria-pressed="false" data-index="{i}" title="{esc(", ".join(c))}">{esc(token)}</span>'
        for i, (token, c) in enumerate(zip(tokens, classes)))
    emph_note = (f' Tokens of class <b>{esc(emphasize)}</b> are in bold.' if emphasize else "")
    return f"""<div class="stagewise-tokenview tex2jax_ignore mathjax_ignore" id="{element_id}">
<style>{_CSS}</style>
<div class="tv-title">{esc(title)}</div>
<div class="tv-controls"><label for="{element_id}-checkpoint">Checkpoint</label>
<select id="{element_id}-checkpoint" class="tv-checkpoint">{options}</select>
<span class="tv-direction" hidden><label><input type="radio" name="{element_id}-direction" value="to" checked>
colour by its influence on the others</label> <label><input type="radio" name="{element_id}-direction"
value="from"> by theirs on it</label></span></div>
<div class="tv-tokens" role="group" aria-label="tokens of the sequence">{spans}</div>
<div class="tv-legend"><span class="tv-bar" aria-hidden="true"></span><span class="tv-ticks">
<span class="tv-lo"></span><span>0</span><span class="tv-hi"></span></span>
<p>Colour of a token: its BIF with the chosen token ({esc(data["units"])}). <b>Blue, negative: helps</b>
(up-weighting one token's loss lowers the other's); <b>red, positive: harms</b>. Colours saturate beyond the
scale shown (a token's own BIF, its posterior variance negated, always does).{emph_note} Hover over, focus or
click a token (click or Enter keeps it; arrow keys move, Escape lets go).</p></div>
<div class="tv-detail" id="{element_id}-detail" aria-live="polite"><p class="tv-hint">Hover over or click a
token to see its class and its influence on and from the others.</p></div>
<script type="application/json" class="tv-data">{_script_json(data)}</script>
<script>{_SCRIPT.replace("__ROOT_ID__", json.dumps(element_id))}</script>
</div>"""


_CSS = """
.stagewise-tokenview { margin: 1em 0; font-size: 0.95em; max-width: 100%; }
.stagewise-tokenview .tv-title { font-weight: 600; margin-bottom: 0.4em; }
.stagewise-tokenview .tv-controls { display: flex; flex-wrap: wrap; gap: 0.4em 1em; align-items: center;
  margin-bottom: 0.5em; }
.stagewise-tokenview .tv-tokens { display: flex; flex-wrap: wrap; gap: 3px; line-height: 1.5;
  font-family: var(--pst-font-family-monospace, monospace); font-size: 0.9em; }
.stagewise-tokenview .tv-token { padding: 1px 4px; border-radius: 3px; cursor: pointer; white-space: pre;
  border: 1px solid rgba(127, 127, 127, 0.35); background: rgba(127, 127, 127, 0.08); }
.stagewise-tokenview .tv-token.tv-emph { font-weight: 700; text-decoration: underline; }
.stagewise-tokenview .tv-token.tv-current { outline: 2px solid #111; outline-offset: 1px; }
.stagewise-tokenview .tv-token[aria-pressed="true"] { outline: 3px solid #e08a00; outline-offset: 1px; }
.stagewise-tokenview .tv-token:focus-visible { outline: 3px solid #e08a00; outline-offset: 1px; }
html[data-theme="dark"] .stagewise-tokenview .tv-token.tv-current { outline-color: #eee; }
.stagewise-tokenview .tv-legend { margin: 0.6em 0; font-size: 0.9em; }
.stagewise-tokenview .tv-legend p { margin: 0.3em 0 0; }
.stagewise-tokenview .tv-bar { display: block; height: 10px; max-width: 18em; border-radius: 2px;
  background: linear-gradient(to right, #2166ac, #92c5de, #f7f7f7, #f4a582, #b2182b); }
.stagewise-tokenview .tv-ticks { display: flex; justify-content: space-between; max-width: 18em; }
.stagewise-tokenview .tv-detail { border-left: 3px solid rgba(127, 127, 127, 0.5); padding: 0.3em 0.8em;
  min-height: 4em; }
.stagewise-tokenview .tv-detail p { margin: 0.2em 0; }
.stagewise-tokenview .tv-lists { display: flex; flex-wrap: wrap; gap: 0.5em 2em; }
.stagewise-tokenview table { border-collapse: collapse; font-size: 0.92em; margin: 0.2em 0; }
.stagewise-tokenview td, .stagewise-tokenview th { padding: 1px 6px; text-align: left; border: none; }
.stagewise-tokenview td.tv-num { text-align: right; font-variant-numeric: tabular-nums; }
.stagewise-tokenview td code { white-space: pre; }
"""

# One function per view; it finds its own root by id, so several views share a page.
_SCRIPT = r"""
(function () {
  "use strict";
  var root = document.getElementById(__ROOT_ID__);
  if (!root || root.dataset.ready) return;
  root.dataset.ready = "1";
  var data = JSON.parse(root.querySelector("script.tv-data").textContent);
  var tokens = Array.prototype.slice.call(root.querySelectorAll(".tv-token"));
  var select = root.querySelector(".tv-checkpoint");
  var detail = root.querySelector(".tv-detail");
  var directionBox = root.querySelector(".tv-direction");
  var T = data.tokens.length, pinned = null, shown = null, direction = "to";
  var STOPS = [[-1, [33, 102, 172]], [-0.5, [146, 197, 222]], [0, [247, 247, 247]], [0.5, [244, 165, 130]],
               [1, [178, 24, 43]]];
  var SUP = {"-": "\u207b", "0": "\u2070", "1": "\u00b9", "2": "\u00b2", "3": "\u00b3", "4": "\u2074",
             "5": "\u2075", "6": "\u2076", "7": "\u2077", "8": "\u2078", "9": "\u2079"};

  function fmt(v) {  // 3 significant digits, a true minus sign, ×10ⁿ outside 10⁻⁴ … 10⁶
    if (v === 0) return "0";
    var e = Math.floor(Math.log10(Math.abs(Number(v.toPrecision(3)))));
    var text;
    if (e < -4 || e >= 6) {
      var m = (v / Math.pow(10, e)).toFixed(2);
      text = m + "\u00d710" + String(e).split("").map(function (c) { return SUP[c]; }).join("");
    } else {
      text = v.toFixed(Math.max(0, 2 - e));
    }
    return text.replace(/^-/, "\u2212");
  }
  function colour(v) {
    var x = Math.max(-1, Math.min(1, v / data.scale));
    for (var k = 1; k < STOPS.length; k++) {
      if (x <= STOPS[k][0]) {
        var a = STOPS[k - 1], b = STOPS[k], f = (x - a[0]) / (b[0] - a[0]);
        var rgb = a[1].map(function (c, i) { return Math.round(c + f * (b[1][i] - c)); });
        return {bg: "rgb(" + rgb.join(",") + ")", fg: Math.abs(x) > 0.6 ? "#fff" : "#111"};
      }
    }
  }
  function value(m, s, t) {  // BIF(s → t); a symmetric matrix comes as its lower triangle
    return data.symmetric[m] && t > s ? data.matrices[m][t][s] : data.matrices[m][s][t];
  }
  function cell(tag, text, cls) {
    var el = document.createElement(tag);
    el.textContent = text;
    if (cls) el.className = cls;
    return el;
  }
  function tokenCell(j) {
    var td = document.createElement("td"), code = cell("code", data.tokens[j]);
    td.appendChild(code);
    td.appendChild(document.createTextNode(" #" + j));
    return td;
  }
  function table(caption, rows) {  // rows: [[j, v]]
    var box = document.createElement("div"), t = document.createElement("table");
    box.appendChild(cell("p", caption, "tv-caption"));
    var head = document.createElement("tr");
    ["token", "class", "BIF"].forEach(function (h) { head.appendChild(cell("th", h)); });
    t.appendChild(head);
    rows.forEach(function (r) {
      var tr = document.createElement("tr");
      tr.dataset.index = r[0];
      tr.appendChild(tokenCell(r[0]));
      tr.appendChild(cell("td", data.classes[r[0]]));
      var num = cell("td", fmt(r[1]), "tv-num");
      var c = colour(r[1]);
      num.style.background = c.bg; num.style.color = c.fg;
      tr.appendChild(num);
      t.appendChild(tr);
    });
    box.appendChild(t);
    return box;
  }
  function strongest(pairs, sign) {  // the 5 most negative (sign -1) or most positive (+1)
    return pairs.filter(function (p) { return sign * p[1] > 0; })
      .sort(function (a, b) { return sign * (b[1] - a[1]); }).slice(0, 5);
  }
  function render() {
    var m = Number(select.value), i = shown;
    tokens.forEach(function (el, j) {
      el.classList.toggle("tv-current", j === i);
      el.setAttribute("aria-pressed", j === pinned ? "true" : "false");
      if (i === null || j === i) { el.style.background = ""; el.style.color = ""; return; }
      var c = colour(direction === "to" ? value(m, i, j) : value(m, j, i));
      el.style.background = c.bg; el.style.color = c.fg;
    });
    detail.textContent = "";
    if (i === null) {
      detail.appendChild(cell("p", "Hover over or click a token to see its class and its influence on and from " +
                                   "the others.", "tv-hint"));
      return;
    }
    var head = document.createElement("p"), tok = cell("code", data.tokens[i], "tv-token-text");
    head.appendChild(document.createTextNode("Token #" + i + " "));
    head.appendChild(tok);
    head.appendChild(document.createTextNode(" at " + data.labels[m] + (pinned === i ? " (kept)" : "")));
    detail.appendChild(head);
    var cls = document.createElement("p");
    cls.appendChild(document.createTextNode("Class: "));
    cls.appendChild(cell("b", data.classes[i] || "none", "tv-class"));
    detail.appendChild(cls);
    detail.appendChild(cell("p", "Own BIF(#" + i + " \u2192 #" + i + "): " + fmt(value(m, i, i)) + " " +
                                 data.units + " (its posterior variance, negated)", "tv-self"));
    var to = [], from = [];
    for (var j = 0; j < T; j++) {
      if (j === i) continue;
      to.push([j, value(m, i, j)]);
      from.push([j, value(m, j, i)]);
    }
    var lists = document.createElement("div");
    lists.className = "tv-lists";
    if (data.symmetric[m]) {
      lists.appendChild(table("Helps most, with (BIF < 0; symmetric here: on = from)", strongest(to, -1)));
      lists.appendChild(table("Harms most, with (BIF > 0)", strongest(to, 1)));
    } else {
      lists.appendChild(table("Its strongest influence on others, BIF(#" + i + " \u2192 t)",
                              strongest(to, -1).concat(strongest(to, 1))));
      lists.appendChild(table("Others' strongest on it, BIF(s \u2192 #" + i + ")",
                              strongest(from, -1).concat(strongest(from, 1))));
    }
    detail.appendChild(lists);
    var all = document.createElement("details"), rows = document.createElement("table");
    all.appendChild(cell("summary", "All " + (T - 1) + " other tokens"));
    var head2 = document.createElement("tr");
    ["token", "class", "on it, BIF(#" + i + " \u2192 t)", "from it, BIF(s \u2192 #" + i + ")"]
      .forEach(function (h) { head2.appendChild(cell("th", h)); });
    rows.appendChild(head2);
    to.forEach(function (p, k) {
      var tr = document.createElement("tr");
      tr.appendChild(tokenCell(p[0]));
      tr.appendChild(cell("td", data.classes[p[0]]));
      tr.appendChild(cell("td", fmt(p[1]), "tv-num"));
      tr.appendChild(cell("td", fmt(from[k][1]), "tv-num"));
      rows.appendChild(tr);
    });
    all.appendChild(rows);
    detail.appendChild(all);
  }
  function show(i) { shown = i; render(); }
  function pin(i) { pinned = pinned === i ? null : i; show(pinned === null ? i : pinned); }
  tokens.forEach(function (el, i) {
    el.addEventListener("mouseenter", function () { show(i); });
    el.addEventListener("mouseleave", function () { show(pinned); });
    el.addEventListener("focus", function () { show(i); });
    el.addEventListener("click", function () { pin(i); });
    el.addEventListener("keydown", function (ev) {
      var next = null;
      if (ev.key === "Enter" || ev.key === " ") { pin(i); ev.preventDefault(); }
      else if (ev.key === "Escape") { pinned = null; show(i); }
      else if (ev.key === "ArrowRight" || ev.key === "ArrowDown") next = Math.min(T - 1, i + 1);
      else if (ev.key === "ArrowLeft" || ev.key === "ArrowUp") next = Math.max(0, i - 1);
      else if (ev.key === "Home") next = 0;
      else if (ev.key === "End") next = T - 1;
      if (next !== null) { tokens[next].focus(); ev.preventDefault(); }
    });
  });
  select.addEventListener("change", render);
  if (data.symmetric.indexOf(false) >= 0) {
    directionBox.hidden = false;
    root.querySelectorAll(".tv-direction input").forEach(function (input) {
      input.addEventListener("change", function () { direction = input.value; render(); });
    });
  }
  root.querySelector(".tv-lo").textContent = fmt(-data.scale) + " helps";
  root.querySelector(".tv-hi").textContent = "harms " + fmt(data.scale);
  render();
})();
"""
