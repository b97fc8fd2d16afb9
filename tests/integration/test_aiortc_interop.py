"""Interoperability with an independent WebRTC implementation: stock aiortc
``RTCPeerConnection`` (its own SDP offer/answer, ICE, DTLS, SRTP, RTP packetizers,
encoders and decoders) publishes through the SFU and another aiortc peer connection
subscribes and decodes. Nothing from ``sfu_bot`` is used on the client side."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import av
import pytest
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack

from tests.integration.conftest import Node

ROOM = "interop"
WIDTH, HEIGHT = 640, 480  # aiortc's VideoStreamTrack default size
MIN_FRAMES = 20
MEDIA_TIMEOUT_S = 15.0


@pytest.fixture(autouse=True)
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    # aioice leaves 127.0.0.1 out of its host candidates; the SFU under test binds
    # 127.0.0.1 only, so make aiortc gather exactly that. No STUN anywhere.
    monkeypatch.setattr("aioice.ice.get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


def _new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


class Signaling:
    """A bare client of the v1 JSON WebSocket protocol (docs/protocol.md)."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http = http
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    @classmethod
    async def connect(cls, node: Node, identity: str) -> Signaling:
        http = aiohttp.ClientSession()
        try:
            ws = await http.ws_connect(
                f"{node.url}/v1/rtc?access_token={node.token(ROOM, identity)}"
            )
        except BaseException:
            await http.close()
            raise
        return cls(http, ws)

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise AssertionError(f"websocket closed or non-text frame: {msg.type} {msg.data!r}")
        data = json.loads(msg.data)
        self.messages.append(data)
        if data.get("type") == "error":
            self.errors.append(data)
        return data

    async def wait_for(self, type_: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no {type_!r} within {timeout} s; "
                    f"got {[m.get('type') for m in self.messages]}, errors {self.errors}"
                )
            data = await self.recv(remaining)
            if data["type"] == type_:
                return data
            if data["type"] == "error":
                raise AssertionError(f"server error while waiting for {type_!r}: {data}")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        await self.http.close()


@dataclass
class Received:
    video_frames: int = 0
    audio_frames: int = 0
    sizes: set[tuple[int, int]] = field(default_factory=set)
    formats: set[str] = field(default_factory=set)
    kinds: list[str] = field(default_factory=list)
    #: mean (R, G, B) of the first decoded picture
    first_rgb_mean: tuple[float, float, float] | None = None
    min_audio: int = 1
    error: BaseException | None = None
    enough: asyncio.Event = field(default_factory=asyncio.Event)

    def check(self) -> None:
        if self.video_frames >= MIN_FRAMES and self.audio_frames >= self.min_audio:
            self.enough.set()


async def _consume(track: Any, received: Received) -> None:
    try:
        while True:
            frame = await track.recv()
            if track.kind == "video":
                assert isinstance(frame, av.VideoFrame), f"video track yielded {type(frame)}"
                received.video_frames += 1
                received.sizes.add((frame.width, frame.height))
                if received.first_rgb_mean is None:
                    rgb = frame.to_ndarray(format="rgb24").reshape(-1, 3).mean(axis=0)
                    received.first_rgb_mean = (float(rgb[0]), float(rgb[1]), float(rgb[2]))
            else:
                assert isinstance(frame, av.AudioFrame), f"audio track yielded {type(frame)}"
                received.audio_frames += 1
            received.check()
    except MediaStreamError:
        pass
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # surfaced by the test
        received.error = exc
        received.enough.set()


async def _run_subscriber(sig: Signaling, pc: RTCPeerConnection, answered: list[str]) -> None:
    """Answer every subscriber_offer the server sends, for as long as the socket lives."""
    while True:
        try:
            msg = await sig.recv(timeout=60)
        except (TimeoutError, AssertionError):
            return
        if msg["type"] == "subscriber_offer":
            await pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="offer"))
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
            await sig.send({"type": "subscriber_answer", "sdp": pc.localDescription.sdp})
            answered.append(msg["sdp"])


