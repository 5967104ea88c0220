// The HTTP API refuses requests it cannot verify: the server library with
// a wrong secret gets 401 on trigger, triggerBatch and GET /channels, and
// a body that is not the one signed (body_md5) gets 401 too.

import { check, config, rejectsWithStatus, run, server, step, unique } from './lib.mjs';

run('bad request signatures', async () => {
  const good = server();
  const bad = server({ secret: 'not-the-secret' });
  const name = unique('signed');

  step('the right secret is accepted');
  const ok = await good.trigger(name, 'e', { ok: true });
  check(ok.status === 200, `trigger with the right secret answered ${ok.status}`);

  step('a wrong secret: trigger');
  await rejectsWithStatus(bad.trigger(name, 'e', { ok: false }), 401, 'trigger signed with a wrong secret');
  step('a wrong secret: triggerBatch');
  await rejectsWithStatus(bad.triggerBatch([{ channel: name, name: 'e', data: {} }]), 401, 'triggerBatch signed with a wrong secret');
  step('a wrong secret: GET /channels');
  await rejectsWithStatus(bad.get({ path: '/channels' }), 401, 'GET /channels signed with a wrong secret');
  step('a wrong secret: GET /channels/{name}');
  await rejectsWithStatus(bad.get({ path: `/channels/${name}` }), 401, 'GET /channels/{name} signed with a wrong secret');

  step('a body other than the one signed');
  const path = `/apps/${config.appId}/events`;
  const signed = JSON.stringify({ name: 'e', channels: [name], data: '{"n":1}' });
  const sent = JSON.stringify({ name: 'e', channels: [name], data: '{"n":2}' });
  const query = good.createSignedQueryString({ method: 'POST', path, body: signed });
  const res = await fetch(`http://${config.host}:${config.port}${path}?${query}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: sent,
  });
  check(res.status === 401, `a POST whose body is not the signed one answered ${res.status}: ${await res.text()}`);
});
