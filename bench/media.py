"""What a benchmark publisher sends, shared by the load generator and the floor.

The floor loop must send the same packets the server forwards (same sizes,
same rate) or the ratio server-cost / floor-cost means nothing, so both sides
take their media from one description.
"""

from __future__ import annotations

from dataclasses import dataclass

from sfu.core import vp8
from sfu.core.rtp import abs_send_time, build_extension_block, build_packet
from sfu_bot.media import encode_audio, encode_video
from sfu_bot.stamp import STAMP_SIZE

__all__ = ["VideoSpec", "packet_schedule"]

FPS = 30
GOP = 60  # a keyframe every 2 s, as a camera encoder with periodic refresh
CLIP_FRAMES = 150


@dataclass(frozen=True, slots=True)
class VideoSpec:
    width: int = 640
    height: int = 360
    bitrate_bps: int = 800_000


def packet_schedule(video: VideoSpec | None, audio: bool) -> tuple[list[list[bytes]], int]:
    """Packets as the server sends them to one subscriber, grouped per tick.

    Returns (ticks, tick_ms): ``ticks[i]`` holds the packets due at i * tick_ms
    (a 10 ms grid: audio every 20 ms, video frames at 30 fps rounded to it),
    looping over two seconds of media. Each packet carries the subscriber-leg
    header extensions (MID, abs-send-time, audio level for audio) and the
    12-octet send stamp padding, like a forwarded one.
    """
    tick_ms = 10
    loop_ms = 2000
    ticks: list[list[bytes]] = [[] for _ in range(loop_ms // tick_ms)]
    send_time = abs_send_time(0.0)
    padding = STAMP_SIZE
    if audio:
        ext = build_extension_block([(1, b"0"), (2, send_time), (3, b"\x10")])
        frames = encode_audio(1000).frames
        for i in range(loop_ms // 20):
            payload = frames[i % len(frames)]
            packet = build_packet(True, 111, 0, i * 960, 1, ext, payload, padding)
            ticks[(i * 20) // tick_ms].append(packet)
    if video is not None:
        ext = build_extension_block([(1, b"1"), (2, send_time)])
        clip = encode_video(
            "vp8", video.width, video.height, FPS, CLIP_FRAMES, GOP, video.bitrate_bps
        )
        for i in range(loop_ms * FPS // 1000):
            frame = clip.frames[i % len(clip.frames)]
            payloads = vp8.packetize(frame, i & 0x7FFF)
            tick = (i * 1000 // FPS) // tick_ms
            for j, payload in enumerate(payloads):
                last = j == len(payloads) - 1
                ticks[tick].append(build_packet(last, 96, 0, i * 3000, 2, ext, payload, padding))
    return ticks, tick_ms
