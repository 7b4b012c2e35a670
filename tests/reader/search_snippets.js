// Opens the built book's search page from disk (file://), network blocked, searches for a word and reports
// each hit with its snippet:  node search_snippets.js <playwright-core> <chromium> <search.html URL> <word>
// Used by tests/test_book_reader.py: a book read offline must show search results with snippets.
"use strict";
const { chromium } = require(process.argv[2]);
(async () => {
  const browser = await chromium.launch({ executablePath: process.argv[3], args: ["--no-sandbox", "--headless"] });
  const page = await browser.newPage();
  const external = [];
  await page.route("**/*", (route) => {
    const url = route.request().url();
    if (url.startsWith("file://")) return route.continue();
    external.push(url); return route.abort();
  });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(process.argv[4] + "?q=" + encodeURIComponent(process.argv[5]), { waitUntil: "load" });
  await page.waitForSelector("#search-results li", { timeout: 20000 });
  await page.waitForTimeout(1500);
  const hits = await page.$$eval("#search-results li", (lis) => lis.map((li) => ({
    link: li.querySelector("a") && li.querySelector("a").getAttribute("href"),
    snippet: (li.querySelector("p.context") || { textContent: "" }).textContent })));
  console.log(JSON.stringify({ hits, external, errors }));
  await browser.close();
})().catch((e) => { console.error(e); process.exit(1); });
