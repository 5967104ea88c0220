// The web console in headless Chromium (Debian's, driven by playwright-core
// from tests/pusher/node_modules): sign in through herald dev's one-time
// login link, create an app and a key (its secret shown exactly once),
// publish from the event creator, see an occupied channel listed, and
// check that hostile text (an app name, a message payload, presence member
// info, a channel name as odd as the rules allow) stays text; then the
// debug console: a publish from the event creator, a member joining and
// leaving, a refused connection, pause/resume, filters, clear; and the
// overview's charts and the usage page. Any dialog or script error fails
// the run. Screenshots of the main pages at 1280 px and some at 390 px go
// to HERALD_SCREENSHOTS_DIR (else a temporary folder).
//
// Environment: CONSOLE_URL (the login link), CONSOLE_APP (an app with a
// presence-and-history namespace), CONSOLE_CHANNEL (an occupied channel of
// it whose member's info holds the hostile text), CONSOLE_LEAVER_CHANNEL
// (where a member joins and leaves on request), XSS (that text).
//
// What only an edge client can do, the test running this script does: it
// prints `@@connect` (a member whose client id and info are XSS joins
// CONSOLE_LEAVER_CHANNEL), `@@disconnect` (it leaves) or `@@refuse` (a
// connection with a forged token is refused) and waits for the answer
// line on its standard input.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
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
const leaverChannel = env('CONSOLE_LEAVER_CHANNEL');

// Requests to the test running this script, answered on stdin.
const answers = [];
let answered = null;
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (answered) {
    const done = answered;
    answered = null;
    done(line);
  } else {
    answers.push(line);
  }
});
function ask(what) {
  console.log(`@@${what}`);
  return new Promise((resolve) => {
    if (answers.length) resolve(answers.shift());
    else answered = resolve;
  });
}
const shots = process.env.HERALD_SCREENSHOTS_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'herald-console-shots-'));
fs.mkdirSync(shots, { recursive: true });
const origin = new URL(loginUrl).origin;

