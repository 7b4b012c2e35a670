// Opens pages of the built book in headless Chromium with the network blocked and reports what it saw.
//
//   node check_pages.js <config.json>
//
// config: {playwright, chromium, base, pages: [relative paths], redirects: [those of pages that only redirect],
//          screenshots: dir, report: file}.
// Every request that does not go to `base` (the local server) is aborted and recorded. For each page the
// report holds: console errors and page errors, failed or >= 400 local requests, blocked requests, the
// maths found and rendered by MathJax, raw TeX left in the text, every <img> and whether it loaded, every
// link (absolute) and every id on the page (for the link check done by tests/test_browser.py), the
// download buttons, the article's figures (src, alt, caption, shown and natural width in px), the web fonts
// that loaded, the elements that overflow the content column and the code cells that scroll sideways (longest
// line, in characters), once with the book's fonts and once with wide system fonts in their place (wideFonts),
// in a 1280 x 800 window (a laptop's), with a count of the visible code blocks and of those whose lines wrap
// (codeStats); then once more as printed on A4 (print: the page laid out for print at the paper's width, with
// the same measures and which of the sidebars, header and footer still show). Every request the page made
// (requests). Pages with token views (stagewise.tokenview) get them exercised: a token hovered, another
// clicked, the checkpoint changed, the arrow key pressed, and what the view showed after each (tokenViews).
// A full-page screenshot of each page goes to `screenshots`.
"use strict";
const fs = require("fs");
const path = require("path");

const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const { chromium } = require(config.playwright);

const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

