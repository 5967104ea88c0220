// Activity for webhooks, through pusher-js: alice and bob join a presence
// channel (named by WEBHOOK_CHANNEL), alice sends a client event there and
// subscribes to an empty cache channel (WEBHOOK_CACHE_CHANNEL), then both
// leave. The test's receiver collects the webhooks Herald sends;
// webhook_validate.mjs and webhook_validate.py check them with Pusher's
// server libraries.

import {
  channelAuthorizer, check, closeAll, connect, run, server, step, subscribe, waitFor,
} from './lib.mjs';

const channel = process.env.WEBHOOK_CHANNEL;
const cacheChannel = process.env.WEBHOOK_CACHE_CHANNEL;
if (!channel || !cacheChannel) {
  console.error('FAIL: WEBHOOK_CHANNEL and WEBHOOK_CACHE_CHANNEL must be set');
  process.exit(2);
}

run('webhook activity', async () => {
  const srv = server();
  const as = (id) => channelAuthorizer(srv, () => ({ user_id: id, user_info: { name: id } }));
  step('alice and bob join');
  const a = await connect({ authorize: as('alice') });
  const b = await connect({ authorize: as('bob') });
  const chA = await subscribe(a, channel);
  await subscribe(b, channel);
  step('alice subscribes to an empty cache channel');
  const cached = a.subscribe(cacheChannel);
  let missed = false;
  cached.bind('pusher:cache_miss', () => { missed = true; });
  await waitFor(() => missed, 10_000, 'pusher:cache_miss');
  step('alice sends a client event');
  check(chA.trigger('client-typing', { typing: true }) === true, 'pusher-js did not send the client event');
  // The client event travels edge -> control plane; give it a moment
  // before the connection that sent it goes away.
  await new Promise((resolve) => { setTimeout(resolve, 500); });
  step('both leave');
  closeAll();
});
