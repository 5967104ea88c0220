// What every Pusher-compatibility script shares: the configuration from the
// environment, a deadline for the whole script, waiting on conditions with a
// timeout, and factories for the official libraries — pusher-js (the
// client) and pusher (the Node server library) — pointed at Herald.
//
// Environment: PUSHER_HOST, PUSHER_PORT, PUSHER_APP_ID, PUSHER_KEY,
// PUSHER_SECRET. The same address serves the WebSocket (/app/{key}) and
// the HTTP API (/apps/{app_id}/...).

import net from 'node:net';
import { randomBytes } from 'node:crypto';
import Pusher from 'pusher-js';
import PusherServer from 'pusher';

export { Pusher, PusherServer };

function required(name) {
  const value = process.env[name];
  if (value === undefined || value === '') {
    console.error(`FAIL: the environment variable ${name} is not set (PUSHER_HOST, PUSHER_PORT, PUSHER_APP_ID, PUSHER_KEY and PUSHER_SECRET are needed)`);
    process.exit(2);
  }
  return value;
}

/** Where Herald's Pusher endpoint is, and the app's credentials. */
export const config = {
  host: required('PUSHER_HOST'),
  port: Number.parseInt(required('PUSHER_PORT'), 10),
  appId: required('PUSHER_APP_ID'),
  key: required('PUSHER_KEY'),
  secret: required('PUSHER_SECRET'),
};
if (!Number.isInteger(config.port) || config.port <= 0 || config.port > 65535) {
  console.error(`FAIL: PUSHER_PORT is not a port number: ${process.env.PUSHER_PORT}`);
  process.exit(2);
}

let currentStep = 'starting';
const clients = new Set();

/** Names what the script is doing now: shown if it fails or runs out of time. */
export function step(what) {
  currentStep = what;
  if (process.env.PUSHER_TEST_VERBOSE) console.error(`.. ${what}`);
}

/** A name no other run uses: `prefix-<random>`. */
export function unique(prefix) {
  return `${prefix}-${randomBytes(5).toString('hex')}`;
}

/**
 * Runs a script's body under a deadline: exits 0 when it resolves, 1 with
 * the failing step and error when it throws or when the deadline passes.
 */
export function run(name, body, { deadlineMs = 60_000 } = {}) {
  const timer = setTimeout(() => {
    console.error(`FAIL ${name}: the script's deadline of ${deadlineMs} ms passed during: ${currentStep}`);
    process.exit(1);
  }, deadlineMs);
  (async () => {
    await probe();
    await body();
  })().then(
    () => {
      clearTimeout(timer);
      closeAll();
      console.log(`ok ${name}`);
      process.exit(0);
    },
    (error) => {
      clearTimeout(timer);
      closeAll();
      const detail = error instanceof Error ? error.message : JSON.stringify(error);
      console.error(`FAIL ${name}: during "${currentStep}": ${detail}`);
      if (error instanceof Error && process.env.PUSHER_TEST_VERBOSE) console.error(error.stack);
      process.exit(1);
    },
  );
}

/** Fails with a clear message at once when nothing listens on the endpoint. */
export function probe() {
  step(`connecting to ${config.host}:${config.port}`);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: config.host, port: config.port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`cannot connect to Herald's Pusher endpoint at ${config.host}:${config.port}: no answer within 5 s`));
    }, 5000);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.end();
      resolve();
    });
    socket.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot connect to Herald's Pusher endpoint at ${config.host}:${config.port}: ${e.code || e.message}`));
    });
  });
}

/** Throws `message` unless `condition` holds. */
export function check(condition, message) {
  if (!condition) throw new Error(message);
}

/** Throws unless `actual` and `expected` are equal as JSON (key order ignored). */
export function checkEqual(actual, expected, what) {
  const canon = (v) => JSON.stringify(v, (_, x) => (x && typeof x === 'object' && !Array.isArray(x)
    ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, x[k]]))
    : x));
  if (canon(actual) !== canon(expected)) {
    throw new Error(`${what}: expected ${canon(expected)}, got ${canon(actual)}`);
  }
}

/**
 * Polls `cond` (which may be async) every 20 ms until it returns a truthy
 * value, which it returns; throws "timed out ... waiting for WHAT" after `ms`.
 */
