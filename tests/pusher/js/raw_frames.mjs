// Raw frames a library would never send, over a bare WebSocket (the ws
// package): non-JSON text, an unknown event, a binary frame, an oversized
// frame, an unknown app key. Each gets a pusher:error with a 4xxx code or a
// close with a 4xxx code, and a pusher-js client connected all along keeps
// receiving. The handshake and ping/pong are checked on the wire too.

import WebSocket from 'ws';
import { check, checkEqual, collect, config, connect, received, run, server, step, subscribe, unique, waitFor } from './lib.mjs';

const query = 'protocol=7&client=js&version=8.6.0&flash=false';

/** A bare WebSocket with every frame it receives; resolves once open. */
function open(key = config.key) {
  const url = `ws://${config.host}:${config.port}/app/${key}?${query}`;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { maxPayload: 8 << 20 });
    const conn = { ws, frames: [], closed: null };
    ws.on('message', (data, isBinary) => {
      const text = data.toString();
      let parsed = null;
      try {
        parsed = JSON.parse(text);
      } catch {
        // kept as text
      }
      conn.frames.push({ isBinary, text, parsed });
    });
    ws.on('close', (code, reason) => {
      conn.closed = { code, reason: reason.toString() };
    });
    ws.on('error', (e) => {
      conn.error = e;
    });
    ws.once('open', () => resolve(conn));
    ws.once('unexpected-response', (_, res) => reject(new Error(`${url}: the upgrade was answered with HTTP ${res.statusCode}`)));
    ws.once('error', (e) => reject(new Error(`${url}: ${e.message}`)));
  });
}

/** The data of a frame's event, parsed if it is a JSON string. */
function eventData(frame) {
  const data = frame.parsed && frame.parsed.data;
  if (typeof data === 'string') {
    try {
      return JSON.parse(data);
    } catch {
      return data;
    }
  }
  return data;
}

async function established(conn) {
  const frame = await waitFor(() => conn.frames.find((f) => f.parsed && f.parsed.event === 'pusher:connection_established'),
    5000, 'pusher:connection_established');
  check(typeof frame.parsed.data === 'string',
    `pusher:connection_established's data should be a JSON-encoded string, as in the Pusher protocol: ${frame.text}`);
  const data = eventData(frame);
  check(/^\d+\.\d+$/.test(data.socket_id), `socket_id ${JSON.stringify(data.socket_id)} is not of the form 123.456`);
  check(Number.isInteger(data.activity_timeout) && data.activity_timeout > 0, `activity_timeout ${JSON.stringify(data.activity_timeout)}`);
  return data;
}

/** Waits for a pusher:error or a close, and checks its code is 4xxx. */
async function refused(conn, what) {
  const outcome = await waitFor(() => {
    const error = conn.frames.find((f) => f.parsed && f.parsed.event === 'pusher:error');
    if (error) return { kind: 'pusher:error', code: eventData(error) && eventData(error).code, text: error.text };
    if (conn.closed) return { kind: 'close', code: conn.closed.code, text: conn.closed.reason };
    return null;
  }, 5000, `a pusher:error or a close after ${what}`);
  check(Number.isInteger(outcome.code) && outcome.code >= 4000 && outcome.code <= 4999,
    `after ${what}: expected a pusher:error or a close with a 4xxx code, got ${outcome.kind} with code ${outcome.code} (${outcome.text})`);
  conn.ws.terminate();
  return outcome;
}

run('raw frames', async () => {
  const srv = server();
  const name = unique('bystander');

  step('a pusher-js client connected all along');
  const pusher = await connect();
  const channel = await subscribe(pusher, name);
  const got = collect(channel, 'still-here');

  step('the handshake on the wire');
  const plain = await open();
  const hello = await established(plain);

  step('pusher:ping gets pusher:pong');
  plain.ws.send(JSON.stringify({ event: 'pusher:ping', data: {} }));
  await waitFor(() => plain.frames.some((f) => f.parsed && f.parsed.event === 'pusher:pong'), 5000, 'pusher:pong');
  plain.ws.close(1000);

  const bad = [
    ['a text frame that is not JSON', 'this is { not json'],
    ['an unknown event', JSON.stringify({ event: 'herald:no-such-event', data: {} })],
    ['a binary frame', Buffer.from([0x00, 0x01, 0xfe, 0xff])],
    ['a 1 MiB frame', JSON.stringify({ event: 'pusher:ping', data: { pad: 'x'.repeat(1 << 20) } })],
  ];
  for (const [what, frame] of bad) {
    step(`sending ${what}`);
    const conn = await open();
    await established(conn);
    conn.ws.send(frame, { binary: Buffer.isBuffer(frame) });
    await refused(conn, what);
  }

  step('an unknown app key');
  const stranger = await open('no-such-key');
  const outcome = await refused(stranger, 'connecting with an unknown app key');
  check(outcome.code === 4001, `an unknown app key should be refused with 4001 (application does not exist), got ${outcome.code}`);

  step('the pusher-js client still receives');
  check(pusher.connection.state === 'connected', `the pusher-js client is ${pusher.connection.state}`);
  check(pusher.connection.socket_id !== hello.socket_id, 'two connections share a socket_id');
  await srv.trigger(name, 'still-here', { ok: true });
  await received(got, 1, 5000, 'the event at the pusher-js client after the bad frames');
  checkEqual(got[0].data, { ok: true }, 'the event data');
});
