"""A two-bot call through a running SFU: one bot publishes audio and video, the
other subscribes and decodes, and the script prints what arrived.

    sfu serve --dev --rtc-host 127.0.0.1            # in one terminal
    python examples/two_bot_call.py                 # in another

Uses dev tokens (the server must run with --dev, or pass --key/--secret).
"""

from __future__ import annotations

import argparse
import asyncio
import json

from sfu_bot.client import Bot
from signaling.auth import DEV_KEY, DEV_SECRET, issue_token


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8080")
    parser.add_argument("--room", default="example")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--key", default=DEV_KEY)
    parser.add_argument("--secret", default=DEV_SECRET)
    args = parser.parse_args()

    def token(identity: str) -> str:
        return issue_token(args.key, args.secret, args.room, identity, name=identity)

    publisher = Bot(args.url, token("publisher"), name="publisher")
    subscriber = Bot(args.url, token("subscriber"), name="subscriber", decode=True)
    try:
        await publisher.connect()
        await subscriber.connect()
        await publisher.publish(width=640, height=360, bitrate_bps=800_000)
        await asyncio.sleep(args.seconds)
        report = {"publisher": publisher.stats(), "subscriber": subscriber.stats()}
        print(json.dumps(report, indent=2))
        video = [t for t in subscriber.tracks.values() if t.kind == "video"]
        if not video or video[0].frames_decoded == 0:
            raise SystemExit(
                "no video decoded: is the server running with --dev --rtc-host 127.0.0.1?"
            )
        print(
            f"subscriber decoded {video[0].frames_decoded} frames, "
            f"last frame counter read back: {video[0].counters[-1:]}"
        )
    finally:
        await subscriber.leave()
        await publisher.leave()


if __name__ == "__main__":
    asyncio.run(main())
