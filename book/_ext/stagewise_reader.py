"""What the book gives a reader beyond its pages (``sphinx: local_extensions`` in ``book/_config.yml``).

* **Downloads**: every chapter page ends with links to its results — the chapter's ``metrics.json`` (every key
  number with the parameters, seed and versions) and the CSV tables it wrote (the executed notebook is the
  page's own download button) — copied next to the page into ``_build/html/chapters/<stem>/`` so they download from the page itself, offline.
* **The scorecard**: the landing page's table of the paper's claims against this build
  (:mod:`stagewise.scorecard`), written as ``_scorecard.inc`` from the chapters' ``metrics.json`` before Sphinx
  reads the pages, so the front page cannot disagree with the chapters it summarizes.
* **Instructor notes**: the course page's table of what a class running the quick profile should see, one
  row per quick-profile bound of ``notebooks/expected.yaml`` (which ``make test`` enforces) with the values
  measured when the bound was set, written as ``_course_bounds.inc``.
* **Search snippets offline**: Sphinx's search page shows a snippet of each hit by fetching the hit's page;
  a book opened from disk (``file://``) cannot fetch, so hits came without snippets. The build writes the
  text of every page, its sections kept, into ``_static/search_texts.js``, and the search page answers those
  fetches from it. Nothing is requested from a network either way.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

__all__ = ["setup"]

TEXTS = "search_texts.js"


def _chapter_files(app, pagename: str) -> list[Path]:
    """The result files of chapter page ``pagename`` ("chapters/<stem>"): its metrics and tables."""
    if not pagename.startswith("chapters/"):
        return []
    stem = pagename.split("/", 1)[1]
    folder = Path(app.srcdir) / "chapters" / stem
    metrics = folder / "metrics.json"
    return ([metrics] if metrics.is_file() else []) + sorted(folder.rglob("*.csv"))


def _relative(app, stem: str, path: Path) -> str:
    """``path`` relative to the chapters folder: "<stem>/metrics.json", "<stem>/sweeps/table.csv"."""
    return path.relative_to(Path(app.srcdir) / "chapters").as_posix()


def _downloads(app, pagename, templatename, context, doctree) -> None:
    files = _chapter_files(app, pagename)
    if not files or "body" not in context:
        return
    stem = pagename.split("/", 1)[1]
    items = []
    for path in files:
        target = _relative(app, stem, path)
        label = ("every key number of this run, with its parameters, seed and package versions"
                 if path.name == "metrics.json" else "a table of this run")
        items.append(f'<li><a class="reference download" href="{html.escape(target)}" download>'
                     f'<code>{html.escape(target.split("/", 1)[1])}</code></a> — {html.escape(label)}</li>')
    context["body"] += ('<section id="results-of-this-chapter" class="stagewise-downloads">'
                        '<h2>Results of this chapter<a class="headerlink" href="#results-of-this-chapter" '
                        'title="Link to this heading">#</a></h2>'
                        "<p>Download what this build of the chapter measured:</p><ul style=\"overflow-wrap: anywhere\">" + "".join(items)
                        + "</ul></section>")


def _copy_downloads(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir)
    for pagename in app.env.found_docs:
        for path in _chapter_files(app, pagename):
            target = out / "chapters" / _relative(app, pagename.split("/", 1)[1], path)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


def _page_text(page: Path) -> str:
    """The page's main content, reduced to its sections and their text (what search snippets are cut from)."""
    from bs4 import BeautifulSoup  # a dependency of pydata-sphinx-theme

    soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    main = soup.find(attrs={"role": "main"})
    if main is None:
        return ""
    for tag in main.select(".headerlink, script, style, .cell_input, img, svg, nav, .onlyprint, .bd-toc, "
                           "[class*='toc'], .prev-next-area"):
        tag.decompose()

    def reduce(node) -> str:
        parts = []
        for child in node.children:
            if getattr(child, "name", None) is None:
                parts.append(html.escape(re.sub(r"\s+", " ", str(child))))
            elif child.name == "section" and child.get("id"):
                parts.append(f'<section id="{html.escape(child["id"])}">{reduce(child)}</section>')
            else:
                parts.append(reduce(child))
        return "".join(parts)

    return f'<div role="main">{reduce(main)}</div>'


