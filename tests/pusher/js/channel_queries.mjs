// Channel queries through the Node server library: GET /channels (with
// filter_by_prefix and info=user_count), /channels/{name} and
// /channels/{presence}/users; an unsubscribed channel is unoccupied at once.

import { barrier, channelAuthorizer, check, checkEqual, connect, getJson, run, server, step, subscribe, unique, waitFor } from './lib.mjs';

run('channel queries', async () => {
  const srv = server();
  const prefix = unique('q');
  const [a, b, presence] = [`${prefix}-a`, `${prefix}-b`, `presence-${prefix}`];
  const as = (id) => channelAuthorizer(srv, () => ({ user_id: id, user_info: { name: `user ${id}` } }));

  step('three clients: u1 on a, b and the presence channel; u2 on a and presence; u1 again on presence');
  const c1 = await connect({ authorize: as('u1') });
  const c2 = await connect({ authorize: as('u2') });
  const c3 = await connect({ authorize: as('u1') });
  await subscribe(c1, a);
  await subscribe(c1, b);
  await subscribe(c1, presence);
  await subscribe(c2, a);
  await subscribe(c2, presence);
  await subscribe(c3, presence);

  // Channel queries answer from what the edge reports, which reaches the
  // control plane shortly after a subscription.
  step('the subscriptions reach the channel queries');
  await waitFor(async () => {
    const l = await getJson(srv, '/channels', { filter_by_prefix: prefix });
    const p = await getJson(srv, `/channels/${presence}`, { info: 'user_count' });
    return Object.keys(l.channels || {}).length === 2 && p.user_count === 2;
  }, 2000, 'the subscriptions to show in the channel queries');

  step('GET /channels?filter_by_prefix=PREFIX');
  const listed = await getJson(srv, '/channels', { filter_by_prefix: prefix });
  check(listed.channels && typeof listed.channels === 'object', `/channels answered ${JSON.stringify(listed)}`);
  checkEqual(Object.keys(listed.channels).sort(), [a, b].sort(), `the channels with prefix ${prefix}`);

  step('GET /channels?filter_by_prefix=presence-PREFIX&info=user_count');
  const withCount = await getJson(srv, '/channels', { filter_by_prefix: presence, info: 'user_count' });
  checkEqual(withCount.channels, { [presence]: { user_count: 2 } }, '/channels with user_count');

  step('GET /channels lists every occupied channel');
  const all = await getJson(srv, '/channels');
  for (const name of [a, b, presence]) check(name in (all.channels || {}), `/channels lacks ${name}: ${JSON.stringify(all)}`);

  step('GET /channels/{name}');
  const infoA = await getJson(srv, `/channels/${a}`, { info: 'subscription_count' });
  check(infoA.occupied === true, `/channels/${a}: ${JSON.stringify(infoA)}`);
  if ('subscription_count' in infoA) check(infoA.subscription_count === 2, `/channels/${a} subscription_count: ${JSON.stringify(infoA)}`);
  const infoP = await getJson(srv, `/channels/${presence}`, { info: 'user_count' });
  checkEqual({ occupied: infoP.occupied, user_count: infoP.user_count }, { occupied: true, user_count: 2 }, `/channels/${presence}?info=user_count`);
  const nobody = await getJson(srv, `/channels/${unique('nobody-here')}`);
  check(nobody.occupied === false, `a channel nobody is on: ${JSON.stringify(nobody)}`);

  step('GET /channels/{presence}/users');
  const members = await getJson(srv, `/channels/${presence}/users`);
  checkEqual((members.users || []).map((u) => u.id).sort(), ['u1', 'u2'], `/channels/${presence}/users`);

  step('unsubscribing the only subscriber of b');
  c1.unsubscribe(b);
  await waitFor(async () => (await getJson(srv, `/channels/${b}`)).occupied === false, 2000, `${b} to be unoccupied after the unsubscribe`);
  const after = await getJson(srv, '/channels', { filter_by_prefix: prefix });
  checkEqual(Object.keys(after.channels || {}), [a], `the channels with prefix ${prefix} after the unsubscribe`);

  step("one of u1's two connections leaves the presence channel: u1 is still there");
  c3.unsubscribe(presence);
  await barrier(c3);
  const stillUsers = await getJson(srv, `/channels/${presence}/users`);
  checkEqual(stillUsers.users.map((u) => u.id).sort(), ['u1', 'u2'], `/channels/${presence}/users after one of u1's two connections left`);
  const stillTwo = await getJson(srv, `/channels/${presence}`, { info: 'user_count' });
  check(stillTwo.user_count === 2, `user_count after one of u1's two connections left: ${JSON.stringify(stillTwo)}`);

  step("u1's last connection leaves: only u2 is there");
  c1.disconnect();
  await waitFor(async () => {
    const now = await getJson(srv, `/channels/${presence}/users`);
    return now.users.length === 1 && now.users[0].id === 'u2';
  }, 2000, `/channels/${presence}/users to hold u2 only`);
  const one = await getJson(srv, `/channels/${presence}`, { info: 'user_count' });
  check(one.user_count === 1, `user_count after u1 left: ${JSON.stringify(one)}`);
  await waitFor(async () => (await getJson(srv, `/channels/${a}`)).occupied === true, 1000, `${a} to stay occupied (u2 is on it)`);
});