@dataclass
class Call:
    pub_sig: Signaling
    sub_sig: Signaling
    pub_pc: RTCPeerConnection
    sub_pc: RTCPeerConnection
    received: Received
    offer_sdp: str = ""
    answer_sdp: str = ""
    publish_answer: dict[str, Any] = field(default_factory=dict)
    subscriber_offers: list[str] = field(default_factory=list)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def _call(node: Node, want_audio: bool) -> AsyncIterator[Call]:
    received = Received(min_audio=1 if want_audio else 0)
    pub_pc, sub_pc = _new_pc(), _new_pc()
    pub_sig: Signaling | None = None
    sub_sig: Signaling | None = None
    tasks: list[asyncio.Task[Any]] = []
    try:
        pub_sig = await Signaling.connect(node, "aiortc-pub")
        await pub_sig.wait_for("joined")
        sub_sig = await Signaling.connect(node, "aiortc-sub")
        await sub_sig.wait_for("joined")

        @sub_pc.on("track")
        def on_track(track: Any) -> None:
            received.kinds.append(track.kind)
            tasks.append(asyncio.ensure_future(_consume(track, received)))

        call = Call(pub_sig, sub_sig, pub_pc, sub_pc, received, tasks=tasks)
        tasks.append(
            asyncio.ensure_future(_run_subscriber(sub_sig, sub_pc, call.subscriber_offers))
        )
        yield call
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        for pc in (pub_pc, sub_pc):
            with contextlib.suppress(Exception):
                await pc.close()
        for sig in (pub_sig, sub_sig):
            if sig is not None:
                await sig.close()


async def _wait_media(call: Call, what: str) -> float:
    start = time.monotonic()
    try:
        await asyncio.wait_for(call.received.enough.wait(), MEDIA_TIMEOUT_S)
    except TimeoutError:
        pass
    r = call.received
    if r.error is not None:
        raise AssertionError(f"{what}: subscriber track failed: {r.error!r}") from r.error
    assert r.video_frames >= MIN_FRAMES and r.audio_frames >= r.min_audio, (
        f"{what}: subscriber decoded {r.video_frames} video / {r.audio_frames} audio frames in "
        f"{MEDIA_TIMEOUT_S} s (want >= {MIN_FRAMES} video, >= {r.min_audio} audio); "
        f"remote tracks {r.kinds}; "
        f"pub ICE {call.pub_pc.iceConnectionState}/{call.pub_pc.connectionState}, "
        f"sub ICE {call.sub_pc.iceConnectionState}/{call.sub_pc.connectionState}; "
        f"subscriber_offers answered {len(call.subscriber_offers)}; "
        f"errors pub {call.pub_sig.errors} sub {call.sub_sig.errors}\n"
        f"--- publish offer ---\n{call.offer_sdp}\n--- publish_answer ---\n{call.answer_sdp}\n"
        f"--- last subscriber_offer ---\n{call.subscriber_offers[-1:]}"
    )
    assert not call.pub_sig.errors and not call.sub_sig.errors, (
        f"{what}: server errors: pub {call.pub_sig.errors} sub {call.sub_sig.errors}"
    )
    assert r.sizes == {(WIDTH, HEIGHT)}, (
        f"{what}: decoded sizes {r.sizes}, the publisher sends {WIDTH}x{HEIGHT}"
    )
    # aiortc's VideoStreamTrack sends an all-zero YUV picture, which is green in RGB.
    assert r.first_rgb_mean is not None
    red, green, blue = r.first_rgb_mean
    assert green > 100 and red < 40 and blue < 40, (
        f"{what}: first decoded picture is not green: mean RGB {r.first_rgb_mean}"
    )
    return time.monotonic() - start


def _sdp_lines(sdp: str, mid: str) -> list[str]:
    """The lines of the m-section whose a=mid is ``mid``."""
    sections: list[list[str]] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append([])
        if sections:
            sections[-1].append(line)
    for section in sections:
        if f"a=mid:{mid}" in section:
            return section
    raise AssertionError(f"no m-section with a=mid:{mid}")


