"""The Python bot: a headless SFU client for tests, examples, benchmarks and load.

It speaks the v1 signaling protocol over a WebSocket and sends and receives media
on real ICE/DTLS/SRTP transports (the same aiortc-based transport the server
uses). It publishes pre-encoded frames (almost no CPU per bot), answers NACKs and
keyframe requests like a real sender, and counts what it receives without
decoding, or decodes and reads back the frame counter drawn into each picture.

Publishing can be simulcast like a browser's (``publish(simulcast=True)``): one
m-section with RIDs and no SSRCs, one SSRC per layer, MID/RID extensions on every
packet, per-layer NACK/PLI handling and :meth:`Bot.pause_layer`. Subscribing
records, per track, what a test needs to judge the forwarded stream without
decoding: sequence/timestamp order, VP8 picture ids and keyframe sizes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import json
import logging
import secrets
import struct
import time
from collections.abc import Callable, Sequence
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
    EXT_ABS_SEND_TIME,
    EXT_MID,
    EXT_RID,
    EXT_RRID,
    RtpError,
    abs_send_time,
    build_extension_block,
    build_packet,
    parse_header,
)
from sfu.core.seqnum import SeqUnwrapper
from sfu.core.stats import ReceiveStats
from sfu.negotiate import read_remote_transport
from sfu.sdp import MediaSection, parse, serialize
from sfu.transport import PeerTransport, TransportConfig
from sfu_bot.media import (
    AudioSource,
    VideoDecoder,
    VideoSource,
    encode_audio,
    encode_simulcast,
    encode_video,
    read_counter,
    vp8_keyframe_size,
)
from sfu_bot.negotiation import (
    IncomingStream,
    OutgoingStream,
    SimulcastLayer,
    answer_server_offer,
    build_publish_offer,
    simulcast_answer,
)
from sfu_bot.stamp import add_send_stamp

logger = logging.getLogger(__name__)

_OSN = struct.Struct("!H")
HISTORY_PACKETS = 1024
MAX_MESSAGES = 2000
#: Pacer slot (WebRTC's pacer works in 5 ms intervals) and queue bound.
PACER_INTERVAL_S = 0.005
PACER_QUEUE_PACKETS = 2000
#: Bound on the per-packet logs of a received track (cleared when exceeded).
MAX_RECORDED_PACKETS = 200_000

#: Default simulcast encodings, lowest first: (rid, width, height, bitrate_bps),
#: the RIDs and sizes Chromium-based clients commonly use.
DEFAULT_SIMULCAST_LAYERS: tuple[tuple[str, int, int, int], ...] = (
    ("q", 320, 180, 150_000),
    ("h", 640, 360, 400_000),
    ("f", 1280, 720, 1_000_000),
)
_QUALITIES = {1: ("high",), 2: ("low", "high"), 3: ("low", "medium", "high")}


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
    keyframes_sent: int = 0
    #: RTP timestamp -> frame counter drawn in that picture (what a decoder should read back)
    sent_counters: dict[int, int] = field(default_factory=dict)
    #: RTP timestamp -> the RTP payloads of that frame, when the bot records
    recorded_frames: dict[int, list[bytes]] | None = None
    #: PLI/FIR received for this SSRC
    keyframe_requests: int = 0
    # --- simulcast ---
    #: This stream's RID when it is one layer of a simulcast track, else None.
    rid: str | None = None
    #: The simulcast track this layer belongs to.
    parent: SendStream | None = None
    #: A simulcast track's layers by RID, lowest first (each one an SSRC of its own).
    layers: dict[str, SendStream] = field(default_factory=dict)
    #: Negotiated: False for a layer the answer did not accept (never sent).
    active: bool = True
    #: Paused by :meth:`Bot.pause_layer` (or "~" in the answer): nothing is sent.
    paused: bool = False
    width: int = 0
    height: int = 0
    tl0picidx: int = field(default_factory=lambda: secrets.randbits(8))
    # Precomputed header extension blocks: head + 3-byte abs-send-time + tail,
    # or just head when tail is None (no abs-send-time).
    ext_head: bytes = b""
    ext_tail: bytes | None = None
    rtx_ext_head: bytes = b""
    rtx_ext_tail: bytes | None = None

    @property
    def ssrc(self) -> int:
        return self.info.ssrc

    @property
    def rtx_ssrc(self) -> int | None:
        return self.info.rtx_ssrc

    @property
    def senders(self) -> list[SendStream]:
        """The streams that carry packets: the layers of a simulcast track, else itself."""
        return list(self.layers.values()) if self.layers else [self]


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
    #: (extended seq, RTP timestamp) of every distinct packet, in arrival order
    packet_order: list[tuple[int, int]] = field(default_factory=list)
    #: VP8: (extended seq, picture id, TL0PICIDX, TID) of the first packet of each
    #: frame, in arrival order (None where the descriptor lacks the field)
    frame_starts: list[tuple[int, int | None, int | None, int | None]] = field(default_factory=list)
    #: VP8: (width, height) from the header of each keyframe received, in arrival order
    keyframe_sizes: list[tuple[int, int]] = field(default_factory=list)
    keyframes: int = 0
    #: Size of the most recent keyframe (VP8), None before the first one
    width: int | None = None
    height: int | None = None

    def missing(self) -> list[int]:
        """Sequence numbers (extended) absent between the first and the last received."""
        if not self.seqs:
            return []
        lo, hi = min(self.seqs), max(self.seqs)
        return [s for s in range(lo, hi + 1) if s not in self.seqs]

    @property
    def picture_ids(self) -> list[int]:
        """VP8 picture ids of the frames received, in sequence-number order."""
        return [pid for _seq, pid, _tl0, _tid in sorted(self.frame_starts) if pid is not None]

    def timestamp_regressions(self) -> list[int]:
        """Extended seqs (in sequence order) whose RTP timestamp is older than the
        packet before them: RFC 3550 timestamps of a stream must never go back."""
        out = []
        previous: int | None = None
        for seq, ts in sorted(self.packet_order):
            if previous is not None and (ts - previous) & 0x80000000:
                out.append(seq)
            previous = ts
        return out

    def picture_id_gaps(self) -> list[tuple[int, int]]:
        """(previous, next) pairs of consecutive received picture ids (in sequence
        order) that do not increase by exactly one (15-bit wrap)."""
        ids = self.picture_ids
        return [(a, b) for a, b in itertools.pairwise(ids) if (a + 1) & 0x7FFF != b]


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
        remb_interval_s: float = 0.25,
        accept_rtx: bool = True,
        drop_incoming_every: int = 0,
        sink: Callable[[bytes, float], None] | None = None,
        stamp_send_time: bool = False,
        pacing_bps: int | None = None,
        name: str = "bot",
    ) -> None:
        self.url = url
        self.token = token
        self.name = name
        self.auto_subscribe = auto_subscribe
        self.decode = decode
        self.record = record
        self.send_nacks = send_nacks
        self._remb_bps = remb_bps
        self._remb_due = 0.0
        #: Seconds between REMBs on the subscriber leg while ``remb_bps`` is set.
        self.remb_interval_s = remb_interval_s
        self.remb_sent = 0
        self._remb_ssrcs: list[int] = []
        self.accept_rtx = accept_rtx
        #: Simulated loss on the subscriber leg: discard every Nth video packet
        #: (first transmissions only), so repairs must come from the server's cache.
        self.drop_incoming_every = drop_incoming_every
        self.dropped_incoming = 0
        #: Load mode: every RTP packet received on the subscriber leg goes to
        #: ``sink(packet, arrival_s)`` and nothing is recorded, NACKed or reported,
        #: so hundreds of bots fit in one process (the benchmark's subscribers).
        self.sink = sink
        #: Append the send time to every packet published (see sfu_bot.stamp).
        self.stamp_send_time = stamp_send_time
        #: Send published media through a pacer at this rate, as browsers do
        #: (WebRTC paces at 2.5x its target bitrate in 5 ms slots, so a keyframe
        #: leaves over tens of milliseconds, not in one burst); None: no pacer.
        self.pacing_bps = pacing_bps
        self._pace_queue: collections.deque[bytes] = collections.deque()
        self._pace_budget = 0.0
        self.pacer_dropped = 0
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
        #: The last publish offer sent and answer applied (SDP text).
        self.publish_offer_sdp: str | None = None
        self.publish_answer_sdp: str | None = None
        #: Rewrites the server's publish answer before the bot applies it (tests:
        #: e.g. add ``a=simulcast:recv`` to simulate a server that accepts simulcast).
        self.publish_answer_filter: Callable[[str], str] | None = None
        # subscribing
        self.sub: PeerTransport | None = None
        self._sub_version = 0
        self._sub_session = secrets.randbits(62)
        self._sub_started = False
        self.tracks: dict[str, RecvTrack] = {}  # by track id
        self._in_by_ssrc: dict[int, tuple[RecvTrack, bool]] = {}
        self.unknown_packets = 0
        self.offers_answered = 0
        #: Every ``layer_changed`` message received, in order.
        self.layer_changes: list[dict[str, Any]] = []
        #: track id -> the quality the server last said it forwards to this bot.
        self.forwarded_quality: dict[str, str] = {}
        self.closed = False

    @property
    def remb_bps(self) -> int | None:
        """The bitrate the bot reports in REMB on its subscriber connection (None: no
        REMB). Assigning it takes effect at once: the next REMB, sent within ~50 ms,
        carries the new value, and one follows every ``remb_interval_s``."""
        return self._remb_bps

    @remb_bps.setter
    def remb_bps(self, value: int | None) -> None:
        self._remb_bps = value
        self._remb_due = 0.0

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
        elif kind == "layer_changed":
            self.layer_changes.append(message)
            self.forwarded_quality[message["track_id"]] = message["quality"]

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
        simulcast: bool = False,
        layers: Sequence[tuple[str, int, int, int]] | None = None,
        temporal_layers: int = 1,
        timeout: float = 10.0,
    ) -> dict[str, str]:
        """Publish audio, video and optionally a second "screen" video track with
        the same codec; returns {track name: track_id} once the transport is up.

        ``simulcast=True`` makes the "cam" track a simulcast track like a browser's:
        one m-section with ``a=rid``/``a=simulcast:send`` and no ``a=ssrc``, one
        SSRC (and RTX SSRC) per layer. ``layers`` is a sequence of (rid, width,
        height, bitrate_bps), lowest first (default
        :data:`DEFAULT_SIMULCAST_LAYERS`); ``width``/``height``/``bitrate_bps``
        then apply to "screen" only. Only the layers the answer lists in
        ``a=simulcast:recv`` are sent; without that line only the first one.
        ``temporal_layers=2`` (VP8) encodes every video with two temporal layers.
        """
        loop = asyncio.get_running_loop()
        if video is None:
            simulcast = False
        if temporal_layers > 1 and video != "vp8":
            raise ValueError("temporal layers need VP8")
        layer_specs = list(layers if layers is not None else DEFAULT_SIMULCAST_LAYERS)
        if simulcast:
            if not 1 <= len(layer_specs) <= 3:
                raise ValueError("simulcast needs 1 to 3 layers")
            if len({rid for rid, *_ in layer_specs}) != len(layer_specs):
                raise ValueError("simulcast RIDs must be unique")
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
        # (info, audio source or one video source per sender)
        plans: list[tuple[OutgoingStream, Any]] = []
        if audio:
            info = OutgoingStream("0", "audio", "opus", _ssrc(), None, cname, stream_id, "mic")
            plans.append((info, AudioSource(await loop.run_in_executor(None, encode_audio, 1000))))
        videos = ([("cam", width, height)] if video else []) + (
            [("screen", width * 2, height * 2)] if video and screen else []
        )
        codec = video or "vp8"
        for name, w, h in videos:
            mid = str(len(plans))
            if simulcast and name == "cam":
                clips = await loop.run_in_executor(
                    None,
                    lambda: encode_simulcast(
                        codec,
                        [(lw, lh, lb) for _rid, lw, lh, lb in layer_specs],
                        fps,
                        frames,
                        gop,
                        temporal_layers=temporal_layers,
                    ),
                )
                qualities = _layer_qualities([(lw, lh) for _rid, lw, lh, _lb in layer_specs])
                sim = [
                    SimulcastLayer(rid, _ssrc(), _ssrc() if rtx else None, lw, lh, lb, quality)
                    for (rid, lw, lh, lb), quality in zip(layer_specs, qualities, strict=True)
                ]
                info = OutgoingStream(
                    mid,
                    "video",
                    codec,
                    sim[0].ssrc,
                    sim[0].rtx_ssrc,
                    cname,
                    stream_id,
                    name,
                    layers=sim,
                )
                plans.append((info, [VideoSource(clip) for clip in clips]))
                continue
            encoded = await loop.run_in_executor(
                None,
                lambda w=w, h=h: encode_video(
                    codec, w, h, fps, frames, gop, bitrate_bps, temporal_layers=temporal_layers
                ),
            )
            info = OutgoingStream(
                mid, "video", codec, _ssrc(), _ssrc() if rtx else None, cname, stream_id, name
            )
            plans.append((info, [VideoSource(encoded)]))
        outgoing = [info for info, _source in plans]
        offer = build_publish_offer(
            outgoing, local, version=1, session_id=secrets.randbits(62), signal_ssrcs=signal_ssrcs
        )
        for info, source in plans:
            stream = SendStream(info, 48000 if info.kind == "audio" else 90000)
            if info.kind == "audio":
                stream.audio = source
            elif info.layers:
                for layer, layer_source in zip(info.layers, source, strict=True):
                    sender = SendStream(
                        dataclasses.replace(
                            info, ssrc=layer.ssrc, rtx_ssrc=layer.rtx_ssrc, layers=[]
                        ),
                        90000,
                        rid=layer.rid,
                        parent=stream,
                        width=layer.width,
                        height=layer.height,
                        video=layer_source,
                    )
                    stream.layers[layer.rid] = sender
            else:
                stream.video = source[0]
                stream.width, stream.height = source[0].video.width, source[0].video.height
            self.streams[info.mid] = stream
            for sender in stream.senders:
                if self.record:
                    sender.recorded = {}
                    if sender.video is not None:
                        sender.recorded_frames = {}
                self._by_ssrc_out[sender.ssrc] = sender
        self.publish_offer_sdp = serialize(offer)
        await self.send(
            {
                "type": "publish",
                "sdp": self.publish_offer_sdp,
                "tracks": [_track_entry(s) for s in outgoing],
            }
        )
        answer_message = await self.wait_for("publish_answer", timeout=timeout)
        answer_sdp = answer_message["sdp"]
        if self.publish_answer_filter is not None:
            answer_sdp = self.publish_answer_filter(answer_sdp)
        self.publish_answer_sdp = answer_sdp
        answer = parse(answer_sdp)
        for entry in answer_message["tracks"]:
            stream = self.streams.get(entry["mid"])
            if stream is not None:
                stream.track_id = entry["track_id"]
                for sender in stream.layers.values():
                    sender.track_id = entry["track_id"]
        for section in answer.media:
            stream = self.streams.get(section.mid or "")
            if stream is not None:
                self._apply_publish_answer(stream, section)
        remote = read_remote_transport(answer)
        self.pub.start(remote, "server" if remote.setup == "active" else "client")
        await self._wait_connected(self.pub, timeout)
        self._spawn(self._send_loop(), "bot-send")
        if self.pacing_bps is not None:
            self._pace_budget = self.pacing_bps / 8 * PACER_INTERVAL_S
            self._spawn(self._pacer_loop(), "bot-pacer")
        return {s.info.track_name: s.track_id or "" for s in self.streams.values()}

    def _apply_publish_answer(self, stream: SendStream, section: MediaSection) -> None:
        use_rtx = any(c.name.lower() == "rtx" for c in section.codecs)
        ext_ids = {e.uri: e.id for e in section.extmaps}
        if stream.layers:
            accepted = simulcast_answer(section, list(stream.layers))
            if accepted is None:
                # Simulcast declined: send the first encoding only, as browsers do.
                accepted = [(next(iter(stream.layers)), False)]
            states = dict(accepted)
            for rid, layer in stream.layers.items():
                layer.active = rid in states
                layer.paused = states.get(rid, False)
        for sender in stream.senders:
            if section.rejected:
                sender.active = False
            sender.use_rtx = use_rtx
            mid_id = ext_ids.get(EXT_MID)
            ast_id = ext_ids.get(EXT_ABS_SEND_TIME) if sender.info.kind == "video" else None
            base = [(mid_id, sender.info.mid.encode())] if mid_id else []
            media, repair = list(base), list(base)
            if sender.rid is not None:
                rid_id, rrid_id = ext_ids.get(EXT_RID), ext_ids.get(EXT_RRID)
                if rid_id:
                    media.append((rid_id, sender.rid.encode()))
                if rrid_id:
                    repair.append((rrid_id, sender.rid.encode()))
            sender.ext_head, sender.ext_tail = _ext_template(media, ast_id)
            sender.rtx_ext_head, sender.rtx_ext_tail = _ext_template(repair, ast_id)

    def stream(self, name: str) -> SendStream:
        """The outgoing stream named "mic", "cam" or "screen" (a simulcast track
        has its per-RID senders in ``.layers``)."""
        for stream in self.streams.values():
            if stream.info.track_name == name:
                return stream
        raise KeyError(name)

    def layer(self, rid: str, track: str = "cam") -> SendStream:
        """One layer of a published simulcast track."""
        return self.stream(track).layers[rid]

    def pause_layer(self, rid: str, track: str = "cam") -> None:
        """Stop sending one simulcast layer entirely (as a browser drops its top
        layer for CPU or bandwidth). Its sequence numbers resume without a gap."""
        self.layer(rid, track).paused = True

    def resume_layer(self, rid: str, track: str = "cam") -> None:
        """Send a paused layer again, starting with a keyframe."""
        layer = self.layer(rid, track)
        if layer.paused:
            layer.paused = False
            self._jump_to_keyframe(layer)

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
        senders = [s for stream in self.streams.values() for s in stream.senders]
        audio = [s for s in senders if s.audio is not None]
        video = [s for s in senders if s.video is not None]
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
                    self._send_video_frame(stream, video_n * frame_ticks)
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

    def _send_video_frame(self, stream: SendStream, elapsed_ticks: int) -> None:
        source = stream.video
        assert source is not None
        # Every source advances on every tick, sent or not, so the layers of a
        # simulcast track stay on the same picture (and keyframe) index.
        frame, key, counter = source.next_frame()
        if not stream.active or stream.paused:
            return
        ts = (stream.ts_base + elapsed_ticks) & 0xFFFFFFFF
        if stream.info.codec == "vp8":
            tids = source.video.temporal_ids
            if tids is None:
                payloads = vp8.packetize(frame, stream.picture_id)
            else:
                tid = tids[source.last_index]
                if tid == 0:
                    stream.tl0picidx = (stream.tl0picidx + 1) & 0xFF
                # Layer 1 frames refer only to layer 0 frames: each is a sync point.
                payloads = packetize_vp8(
                    frame,
                    stream.picture_id,
                    tl0picidx=stream.tl0picidx,
                    tid=tid,
                    layer_sync=key or tid > 0,
                    non_reference=tid > 0,
                )
            stream.picture_id = (stream.picture_id + 1) & 0x7FFF
        else:
            payloads = h264.packetize(frame)
        stream.sent_counters[ts] = counter
        if len(stream.sent_counters) > 4096:
            del stream.sent_counters[next(iter(stream.sent_counters))]
        if stream.recorded_frames is not None:
            stream.recorded_frames[ts] = payloads
        stream.frames_sent += 1
        if key:
            stream.keyframes_sent += 1
        self._send_media(stream, payloads, ts)

    def _send_media(self, stream: SendStream, payloads: list[bytes], ts: int) -> None:
        transport = self.pub
        if transport is None:
            return
        info = stream.info
        tail = stream.ext_tail
        ext = (
            stream.ext_head if tail is None else stream.ext_head + abs_send_time(time.time()) + tail
        )
        video = info.kind == "video"
        last = len(payloads) - 1
        history = stream.history
        for i, payload in enumerate(payloads):
            stream.seq = (stream.seq + 1) & 0xFFFF
            packet = build_packet(
                i == last or not video,
                info.payload_type,
                stream.seq,
                ts & 0xFFFFFFFF,
                info.ssrc,
                ext,
                payload,
            )
            history[stream.seq] = packet
            if len(history) > HISTORY_PACKETS:
                del history[next(iter(history))]
            if stream.recorded is not None:
                stream.recorded[stream.seq] = payload
            stream.packets += 1
            stream.octets += len(payload)
            if video:
                self._video_sent += 1
                if self._drop_every and self._video_sent % self._drop_every == 0:
                    stream.dropped += 1  # simulated loss on the publisher leg
                    continue
            self._transmit(packet)

    def _transmit(self, packet: bytes) -> None:
        """Send a published packet now, or queue it behind the pacer."""
        if self.pacing_bps is not None and (self._pace_queue or self._pace_budget <= 0):
            if len(self._pace_queue) >= PACER_QUEUE_PACKETS:
                self.pacer_dropped += 1
                return
            self._pace_queue.append(packet)
            return
        self._send_now(packet)

    def queued_packets(self) -> dict[int, int]:
        """Packets built but still waiting in the pacer, by SSRC (counted in
        the streams' ``packets`` already, not sent yet)."""
        queued: dict[int, int] = {}
        for packet in self._pace_queue:
            ssrc = int.from_bytes(packet[8:12], "big")
            queued[ssrc] = queued.get(ssrc, 0) + 1
        return queued

    def _send_now(self, packet: bytes) -> None:
        if self.pub is None:
            return
        if self.stamp_send_time:
            packet = add_send_stamp(packet, time.monotonic_ns())
        self._pace_budget -= len(packet)
        self.pub.send_rtp(packet)

    async def _pacer_loop(self) -> None:
        assert self.pacing_bps is not None
        rate_bytes_per_s = self.pacing_bps / 8
        burst_bytes = rate_bytes_per_s * PACER_INTERVAL_S
        last = time.monotonic()
        while not self.closed:
            await asyncio.sleep(PACER_INTERVAL_S)
            now = time.monotonic()
            elapsed_s = now - last
            # A late wake-up (a busy loop) may send what became due meanwhile;
            # otherwise at most one slot's worth goes out at once.
            self._pace_budget = min(
                self._pace_budget + rate_bytes_per_s * elapsed_s,
                max(burst_bytes, rate_bytes_per_s * elapsed_s),
            )
            last = now
            queue = self._pace_queue
            while queue and self._pace_budget > 0:
                self._send_now(queue.popleft())

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
            stream.keyframe_requests += 1
            self._jump_to_keyframe(stream)

    @staticmethod
    def _jump_to_keyframe(stream: SendStream) -> None:
        """Make the next frame of ``stream`` a keyframe. The layers of a simulcast
        track all jump together (their keyframes share indices), as libvpx's
        simulcast encoder in browsers forces a keyframe on every layer."""
        for sender in stream.parent.senders if stream.parent is not None else [stream]:
            if sender.video is not None:
                sender.video.request_keyframe()

    def _retransmit(self, stream: SendStream, seq: int) -> None:
        packet = stream.history.get(seq)
        if packet is None or self.pub is None:
            return
        if stream.use_rtx and stream.info.rtx_ssrc is not None:
            header = parse_header(packet)
            stream.rtx_seq = (stream.rtx_seq + 1) & 0xFFFF
            # RFC 4588 §4: the original sequence number, then the original payload;
            # a simulcast layer's RTX carries the repaired RID (RFC 8852 §3.2).
            tail = stream.rtx_ext_tail
            ext = stream.rtx_ext_head
            if tail is not None:
                ext = ext + abs_send_time(time.time()) + tail
            packet = build_packet(
                header.marker,
                stream.info.rtx_payload_type or 0,
                stream.rtx_seq,
                header.timestamp,
                stream.info.rtx_ssrc,
                ext,
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
        self._remb_ssrcs = [
            ssrc
            for ssrc, (track, rtx) in self._in_by_ssrc.items()
            if not rtx and track.kind == "video"
        ]

    def _on_sub_rtp(self, packet: bytes, arrival_s: float) -> None:
        if self.sink is not None:
            self.sink(packet, arrival_s)
            return
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
        if len(track.seqs) > MAX_RECORDED_PACKETS:
            track.seqs.clear()
            track.packet_order.clear()
            track.frame_starts.clear()
        track.packet_order.append((ext_seq, header.timestamp))
        # VP8, first packet of a frame (S=1, PID=0): picture id, and the size of a
        # keyframe read from its uncompressed header, without decoding.
        if track.codec == "vp8" and len(payload) > 1 and payload[0] & 0x17 == 0x10:
            self._on_vp8_frame_start(track, ext_seq, payload)
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

    @staticmethod
    def _on_vp8_frame_start(track: RecvTrack, ext_seq: int, payload: bytes) -> None:
        try:
            descriptor = vp8.parse_descriptor(payload)
        except ValueError:
            return
        track.frame_starts.append(
            (ext_seq, descriptor.picture_id, descriptor.tl0picidx, descriptor.tid)
        )
        size = vp8_keyframe_size(payload, descriptor.size)
        if size is not None:
            track.keyframes += 1
            track.keyframe_sizes.append(size)
            track.width, track.height = size

    def _on_sub_rtcp(self, data: bytes) -> None:
        try:
            packets = parse_compound(data)
        except RtcpError:
            return
        for item in packets:
            if isinstance(item, SenderReport):
                entry = self._in_by_ssrc.get(item.ssrc)
                if entry is None:
                    continue
                # LSR/DLSR in our receiver reports let the server measure RTT
                # (RFC 3550 §6.4.1), as a browser's do.
                if entry[0].stats is not None:
                    entry[0].stats.on_sender_report(item.ntp_timestamp, time.monotonic())
                if len(entry[0].sender_reports) < 1000:
                    entry[0].sender_reports.append((item.ntp_timestamp, item.rtp_timestamp))

    # --- RTCP timer ----------------------------------------------------------

    async def _rtcp_loop(self) -> None:
        next_report = time.monotonic() + 1.0
        while not self.closed:
            # Load-mode bots send no NACKs: a slower tick keeps 400 of them cheap.
            await asyncio.sleep(0.25 if self.sink is not None else 0.05)
            now = time.monotonic()
            now_ms = int(now * 1000)
            if self.sub is not None and self.sub.connected and self.send_nacks:
                for track in self.tracks.values():
                    due = track.nack.due(now_ms, 50)
                    if due and track.ssrc is not None:
                        self.sub.send_rtcp(
                            pack_nack(self._rtcp_ssrc, track.ssrc, [s & 0xFFFF for s in due])
                        )
            remb_bps = self._remb_bps
            if (
                remb_bps is not None
                and now >= self._remb_due
                and self._remb_ssrcs
                and self.sub is not None
                and self.sub.connected
            ):
                # Reduced-size RTCP (RFC 5506): the REMB alone, for every video SSRC.
                self._remb_due = now + self.remb_interval_s
                self.sub.send_rtcp(pack_remb(self._rtcp_ssrc, remb_bps, self._remb_ssrcs[:255]))
                self.remb_sent += 1
            if now < next_report:
                continue
            next_report = now + 1.0
            if self.pub is not None and self.pub.connected:
                ntp = ntp_from_unix(time.time())
                for parent in self.streams.values():
                    for stream in parent.senders:
                        if stream.packets and stream.active:
                            self._send_sender_report(stream, now, ntp)
            if self.sub is not None and self.sub.connected:
                blocks = []
                for track in self.tracks.values():
                    if track.stats is not None and track.ssrc is not None and track.stats.packets:
                        blocks.append(ReportBlock(*track.stats.report_block(track.ssrc, now)))
                if blocks:
                    self.sub.send_rtcp(pack_receiver_report(self._rtcp_ssrc, blocks[:31]))

    def _send_sender_report(self, stream: SendStream, now: float, ntp: int) -> None:
        assert self.pub is not None
        elapsed = now - (self.pub.connected_at or now)
        rtp_ts = (stream.ts_base + int(elapsed * stream.clock_rate)) & 0xFFFFFFFF
        report = pack_sender_report(stream.info.ssrc, ntp, rtp_ts, stream.packets, stream.octets)
        self.pub.send_rtcp(report + pack_sdes_cname(stream.info.ssrc, stream.info.cname.encode()))

    # --- control -------------------------------------------------------------

    async def set_quality(self, track_id: str, quality: str) -> None:
        """Ask for "low", "medium", "high" or "off" on a subscribed video track; the
        server answers with ``layer_changed`` (see :attr:`layer_changes`)."""
        await self.send({"type": "set_quality", "track_id": track_id, "quality": quality})

    async def set_video_size(self, track_id: str, width: int, height: int) -> None:
        """Tell the server the size a subscribed video track is rendered at (0, 0: hidden)."""
        await self.send(
            {"type": "set_video_size", "track_id": track_id, "width": width, "height": height}
        )

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

    async def drop_signaling(self) -> None:
        """Lose the WebSocket only (a network blip): media keeps going, and
        :meth:`resume` can continue the session."""
        if self._ws is not None:
            connection = self._ws._response.connection  # noqa: SLF001
            if connection is not None and connection.transport is not None:
                connection.transport.abort()
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def resume(self, timeout: float = 10.0) -> dict[str, Any]:
        """Reconnect the WebSocket presenting the resume token of the last
        `joined`; returns the new `joined` (`resumed` says if it worked)."""
        assert self.joined is not None
        self._http = aiohttp.ClientSession()
        query = {
            "access_token": self.token,
            "auto_subscribe": "1" if self.auto_subscribe else "0",
            "resume": self.joined.get("resume_token", ""),
        }
        self._ws = await self._http.ws_connect(
            f"{self.url}/v1/rtc", params=query, timeout=aiohttp.ClientWSTimeout(ws_close=5)
        )
        self._spawn(self._read_loop(), "bot-reader")
        joined = await self.wait_for(
            "joined", lambda m: m is not self.joined, timeout=timeout, include_past=False
        )
        self.joined = joined
        self.participant_id = joined["participant"]["id"]
        # The room as it is now: messages lost with the old socket are not missed.
        self.participants = {p["id"]: p for p in joined["participants"]}
        return joined

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
        def sent(stream: SendStream) -> dict[str, Any]:
            senders = stream.senders
            out: dict[str, Any] = {
                key: sum(getattr(s, key) for s in senders)
                for key in ("packets", "dropped", "retransmitted", "nacks")
            }
            if stream.layers:
                out["layers"] = {
                    rid: {
                        "ssrc": s.ssrc,
                        "active": s.active,
                        "paused": s.paused,
                        "packets": s.packets,
                        "frames": s.frames_sent,
                        "keyframe_requests": s.keyframe_requests,
                    }
                    for rid, s in stream.layers.items()
                }
            return out

        return {
            "participant_id": self.participant_id,
            "sent": {s.info.track_name: sent(s) for s in self.streams.values()},
            "received": {
                track_id: {
                    "kind": t.kind,
                    "packets": t.packets,
                    "bytes": t.bytes,
                    "rtx_packets": t.rtx_packets,
                    "missing": len(t.missing()),
                    "frames_decoded": t.frames_decoded,
                    "size": [t.width, t.height] if t.width is not None else None,
                }
                for track_id, t in self.tracks.items()
            },
        }


def _ssrc() -> int:
    return secrets.randbits(32) or 1


def _ext_template(
    elements: list[tuple[int, bytes]], ast_id: int | None
) -> tuple[bytes, bytes | None]:
    """Precompute a header extension block. Without abs-send-time: (block, None).
    With it: (head, tail), the block being head + the 3-byte send time + tail; the
    send time goes first so its offset is fixed (after the 4-byte block header
    and its own 1- or 2-byte element header, RFC 8285 §4.2/§4.3)."""
    if ast_id is None:
        return build_extension_block(elements), None
    block = build_extension_block([(ast_id, bytes(3)), *elements])
    offset = 4 + (1 if block[:2] == b"\xbe\xde" else 2)
    return block[:offset], block[offset + 3 :]


def _layer_qualities(sizes: list[tuple[int, int]]) -> list[str]:
    """The publish message's quality of each layer: by picture area, lowest first."""
    names = _QUALITIES[len(sizes)]
    order = sorted(range(len(sizes)), key=lambda i: (sizes[i][0] * sizes[i][1], i))
    out = [""] * len(sizes)
    for rank, i in enumerate(order):
        out[i] = names[rank]
    return out


def _track_entry(info: OutgoingStream) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "mid": info.mid,
        "source": {"mic": "microphone", "cam": "camera"}.get(info.track_name, "screen"),
        "name": info.track_name,
    }
    if info.layers:
        entry["layers"] = [
            {"rid": la.rid, "quality": la.quality, "width": la.width, "height": la.height}
            for la in info.layers
        ]
    return entry


# VP8 payload descriptor bits (RFC 7741 §4.2).
_VP8_X, _VP8_N, _VP8_S = 0x80, 0x20, 0x10
_VP8_I, _VP8_L, _VP8_T = 0x80, 0x40, 0x20
_VP8_M = 0x80


def packetize_vp8(
    frame: bytes,
    picture_id: int,
    *,
    tl0picidx: int,
    tid: int,
    layer_sync: bool,
    non_reference: bool = False,
    max_payload: int = 1180,
) -> list[bytes]:
    """Split a VP8 frame of a temporally scalable stream into RTP payloads
    (RFC 7741 §4.4): a 6-octet descriptor with a 15-bit PictureID, TL0PICIDX and
    TID/Y (KEYIDX absent), S=1 on the first packet, PID 0, N for a frame no other
    frame refers to. The caller sets the marker bit on the last payload."""
    if not frame:
        raise ValueError("cannot packetize an empty VP8 frame")
    pid = picture_id & 0x7FFF
    tail = bytes(
        (
            _VP8_I | _VP8_L | _VP8_T,
            _VP8_M | (pid >> 8),
            pid & 0xFF,
            tl0picidx & 0xFF,
            ((tid & 0x03) << 6) | (0x20 if layer_sync else 0),
        )
    )
    b0 = _VP8_X | (_VP8_N if non_reference else 0)
    first = bytes((b0 | _VP8_S,)) + tail
    rest = bytes((b0,)) + tail
    chunk = max_payload - len(first)
    if chunk < 1:
        raise ValueError(f"max_payload {max_payload} leaves no room for VP8 data")
    view = memoryview(frame)
    out = [first + view[:chunk]]
    for offset in range(chunk, len(frame), chunk):
        out.append(rest + view[offset : offset + chunk])
    return out
