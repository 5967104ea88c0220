// User authentication: pusher.signin() with a userAuthentication
// customHandler signing with the Node server library's authenticateUser;
// sendToUser reaches every connection of that user (and nobody else)
// through pusher.user.bind; terminateUserConnections closes that user's
// connections and leaves the others up.

import { check, checkEqual, connect, received, run, server, step, unique, userAuthenticator, waitFor, fence, subscribe } from './lib.mjs';

async function signedIn(srv, user) {
  const pusher = await connect({ authenticate: userAuthenticator(srv, user) });
  const got = [];
  pusher.user.bind('notice', (data) => got.push({ data }));
  const closes = [];
  pusher.connection.bind('state_change', ({ previous, current }) => {
    if (previous === 'connected' && current !== 'connected') closes.push(current);
  });
  pusher.signin();
  await waitFor(() => pusher.user.user_data && pusher.user.user_data.id === user.id, 5000,
    `pusher:signin_success for ${user.id}`);
  await waitFor(() => pusher.user.serverToUserChannel && pusher.user.serverToUserChannel.subscribed, 5000,
    `the subscription to #server-to-user-${user.id} to succeed`);
  return { pusher, got, closes };
}

run('user sign-in, sendToUser, terminateUserConnections', async () => {
  const srv = server();
  const ada = { id: unique('ada'), user_info: { name: 'Ada' } };
  const bob = { id: unique('bob'), user_info: { name: 'Bob' } };

  step('signing in Ada (two connections) and Bob');
  const ada1 = await signedIn(srv, ada);
  const ada2 = await signedIn(srv, ada);
  const bob1 = await signedIn(srv, bob);
  checkEqual(ada1.pusher.user.user_data, ada, "Ada's user_data as pusher-js holds it");

  step('sendToUser to Ada');
  const res = await srv.sendToUser(ada.id, 'notice', { text: 'hello Ada' });
  check(res.status === 200, `sendToUser answered ${res.status}`);
  await received(ada1.got, 1, 5000, "the user event at Ada's first connection");
  await received(ada2.got, 1, 5000, "the user event at Ada's second connection");
  checkEqual(ada1.got[0].data, { text: 'hello Ada' }, 'the user event data');

  step('sendToUser to Bob reaches Bob only');
  await srv.sendToUser(bob.id, 'notice', { text: 'hello Bob' });
  await received(bob1.got, 1, 5000, 'the user event at Bob');
  checkEqual(bob1.got[0].data, { text: 'hello Bob' }, "Bob's user event");
  // Ada's connections subscribe to a channel so that a fence shows that
  // nothing more was on its way to them.
  const fenceName = unique('fence');
  const fences = [await subscribe(ada1.pusher, fenceName), await subscribe(ada2.pusher, fenceName)];
  await fence(srv, fenceName, fences);
  check(ada1.got.length === 1 && ada2.got.length === 1, `Ada received Bob's user event: ${JSON.stringify(ada1.got)} ${JSON.stringify(ada2.got)}`);

  step("terminateUserConnections for Ada");
  const term = await srv.terminateUserConnections(ada.id);
  check(term.status === 200, `terminateUserConnections answered ${term.status}`);
  await waitFor(() => ada1.closes.length > 0 && ada2.closes.length > 0, 5000,
    `both of Ada's connections to be closed (closes seen: ${ada1.closes.length}, ${ada2.closes.length})`);
  check(bob1.closes.length === 0 && bob1.pusher.connection.state === 'connected', "Bob's connection was closed too");
  await srv.sendToUser(bob.id, 'notice', { text: 'still here?' });
  await received(bob1.got, 2, 5000, 'a user event at Bob after Ada was terminated');
});
