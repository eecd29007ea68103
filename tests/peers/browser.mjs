// Headless Debian Chromium driven by playwright-core (never downloads a browser), for tests.
// Usage: node browser.mjs URL SCREENSHOT.png  -> prints {"title", "status", "text"} as JSON.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const [url, shot] = process.argv.slice(2);
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'carevoice-chromium-'));
const browser = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = browser.pages()[0] ?? await browser.newPage();
  const response = await page.goto(url, { waitUntil: 'load', timeout: 20000 });
  const status = await page.locator('#status').textContent({ timeout: 5000 }).catch(() => null);
  if (shot) await page.screenshot({ path: shot });
  console.log(JSON.stringify({ http: response?.status(), title: await page.title(), status,
                               text: await page.locator('body').innerText() }));
} finally {
  await browser.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
