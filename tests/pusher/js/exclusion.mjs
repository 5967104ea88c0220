// Exclusion: a trigger (or a batch event) carrying one subscriber's
// socket_id reaches every subscriber but that one.

import { check, checkEqual, collect, connect, fence, received, run, server, step, subscribe, unique } from './lib.mjs';

run('exclusion by socket_id', async () => {
  const srv = server();
  const name = unique('room');

  step('two subscribers');
  const a = await connect();
  const b = await connect();
  const chA = await subscribe(a, name);
  const chB = await subscribe(b, name);
  const gotA = collect(chA, 'said');
  const gotB = collect(chB, 'said');

  step("triggering with the first subscriber's socket_id");
  await srv.trigger(name, 'said', { text: 'not to a' }, { socket_id: a.connection.socket_id });
  await received(gotB, 1, 5000, 'the event at the other subscriber');
  checkEqual(gotB[0].data, { text: 'not to a' }, 'the event data');
  await fence(srv, name, [chA, chB]);
  check(gotA.length === 0, `the excluded subscriber received the event: ${JSON.stringify(gotA.map((e) => e.data))}`);

  step("a batch event with the second subscriber's socket_id");
  await srv.triggerBatch([
    { channel: name, name: 'said', data: { text: 'not to b' }, socket_id: b.connection.socket_id },
    { channel: name, name: 'said', data: { text: 'to both' } },
  ]);
  await received(gotA, 2, 5000, 'both batch events at the first subscriber');
  checkEqual(gotA.map((e) => e.data), [{ text: 'not to b' }, { text: 'to both' }], 'the batch events at the first subscriber, in order');
  await received(gotB, 2, 5000, 'the second batch event at the second subscriber');
  await fence(srv, name, [chA, chB]);
  checkEqual(gotB.map((e) => e.data), [{ text: 'not to a' }, { text: 'to both' }], 'what the second subscriber received');
});
