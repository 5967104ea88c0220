// Reconnect and resubscribe: pusher-js disconnect() then connect() gets a
// new socket, resubscribes its public, private and presence channels on
// its own, and receives on each of them again.

import {
  channelAuthorizer, check, checkEqual, collect, connect, getJson, received, run, server, step, subscribe, unique, waitFor,
} from './lib.mjs';

run('reconnect and resubscribe', async () => {
  const srv = server();
  const names = [unique('news'), unique('private-inbox'), unique('presence-lobby')];

  step('subscribing to a public, a private and a presence channel');
  const pusher = await connect({ authorize: channelAuthorizer(srv, () => ({ user_id: 'ada', user_info: {} })) });
  const channels = [];
  for (const name of names) channels.push(await subscribe(pusher, name));
  const got = channels.map((ch) => collect(ch, 'update'));
  for (const name of names) await srv.trigger(name, 'update', { round: 1 });
  for (const [i, list] of got.entries()) await received(list, 1, 5000, `the first event on ${names[i]}`);
  const firstSocket = pusher.connection.socket_id;

  step('disconnect()');
  pusher.disconnect();
  await waitFor(() => pusher.connection.state === 'disconnected', 5000, 'pusher-js to be disconnected');
  await waitFor(async () => (await getJson(srv, `/channels/${names[0]}`)).occupied === false, 5000,
    `${names[0]} to be unoccupied once its only subscriber disconnected`);

  step('connect()');
  pusher.connect();
  await waitFor(() => pusher.connection.state === 'connected', 10_000, `pusher-js to connect again (state ${pusher.connection.state})`);
  check(pusher.connection.socket_id !== firstSocket, `the new connection has the old socket_id ${firstSocket}`);
  await waitFor(() => channels.every((ch) => ch.subscribed), 5000,
    `every channel to be resubscribed (${channels.map((ch) => `${ch.name}: ${ch.subscribed}`).join(', ')})`);
  check(channels[2].members.count === 1 && channels[2].members.me && channels[2].members.me.id === 'ada',
    `the presence channel's members after resubscribing: ${JSON.stringify(channels[2].members.members)}`);

  step('receiving again on every channel');
  for (const name of names) await srv.trigger(name, 'update', { round: 2 });
  for (const [i, list] of got.entries()) {
    await received(list, 2, 5000, `the second event on ${names[i]}`);
    checkEqual(list.map((e) => e.data), [{ round: 1 }, { round: 2 }], `the events on ${names[i]}`);
  }
});
