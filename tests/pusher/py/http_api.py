"""Herald's HTTP API through the official Python server library (PyPI
`pusher`), with pusher-js subscribers (subscriber.mjs, a Node helper this
script starts) that present the Python library's channel and user
signatures to Herald.

Covers trigger (with socket_id exclusion and to several channels),
trigger_batch, channels_info, channel_info, users_info, authenticate
(private and presence), authenticate_user with send_to_user and
terminate_user_connections, and 401 for a wrong secret.

Environment: PUSHER_HOST, PUSHER_PORT, PUSHER_APP_ID, PUSHER_KEY,
PUSHER_SECRET; PYTHONPATH holding the `pusher` library (tests/pusher/.python).
Exits 0 on success, 1 with the failing step on failure or when the
deadline passes.
"""

import json
import os
import queue
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

DEADLINE_SECONDS = 60
HERE = Path(__file__).resolve().parent
NAME = "python server library"

current_step = "starting"
subscribers = []


def fail(message):
    print(f"FAIL {NAME}: during \"{current_step}\": {message}", file=sys.stderr, flush=True)
    for sub in subscribers:
        sub.kill()
    os._exit(1)


def step(what):
    global current_step
    current_step = what
    if os.environ.get("PUSHER_TEST_VERBOSE"):
        print(f".. {what}", file=sys.stderr, flush=True)


def check(condition, message):
    if not condition:
        fail(message)


def eventually(query, expected, what, timeout=5):
    """Asks `query()` until `expected(answer)` holds or `timeout` seconds
    pass: channel queries answer from what edges report, which reaches the
    control plane shortly after a subscription."""
    until = time.monotonic() + timeout
    while True:
        answer = query()
        if expected(answer):
            return answer
        if time.monotonic() >= until:
            fail(f"{what}: {answer}")
        time.sleep(0.05)


def env(name):
    value = os.environ.get(name, "")
    if not value:
        print(
            f"FAIL: the environment variable {name} is not set (PUSHER_HOST, PUSHER_PORT, "
            "PUSHER_APP_ID, PUSHER_KEY and PUSHER_SECRET are needed)",
            file=sys.stderr,
        )
        sys.exit(2)
    return value


try:
    import pusher
    from pusher.errors import PusherBadAuth, PusherError
except ImportError as e:
    print(
        f"FAIL: cannot import the Python pusher library ({e}): run bash tests/pusher/install.sh "
        "and put tests/pusher/.python on PYTHONPATH",
        file=sys.stderr,
    )
    sys.exit(2)

HOST = env("PUSHER_HOST")
try:
    PORT = int(env("PUSHER_PORT"))
except ValueError:
    print(f"FAIL: PUSHER_PORT is not a port number: {os.environ['PUSHER_PORT']}", file=sys.stderr)
    sys.exit(2)
APP_ID, KEY, SECRET = env("PUSHER_APP_ID"), env("PUSHER_KEY"), env("PUSHER_SECRET")


def unique(prefix):
    return f"{prefix}-{secrets.token_hex(5)}"


def library(secret=SECRET):
    return pusher.Pusher(app_id=APP_ID, key=KEY, secret=secret, ssl=False, host=HOST, port=PORT, timeout=10)


