// A scriptable headless Chromium (playwright-core, Debian's chromium; never downloads a browser)
// for the console tests. Reads one JSON command per line on stdin, answers one JSON line each:
// {"ok":true,...} or {"ok":false,"error":"..."}. The console's self-signed certificate is
// accepted (the test checks its fingerprint separately).
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'carevoice-console-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  ignoreHTTPSErrors: true,
  // CONSOLE_NO_JS=1: a browser without JavaScript, to check that every page still works.
  javaScriptEnabled: process.env.CONSOLE_NO_JS !== '1',
  viewport: { width: 1200, height: 800 },
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = context.pages()[0] ?? await context.newPage();
const consoleErrors = [];
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });

async function navigation(action) {
  const [response] = await Promise.all([
    page.waitForNavigation({ waitUntil: 'load', timeout: 20000 }),
    action(),
  ]);
  return { status: response?.status() ?? null, url: page.url() };
}

async function run(c) {
  switch (c.op) {
    case 'goto': {
      const r = await page.goto(c.url, { waitUntil: 'load', timeout: 20000 });
      return { status: r?.status() ?? null, url: page.url() };
    }
    case 'fill':
      await page.fill(c.selector, c.value, { timeout: 5000 });
      return {};
    case 'submit': // click a button that submits a form and wait for the next page
      return navigation(() => page.click(c.selector, { timeout: 5000 }));
    case 'follow': // follow a link and wait for the next page
      return navigation(() => page.click(c.selector, { timeout: 5000 }));
    case 'text':
      return { text: await page.locator(c.selector).first().innerText({ timeout: c.timeout ?? 5000 }).catch(() => null) };
    case 'page':
      return { url: page.url(), title: await page.title(), text: await page.locator('body').innerText() };
    case 'wait': { // wait until a selector is visible; reports how long it took
      const t0 = Date.now();
      await page.locator(c.selector).first().waitFor({ state: 'visible', timeout: c.timeout ?? 5000 });
      return { ms: Date.now() - t0 };
    }
    case 'count':
      return { count: await page.locator(c.selector).count() };
    case 'has_class':
      return { value: await page.locator(c.selector).first().evaluate((e, k) => e.classList.contains(k), c.class) };
    case 'mark': // a value that survives only as long as the page is not reloaded
      await page.evaluate(() => { window.__carevoiceMark = 'still here'; });
      return {};
    case 'marked':
      return { value: await page.evaluate(() => window.__carevoiceMark ?? null) };
    case 'screenshot':
      await page.screenshot({ path: c.path, fullPage: true });
      return {};
    case 'cookies':
      return { cookies: await context.cookies() };
    case 'set_cookie':
      await context.addCookies([{ name: c.name, value: c.value, url: c.url, secure: c.secure ?? true,
                                  httpOnly: true, sameSite: 'Strict' }]);
      return {};
    case 'clear_cookies':
      await context.clearCookies();
      return {};
    case 'request': { // a request with the browser's cookies but headers and body as given
      const options = { method: c.method ?? 'POST', headers: c.headers ?? {}, maxRedirects: 0 };
      if (c.body !== undefined) options.data = c.body;
      const r = await context.request.fetch(c.url, options);
      return { status: r.status(), text: await r.text() };
    }
    case 'cross_origin_post': // from the page now open (another origin), a real form POST to url
      return navigation(() => page.evaluate(({ url, fields }) => {
        const form = document.createElement('form');
        form.method = 'POST';
        form.action = url;
        for (const [k, v] of Object.entries(fields)) {
          const input = document.createElement('input');
          input.name = k; input.value = v; form.appendChild(input);
        }
        document.body.appendChild(form);
        form.submit();
      }, { url: c.url, fields: c.fields ?? {} }));
    case 'console_errors':
      return { errors: consoleErrors.splice(0) };
    default:
      throw new Error(`unknown op ${c.op}`);
  }
}

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let answer;
  try {
    answer = { ok: true, ...(await run(JSON.parse(line))) };
  } catch (e) {
    answer = { ok: false, error: String(e?.message ?? e) };
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
}
await context.close();
fs.rmSync(userDataDir, { recursive: true, force: true });
