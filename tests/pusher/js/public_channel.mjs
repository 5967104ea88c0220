// Public channel: pusher-js subscribes, the Node server library triggers,
// and the event arrives with its data as it was sent — an object as an
// object, a string as that string.

import { check, checkEqual, collect, connect, received, run, server, step, subscribe, unique } from './lib.mjs';

run('public channel', async () => {
  const srv = server();
  const name = unique('chat');

  step('connecting pusher-js');
  const pusher = await connect();
  check(/^\d+\.\d+$/.test(pusher.connection.socket_id), `socket_id ${pusher.connection.socket_id} is not of the form 123.456`);

  step(`subscribing to ${name}`);
  const channel = await subscribe(pusher, name);
  const got = collect(channel, 'message');

  step('triggering an object');
  const sent = { text: 'hello', n: 1, nested: { ok: true, list: [1, 'two', null] }, unicode: 'héllo ✓' };
  const res = await srv.trigger(name, 'message', sent);
  check(res.status === 200, `trigger answered ${res.status}`);
  const body = await res.json();
  check(body !== null && typeof body === 'object', `trigger's answer is not a JSON object: ${JSON.stringify(body)}`);

  step('receiving the object');
  await received(got, 1, 5000, 'the event');
  checkEqual(got[0].data, sent, 'the event data');

  step('triggering a plain string');
  await srv.trigger(name, 'message', 'just text, not JSON');
  await received(got, 2, 5000, 'the string event');
  check(got[1].data === 'just text, not JSON', `the string arrived as ${JSON.stringify(got[1].data)}`);

  step('an event of another name goes to its own handlers');
  const other = collect(channel, 'other-event');
  await srv.trigger(name, 'other-event', { n: 2 });
  await received(other, 1, 5000, 'the other event');
  checkEqual(other[0].data, { n: 2 }, 'the other event data');
  check(got.length === 2, `the "message" handler got ${got.length} events, expected 2`);
});
