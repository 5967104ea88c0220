// Private channel, named the way Laravel Echo names a user's channel:
// pusher-js authorizes through a customHandler that signs with the Node
// server library (as an app's /broadcasting/auth would) and receives an
// event. Signed with a wrong secret, the subscription fails with
// pusher:subscription_error, the connection stays up, and no event of the
// channel reaches it.

import {
  channelAuthorizer, check, checkEqual, collect, connect, fence, received, run, server, step, subscribe, unique, waitFor,
} from './lib.mjs';

run('private channel', async () => {
  const srv = server();
  const name = 'private-App.Models.User.1';

  step('connecting pusher-js with a channel authorizer');
  const good = await connect({ authorize: channelAuthorizer(srv) });
  step(`subscribing to ${name}`);
  const channel = await subscribe(good, name);
  const got = collect(channel, 'App\\Events\\OrderShipped');

  step('connecting pusher-js whose authorizer signs with a wrong secret');
  const forger = await connect({ authorize: channelAuthorizer(server({ secret: 'not-the-secret' })) });
  const fenceName = unique('fence');
  const forgerFence = await subscribe(forger, fenceName);
  const forged = forger.subscribe(name);
  const errors = [];
  let succeeded = false;
  forged.bind('pusher:subscription_error', (data) => errors.push(data));
  forged.bind('pusher:subscription_succeeded', () => {
    succeeded = true;
  });
  const leaked = collect(forged, 'App\\Events\\OrderShipped');
  step('waiting for pusher:subscription_error on the forged subscription');
  await waitFor(() => errors.length > 0 || succeeded, 5000, `pusher:subscription_error on ${name} for the wrong signature`);
  check(!succeeded, `a subscription signed with a wrong secret succeeded on ${name}`);
  check(forger.connection.state === 'connected', `the connection is ${forger.connection.state} after the subscription error; it should stay connected`);

  step('triggering on the private channel');
  const sent = { order: { id: 42, status: 'shipped' } };
  await srv.trigger(name, 'App\\Events\\OrderShipped', sent);
  await received(got, 1, 5000, 'the event on the authorized subscription');
  checkEqual(got[0].data, sent, 'the event data');

  step('checking the forged subscription got nothing');
  // The fence goes on a public channel of the same connection, triggered
  // after the private event: once it is there, the private event would be.
  await fence(srv, fenceName, [forgerFence]);
  check(leaked.length === 0, `the connection whose subscription failed received ${leaked.length} event(s) of ${name}`);
});
