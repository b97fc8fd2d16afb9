"""The Python bot: a headless SFU client for tests, examples, benchmarks and load.

It speaks the v1 signaling protocol over a WebSocket and sends and receives media
on real ICE/DTLS/SRTP transports (the same aiortc-based transport the server
uses). It publishes pre-encoded frames (almost no CPU per bot), answers NACKs and
keyframe requests like a real sender, and counts what it receives without
decoding, or decodes and reads back the frame counter drawn into each picture.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from sfu import aiortc_adapter
from sfu.core import h264, vp8
from sfu.core.codecs import is_keyframe
from sfu.core.nack import NackGenerator
from sfu.core.rtcp import (
    Fir,
    Nack,
    Pli,
    Remb,
    ReportBlock,
    RtcpError,
    SenderReport,
    ntp_from_unix,
    pack_nack,
    pack_receiver_report,
    pack_remb,
    pack_sdes_cname,
    pack_sender_report,
    parse_compound,
)
from sfu.core.rtp import (
    RtpError,
    abs_send_time,
    build_extension_block,
    build_packet,
    parse_header,
)
from sfu.core.seqnum import SeqUnwrapper
from sfu.core.stats import ReceiveStats
from sfu.negotiate import read_remote_transport
from sfu.sdp import parse, serialize
from sfu.transport import PeerTransport, TransportConfig
from sfu_bot.media import (
    AudioSource,
    VideoDecoder,
    VideoSource,
    encode_audio,
    encode_video,
    read_counter,
)
from sfu_bot.negotiation import (
    BOT_EXT_IDS,
    IncomingStream,
    OutgoingStream,
    answer_server_offer,
    build_publish_offer,
)

logger = logging.getLogger(__name__)

_OSN = struct.Struct("!H")
HISTORY_PACKETS = 1024
MAX_MESSAGES = 2000


class BotError(Exception):
    pass


# --- outgoing ------------------------------------------------------------------


@dataclass(eq=False)
class SendStream:
    info: OutgoingStream
    clock_rate: int
    seq: int = field(default_factory=lambda: secrets.randbits(15))
    ts_base: int = field(default_factory=lambda: secrets.randbits(31))
    rtx_seq: int = field(default_factory=lambda: secrets.randbits(15))
    packets: int = 0
    octets: int = 0
    dropped: int = 0
    retransmitted: int = 0
    nacks: int = 0
    use_rtx: bool = False
    history: dict[int, bytes] = field(default_factory=dict)
    #: seq -> payload of every packet sent, when the bot records (byte-identity tests)
    recorded: dict[int, bytes] | None = None
    track_id: str | None = None
    video: VideoSource | None = None
    audio: AudioSource | None = None
    picture_id: int = field(default_factory=lambda: secrets.randbits(15))
    frames_sent: int = 0
    #: RTP timestamp -> frame counter drawn in that picture (what a decoder should read back)
    sent_counters: dict[int, int] = field(default_factory=dict)


# --- incoming ------------------------------------------------------------------


@dataclass(eq=False)
class RecvTrack:
    """What the bot received for one subscribed track."""

    track_id: str
    mid: str
    kind: str
    codec: str
    ssrc: int | None
    rtx_ssrc: int | None
    rtx_payload_type: int | None
    packets: int = 0
    bytes: int = 0
    rtx_packets: int = 0
    first_packet_at: float | None = None
    first_is_keyframe: bool | None = None
    seqs: set[int] = field(default_factory=set)
    payloads: dict[int, bytes] | None = None
    frames_decoded: int = 0
    counters: list[int] = field(default_factory=list)
    decode_errors: int = 0
    unwrap: SeqUnwrapper = field(default_factory=SeqUnwrapper)
    nack: NackGenerator = field(default_factory=NackGenerator)
    stats: ReceiveStats | None = None
    assembler: Any = None
    decoder: VideoDecoder | None = None
    last_ssrc: int | None = None
    last_timestamp: int | None = None
    #: (ntp_timestamp, rtp_timestamp) of the sender reports received for this track
    sender_reports: list[tuple[int, int]] = field(default_factory=list)

    def missing(self) -> list[int]:
        """Sequence numbers (extended) absent between the first and the last received."""
        if not self.seqs:
            return []
        lo, hi = min(self.seqs), max(self.seqs)
        return [s for s in range(lo, hi + 1) if s not in self.seqs]


class Bot:
    def __init__(
        self,
        url: str,
        token: str,
        *,
        rtc_hosts: tuple[str, ...] = ("127.0.0.1",),
        auto_subscribe: bool = True,
        decode: bool = False,
        record: bool = False,
        send_nacks: bool = True,
        remb_bps: int | None = None,
        accept_rtx: bool = True,
        drop_incoming_every: int = 0,
        name: str = "bot",
    ) -> None:
        self.url = url
        self.token = token
        self.name = name
        self.auto_subscribe = auto_subscribe
        self.decode = decode
        self.record = record
        self.send_nacks = send_nacks
        self.remb_bps = remb_bps
        self.accept_rtx = accept_rtx
        #: Simulated loss on the subscriber leg: discard every Nth video packet
        #: (first transmissions only), so repairs must come from the server's cache.
        self.drop_incoming_every = drop_incoming_every
        self.dropped_incoming = 0
        self._incoming_video = 0
        self._transport_config = TransportConfig(host_addresses=rtc_hosts)
        self._certificate = aiortc_adapter.generate_certificate()
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.messages: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_MESSAGES)
        self._waiters: list[
            tuple[Callable[[dict[str, Any]], bool], asyncio.Future[dict[str, Any]]]
        ] = []
        self.joined: dict[str, Any] | None = None
        self.participant_id: str | None = None
        self.participants: dict[str, dict[str, Any]] = {}
        # publishing
        self.pub: PeerTransport | None = None
        self.streams: dict[str, SendStream] = {}  # by mid
        self._by_ssrc_out: dict[int, SendStream] = {}
        self._video_fps = 30
        self._drop_every = 0
        self._video_sent = 0
        self._rtcp_ssrc = secrets.randbits(32) or 1
        self.remb_received: int | None = None
        self.keyframe_requests_received = 0
        # subscribing
        self.sub: PeerTransport | None = None
        self._sub_version = 0
        self._sub_session = secrets.randbits(62)
        self._sub_started = False
        self.tracks: dict[str, RecvTrack] = {}  # by track id
        self._in_by_ssrc: dict[int, tuple[RecvTrack, bool]] = {}
        self.unknown_packets = 0
        self.offers_answered = 0
        self.closed = False

    # --- signaling -----------------------------------------------------------

    async def connect(self, timeout: float = 10.0) -> dict[str, Any]:
        self._http = aiohttp.ClientSession()
        query = {"access_token": self.token, "auto_subscribe": "1" if self.auto_subscribe else "0"}
        self._ws = await self._http.ws_connect(
            f"{self.url}/v1/rtc", params=query, timeout=aiohttp.ClientWSTimeout(ws_close=5)
        )
        self._spawn(self._read_loop(), "bot-reader")
        self._spawn(self._rtcp_loop(), "bot-rtcp")
        joined = await self.wait_for("joined", timeout=timeout)
        self.joined = joined
        self.participant_id = joined["participant"]["id"]
        for participant in joined["participants"]:
            self.participants[participant["id"]] = participant
        return joined

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coro, name=name))

    async def send(self, message: dict[str, Any]) -> None:
        if self._ws is None or self._ws.closed:
            raise BotError("not connected")
        await self._ws.send_str(json.dumps(message))

    async def send_raw(self, text: str) -> None:
        """Send any text frame (for tests of bad input)."""
        assert self._ws is not None
        await self._ws.send_str(text)

    async def _read_loop(self) -> None:
        assert self._ws is not None
        async for frame in self._ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            message = json.loads(frame.data)
            self.messages.append(message)
            try:
                await self._on_message(message)
            except Exception:  # noqa: BLE001
                logger.exception("bot %s: handling %s failed", self.name, message.get("type"))
            for predicate, future in list(self._waiters):
                if not future.done() and predicate(message):
                    future.set_result(message)
        for _predicate, future in self._waiters:
            if not future.done():
                future.set_exception(BotError("connection closed"))

    async def wait_for(
        self,
        message_type: str,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        *,
        timeout: float = 5.0,
        include_past: bool = True,
    ) -> dict[str, Any]:
        def match(message: dict[str, Any]) -> bool:
            return message.get("type") == message_type and (predicate is None or predicate(message))

        if include_past:
            for message in self.messages:
                if match(message):
                    return message
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        entry = (match, future)
        self._waiters.append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise BotError(f"no {message_type!r} message within {timeout} s") from None
        finally:
            self._waiters.remove(entry)

    async def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "participant_joined":
            self.participants[message["participant"]["id"]] = message["participant"]
        elif kind == "participant_left":
            self.participants.pop(message["participant_id"], None)
        elif kind == "track_published":
            participant = self.participants.get(message["participant_id"])
            if participant is not None:
                participant.setdefault("tracks", []).append(message["track"])
        elif kind == "track_unpublished":
            participant = self.participants.get(message["participant_id"])
            if participant is not None:
                participant["tracks"] = [
                    t for t in participant.get("tracks", []) if t["id"] != message["track_id"]
                ]
        elif kind == "subscriber_offer":
            await self._answer_offer(message["sdp"], message["tracks"])

    # --- publishing ----------------------------------------------------------

    async def publish(
        self,
        *,
        audio: bool = True,
        video: str | None = "vp8",
        screen: bool = False,
        width: int = 320,
        height: int = 240,
        fps: int = 30,
        bitrate_bps: int = 400_000,
        gop: int = 60,
        frames: int = 120,
        drop_every: int = 0,
        signal_ssrcs: bool = True,
        rtx: bool = True,
        timeout: float = 10.0,
    ) -> dict[str, str]:
        """Publish audio, video and optionally a second "screen" video track with
        the same codec; returns {track name: track_id} once the transport is up."""
        loop = asyncio.get_running_loop()
        self._video_fps = fps
        self._drop_every = drop_every
        self.pub = PeerTransport(
            self._transport_config,
            self._certificate,
            controlling=True,
            name=f"{self.name}/pub",
            on_rtp=lambda packet, arrival: None,
            on_rtcp=self._on_pub_rtcp,
            on_state=lambda state: None,
        )
        local = await self.pub.prepare()
        cname = secrets.token_hex(8)
        stream_id = secrets.token_hex(6)
        plans: list[tuple[OutgoingStream, Any]] = []
        if audio:
            info = OutgoingStream("0", "audio", "opus", _ssrc(), None, cname, stream_id, "mic")
            plans.append((info, AudioSource(await loop.run_in_executor(None, encode_audio, 1000))))
        videos = ([("cam", width, height)] if video else []) + (
            [("screen", width * 2, height * 2)] if video and screen else []
        )
        for name, w, h in videos:
            encoded = await loop.run_in_executor(
                None, encode_video, video, w, h, fps, frames, gop, bitrate_bps
            )
            info = OutgoingStream(
                str(len(plans)),
                "video",
                video or "vp8",
                _ssrc(),
                _ssrc() if rtx else None,
                cname,
                stream_id,
                name,
            )
            plans.append((info, VideoSource(encoded)))
        outgoing = [info for info, _source in plans]
        offer = build_publish_offer(
            outgoing, local, version=1, session_id=secrets.randbits(62), signal_ssrcs=signal_ssrcs
        )
        for info, source in plans:
            stream = SendStream(info, 48000 if info.kind == "audio" else 90000)
            if info.kind == "audio":
                stream.audio = source
            else:
                stream.video = source
            if self.record:
                stream.recorded = {}
            self.streams[info.mid] = stream
            self._by_ssrc_out[info.ssrc] = stream
        await self.send(
            {
                "type": "publish",
                "sdp": serialize(offer),
                "tracks": [
                    {
                        "mid": s.mid,
                        "source": {"mic": "microphone", "cam": "camera"}.get(
                            s.track_name, "screen"
                        ),
                        "name": s.track_name,
                    }
                    for s in outgoing
                ],
            }
        )
        answer_message = await self.wait_for("publish_answer", timeout=timeout)
        answer = parse(answer_message["sdp"])
        for entry in answer_message["tracks"]:
            stream = self.streams.get(entry["mid"])
            if stream is not None:
                stream.track_id = entry["track_id"]
        for section in answer.media:
            stream = self.streams.get(section.mid or "")
            if stream is not None:
                stream.use_rtx = any(c.name.lower() == "rtx" for c in section.codecs)
        remote = read_remote_transport(answer)
        self.pub.start(remote, "server" if remote.setup == "active" else "client")
        await self._wait_connected(self.pub, timeout)
        self._spawn(self._send_loop(), "bot-send")
        return {s.info.track_name: s.track_id or "" for s in self.streams.values()}

    def stream(self, name: str) -> SendStream:
        """The outgoing stream named "mic", "cam" or "screen"."""
        for stream in self.streams.values():
            if stream.info.track_name == name:
                return stream
        raise KeyError(name)

    async def _wait_connected(self, transport: PeerTransport, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while transport.state != "connected":
            if transport.state in ("failed", "closed"):
                raise BotError(f"{transport.name}: transport {transport.state}")
            if time.monotonic() > deadline:
                raise BotError(f"{transport.name}: not connected within {timeout} s")
            await asyncio.sleep(0.01)

    async def _send_loop(self) -> None:
        start = time.monotonic()
        streams = list(self.streams.values())
        audio = [s for s in streams if s.audio is not None]
        video = [s for s in streams if s.video is not None]
        frame_ticks = 90000 // self._video_fps
        next_audio = next_video = start
        audio_n = video_n = 0
        while not self.closed:
            now = time.monotonic()
            if audio and now >= next_audio:
                for stream in audio:
                    payload = stream.audio.next_frame()  # type: ignore[union-attr]
                    self._send_media(stream, [payload], stream.ts_base + audio_n * 960)
                audio_n += 1
                next_audio = start + audio_n * 0.02
            if video and now >= next_video:
                for stream in video:
                    frame, _key, counter = stream.video.next_frame()  # type: ignore[union-attr]
                    ts = (stream.ts_base + video_n * frame_ticks) & 0xFFFFFFFF
                    if stream.info.codec == "vp8":
                        payloads = vp8.packetize(frame, stream.picture_id)
                        stream.picture_id = (stream.picture_id + 1) & 0x7FFF
                    else:
                        payloads = h264.packetize(frame)
                    stream.sent_counters[ts] = counter
                    if len(stream.sent_counters) > 4096:
                        del stream.sent_counters[next(iter(stream.sent_counters))]
                    stream.frames_sent += 1
                    self._send_media(stream, payloads, ts)
                video_n += 1
                next_video = start + video_n / self._video_fps
            upcoming = min(next_audio if audio else 1e18, next_video if video else 1e18)
            behind_s = time.monotonic() - upcoming
            if behind_s > 1.0:
                # The loop stalled for over a second: shift the schedule instead of
                # bursting a second of media at once.
                start += behind_s
                next_audio = start + audio_n * 0.02
                next_video = start + video_n / self._video_fps
                upcoming += behind_s
            await asyncio.sleep(max(0.0, upcoming - time.monotonic()))

    def _send_media(self, stream: SendStream, payloads: list[bytes], ts: int) -> None:
        transport = self.pub
        if transport is None:
            return
        info = stream.info
        elements = [(BOT_EXT_IDS["urn:ietf:params:rtp-hdrext:sdes:mid"], info.mid.encode())]
        if info.kind == "video":
            elements.append(
                (
                    BOT_EXT_IDS["http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"],
                    abs_send_time(time.time()),
                )
            )
        ext = build_extension_block(elements)
        last = len(payloads) - 1
        for i, payload in enumerate(payloads):
            stream.seq = (stream.seq + 1) & 0xFFFF
            packet = build_packet(
                i == last and info.kind == "video" or info.kind == "audio",
                info.payload_type,
                stream.seq,
                ts & 0xFFFFFFFF,
                info.ssrc,
                ext,
                payload,
            )
            history = stream.history
            history[stream.seq] = packet
            if len(history) > HISTORY_PACKETS:
                del history[next(iter(history))]
            if stream.recorded is not None:
                stream.recorded[stream.seq] = payload
            stream.packets += 1
            stream.octets += len(payload)
            if info.kind == "video":
                self._video_sent += 1
                if self._drop_every and self._video_sent % self._drop_every == 0:
                    stream.dropped += 1  # simulated loss on the publisher leg
                    continue
            transport.send_rtp(packet)

    def _on_pub_rtcp(self, data: bytes) -> None:
        try:
            packets = parse_compound(data)
        except RtcpError:
            return
        for item in packets:
            if isinstance(item, Nack):
                stream = self._by_ssrc_out.get(item.media_ssrc)
                if stream is not None:
                    for seq in item.lost:
                        stream.nacks += 1
                        self._retransmit(stream, seq)
            elif isinstance(item, Pli):
                self._keyframe_request(item.media_ssrc)
            elif isinstance(item, Fir):
                for ssrc, _seq in item.entries:
                    self._keyframe_request(ssrc)
            elif isinstance(item, Remb):
                self.remb_received = item.bitrate_bps

    def _keyframe_request(self, ssrc: int) -> None:
        stream = self._by_ssrc_out.get(ssrc)
        if stream is not None and stream.video is not None:
            self.keyframe_requests_received += 1
            stream.video.request_keyframe()

    def _retransmit(self, stream: SendStream, seq: int) -> None:
        packet = stream.history.get(seq)
        if packet is None or self.pub is None:
            return
        if stream.use_rtx and stream.info.rtx_ssrc is not None:
            header = parse_header(packet)
            stream.rtx_seq = (stream.rtx_seq + 1) & 0xFFFF
            packet = build_packet(
                header.marker,
                stream.info.rtx_payload_type or 0,
                stream.rtx_seq,
                header.timestamp,
                stream.info.rtx_ssrc,
                packet[header.ext_start - 4 : header.ext_end] if header.ext_start else b"",
                _OSN.pack(seq) + packet[header.payload_start : header.payload_end],
            )
        stream.retransmitted += 1
        self.pub.send_rtp(packet)

    # --- subscribing ---------------------------------------------------------

    async def _answer_offer(self, sdp: str, tracks: dict[str, str]) -> None:
        if self.sub is None:
            self.sub = PeerTransport(
                self._transport_config,
                self._certificate,
                controlling=False,
                name=f"{self.name}/sub",
                on_rtp=self._on_sub_rtp,
                on_rtcp=self._on_sub_rtcp,
                on_state=lambda state: None,
            )
        local = await self.sub.prepare()
        offer = parse(sdp)
        self._sub_version += 1
        answer, incoming = answer_server_offer(
            offer,
            local,
            version=self._sub_version,
            session_id=self._sub_session,
            accept_rtx=self.accept_rtx,
        )
        self._apply_incoming(incoming, tracks)
        await self.send({"type": "subscriber_answer", "sdp": serialize(answer)})
        self.offers_answered += 1
        if not self._sub_started:
            self._sub_started = True
            self.sub.start(read_remote_transport(offer), "client")

    def _apply_incoming(self, incoming: list[IncomingStream], tracks: dict[str, str]) -> None:
        self._in_by_ssrc.clear()
        for stream in incoming:
            track_id = tracks.get(stream.mid)
            if not stream.active or track_id is None or stream.ssrc is None:
                continue
            track = self.tracks.get(track_id)
            if track is None:
                track = RecvTrack(
                    track_id=track_id,
                    mid=stream.mid,
                    kind=stream.kind,
                    codec=stream.codec,
                    ssrc=stream.ssrc,
                    rtx_ssrc=stream.rtx_ssrc,
                    rtx_payload_type=stream.rtx_payload_type,
                    payloads={} if self.record else None,
                    stats=ReceiveStats(48000 if stream.kind == "audio" else 90000),
                )
                if self.decode and stream.kind == "video" and stream.codec in ("vp8", "h264"):
                    track.assembler = (
                        vp8.Vp8FrameAssembler()
                        if stream.codec == "vp8"
                        else h264.H264FrameAssembler()
                    )
                    track.decoder = VideoDecoder(stream.codec)
                self.tracks[track_id] = track
            self._in_by_ssrc[stream.ssrc] = (track, False)
            if stream.rtx_ssrc is not None:
                self._in_by_ssrc[stream.rtx_ssrc] = (track, True)

    def _on_sub_rtp(self, packet: bytes, arrival_s: float) -> None:
        try:
            header = parse_header(packet)
        except RtpError:
            self.unknown_packets += 1
            return
        entry = self._in_by_ssrc.get(header.ssrc)
        if entry is None:
            self.unknown_packets += 1
            return
        track, rtx = entry
        if self.drop_incoming_every and track.kind == "video" and not rtx:
            self._incoming_video += 1
            if self._incoming_video % self.drop_incoming_every == 0:
                self.dropped_incoming += 1
                return
        start, end = header.payload_start, header.payload_end
        seq = header.seq
        if rtx:
            if end - start < 2:
                return
            seq = _OSN.unpack_from(packet, start)[0]
            start += 2
            track.rtx_packets += 1
        payload = packet[start:end]
        track.last_timestamp = header.timestamp
        ext_seq = track.unwrap.unwrap(seq)
        if ext_seq in track.seqs:
            return
        track.seqs.add(ext_seq)
        if len(track.seqs) > 200_000:
            track.seqs.clear()
        track.packets += 1
        track.bytes += len(payload)
        now_ms = int(arrival_s * 1000)
        track.nack.on_packet(ext_seq, now_ms)
        if track.stats is not None and not rtx:
            track.stats.on_packet(ext_seq, header.timestamp, arrival_s, len(packet))
        if track.first_packet_at is None:
            track.first_packet_at = arrival_s
            track.first_is_keyframe = track.kind != "video" or is_keyframe(track.codec, payload)
        if track.payloads is not None:
            track.payloads[ext_seq] = payload
        if track.assembler is not None:
            for frame in track.assembler.feed(seq, header.timestamp, header.marker, payload):
                for picture in track.decoder.decode(frame.data):  # type: ignore[union-attr]
                    track.frames_decoded += 1
                    counter = read_counter(picture)
                    if counter is not None:
                        track.counters.append(counter)
                track.decode_errors = track.decoder.errors  # type: ignore[union-attr]

    def _on_sub_rtcp(self, data: bytes) -> None:
        try:
            packets = parse_compound(data)
        except RtcpError:
            return
        for item in packets:
            if isinstance(item, SenderReport):
                entry = self._in_by_ssrc.get(item.ssrc)
                if entry is not None and len(entry[0].sender_reports) < 1000:
                    entry[0].sender_reports.append((item.ntp_timestamp, item.rtp_timestamp))

    # --- RTCP timer ----------------------------------------------------------

    async def _rtcp_loop(self) -> None:
        next_report = time.monotonic() + 1.0
        while not self.closed:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            now_ms = int(now * 1000)
            if self.sub is not None and self.sub.connected and self.send_nacks:
                for track in self.tracks.values():
                    due = track.nack.due(now_ms, 50)
                    if due and track.ssrc is not None:
                        self.sub.send_rtcp(
                            pack_nack(self._rtcp_ssrc, track.ssrc, [s & 0xFFFF for s in due])
                        )
            if now < next_report:
                continue
            next_report = now + 1.0
            if self.pub is not None and self.pub.connected:
                ntp = ntp_from_unix(time.time())
                for stream in self.streams.values():
                    elapsed = now - (self.pub.connected_at or now)
                    rtp_ts = (stream.ts_base + int(elapsed * stream.clock_rate)) & 0xFFFFFFFF
                    report = pack_sender_report(
                        stream.info.ssrc, ntp, rtp_ts, stream.packets, stream.octets
                    )
                    self.pub.send_rtcp(
                        report + pack_sdes_cname(stream.info.ssrc, stream.info.cname.encode())
                    )
            if self.sub is not None and self.sub.connected:
                blocks = []
                for track in self.tracks.values():
                    if track.stats is not None and track.ssrc is not None and track.stats.packets:
                        blocks.append(ReportBlock(*track.stats.report_block(track.ssrc, now)))
                if blocks:
                    report = pack_receiver_report(self._rtcp_ssrc, blocks[:31])
                    if self.remb_bps is not None:
                        report += pack_remb(
                            self._rtcp_ssrc, self.remb_bps, [b.ssrc for b in blocks[:31]]
                        )
                    self.sub.send_rtcp(report)

    # --- control -------------------------------------------------------------

    async def set_quality(self, track_id: str, quality: str) -> None:
        await self.send({"type": "set_quality", "track_id": track_id, "quality": quality})

    async def subscribe(self, track_ids: list[str]) -> None:
        await self.send({"type": "subscribe", "track_ids": track_ids})

    async def unsubscribe(self, track_ids: list[str]) -> None:
        await self.send({"type": "unsubscribe", "track_ids": track_ids})

    async def wait_until(
        self, condition: Callable[[], bool], timeout: float = 5.0, what: str = "condition"
    ) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise BotError(f"{what} not met within {timeout} s")
            await asyncio.sleep(0.02)

    def track_of_kind(self, kind: str, publisher_id: str | None = None) -> RecvTrack | None:
        for participant_id, participant in self.participants.items():
            if publisher_id is not None and participant_id != publisher_id:
                continue
            for info in participant.get("tracks", []):
                if info["kind"] == kind and info["id"] in self.tracks:
                    return self.tracks[info["id"]]
        return None

    async def leave(self) -> None:
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(Exception):
                await self.send({"type": "leave"})
                await self.wait_for("leave", timeout=2.0)
        await self.close()

    async def drop(self) -> None:
        """Vanish without a goodbye: the socket and media just stop (a crashed client)."""
        self.closed = True
        for task in self._tasks:
            task.cancel()
        if self._ws is not None:
            # Abort the TCP connection without a WebSocket close frame.
            transport = (
                self._ws._response.connection.transport if self._ws._response.connection else None
            )  # noqa: SLF001
            if transport is not None:
                transport.abort()
        await self._close_transports()
        if self._http is not None:
            await self._http.close()

    async def close(self) -> None:
        if self.closed and self._http is None:
            return
        self.closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        await self._close_transports()
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _close_transports(self) -> None:
        for transport in (self.pub, self.sub):
            if transport is not None:
                with contextlib.suppress(Exception):
                    await transport.close()

    def stats(self) -> dict[str, Any]:
        return {
            "participant_id": self.participant_id,
            "sent": {
                s.info.track_name: {
                    "packets": s.packets,
                    "dropped": s.dropped,
                    "retransmitted": s.retransmitted,
                    "nacks": s.nacks,
                }
                for s in self.streams.values()
            },
            "received": {
                track_id: {
                    "kind": t.kind,
                    "packets": t.packets,
                    "bytes": t.bytes,
                    "rtx_packets": t.rtx_packets,
                    "missing": len(t.missing()),
                    "frames_decoded": t.frames_decoded,
                }
                for track_id, t in self.tracks.items()
            },
        }


def _ssrc() -> int:
    return secrets.randbits(32) or 1
