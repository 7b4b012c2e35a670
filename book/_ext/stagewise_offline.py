"""A small Sphinx extension for the book (``sphinx: local_extensions`` in ``book/_config.yml``).

It fixes what the browser test (tests/test_browser.py) found in Jupyter Book 1's pages:

* every page carried sphinx-thebe's configuration script twice, and the second copy threw
  ``SyntaxError: Identifier 'THEBE_JS_URL' has already been declared``: scripts are de-duplicated;
* with no colour mode stored yet, pydata-sphinx-theme logged ``Got invalid theme mode``: the default
  mode is ``auto`` (the reader's system setting) unless the configuration sets one;
* a chapter's Binder link named ``<path_to_book>/chapters/<stem>.ipynb``, which only exists in the
  build: it opens the chapter's committed source ``notebooks/<stem>.md`` in JupyterLab instead (which opens
  it as a notebook through jupytext, as ``postBuild`` configures). The builder adds launch buttons only when
  the book names a repository. Launch links stay plain links: nothing is requested until one is clicked.
"""

from __future__ import annotations

__all__ = ["setup"]


def _default_mode(app, config) -> None:
    context = dict(config.html_context or {})
    context.setdefault("default_mode", "auto")  # a template variable of pydata-sphinx-theme
    config.html_context = context


def _unique_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        attributes = getattr(script, "attributes", {}) or {}
        # the same file or inline body with the same attributes, whatever its priority
        key = (getattr(script, "filename", str(script)) or "", tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique  # in place: the builder's own list, which later handlers may still extend


def _binder_opens_the_source(app, pagename, templatename, context, doctree) -> None:
    if not pagename.startswith("chapters/"):
        return
    built = f"{pagename}.ipynb"
    source = f"notebooks/{pagename.split('/', 1)[1]}.md"
    for group in context.get("header_buttons", []):
        if group.get("label") != "launch-buttons":
            continue
        for button in group.get("buttons", []):
            url = button.get("url", "")
            if button.get("text") == "Binder" and "?urlpath=" in url and url.endswith(built):
                button["url"] = url.split("?urlpath=")[0] + "?urlpath=lab/tree/" + source


def setup(app):
    app.connect("config-inited", _default_mode)
    # Early: html-page-context stops at the first handler that returns a template name.
    app.connect("html-page-context", _unique_scripts, priority=100)
    app.connect("html-page-context", _binder_opens_the_source, priority=600)  # after the theme's launch buttons
    return {"parallel_read_safe": True, "parallel_write_safe": True}