export async function waitFor(cond, ms, what) {
  const until = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const value = await cond();
      if (value) return value;
      last = undefined;
    } catch (e) {
      last = e;
    }
    if (Date.now() > until) {
      const why = last ? ` (last error: ${last.message || last})` : '';
      throw new Error(`timed out after ${ms} ms waiting for ${what}${why}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The Node server library for the app, or with another secret. */
export function server({ secret = config.secret, key = config.key } = {}) {
  return new PusherServer({
    appId: config.appId,
    key,
    secret,
    host: config.host,
    port: config.port,
    useTLS: false,
    timeout: 10_000,
  });
}

/**
 * A `channelAuthorization.customHandler` that signs with `srv` (the server
 * library) in process, as an app's auth endpoint would; `presence(params)`
 * gives the presence channel data ({user_id, user_info}), if any.
 */
export function channelAuthorizer(srv, presence) {
  return (params, callback) => {
    try {
      const data = presence ? presence(params) : undefined;
      callback(null, srv.authorizeChannel(params.socketId, params.channelName, data));
    } catch (e) {
      callback(e, null);
    }
  };
}

/** A `userAuthentication.customHandler` signing `user` with `srv`. */
export function userAuthenticator(srv, user) {
  return (params, callback) => {
    try {
      callback(null, srv.authenticateUser(params.socketId, user));
    } catch (e) {
      callback(e, null);
    }
  };
}

/**
 * A pusher-js client for Herald, not yet connected: ws only, no stats, and
 * the channel authorizer (and user authenticator) given.
 */
export function client({ authorize, authenticate, ...options } = {}) {
  const pusher = new Pusher(config.key, {
    wsHost: config.host,
    wsPort: config.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    cluster: 'mt1',
    ...(authorize ? { channelAuthorization: { customHandler: authorize } } : {}),
    ...(authenticate ? { userAuthentication: { customHandler: authenticate } } : {}),
    ...options,
  });
  pusher.connection.bind('error', (e) => {
    pusher.lastError = e;
  });
  clients.add(pusher);
  return pusher;
}

/** Waits until `pusher` is connected, with what went wrong if it is not. */
export async function connected(pusher, ms = 10_000) {
  await waitFor(() => pusher.connection.state === 'connected', ms,
    `pusher-js to connect to ws://${config.host}:${config.port}/app/${config.key}`
    + ` (state ${pusher.connection.state}${pusher.lastError ? `, last error ${JSON.stringify(pusher.lastError)}` : ''})`);
  return pusher;
}

/** A connected pusher-js client (see `client`). */
export async function connect(options) {
  return connected(client(options));
}

/** Disconnects every client made here. */
export function closeAll() {
  for (const pusher of clients) {
    try {
      pusher.disconnect();
    } catch {
      // already gone
    }
  }
  clients.clear();
}

/**
 * Subscribes `pusher` to `name` and waits for `pusher:subscription_succeeded`;
 * throws with the error's data on `pusher:subscription_error`. Returns the
 * channel; its `succeededWith` is what subscription_succeeded carried.
 */
export async function subscribe(pusher, name, ms = 10_000) {
  const channel = pusher.subscribe(name);
  let outcome;
  channel.bind('pusher:subscription_succeeded', (data) => {
    outcome = { ok: true, data };
  });
  channel.bind('pusher:subscription_error', (data) => {
    outcome = { ok: false, data };
  });
  await waitFor(() => outcome, ms, `subscription_succeeded on ${name}`);
  if (!outcome.ok) throw new Error(`subscribing to ${name} failed: pusher:subscription_error ${JSON.stringify(outcome.data)}`);
  channel.succeededWith = outcome.data;
  return channel;
}

/**
 * Waits until Herald has handled every frame `pusher` sent so far: frames
 * of one connection are handled in order, so once a new subscription has
 * succeeded, the unsubscribes (and client events) before it are done.
 */
export async function barrier(pusher, ms = 10_000) {
  const name = unique('barrier');
  await subscribe(pusher, name, ms);
  pusher.unsubscribe(name);
}

/** Everything `channel` receives as `event`: a live array of {data, metadata}. */
export function collect(channel, event) {
  const got = [];
  channel.bind(event, (data, metadata) => got.push({ data, metadata }));
  return got;
}

/** Waits until `list` holds at least `n` entries; returns them. */
export async function received(list, n, ms, what) {
  await waitFor(() => list.length >= n, ms, `${what} (have ${list.length} of ${n}: ${JSON.stringify(list.map((e) => e.data ?? e))})`);
  return list;
}

/** Throws `status` unless `promise` rejects with a RequestError of that HTTP status. */
export async function rejectsWithStatus(promise, status, what) {
  let outcome;
  try {
    const res = await promise;
    outcome = `it succeeded with status ${res.status}`;
  } catch (e) {
    if (e && e.status === status) return e;
    outcome = e && e.status ? `status ${e.status} (${e.body})` : `an error without a status: ${e && (e.message || e)} ${e && e.error ? e.error : ''}`;
  }
  throw new Error(`${what}: expected the request to fail with status ${status}, but ${outcome}`);
}

/** The JSON body of a server library `get`. */
export async function getJson(srv, path, params) {
  const res = await srv.get({ path, params });
  check(res.status === 200, `GET ${path}: status ${res.status}`);
  return res.json();
}

const fenceSeen = new WeakMap();

/**
 * A fence: triggers an event on `name` from the server library and waits
 * until each of `channels` (pusher-js channel objects subscribed to it) has
 * it. Events on a channel arrive in order, so whatever Herald was going to
 * deliver before the fence has been delivered once it has passed: the way
 * to check that something did NOT arrive, with no fixed sleep.
 */
export async function fence(srv, name, channels, ms = 10_000) {
  const id = randomBytes(6).toString('hex');
  for (const channel of channels) {
    if (!fenceSeen.has(channel)) {
      const seen = new Set();
      fenceSeen.set(channel, seen);
      channel.bind('herald-test-fence', (data) => seen.add(data && data.id));
    }
  }
  await srv.trigger(name, 'herald-test-fence', { id });
  await waitFor(() => channels.every((c) => fenceSeen.get(c).has(id)), ms, `the fence event on ${name} to reach every subscriber`);
}
