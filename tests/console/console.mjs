// The web console in headless Chromium (Debian's, driven by playwright-core
// from tests/pusher/node_modules): sign in through herald dev's one-time
// login link, create an app and a key (its secret shown exactly once),
// publish from the event creator, see an occupied channel listed, and
// check that hostile text (an app name, a message payload, presence member
// info, a channel name as odd as the rules allow) stays text. Any dialog
// or script error fails the run. Screenshots of the main pages at 1280 px
// and one at 390 px go to HERALD_SCREENSHOTS_DIR (else a temporary folder).
//
// Environment: CONSOLE_URL (the login link), CONSOLE_APP (an app with a
// presence-and-history namespace), CONSOLE_CHANNEL (an occupied channel of
// it whose member's info holds the hostile text), XSS (that text).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '..', 'pusher', 'package.json'));
const { chromium } = require('playwright-core');
const chromiumPath = '/usr/bin/chromium';

function env(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`FAIL: ${name} is not set`);
    process.exit(2);
  }
  return v;
}

const loginUrl = env('CONSOLE_URL');
const demoApp = env('CONSOLE_APP');
const channel = env('CONSOLE_CHANNEL');
const xss = env('XSS');
const shots = process.env.HERALD_SCREENSHOTS_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'herald-console-shots-'));
fs.mkdirSync(shots, { recursive: true });
const origin = new URL(loginUrl).origin;

let step = 'starting';
const problems = [];
const timer = setTimeout(() => {
  console.error(`FAIL console: the deadline passed during: ${step}`);
  process.exit(1);
}, 90_000);

function check(ok, what) {
  if (!ok) throw new Error(what);
}

async function main() {
  check(fs.existsSync(chromiumPath), `${chromiumPath} is missing: run bash tests/pusher/install.sh`);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-chromium-'));
  step = 'launching Chromium';
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    timeout: 30_000,
    viewport: { width: 1280, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.on('dialog', (d) => { problems.push(`dialog: ${d.type()} ${d.message()}`); d.dismiss().catch(() => {}); });
    page.on('pageerror', (e) => problems.push(`script error: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
    page.on('response', (r) => { if (r.status() === 404 || r.status() >= 500) problems.push(`${r.status()} for ${r.url()}`); });
    const shot = (name) => page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
    const noProblems = () => check(problems.length === 0, `problems in the page: ${JSON.stringify(problems)}`);

    step = 'signing in through the login link';
    await page.goto(loginUrl);
    check(new URL(page.url()).pathname === '/console/apps', `after the link: ${page.url()}`);
    check(!page.url().includes('/login/'), 'the secret left the URL');
    await page.getByRole('heading', { name: 'Apps' }).waitFor();
    await shot('apps');

    step = 'creating an app with a hostile name';
    await page.getByLabel('Name', { exact: true }).fill(xss);
    await page.getByLabel('Id (optional)').fill('xssapp');
    await page.getByRole('button', { name: 'Create app' }).click();
    await page.waitForURL(/\/console\/apps\/xssapp\?done=created/);
    check((await page.locator('main').innerText()).includes(xss), 'the app name is shown as text');
    check((await page.locator('img').count()) === 0, 'no img element was made from the name');
    await shot('app-settings');
    await page.goto(`${origin}/console/apps`);
    check((await page.locator('td', { hasText: xss }).count()) === 1, 'the list shows the name as text');

    step = 'creating a key';
    await page.goto(`${origin}/console/apps/xssapp/keys`);
    await page.getByLabel('Name', { exact: true }).fill('backend');
    await page.getByLabel('Capabilities').fill('chat:* subscribe publish\n* presence');
    await page.getByRole('button', { name: 'Create key' }).click();
    const secret = (await page.locator('#new-key').innerText()).trim();
    check(/^hk_/.test(secret), `the secret is shown: ${secret}`);
    check(await page.getByRole('button', { name: 'Copy' }).isVisible(), 'a copy button');
    await shot('keys-created');
    await page.goto(`${origin}/console/apps/xssapp/keys`);
    check(!(await page.content()).includes(secret), 'the secret is not shown a second time');
    check((await page.locator('td', { hasText: 'backend' }).count()) === 1, 'the key is listed');

    step = 'publishing from the event creator';
    await page.goto(`${origin}/console/apps/${demoApp}/publish`);
    await page.getByLabel('Channel').fill(channel);
    await page.getByLabel('Event name (optional)').fill('greeting');
    await page.getByLabel('Data').fill(xss);
    await page.getByRole('button', { name: 'Publish' }).click();
    await page.getByText('The message was published.').waitFor();
    await shot('event-creator');

    step = 'seeing the occupied channel listed';
    await page.goto(`${origin}/console/apps/${demoApp}/channels`);
    await page.locator('td code', { hasText: channel }).first().waitFor({ timeout: 15_000 });
    // The table refreshes itself from channels.json: wait for one refresh.
    await page.waitForResponse((r) => r.url().includes('/channels.json'), { timeout: 10_000 });
    await page.locator('td code', { hasText: channel }).first().waitFor();
    await shot('channels');

    step = 'the channel page: presence info and history as text';
    await page.locator('td a', { hasText: channel }).first().click();
    await page.getByRole('heading', { name: 'Channel' }).waitFor();
    const main = await page.locator('main').innerText();
    check(main.includes(channel), 'the channel name is shown');
    check((await page.locator('table', { hasText: 'Members' }).innerText()).includes(xss), `presence info shown as text: ${main}`);
    check((await page.locator('table', { hasText: 'Seq' }).innerText()).includes(xss), `the payload shown as text: ${main}`);
    check((await page.locator('img').count()) === 0, 'no img element on the channel page');
    await shot('channel');

    step = 'token generator, namespaces, webhooks';
    await page.goto(`${origin}/console/apps/${demoApp}/tokens`);
    await page.getByLabel('Client id').fill('user-1');
    await page.getByRole('button', { name: 'Generate token' }).click();
    check((await page.locator('#new-token').innerText()).split('.').length === 3, 'a JWT is shown');
    await shot('token-generator');
    await page.goto(`${origin}/console/apps/${demoApp}/namespaces`);
    await shot('namespaces');
    await page.goto(`${origin}/console/apps/${demoApp}/webhooks`);
    await shot('webhooks');

    step = 'keyboard only: the skip link and the sign-out button';
    await page.goto(`${origin}/console/apps`);
    await page.keyboard.press('Tab');
    check(await page.evaluate(() => document.activeElement && document.activeElement.textContent === 'Skip to content'), 'the first Tab reaches the skip link');

    step = 'at 390 px';
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${origin}/console/apps/${demoApp}`);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 1, `the page scrolls sideways at 390 px by ${overflow} px`);
    await shot('app-settings-390');

    noProblems();
    step = 'signing out';
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(/\/console\/signin$/);
    const before = problems.length;
    const used = await page.goto(loginUrl);
    check(used.status() === 403, `a used link answers 403, not ${used.status()}`);
    check((await page.locator('main').innerText()).includes('already used'), 'the link works once');
    // The browser logs the expected 403 of that page.
    problems.splice(before, problems.length - before, ...problems.slice(before).filter((p) => !p.includes('403')));
    noProblems();
  } finally {
    await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().then(
  () => {
    clearTimeout(timer);
    console.log(`ok console (screenshots in ${shots})`);
    process.exit(0);
  },
  (e) => {
    clearTimeout(timer);
    console.error(`FAIL console: during "${step}": ${e instanceof Error ? e.message : e}`);
    if (problems.length) console.error(`page problems: ${JSON.stringify(problems)}`);
    process.exit(1);
  },
);
