// Client events ("whispers" in Laravel Echo): client-typing sent by one
// pusher-js client on a private channel reaches the other subscriber and
// is not echoed to the sender; on a presence channel it also carries the
// sender's user_id (protocol 7).

import {
  barrier, channelAuthorizer, check, checkEqual, collect, connect, fence, received, run, server, step, subscribe, unique,
} from './lib.mjs';

run('client events', async () => {
  const srv = server();
  const as = (id) => channelAuthorizer(srv, () => ({ user_id: id, user_info: { name: id } }));

  step('two clients on a private channel');
  const a = await connect({ authorize: as('alice') });
  const b = await connect({ authorize: as('bob') });
  const name = unique('private-chat');
  const chA = await subscribe(a, name);
  const chB = await subscribe(b, name);
  const typingA = collect(chA, 'client-typing');
  const typingB = collect(chB, 'client-typing');

  step('alice sends client-typing');
  check(chA.trigger('client-typing', { user: 'alice', typing: true }) === true, 'pusher-js did not send the client event');
  await received(typingB, 1, 5000, 'client-typing at bob');
  checkEqual(typingB[0].data, { user: 'alice', typing: true }, 'the client event at bob');
  await barrier(a);
  await fence(srv, name, [chA, chB]);
  check(typingA.length === 0, `the client event was echoed to its sender: ${JSON.stringify(typingA.map((e) => e.data))}`);
  check(typingB.length === 1, `bob got the client event ${typingB.length} times`);

  step('bob answers');
  chB.trigger('client-typing', { user: 'bob', typing: false });
  await received(typingA, 1, 5000, 'client-typing at alice');
  checkEqual(typingA[0].data, { user: 'bob', typing: false }, 'the client event at alice');

  step('on a presence channel the client event names its sender');
  const room = unique('presence-chat');
  const roomA = await subscribe(a, room);
  const roomB = await subscribe(b, room);
  const inRoomA = collect(roomA, 'client-typing');
  const inRoomB = collect(roomB, 'client-typing');
  roomA.trigger('client-typing', { typing: true });
  await received(inRoomB, 1, 5000, 'client-typing on the presence channel at bob');
  checkEqual(inRoomB[0].data, { typing: true }, 'the presence client event at bob');
  check(inRoomB[0].metadata && inRoomB[0].metadata.user_id === 'alice',
    `the presence client event's user_id is ${JSON.stringify(inRoomB[0].metadata)}, expected alice`);
  await barrier(a);
  await fence(srv, room, [roomA, roomB]);
  check(inRoomA.length === 0, 'the presence client event was echoed to its sender');
});
