"""The whole book as one printable PDF, made offline from a built book.

Jupyter Book's own PDF routes need what a machine without internet lacks (``pdfhtml`` downloads a Chromium
through pyppeteer; ``pdflatex`` needs a TeX installation of several GB). This module uses what the book's
browser test already installs: the staged book is rendered by Sphinx's ``singlehtml`` builder into one page,
and headless Chromium prints that page (its MathJax, fonts and figures all served from disk) with the book's
print stylesheet. ``python -m stagewise pdf`` (``make pdf``) runs it after ``make book``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .book import jupyter_book

__all__ = ["PdfError", "build_pdf", "find_chromium"]

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class PdfError(RuntimeError):
    """The PDF cannot be made: what is missing and the command that provides it are named."""


def find_chromium() -> str:
    """A headless-capable Chromium: ``$CHROMIUM``, else the first of :data:`CHROMIUM_NAMES` on the PATH."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        if not Path(explicit).is_file():
            raise PdfError(f"CHROMIUM={explicit} is not a file; unset it or point it to a Chromium executable")
        return explicit
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise PdfError("no Chromium found (looked for " + ", ".join(CHROMIUM_NAMES) + "); `make browser-deps` "
                   "installs Debian's chromium, or set CHROMIUM to an executable")


def build_pdf(stage: str | Path, output: str | Path, *, timeout: float = 900, log=print) -> Path:
    """Render the staged book ``stage`` (``build/<profile>``, made by ``python -m stagewise book``) as one
    page and print it to ``output``; returns ``output``. The PDF is written next to its final name and moved
    there once complete, so an interrupted run never leaves a truncated file under that name."""
    stage, output = Path(stage), Path(output)
    if not (stage / "_config.yml").is_file() or not (stage / "_toc.yml").is_file():
        raise PdfError(f"{stage} is not a staged book (no _config.yml / _toc.yml): build the book first "
                       "(`make book`, or `python -m stagewise book --profile quick`)")
    chromium = find_chromium()
    single = stage / "_build" / "singlehtml"
    log(f"pdf: one-page HTML of {stage} ...")
    done = subprocess.run([*jupyter_book(), "build", str(stage), "--builder", "custom", "--custom-builder",
                           "singlehtml", "--quiet"], capture_output=True, text=True, timeout=timeout, check=False)
    page = single / "intro.html"
    if done.returncode != 0 or not page.is_file():
        raise PdfError(f"the one-page HTML build failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n"
                       f"{done.stderr[-3000:]}")
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    partial.unlink(missing_ok=True)
    log(f"pdf: printing {page} with {chromium} ...")
    printed = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
         "--disable-background-networking", "--virtual-time-budget=30000", f"--print-to-pdf={partial}",
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=timeout, check=False)
    if printed.returncode != 0 or not partial.is_file() or partial.stat().st_size == 0:
        partial.unlink(missing_ok=True)
        raise PdfError(f"Chromium could not print {page} (exit {printed.returncode}):\n{printed.stderr[-3000:]}")
    os.replace(partial, output)
    log(f"pdf: {output} ({output.stat().st_size / 1e6:.1f} MB)")
    return output