def _search_texts(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir)
    texts = {}
    for docname in sorted(app.env.found_docs):
        page = out / f"{docname}.html"
        if page.is_file():
            texts[docname + ".html"] = _page_text(page)
    payload = json.dumps(texts, ensure_ascii=False, separators=(",", ":"))
    (out / "_static" / TEXTS).write_text(
        "// The text of every page, for search snippets without fetching (stagewise_reader.py).\n"
        f"window.STAGEWISE_SEARCH_TEXTS = {payload};\n"
        "(function () {\n"
        "  const original = window.fetch ? window.fetch.bind(window) : null;\n"
        "  window.fetch = function (resource, options) {\n"
        "    const url = new URL(String(resource && resource.url ? resource.url : resource), document.baseURI);\n"
        "    const root = new URL(document.documentElement.dataset.content_root || './', document.baseURI);\n"
        "    const name = url.href.startsWith(root.href) ? decodeURI(url.href.slice(root.href.length)) : null;\n"
        "    if (name !== null && Object.prototype.hasOwnProperty.call(window.STAGEWISE_SEARCH_TEXTS, name)) {\n"
        "      return Promise.resolve(new Response(window.STAGEWISE_SEARCH_TEXTS[name],\n"
        "        { headers: { 'Content-Type': 'text/html' } }));\n"
        "    }\n"
        "    return original ? original(resource, options) : Promise.reject(new Error('no fetch'));\n"
        "  };\n"
        "})();\n",
        encoding="utf-8",
    )


def _search_page_script(app, pagename, templatename, context, doctree) -> None:
    if pagename == "search":
        app.add_js_file(TEXTS, priority=100)  # before searchtools.js (priority 500) shows any hit


def _scorecard(app) -> None:
    from stagewise import scorecard

    chapters = Path(app.srcdir) / "chapters"
    rows = scorecard.from_build(chapters) if chapters.is_dir() else scorecard.scorecard({})
    (Path(app.srcdir) / "_scorecard.inc").write_text(scorecard.markdown(rows), encoding="utf-8")


def _bound_text(bound: dict) -> str:
    if "equals" in bound:
        return f"= {bound['equals']}"
    low, high = bound.get("min"), bound.get("max")
    if low is not None and high is not None:
        return f"{low} … {high}"
    return f"≥ {low}" if low is not None else f"≤ {high}"


def _course_bounds(app) -> None:
    import yaml

    import stagewise

    expected = Path(stagewise.__file__).resolve().parents[1] / "notebooks" / "expected.yaml"
    lines = []
    if expected.is_file():
        data = yaml.safe_load(expected.read_text(encoding="utf-8")) or {}
        lines = ["| Chapter | Key of metrics.json | Quick bound | Measured when the bound was set |", "|---|---|---|---|"]
        for chapter, profiles in data.items():
            first = True
            for key, bound in ((profiles or {}).get("quick") or {}).items():
                if not isinstance(bound, dict):
                    continue
                name = f"{{doc}}`Chapter {int(chapter[:2])} <chapters/{chapter}>`" if first else ""
                first = False
                cells = [name, f"`{key}`", _bound_text(bound), bound.get("note", "")]
                lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    else:
        lines = [f"(`notebooks/expected.yaml` is not next to this installation of stagewise: {expected})"]
    (Path(app.srcdir) / "_course_bounds.inc").write_text("\n".join(lines) + "\n", encoding="utf-8")


def setup(app):
    app.connect("builder-inited", _scorecard)
    app.connect("builder-inited", _course_bounds)
    app.connect("html-page-context", _downloads, priority=700)
    app.connect("html-page-context", _search_page_script, priority=50)
    app.connect("build-finished", _copy_downloads)
    app.connect("build-finished", _search_texts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
