// Validates the webhooks Herald sent with the official Node server library
// (npm `pusher`): every request in WEBHOOKS_FILE (a JSON array of
// {headers, body}) must be valid for the app's key and secret, and a
// tampered copy must not. Prints the events' names, one per line.

import { readFileSync } from 'node:fs';
import { check, run, server, step } from './lib.mjs';

run('webhook validation (Node)', async () => {
  const requests = JSON.parse(readFileSync(process.env.WEBHOOKS_FILE, 'utf8'));
  check(requests.length > 0, 'no webhooks to validate');
  const srv = server();
  for (const r of requests) {
    step(`webhook ${r.body.slice(0, 80)}`);
    const webhook = srv.webhook({ headers: r.headers, rawBody: r.body });
    check(webhook.isValid(), `Pusher's library refused a webhook: ${JSON.stringify(r)}`);
    for (const e of webhook.getEvents()) console.log(`${e.name} ${e.channel}`);
    const tampered = srv.webhook({ headers: r.headers, rawBody: r.body.replace('"channel"', '"channeL"') });
    check(!tampered.isValid(), 'a tampered webhook was accepted');
    const otherSecret = server({ secret: 'not-the-secret' }).webhook({ headers: r.headers, rawBody: r.body });
    check(!otherSecret.isValid(), 'a webhook was valid under another secret');
  }
});
