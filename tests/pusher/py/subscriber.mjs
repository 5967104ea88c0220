// A pusher-js subscriber driven by a Python test over stdin/stdout, one
// JSON object a line, so that the Python server library's signatures are
// what pusher-js presents to Herald.
//
// stdin:  {"subscribe": NAME} | {"unsubscribe": NAME} | {"signin": true}
//         | {"reply": ID, "auth": {...}} | {"reply": ID, "error": MESSAGE}
//         | {"trigger": NAME, "event": EVENT, "data": ...} (a client event)
// stdout: {"connected": SOCKET_ID}
//         | {"authorize": ID, "socket_id": ..., "channel": ...}
//         | {"authenticate": ID, "socket_id": ...}
//         | {"subscribed": NAME, "members": N} | {"subscription_error": NAME, "data": ...}
//         | {"event": EVENT, "channel": NAME, "data": ..., "user_id": ...}
//         | {"signed_in": USER_ID} | {"user_event": EVENT, "data": ...}
//         | {"state": STATE} on every connection state change
// It exits when stdin closes.

import readline from 'node:readline';
import { client, connected } from '../js/lib.mjs';

const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const pending = new Map();
let next = 0;

/** Asks the Python side to sign; `callback` gets its reply. */
function ask(kind, fields, callback) {
  const id = ++next;
  pending.set(id, callback);
  out({ [kind]: id, ...fields });
}

const pusher = client({
  authorize: (params, callback) => ask('authorize', { socket_id: params.socketId, channel: params.channelName }, callback),
  authenticate: (params, callback) => ask('authenticate', { socket_id: params.socketId }, callback),
});
pusher.connection.bind('state_change', ({ current }) => out({ state: current }));
pusher.user.bind_global((event, data) => out({ user_event: event, data }));

const input = readline.createInterface({ input: process.stdin });
input.on('close', () => {
  pusher.disconnect();
  process.exit(0);
});

try {
  await connected(pusher);
} catch (e) {
  out({ failed: e.message });
  process.exit(1);
}
out({ connected: pusher.connection.socket_id });

input.on('line', (line) => {
  const cmd = JSON.parse(line);
  if (cmd.subscribe) {
    const channel = pusher.subscribe(cmd.subscribe);
    channel.bind('pusher:subscription_succeeded', (members) => out({ subscribed: cmd.subscribe, members: members && members.count }));
    channel.bind('pusher:subscription_error', (data) => out({ subscription_error: cmd.subscribe, data }));
    channel.bind_global((event, data, metadata) => {
      if (!event.startsWith('pusher:')) out({ event, channel: cmd.subscribe, data, user_id: metadata && metadata.user_id });
    });
  } else if (cmd.unsubscribe) {
    pusher.unsubscribe(cmd.unsubscribe);
  } else if (cmd.signin) {
    pusher.signin();
    const poll = setInterval(() => {
      if (pusher.user.user_data && pusher.user.serverToUserChannel && pusher.user.serverToUserChannel.subscribed) {
        clearInterval(poll);
        out({ signed_in: pusher.user.user_data.id });
      }
    }, 20);
  } else if (cmd.trigger) {
    pusher.channel(cmd.trigger).trigger(cmd.event, cmd.data);
  } else if (cmd.reply) {
    const callback = pending.get(cmd.reply);
    pending.delete(cmd.reply);
    if (callback) callback(cmd.error ? new Error(cmd.error) : null, cmd.error ? null : cmd.auth);
  }
});
