// Presence channel: users 1 and 2 join, then user 1 again from a second
// connection (a second tab). subscription_succeeded carries the members;
// member_added comes once per user (the second tab adds nobody); closing one
// of user 1's two tabs removes nobody; closing the last removes user 1.

import {
  channelAuthorizer, check, checkEqual, collect, connect, fence, received, run, server, step, subscribe, unique, waitFor,
  getJson,
} from './lib.mjs';

const users = {
  1: { name: 'Ada' },
  2: { name: 'Bob' },
};

run('presence channel', async () => {
  const srv = server();
  const name = unique('presence-room');
  const member = (id) => channelAuthorizer(srv, () => ({ user_id: id, user_info: users[id] }));

  step('user 1 joins');
  const a = await connect({ authorize: member('1') });
  const chA = await subscribe(a, name);
  check(chA.members.count === 1, `user 1's subscription_succeeded counts ${chA.members.count} members, expected 1`);
  checkEqual(chA.members.me, { id: '1', info: users[1] }, "user 1's members.me");
  const addedA = collect(chA, 'pusher:member_added');
  const removedA = collect(chA, 'pusher:member_removed');

  step('user 2 joins');
  const b = await connect({ authorize: member('2') });
  const chB = await subscribe(b, name);
  check(chB.members.count === 2, `user 2's subscription_succeeded counts ${chB.members.count} members, expected 2`);
  checkEqual(chB.members.get('1'), { id: '1', info: users[1] }, 'user 1 as user 2 sees it');
  const addedB = collect(chB, 'pusher:member_added');
  const removedB = collect(chB, 'pusher:member_removed');
  await received(addedA, 1, 5000, 'member_added for user 2 at user 1');
  checkEqual(addedA[0].data, { id: '2', info: users[2] }, 'member_added at user 1');
  check(chA.members.count === 2, `user 1 counts ${chA.members.count} members, expected 2`);

  step("user 1's second tab joins");
  const a2 = await connect({ authorize: member('1') });
  const tabOnly = unique('tab');
  await subscribe(a2, tabOnly);
  const chA2 = await subscribe(a2, name);
  check(chA2.members.count === 2, `the second tab's subscription_succeeded counts ${chA2.members.count} members, expected 2 (users 1 and 2)`);
  await fence(srv, name, [chA, chB, chA2]);
  check(addedA.length === 1, `user 1 got ${addedA.length} member_added events, expected 1 (user 2 only): ${JSON.stringify(addedA.map((e) => e.data))}`);
  check(addedB.length === 0, `user 2 got member_added for a user already there: ${JSON.stringify(addedB.map((e) => e.data))}`);
  const usersNow = await getJson(srv, `/channels/${name}/users`);
  checkEqual((usersNow.users || []).map((u) => u.id).sort(), ['1', '2'], `/channels/${name}/users with two tabs of user 1`);

  step("closing one of user 1's two tabs");
  a2.disconnect();
  // Once Herald has dropped the tab's only other channel it has handled the
  // close; then the fence shows whether a member_removed was sent.
  await waitFor(async () => (await getJson(srv, `/channels/${tabOnly}`)).occupied === false, 5000,
    `${tabOnly} (only the closed tab was on it) to be unoccupied`);
  await fence(srv, name, [chA, chB]);
  check(removedB.length === 0, `closing one of user 1's two tabs removed a member: ${JSON.stringify(removedB.map((e) => e.data))}`);
  check(chB.members.count === 2, `user 2 counts ${chB.members.count} members after one of user 1's tabs closed, expected 2`);

  step("closing user 1's last tab");
  a.disconnect();
  await received(removedB, 1, 5000, 'member_removed for user 1 at user 2');
  checkEqual(removedB[0].data, { id: '1', info: users[1] }, 'member_removed at user 2');
  check(chB.members.count === 1, `user 2 counts ${chB.members.count} members, expected 1`);
  await fence(srv, name, [chB]);
  check(removedB.length === 1, `user 2 got ${removedB.length} member_removed events, expected 1`);
  check(removedA.length === 0, `user 1 saw a member removed: ${JSON.stringify(removedA.map((e) => e.data))}`);
});