async def test_aiortc_publisher_to_aiortc_subscriber_vp8_and_opus(node: Node) -> None:
    async with _call(node, want_audio=True) as call:
        video = call.pub_pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
        audio = call.pub_pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
        # mids exist only after setLocalDescription: publish() reads them after it.
        pc = call.pub_pc
        await pc.setLocalDescription(await pc.createOffer())
        tracks = [
            {"mid": video.mid, "source": "camera", "name": "aiortc camera"},
            {"mid": audio.mid, "source": "microphone", "name": "aiortc mic"},
        ]
        call.offer_sdp = pc.localDescription.sdp
        await call.pub_sig.send({"type": "publish", "sdp": call.offer_sdp, "tracks": tracks})
        answer = await call.pub_sig.wait_for("publish_answer")
        call.publish_answer, call.answer_sdp = answer, answer["sdp"]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

        published = {t["mid"] for t in answer["tracks"]}
        assert published == {video.mid, audio.mid}, (
            f"publish_answer accepted mids {published}, "
            f"want {{{video.mid}, {audio.mid}}}:\n{answer['sdp']}"
        )
        elapsed = await _wait_media(call, "VP8+Opus")
        r = call.received
        assert sorted(r.kinds) == ["audio", "video"]
        # The subscriber offer carries the codec the publisher negotiated.
        video_mid = next(
            m for m, tid in _last_offer_tracks(call).items() if _kind_of(call, tid) == "video"
        )
        assert any(
            "VP8/90000" in line for line in _sdp_lines(call.subscriber_offers[-1], video_mid)
        )
        print(
            f"\nVP8+Opus: {r.video_frames} video / {r.audio_frames} audio frames, "
            f"first RGB {r.first_rgb_mean}, media wait {elapsed:.2f} s"
        )


def _last_offer_tracks(call: Call) -> dict[str, str]:
    offers = [m for m in call.sub_sig.messages if m["type"] == "subscriber_offer"]
    return offers[-1]["tracks"]


def _kind_of(call: Call, track_id: str) -> str:
    for message in call.sub_sig.messages:
        if message["type"] == "track_published" and message["track"]["id"] == track_id:
            return message["track"]["kind"]
    raise AssertionError(f"no track_published for {track_id}")


async def test_aiortc_h264_publisher_to_aiortc_subscriber(node: Node) -> None:
    async with _call(node, want_audio=False) as call:
        pc = call.pub_pc
        video = pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
        h264 = [
            c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"
        ]
        assert h264, "aiortc offers no H.264"
        video.setCodecPreferences(h264)
        await pc.setLocalDescription(await pc.createOffer())
        call.offer_sdp = pc.localDescription.sdp
        offer_video = _sdp_lines(call.offer_sdp, video.mid)
        fmtp = [line for line in offer_video if line.startswith("a=fmtp:")]
        print("\naiortc H.264 offer fmtp lines:\n  " + "\n  ".join(fmtp))
        await call.pub_sig.send(
            {
                "type": "publish",
                "sdp": call.offer_sdp,
                "tracks": [{"mid": video.mid, "source": "camera"}],
            }
        )
        answer = await call.pub_sig.wait_for("publish_answer")
        call.publish_answer, call.answer_sdp = answer, answer["sdp"]
        answer_video = _sdp_lines(answer["sdp"], video.mid)
        assert [t["mid"] for t in answer["tracks"]] == [video.mid], (
            "server did not accept the H.264-only m-section; "
            f"offer:\n{call.offer_sdp}\nanswer:\n{answer['sdp']}"
        )
        assert any("H264/90000" in line for line in answer_video), "\n".join(answer_video)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

        elapsed = await _wait_media(call, "H.264")
        r = call.received
        video_mid = next(iter(_last_offer_tracks(call)))
        sub_video = _sdp_lines(call.subscriber_offers[-1], video_mid)
        assert any("H264/90000" in line for line in sub_video), "\n".join(sub_video)
        assert any(
            "packetization-mode=1" in line for line in sub_video if line.startswith("a=fmtp:")
        ), (
            "subscriber_offer lost packetization-mode=1, which aiortc's H.264 packetizer "
            "(FU-A/STAP-A) needs:\n" + "\n".join(sub_video)
        )
        print(
            f"H.264: {r.video_frames} video frames, first RGB {r.first_rgb_mean}, "
            f"media wait {elapsed:.2f} s"
        )
        print(
            "publish_answer H.264 lines:\n  "
            + "\n  ".join(x for x in answer_video if "fmtp" in x or "rtpmap" in x)
        )
        print(
            "subscriber_offer H.264 lines:\n  "
            + "\n  ".join(x for x in sub_video if "fmtp" in x or "rtpmap" in x)
        )