class Subscriber:
    """A pusher-js client in a Node process; signs what it asks for with
    `app` (the Python library), as `user` and, on presence channels, as
    `member`."""

    def __init__(self, name, app, user=None, member=None):
        self.name, self.app, self.user, self.member = name, app, user, member
        self.seen = []
        self.stderr = []
        self.lines = queue.Queue()
        self.proc = subprocess.Popen(
            ["node", str(HERE / "subscriber.mjs")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        subscribers.append(self)
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines.put), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr.append), daemon=True).start()
        self.socket_id = self.wait(lambda m: "connected" in m, 10, "pusher-js to connect")["connected"]

    @staticmethod
    def _read(stream, put):
        for line in stream:
            put(line)
        put(None)

    def send(self, command):
        try:
            self.proc.stdin.write(json.dumps(command) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            fail(f"subscriber {self.name} is gone ({e}); its stderr: {''.join(self.stderr)[-2000:]}")

    def _handle(self, message):
        if "authorize" in message:
            channel, socket_id = message["channel"], message["socket_id"]
            try:
                if channel.startswith("presence-"):
                    auth = self.app.authenticate(channel=channel, socket_id=socket_id, custom_data=self.member)
                else:
                    auth = self.app.authenticate(channel=channel, socket_id=socket_id)
                self.send({"reply": message["authorize"], "auth": auth})
            except Exception as e:  # the library refused: tell pusher-js
                self.send({"reply": message["authorize"], "error": str(e)})
        elif "authenticate" in message:
            auth = self.app.authenticate_user(message["socket_id"], self.user)
            self.send({"reply": message["authenticate"], "auth": auth})
        elif "failed" in message:
            fail(f"subscriber {self.name}: {message['failed']}")

    def wait(self, predicate, timeout, what, since=0):
        """The first message from the `since`-th on that `predicate` accepts,
        waiting up to `timeout` seconds for it (and answering signing
        requests meanwhile)."""
        until = time.monotonic() + timeout
        while True:
            for message in self.seen[since:]:
                if predicate(message):
                    return message
            left = until - time.monotonic()
            if left <= 0:
                fail(f"subscriber {self.name}: timed out after {timeout} s waiting for {what}; it got {self.seen[-10:]}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                fail(f"subscriber {self.name} exited while waiting for {what}; its stderr: {''.join(self.stderr)[-2000:]}")
            message = json.loads(line)
            self._handle(message)
            self.seen.append(message)

    def subscribe(self, channel):
        self.send({"subscribe": channel})
        got = self.wait(
            lambda m: m.get("subscribed") == channel or m.get("subscription_error") == channel,
            10,
            f"the subscription to {channel}",
        )
        check("subscribed" in got, f"subscriber {self.name}: subscribing to {channel} failed: {got}")
        return got

    def events(self, channel, event):
        return [m for m in self.seen if m.get("channel") == channel and m.get("event") == event]

    def event(self, channel, event, predicate=lambda m: True, timeout=5):
        return self.wait(
            lambda m: m.get("channel") == channel and m.get("event") == event and predicate(m),
            timeout,
            f"event {event} on {channel}",
        )

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()


def fence(app, channel, subs):
    """Triggers an event on `channel` and waits for it at each of `subs`:
    whatever was on its way to them before it has arrived once it has."""
    marker = secrets.token_hex(6)
    app.trigger(channel, "herald-test-fence", {"id": marker})
    for sub in subs:
        sub.event(channel, "herald-test-fence", lambda m: (m.get("data") or {}).get("id") == marker)


def expect_bad_auth(call, what):
    try:
        call()
    except PusherBadAuth:
        return
    except PusherError as e:
        fail(f"{what}: expected 401 (PusherBadAuth), got {type(e).__name__}: {e}")
    fail(f"{what}: expected 401 (PusherBadAuth), but the request succeeded")


def main():
    step(f"connecting to {HOST}:{PORT}")
    try:
        socket.create_connection((HOST, PORT), timeout=5).close()
    except OSError as e:
        fail(f"cannot connect to Herald's Pusher endpoint at {HOST}:{PORT}: {e}")

    app = library()
    user_id = unique("py-user")
    pub, priv, pres = unique("py-news"), unique("private-py"), unique("presence-py")

    step("starting two pusher-js subscribers")
    s1 = Subscriber("s1", app, user={"id": user_id, "user_info": {"name": "Ada"}},
                    member={"user_id": "py-1", "user_info": {"name": "Ada"}})
    s2 = Subscriber("s2", app, member={"user_id": "py-2", "user_info": {"name": "Bob"}})

    step("trigger to a public channel")
    s1.subscribe(pub)
    s2.subscribe(pub)
    answer = app.trigger(pub, "news", {"headline": "hello", "n": 1})
    check(isinstance(answer, dict), f"trigger answered {answer!r}, expected a JSON object")
    got = s1.event(pub, "news")
    check(got["data"] == {"headline": "hello", "n": 1}, f"the event data arrived as {got['data']!r}")

    step("trigger with socket_id excludes that subscriber")
    app.trigger(pub, "news", {"n": 2}, socket_id=s1.socket_id)
    s2.event(pub, "news", lambda m: m["data"] == {"n": 2})
    fence(app, pub, [s1, s2])
    check(len(s1.events(pub, "news")) == 1, f"the excluded subscriber got {s1.events(pub, 'news')}")

    step("private channel authorized by the Python library")
    s1.subscribe(priv)
    app.trigger(priv, "secret", {"only": "for s1"})
    check(s1.event(priv, "secret")["data"] == {"only": "for s1"}, "the private event's data")

    step("presence channel authorized by the Python library")
    s1.subscribe(pres)
    joined = s2.subscribe(pres)
    check(joined.get("members") == 2, f"s2's subscription_succeeded counts {joined.get('members')} members, expected 2")

    step("users_info")
    eventually(lambda: app.users_info(pres),
               lambda users: sorted(u["id"] for u in users.get("users", [])) == ["py-1", "py-2"], "users_info")

    step("channel_info")
    eventually(lambda: app.channel_info(pres, ["user_count"]),
               lambda info: info.get("occupied") is True and info.get("user_count") == 2, f"channel_info({pres})")
    nobody = app.channel_info(unique("py-nobody"))
    check(nobody.get("occupied") is False, f"channel_info of a channel nobody is on: {nobody}")

    step("channels_info")
    eventually(lambda: app.channels_info(prefix_filter="presence-py-", attributes=["user_count"]),
               lambda listed: listed.get("channels", {}).get(pres) == {"user_count": 2},
               "channels_info(presence-py-, user_count)")
    eventually(lambda: app.channels_info(prefix_filter=pub),
               lambda public: list(public.get("channels", {})) == [pub], f"channels_info({pub})")

    step("trigger_batch")
    app.trigger_batch([
        {"channel": pub, "name": "batched", "data": {"i": 1}},
        {"channel": priv, "name": "batched", "data": "plain text"},
    ])
    check(s1.event(pub, "batched")["data"] == {"i": 1}, "the first batch event's data")
    check(s1.event(priv, "batched")["data"] == "plain text", "the second batch event's data")

    step("trigger to several channels")
    app.trigger([pub, priv, pres], "multi", {"to": "three"})
    for channel in (pub, priv, pres):
        check(s1.event(channel, "multi")["data"] == {"to": "three"}, f"the multi-channel event on {channel}")

    step("a wrong secret signs a subscription Herald refuses")
    forger = Subscriber("forger", library("not-the-secret"))
    forger.send({"subscribe": priv})
    refused = forger.wait(lambda m: m.get("subscription_error") == priv or m.get("subscribed") == priv, 10,
                          f"pusher:subscription_error on {priv}")
    check("subscription_error" in refused, f"a subscription signed with a wrong secret succeeded: {refused}")

    step("a wrong secret gets 401 from the HTTP API")
    bad = library("not-the-secret")
    expect_bad_auth(lambda: bad.trigger(pub, "news", {"n": 3}), "trigger with a wrong secret")
    expect_bad_auth(lambda: bad.channels_info(), "channels_info with a wrong secret")
    expect_bad_auth(lambda: bad.trigger_batch([{"channel": pub, "name": "news", "data": {}}]),
                    "trigger_batch with a wrong secret")

    step("authenticate_user, then send_to_user")
    s1.send({"signin": True})
    s1.wait(lambda m: m.get("signed_in") == user_id, 10, f"the sign-in of {user_id}")
    app.send_to_user(user_id, "notice", {"text": "hello Ada"})
    notice = s1.wait(lambda m: m.get("user_event") == "notice", 5, "the user event")
    check(notice["data"] == {"text": "hello Ada"}, f"the user event's data: {notice}")

    step("terminate_user_connections")
    mark = len(s1.seen)
    try:
        app.terminate_user_connections(user_id)
    except PusherError as e:
        fail(f"terminate_user_connections failed with {type(e).__name__}: {e} (this library posts to "
             f"/users/{{id}}/terminate_connections, without the /apps/{{app_id}} prefix)")
    s1.wait(lambda m: m.get("state") not in (None, "connected"), 5, "the signed-in connection to be closed",
            since=mark)
    check(s2.proc.poll() is None, "the other subscriber's process exited")
    app.trigger(pub, "news", {"n": 4})
    s2.event(pub, "news", lambda m: m["data"] == {"n": 4})

    for sub in subscribers:
        sub.close()
    print(f"ok {NAME}", flush=True)


if __name__ == "__main__":
    timer = threading.Timer(DEADLINE_SECONDS, lambda: fail(f"the script's deadline of {DEADLINE_SECONDS} s passed"))
    timer.daemon = True
    timer.start()
    try:
        main()
    except Exception as e:  # anything unexpected still fails with the step
        fail(f"{type(e).__name__}: {e}")
    os._exit(0)
