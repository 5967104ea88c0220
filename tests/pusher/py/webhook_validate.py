"""Validates the webhooks Herald sent with the official Python server
library (PyPI `pusher`): `validate_webhook` must accept every request of
WEBHOOKS_FILE (a JSON array of {headers, body}) and refuse a tampered one.

Environment: PUSHER_HOST, PUSHER_PORT, PUSHER_APP_ID, PUSHER_KEY,
PUSHER_SECRET, WEBHOOKS_FILE; PYTHONPATH holding the `pusher` library.
"""

import json
import os
import sys

import pusher


def fail(message):
    print(f"FAIL webhook validation (Python): {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def main():
    client = pusher.Pusher(
        app_id=os.environ["PUSHER_APP_ID"],
        key=os.environ["PUSHER_KEY"],
        secret=os.environ["PUSHER_SECRET"],
        host=os.environ["PUSHER_HOST"],
        port=int(os.environ["PUSHER_PORT"]),
        ssl=False,
    )
    with open(os.environ["WEBHOOKS_FILE"], encoding="utf-8") as f:
        requests = json.load(f)
    if not requests:
        fail("no webhooks to validate")
    for r in requests:
        headers = {k.lower(): v for k, v in r["headers"].items()}
        body = r["body"]
        webhook = client.validate_webhook(
            key=headers.get("x-pusher-key", ""), signature=headers.get("x-pusher-signature", ""), body=body
        )
        if webhook is None:
            fail(f"the library refused a webhook: {r}")
        for event in webhook["events"]:
            print(event["name"], event["channel"])
        tampered = client.validate_webhook(
            key=headers.get("x-pusher-key", ""),
            signature=headers.get("x-pusher-signature", ""),
            body=body.replace('"channel"', '"channeL"'),
        )
        if tampered is not None:
            fail("a tampered webhook was accepted")


main()