function inspectPage(machinePaths) {
  // Runs in the page, after MathJax has typeset it.
  const maths = Array.from(document.querySelectorAll(".math"));
  const unrendered = maths.filter((m) => !m.querySelector("mjx-container")).map((m) => m.textContent.slice(0, 80));
  const body = document.body.cloneNode(true);
  for (const skip of body.querySelectorAll("pre, code, script, style, textarea, mjx-container, .highlight")) {
    skip.remove();
  }
  const text = body.textContent;
  const rawTex = [];
  for (const token of ["$$", "\\(", "\\)", "\\[", "\\]", "\\begin{"]) {
    const at = text.indexOf(token);
    if (at >= 0) rawTex.push(text.slice(Math.max(0, at - 40), at + 40).replace(/\s+/g, " "));
  }
  const inline = text.match(/\$[^$\n]{0,200}[\\^_{][^$\n]{0,200}\$/);  // $x^2$ or $\lambda$ left as text
  if (inline) rawTex.push(inline[0].slice(0, 80));
  const images = Array.from(document.images).map((img) => ({
    src: img.currentSrc || img.src, ok: img.complete && img.naturalWidth > 0,
  }));
  const links = Array.from(document.querySelectorAll("a[href]")).map((a) => ({
    href: a.href, raw: a.getAttribute("href"),
  }));
  const ids = Array.from(document.querySelectorAll("[id]")).map((e) => e.id)
    .concat(Array.from(document.querySelectorAll("a[name]")).map((a) => a.name));
  const downloads = Array.from(document.querySelectorAll(".dropdown-download-buttons a[href]")).map((a) => a.href);
  const launches = Array.from(document.querySelectorAll(".dropdown-launch-buttons a[href]")).map((a) => a.href);
  // The whole visible text, code and outputs included: no absolute path of the build machine may show.
  const fullText = document.body.innerText;
  const machinePathsShown = machinePaths.filter((p) => fullText.includes(p)).map((p) => {
    const at = fullText.indexOf(p);
    return fullText.slice(Math.max(0, at - 30), at + p.length + 30).replace(/\s+/g, " ");
  });
  // Figures: the images of the article with their alt text and caption (a <figcaption> around them).
  const article = document.querySelector("article") || document.body;
  const figures = Array.from(article.querySelectorAll("img")).map((img) => {
    const figure = img.closest("figure");
    const caption = figure ? figure.querySelector("figcaption") : null;
    return { src: img.getAttribute("src"), alt: img.getAttribute("alt") || "",
             caption: caption ? caption.innerText.trim() : "",
             width: img.getBoundingClientRect().width, naturalWidth: img.naturalWidth };
  });
  return {
    machinePathsShown, figures,
    title: document.title, mathElements: maths.length,
    mjxContainers: document.querySelectorAll("mjx-container").length,
    mathjaxLoaded: typeof window.MathJax === "object" && !!window.MathJax.startup,
    unrendered, rawTex, images, links, ids, downloads, launches,
  };
}

function measureOverflows() {
  // Runs in the page. Elements of the article wider than the content column, or scrolling sideways (2 px of
  // slack: boxes are measured in fractional pixels and a 1 px border rounds either way). The source of a code
  // cell (a <pre> in .cell_input) is reported apart, in `codeOverflows`, with its longest line in characters:
  // code is held to a line length, not to the column's pixels.
  const article = document.querySelector("article") || document.body;
  const column = article.getBoundingClientRect();
  const overflows = [];
  const codeOverflows = [];
  for (const el of article.querySelectorAll("pre, table, img, mjx-container[display='true'], .output, p, li")) {
    const box = el.getBoundingClientRect();
    const scrolls = el.scrollWidth > el.clientWidth + 2 && el.clientWidth > 0;
    if (box.width > 0 && (box.right > column.right + 2 || scrolls)) {
      const px = Math.round(Math.max(box.right - column.right, el.scrollWidth - el.clientWidth));
      const text = (el.innerText || el.getAttribute("src") || "");
      if (el.tagName === "PRE" && el.closest(".cell_input")) {
        const lines = el.textContent.split("\n");
        const longest = lines.reduce((a, b) => (b.length > a.length ? b : a), "");
        codeOverflows.push({ chars: longest.length, px, line: longest.slice(0, 100),
                             folded: el.closest("details:not([open])") !== null });
      } else {
        overflows.push(`${el.tagName.toLowerCase()}: ${text.slice(0, 60).replace(/\s+/g, " ")} (${px} px)`);
      }
    }
  }
  // Every code block (a code cell's source or a literal block, not an output) and whether a line of it wraps: its
  // height as laid out, against its height with lines kept whole (white-space: pre). A cell whose source is
  // folded away (a closed <details>, "Show code cell source") is laid out all the same and counted apart
  // (folded): the reader who opens it gets that layout.
  const code = Array.from(article.querySelectorAll("pre")).filter((el) => el.clientWidth > 0
    && !el.closest(".cell_output, .output") && (el.closest(".cell_input") || el.closest("div.highlight")));
  const codeStats = { blocks: 0, cells: 0, folded: 0, wrapped: 0, wrappedFolded: 0, fontPx: [] };
  for (const el of code) {
    const folded = el.closest("details:not([open])") !== null;
    if (folded) codeStats.folded += 1;
    else codeStats.blocks += 1;
    if (!folded && el.closest(".cell_input")) codeStats.cells += 1;
    const laidOut = el.scrollHeight;
    const before = el.style.whiteSpace;
    el.style.whiteSpace = "pre";
    const whole = el.scrollHeight;
    el.style.whiteSpace = before;
    if (laidOut > whole + 2) codeStats[folded ? "wrappedFolded" : "wrapped"] += 1;
    codeStats.fontPx.push(parseFloat(getComputedStyle(el).fontSize));
  }
  codeStats.fontPx = code.length ? [Math.min(...codeStats.fontPx), Math.max(...codeStats.fontPx)] : [];
  return { overflows, codeOverflows, codeStats };
}

function printedChrome() {
  // Runs in the page laid out for print: the parts of the page that are not the article and still show.
  const parts = [".bd-sidebar-primary", ".bd-sidebar-secondary", ".bd-header", ".bd-header-article",
    ".bd-footer", ".bd-footer-article", ".prev-next-area", "#pst-back-to-top"];
  return parts.filter((selector) => Array.from(document.querySelectorAll(selector)).some((el) => {
    const box = el.getBoundingClientRect();
    return box.width > 0 && box.height > 0 && getComputedStyle(el).visibility !== "hidden";
  }));
}

// The token views of a page (stagewise.tokenview): what one shows, read after each action.
function readTokenView([id, index]) {
  const root = document.getElementById(id);
  const tokens = Array.from(root.querySelectorAll(".tv-token"));
  const detail = root.querySelector(".tv-detail");
  const select = root.querySelector(".tv-checkpoint");
  const text = (selector) => { const el = detail.querySelector(selector); return el ? el.textContent : null; };
  return {
    index, checkpoint: Number(select.value), label: select.options[select.selectedIndex].textContent,
    detail: detail.innerText, classText: text(".tv-class"), self: text(".tv-self"),
    tables: Array.from(detail.querySelectorAll(".tv-lists > div")).map((box) => ({
      caption: box.querySelector(".tv-caption").textContent,
      rows: Array.from(box.querySelectorAll("tr")).slice(1).map((tr) => {
        const cells = tr.querySelectorAll("td");
        return [Number(tr.dataset.index), cells[cells.length - 1].textContent];
      }),
    })),
    visible: tokens.filter((el) => el.getBoundingClientRect().width > 0).length,
    coloured: tokens.filter((el) => el.style.background !== "").length,
    current: tokens.filter((el) => el.classList.contains("tv-current")).map((el) => Number(el.dataset.index)),
    pressed: tokens.filter((el) => el.getAttribute("aria-pressed") === "true").map((el) => Number(el.dataset.index)),
    focused: document.activeElement && root.contains(document.activeElement)
      ? Number(document.activeElement.dataset.index) : null,
  };
}

async function exerciseTokenViews(page) {
  const views = [];
  const ids = await page.$$eval(".stagewise-tokenview", (els) => els.map((el) => el.id));
  for (const id of ids) {
    const root = `#${id}`;
    const count = await page.locator(`${root} .tv-token`).count();
    const token = (i) => page.locator(`${root} .tv-token[data-index="${i}"]`);
    const hovered = Math.floor(count / 2);
    const clicked = count - 1;
    const view = { id, tokens: count, hovered, clicked };
    view.before = await page.evaluate(readTokenView, [id, null]);
    await token(hovered).hover();
    view.hover = await page.evaluate(readTokenView, [id, hovered]);
    await token(clicked).click();
    await page.mouse.move(0, 0);  // the pointer leaves: the clicked token stays chosen
    view.click = await page.evaluate(readTokenView, [id, clicked]);
    const options = await page.locator(`${root} .tv-checkpoint option`).count();
    if (options > 1) {
      await page.selectOption(`${root} .tv-checkpoint`, String(options - 1));
      view.checkpoint = await page.evaluate(readTokenView, [id, clicked]);
    }
    await token(0).focus();
    await page.keyboard.press("ArrowRight");
    view.keyboard = await page.evaluate(readTokenView, [id, Math.min(1, count - 1)]);
    await page.keyboard.press("Enter");
    view.enter = await page.evaluate(readTokenView, [id, Math.min(1, count - 1)]);
    await page.keyboard.press("Escape");
    await token(1).blur();
    view.after = await page.evaluate(readTokenView, [id, null]);
    views.push(view);
  }
  // Each view kept its state while the others were used: several views share a page without crosstalk.
  for (const view of views) view.final = await page.evaluate(readTokenView, [view.id, null]);
  return views;
}

// A second rendering: the book's own fonts replaced by wide system ones (DejaVu Sans, and DejaVu Sans Mono for
// code) with 0.08 em more space between the letters of the text (monospace fonts all advance 0.6 em, so code keeps
// its spacing), wider than any common sans-serif: as on a machine where the
// book's fonts did not load. Without the book's table rules this rendering ran the benchmarks page's metrics
// table 42 px past the column (a fresh Debian machine's fonts had run it 43 px past); a layout that fits only
// with one machine's fonts fails here, not on a reader's machine.
const WIDE_FONTS = `html { --pst-font-family-base: "DejaVu Sans", "Verdana", sans-serif !important;
  --pst-font-family-heading: "DejaVu Sans", "Verdana", sans-serif !important;
  --pst-font-family-monospace: "DejaVu Sans Mono", monospace !important; }
  body { letter-spacing: 0.08em; } pre, code, kbd, samp { letter-spacing: normal; }`;

async function waitForImages(page) {
  await page.evaluate(async () => {
    const pending = Array.from(document.images).map((img) => {
      img.loading = "eager";
      if (img.complete) return null;
      return new Promise((resolve) => {
        img.addEventListener("load", resolve, { once: true });
        img.addEventListener("error", resolve, { once: true });
        setTimeout(resolve, 10000);
      });
    });
    await Promise.all(pending.filter(Boolean));
  });
}

async function main() {
  const userDataDir = fs.mkdtempSync(path.join(require("os").tmpdir(), "stagewise-chromium-"));
  // A new, empty profile (--user-data-dir) for every run; Playwright passes it to Chromium itself.
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: config.chromium, headless: true, args: FLAGS.filter((f) => f !== "--headless"),
    viewport: { width: 1280, height: 800 }, serviceWorkers: "block",
  });
  const report = { pages: [] };
  let current = null;
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (url.startsWith(config.base) || url.startsWith("data:") || url.startsWith("blob:")) return route.continue();
    if (current) current.blocked.push(url);
    return route.abort("blockedbyclient");
  });
  fs.mkdirSync(config.screenshots, { recursive: true });
  for (const relative of config.pages) {
    const page = await context.newPage();
    current = { page: relative, consoleErrors: [], pageErrors: [], failedRequests: [], blocked: [], requests: [] };
    page.on("console", (msg) => {
      if (msg.type() === "error") current.consoleErrors.push(msg.text());
    });
    page.on("pageerror", (err) => current.pageErrors.push(String(err)));
    page.on("requestfailed", (req) => {
      if (req.url().startsWith(config.base)) current.failedRequests.push(`${req.url()} (${req.failure().errorText})`);
    });
    page.on("request", (req) => current.requests.push(req.url()));
    page.on("response", (res) => {
      if (res.status() >= 400) current.failedRequests.push(`${res.url()} (HTTP ${res.status()})`);
    });
    const started = Date.now();
    try {
      await page.goto(config.base + relative, { waitUntil: "load", timeout: 30000 });
      // A redirect page (index.html: <meta http-equiv="refresh">): follow it, then check where it lands.
      if (config.redirects.includes(relative)) {
        await page.waitForURL((u) => u.toString() !== config.base + relative, { timeout: 10000 });
        await page.waitForLoadState("load");
        current.redirectedTo = page.url();
      }
      // MathJax (deferred) typesets after load; its startup promise resolves when the page is done.
      await page.evaluate(async () => {
        if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) {
          await window.MathJax.startup.promise;
        }
      });
      await waitForImages(page);
      await page.waitForLoadState("networkidle", { timeout: 10000 }).catch(() => {});
      await page.evaluate(() => document.fonts.ready);
      current.tokenViews = await exerciseTokenViews(page);
      Object.assign(current, await page.evaluate(inspectPage, config.machinePaths || []));
      Object.assign(current, await page.evaluate(measureOverflows));
      current.fonts = await page.evaluate(() => Array.from(document.fonts).filter((f) => f.status === "loaded")
        .map((f) => f.family.replace(/["']/g, "")).filter((v, i, a) => a.indexOf(v) === i));
      const shot = path.join(config.screenshots, relative.replace(/\.html$/, ".png").replace(/\//g, "__"));
      await page.screenshot({ path: shot, fullPage: true });
      current.screenshot = shot;
      await page.addStyleTag({ content: WIDE_FONTS });
      await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
      current.wideFonts = await page.evaluate(measureOverflows);
      // Printed on A4 (210 mm less Chrome's default margins of 10 mm: 718 CSS px), with the book's fonts.
      await page.evaluate(() => document.querySelectorAll("style").forEach((el) => {
        if (el.textContent.includes("DejaVu Sans Mono")) el.remove();
      }));
      await page.setViewportSize({ width: 718, height: 1000 });
      await page.emulateMedia({ media: "print" });
      await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
      current.print = await page.evaluate(measureOverflows);
      current.print.shown = await page.evaluate(printedChrome);
    } catch (err) {
      current.error = String(err);
    }
    current.seconds = (Date.now() - started) / 1000;
    report.pages.push(current);
    await page.close();
  }
  current = null;
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
  fs.writeFileSync(config.report, JSON.stringify(report, null, 1));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