let step = 'starting';
const problems = [];
const timer = setTimeout(() => {
  console.error(`FAIL console: the deadline passed during: ${step}`);
  process.exit(1);
}, 150_000);

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
    const watch = (p) => {
      p.on('dialog', (d) => { problems.push(`dialog: ${d.type()} ${d.message()}`); d.dismiss().catch(() => {}); });
      p.on('pageerror', (e) => problems.push(`script error: ${e.message}`));
      p.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
      p.on('response', (r) => { if (r.status() === 404 || r.status() >= 500) problems.push(`${r.status()} for ${r.url()}`); });
    };
    const page = context.pages()[0] || (await context.newPage());
    watch(page);
    // The debug stream runs only on the debug console's page.
    page.on('request', (r) => { if (r.url().includes('/debug/events')) problems.push(`a debug stream opened on ${page.url()}`); });
    const shotOf = (p, name) => p.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
    const shot = (name) => shotOf(page, name);
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

    step = 'the debug console: opening it';
    const debug = await context.newPage();
    watch(debug);
    await debug.goto(`${origin}/console/apps/${demoApp}/debug`);
    const status = debug.locator('[data-debug-status]');
    await status.filter({ hasText: 'Live' }).waitFor({ timeout: 15_000 });
    const rows = debug.locator('table.debug tbody tr');
    const row = (type, text) => debug.locator(`table.debug tbody tr[data-type="${type}"]`, text ? { hasText: text } : {});

    step = 'the debug console: a publish from the event creator arrives';
    // The tap reaches every node shortly after the stream opens: publish
    // until one shows.
    for (let attempt = 0; ; attempt += 1) {
      await page.goto(`${origin}/console/apps/${demoApp}/publish`);
      await page.getByLabel('Channel').fill(channel);
      await page.getByLabel('Event name (optional)').fill('greeting');
      await page.getByLabel('Data').fill(xss);
      await page.getByRole('button', { name: 'Publish' }).click();
      await page.getByText('The message was published.').waitFor();
      try {
        await row('publish', xss).first().waitFor({ timeout: 3_000 });
        break;
      } catch (e) {
        check(attempt < 5, 'no publish row in the debug console after 6 publishes');
      }
    }
    const published = await row('publish', xss).first().innerText();
    check(published.includes(channel) && published.includes('greeting') && published.includes('console'), `the publish row: ${published}`);

    step = 'the debug console: a member joins';
    check((await ask('connect')) === 'connected', 'the member connected');
    await row('connect', xss).first().waitFor({ timeout: 15_000 });
    await row('subscribe', leaverChannel).first().waitFor({ timeout: 15_000 });
    await page.goto(`${origin}/console/apps/${demoApp}/channel?name=${encodeURIComponent(leaverChannel)}`);
    check((await page.locator('table', { hasText: 'Members' }).innerText()).includes(xss), 'the member is listed, its id as text');

    step = 'the debug console: the member leaves';
    check((await ask('disconnect')) === 'disconnected', 'the member disconnected');
    const left = row('disconnect').first();
    await left.waitFor({ timeout: 15_000 });
    const leftText = await left.innerText();
    check(leftText.includes('code') && /\b1000\b/.test(leftText), `the disconnect shows its close code: ${leftText}`);
    const deadline = Date.now() + 20_000;
    for (;;) {
      await page.goto(`${origin}/console/apps/${demoApp}/channel?name=${encodeURIComponent(leaverChannel)}`);
      if ((await page.locator('main').innerText()).includes('No members.')) break;
      check(Date.now() < deadline, 'the member is still listed 20 s after leaving');
      await page.waitForTimeout(250);
    }

    step = 'the debug console: a refused connection';
    check((await ask('refuse')) === 'refused', 'the forged token was refused');
    const refusal = row('refusal', 'invalid_token').first();
    await refusal.waitFor({ timeout: 15_000 });
    check((await refusal.innerText()).includes('reason'), 'the refusal shows its reason');
    check((await debug.locator('img').count()) === 0, 'no img element in the debug console');
    check((await debug.locator('main').innerText()).includes(xss), 'the hostile text is shown as text');
    await shotOf(debug, 'debug-console');

    step = 'the debug console: pause, resume (keyboard), clear';
    const pause = debug.getByRole('button', { name: 'Pause' });
    await pause.focus();
    await debug.keyboard.press('Enter');
    check((await debug.getByRole('button', { name: 'Resume' }).getAttribute('aria-pressed')) === 'true', 'paused');
    const rowsBefore = await rows.count();
    const publishApi = async (ch, data) => {
      const r = await page.request.post(`${origin}/console/apps/${demoApp}/publish`, {
        form: { csrf: await page.locator('input[name="csrf"]').first().inputValue(), channel: ch, data },
        maxRedirects: 0,
      });
      check(r.status() === 303, `publish answered ${r.status()}`);
    };
    await page.goto(`${origin}/console/apps/${demoApp}/publish`);
    await publishApi('room:paused', 'one');
    await publishApi('room:paused', 'two');
    await status.filter({ hasText: '2 waiting' }).waitFor({ timeout: 15_000 });
    check((await rows.count()) === rowsBefore, 'nothing is added while paused');
    await debug.getByRole('button', { name: 'Resume' }).click();
    await row('publish', 'room:paused').nth(1).waitFor();
    await debug.getByRole('button', { name: 'Clear' }).click();
    check((await rows.count()) === 0, 'cleared');

    step = 'the debug console: a channel filter';
    await debug.getByLabel('Channel prefix (optional)').fill('news:');
    await debug.getByLabel('publish', { exact: true }).check();
    await debug.getByRole('button', { name: 'Apply filters' }).click();
    await debug.waitForURL(/channel=news%3A/);
    await status.filter({ hasText: 'Live' }).waitFor({ timeout: 15_000 });
    await publishApi('room:filtered-out', 'no');
    await publishApi('news:kept', 'yes');
    await row('publish', 'news:kept').first().waitFor({ timeout: 15_000 });
    check((await rows.count()) === 1, `only the filtered channel: ${await rows.count()} rows`);
    await debug.setViewportSize({ width: 390, height: 844 });
    const debugOverflow = await debug.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(debugOverflow <= 1, `the debug console scrolls sideways at 390 px by ${debugOverflow} px`);
    await shotOf(debug, 'debug-console-390');
    await debug.close();

    step = 'the overview: charts and figures';
    await page.goto(`${origin}/console/apps/${demoApp}/overview`);
    // Counts reach the usage rows within the report interval.
    await page.waitForFunction(() => {
      const f = document.querySelector('[data-figure="published"]');
      return f && f.textContent !== '0' && document.querySelector('svg[data-chart="messages"] polyline');
    }, null, { timeout: 40_000 });
    check((await page.locator('svg[data-chart] polyline').count()) >= 5, 'the line charts are drawn');
    check((await page.locator('[data-figure="connections_now"]').innerText()).length > 0, 'connections as text');
    await shot('overview');

    step = 'the usage page';
    await page.goto(`${origin}/console/apps/${demoApp}/usage`);
    check((await page.locator('table.usage tbody tr').count()) >= 1, 'usage rows are shown');
    await page.getByLabel('Unit').selectOption('hour');
    await page.getByRole('button', { name: 'Show' }).click();
    await page.getByText('Usage per hour (UTC)').waitFor();
    await shot('usage');

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
