// Batch triggers (POST /batch_events) and one trigger to several channels
// (POST /events with a list of channels): every event reaches every
// subscriber of its channel, once per channel, and nothing else arrives.

import { check, checkEqual, collect, connect, fence, received, run, server, step, subscribe, unique } from './lib.mjs';

run('batch and multi-channel triggers', async () => {
  const srv = server();
  const [c1, c2, c3] = [unique('batch-one'), unique('batch-two'), unique('batch-three')];

  step('one client on three channels, another on the second only');
  const x = await connect();
  const y = await connect();
  const xs = [await subscribe(x, c1), await subscribe(x, c2), await subscribe(x, c3)];
  const y2 = await subscribe(y, c2);
  const gotX = xs.map((ch) => collect(ch, 'batched'));
  const gotY = collect(y2, 'batched');

  step('triggerBatch with one event per channel');
  const res = await srv.triggerBatch([
    { channel: c1, name: 'batched', data: { n: 1 } },
    { channel: c2, name: 'batched', data: { n: 2 } },
    { channel: c3, name: 'batched', data: 'three' },
  ]);
  check(res.status === 200, `triggerBatch answered ${res.status}`);
  for (const [i, expected] of [{ n: 1 }, { n: 2 }, 'three'].entries()) {
    await received(gotX[i], 1, 5000, `the batch event on channel ${i + 1}`);
    checkEqual(gotX[i][0].data, expected, `the batch event on channel ${i + 1}`);
  }
  await received(gotY, 1, 5000, 'the batch event on the second channel at the other client');
  checkEqual(gotY[0].data, { n: 2 }, 'the batch event at the other client');

  step('one trigger to three channels');
  const multi = collect(xs[0], 'multi');
  const multi2 = collect(xs[1], 'multi');
  const multi3 = collect(xs[2], 'multi');
  const multiY = collect(y2, 'multi');
  await srv.trigger([c1, c2, c3], 'multi', { to: 'all three' });
  for (const [i, list] of [multi, multi2, multi3, multiY].entries()) {
    await received(list, 1, 5000, `the multi-channel event (subscription ${i + 1})`);
    checkEqual(list[0].data, { to: 'all three' }, `the multi-channel event (subscription ${i + 1})`);
  }

  step('nothing arrived twice');
  await fence(srv, c1, [xs[0]]);
  await fence(srv, c2, [xs[1], y2]);
  await fence(srv, c3, [xs[2]]);
  const counts = [...gotX, gotY, multi, multi2, multi3, multiY].map((l) => l.length);
  checkEqual(counts, [1, 1, 1, 1, 1, 1, 1, 1], 'events per subscription (batch x3, batch at y, multi x3, multi at y)');
});
