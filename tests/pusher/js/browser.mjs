// pusher-js's browser bundle in headless Chromium (Debian's, driven by
// playwright-core): a page served by a local HTTP server loads
// pusher-js/dist/web/pusher.min.js, connects to Herald, subscribes to a
// private channel — authorized by the page's own host, which signs with
// the Node server library — and receives an event triggered by that
// library. The assertions read the page's state.

import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';
import { check, checkEqual, config, run, server, step, unique, waitFor } from './lib.mjs';

const require = createRequire(import.meta.url);
const bundle = path.join(path.dirname(require.resolve('pusher-js/package.json')), 'dist', 'web', 'pusher.min.js');
const chromiumPath = '/usr/bin/chromium';

function page(channel) {
  const options = {
    wsHost: config.host,
    wsPort: config.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    cluster: 'mt1',
  };
  return `<!doctype html>
<meta charset="utf-8">
<title>Herald Pusher test</title>
<script src="/pusher.min.js"></script>
<script>
  window.state = { connected: false, subscribed: false, events: [], errors: [], states: [] };
  const options = ${JSON.stringify(options)};
  options.channelAuthorization = {
    customHandler: ({ socketId, channelName }, callback) => {
      fetch('/auth', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ socket_id: socketId, channel_name: channelName }),
      })
        .then((res) => (res.ok ? res.json() : Promise.reject(new Error('auth answered ' + res.status))))
        .then((auth) => callback(null, auth), (e) => callback(e, null));
    },
  };
  const pusher = new Pusher(${JSON.stringify(config.key)}, options);
  pusher.connection.bind('state_change', (s) => window.state.states.push(s.current));
  pusher.connection.bind('connected', () => { window.state.connected = true; window.state.socketId = pusher.connection.socket_id; });
  pusher.connection.bind('error', (e) => window.state.errors.push(JSON.stringify(e)));
  const channel = pusher.subscribe(${JSON.stringify(channel)});
  channel.bind('pusher:subscription_succeeded', () => { window.state.subscribed = true; });
  channel.bind('pusher:subscription_error', (e) => window.state.errors.push('subscription_error ' + JSON.stringify(e)));
  channel.bind('greeting', (data) => window.state.events.push(data));
</script>
<p>Herald</p>
`;
}

/** The page, the bundle, and /auth signing with the server library. */
function serve(srv, channel, log) {
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page(channel));
    } else if (req.method === 'GET' && req.url === '/pusher.min.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' }).end(fs.readFileSync(bundle));
    } else if (req.method === 'POST' && req.url === '/auth') {
      let body = '';
      req.on('data', (chunk) => { body += chunk; });
      req.on('end', () => {
        try {
          const { socket_id: socketId, channel_name: name } = JSON.parse(body);
          log.push(`auth ${name} for ${socketId}`);
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(srv.authorizeChannel(socketId, name)));
        } catch (e) {
          log.push(`auth failed: ${e.message}`);
          res.writeHead(403).end(e.message);
        }
      });
    } else {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

run('browser (headless Chromium)', async () => {
  check(fs.existsSync(chromiumPath), `${chromiumPath} is missing: run bash tests/pusher/install.sh`);
  check(fs.existsSync(bundle), `${bundle} is missing: run bash tests/pusher/install.sh`);
  const srv = server();
  const channel = unique('private-browser');
  const log = [];

  step('serving the page');
  const web = await serve(srv, channel, log);
  const origin = `http://127.0.0.1:${web.address().port}`;
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-chromium-'));
  let context;
  try {
    step('launching Chromium');
    context = await chromium.launchPersistentContext(profile, {
      executablePath: chromiumPath,
      headless: true,
      timeout: 30_000,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const tab = context.pages()[0] || (await context.newPage());
    const consoleLines = [];
    tab.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    tab.on('pageerror', (e) => consoleLines.push(`page error: ${e.message}`));
    await tab.goto(origin, { timeout: 10_000 });
    const state = () => tab.evaluate(() => window.state);
    const describe = async () => `page state ${JSON.stringify(await state())}; auth ${JSON.stringify(log)}; console ${JSON.stringify(consoleLines.slice(-10))}`;

    step('the page connects and subscribes');
    try {
      await waitFor(async () => (await state()).connected, 10_000, 'the page to connect');
      await waitFor(async () => (await state()).subscribed, 10_000, `the page to subscribe to ${channel}`);
    } catch (e) {
      throw new Error(`${e.message}; ${await describe()}`);
    }
    check(log.some((l) => l.startsWith(`auth ${channel}`)), `the page never asked its host to authorize: ${await describe()}`);

    step('triggering from the server library');
    const sent = { text: 'hello browser', at: Date.now() };
    await srv.trigger(channel, 'greeting', sent);
    try {
      await waitFor(async () => (await state()).events.length > 0, 5000, 'the event in the page');
    } catch (e) {
      throw new Error(`${e.message}; ${await describe()}`);
    }
    const final = await state();
    checkEqual(final.events, [sent], 'the events the page received');
    check(final.errors.length === 0, `the page saw errors: ${JSON.stringify(final.errors)}`);
  } finally {
    if (context) await context.close().catch(() => {});
    web.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}, { deadlineMs: 90_000 });
