"""Receiver: one RTP stream of a published track as it arrives from its publisher.

A track without simulcast has one Receiver; a simulcast track has one per layer
(RID), grouped by a PublishedTrack. Each owns its stream's packet cache (answers
subscribers' NACKs), loss tracking and NACKs towards the publisher, throttled
keyframe requests, receive statistics for receiver reports, the publisher's
last sender report (for lip sync downstream), per-temporal-layer byte counts,
and the fan-out to each subscriber's DownTrack — synchronously, per packet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sfu.core.codecs import is_keyframe
from sfu.core.fanout import SharedParts
from sfu.core.nack import NackGenerator
from sfu.core.packet_cache import PacketCache
from sfu.core.rtcp import ReportBlock, pack_fir, pack_nack, pack_pli
from sfu.core.rtp import (
    EXT_AUDIO_LEVEL,
    EXT_VIDEO_ORIENTATION,
    RtpError,
    RtpHeader,
    abs_send_time,
    build_packet,
    find_extension,
    parse_header,
)
from sfu.core.seqnum import SeqUnwrapper
from sfu.core.stats import ReceiveStats
from sfu.core.throttle import KeyframeRequester
from sfu.core.vp8 import Vp8Descriptor, parse_descriptor

if TYPE_CHECKING:
    from sfu.counters import MediaTotals
    from sfu.downtrack import DownTrack
    from sfu.relay import RelayTap
    from sfu.sdp import Codec

logger = logging.getLogger(__name__)

VIDEO_CACHE_PACKETS = 1024  # ~2 s of 2.5 Mbit/s video
AUDIO_CACHE_PACKETS = 128  # ~2.5 s of 20 ms Opus
KEYFRAME_INTERVAL_MS = 500  # at most one upstream request per 500 ms per track


class Receiver:
    def __init__(
        self,
        *,
        track_id: str,
        kind: str,
        codec: Codec,
        rtx_payload_type: int | None,
        extension_ids: dict[str, int],
        feedback: frozenset[str],
        rtcp_ssrc: int,
        send_rtcp: Callable[[bytes], bool],
        cname: str,
        rid: str | None = None,
        totals: MediaTotals | None = None,
    ) -> None:
        self.track_id = track_id
        #: Where this stream's counts go when it closes (sfu.counters).
        self._totals = totals
        #: The simulcast layer's RTP stream id (RFC 8852), None without simulcast.
        self.rid = rid
        self.kind = kind
        self.is_video = kind == "video"
        #: The publisher's codec, as negotiated (subscribers are offered the same).
        self.codec = codec
        self.codec_name = codec.name.lower()
        self._is_vp8 = self.codec_name == "vp8"
        self.payload_type = codec.payload_type
        self.clock_rate = codec.clock_rate
        self.rtx_payload_type = rtx_payload_type
        self.feedback = feedback
        self.cname = cname
        self.rtcp_ssrc = rtcp_ssrc
        self._send_rtcp = send_rtcp
        #: The publisher's ids of the extensions read per packet (by URI).
        self.extension_ids = {
            uri: ext_id
            for uri, ext_id in extension_ids.items()
            if uri in (EXT_AUDIO_LEVEL, EXT_VIDEO_ORIENTATION)
        }
        self._level_id = extension_ids.get(EXT_AUDIO_LEVEL, 0)
        self._orientation_id = extension_ids.get(EXT_VIDEO_ORIENTATION, 0)
        self.ssrc: int | None = None
        self.rtx_ssrc: int | None = None
        self.cache = PacketCache(VIDEO_CACHE_PACKETS if self.is_video else AUDIO_CACHE_PACKETS)
        self.nack = NackGenerator()
        self._nack_enabled = "nack" in feedback
        self.keyframes = KeyframeRequester(KEYFRAME_INTERVAL_MS)
        self._unwrap = SeqUnwrapper()
        self.stats = ReceiveStats(codec.clock_rate)
        self.downtracks: list[DownTrack] = []
        #: Relays of this stream to other nodes (sfu.relay): each gets every
        #: new packet as it arrived, once per receiving node.
        self.relays: list[RelayTap] = []
        #: An admin muted the track: received and cached, not forwarded.
        self.blocked = False
        #: (ntp_timestamp, rtp_timestamp) of the publisher's last sender report.
        self.last_sr: tuple[int, int] | None = None
        self.closed = False
        # counters
        self.packets = 0
        self.bytes = 0
        self.duplicates = 0
        self.padding_only = 0
        self.rtx_packets = 0
        self.keyframes_seen = 0
        self.nacks_sent = 0
        self.keyframe_requests = 0
        #: Bytes per VP8 temporal layer (index TID; streams without TID count as 0),
        #: read by the layer rate meter.
        self.tid_bytes = [0, 0, 0, 0]
        #: Highest VP8 TID seen, -1 while the stream carries no temporal layers.
        self.max_tid = -1
        self.last_packet_ms = 0
        self._key_ts: int | None = None
        #: Picture size from the latest VP8 keyframe header (RFC 6386 §9.1), 0 if unknown.
        self.width = 0
        self.height = 0

    # --- per packet ----------------------------------------------------------

    def on_rtp(self, packet: bytes, header: RtpHeader, arrival_s: float) -> None:
        if header.ssrc != self.ssrc:
            self._new_source(header.ssrc)
        ext_seq = self._unwrap.unwrap(header.seq)
        cache = self.cache
        if cache.get(ext_seq) is not None:
            self.duplicates += 1
            return
        cache.put(ext_seq, packet)
        self.packets += 1
        self.bytes += len(packet)
        self.stats.on_packet(ext_seq, header.timestamp, arrival_s, len(packet))
        self.last_packet_ms = now_ms = int(arrival_s * 1000)
        if self._nack_enabled:
            if self.nack.on_packet(ext_seq, now_ms):
                # Ask at once (RFC 4585 §3.5.2 early feedback); retries come from tick().
                self.tick(now_ms, 0)

        view = memoryview(packet)  # one view, sliced below without copying
        vp8: Vp8Descriptor | None = None
        keyframe = False
        if header.payload_end <= header.payload_start:
            self.padding_only += 1
        elif self._is_vp8:
            try:
                vp8 = parse_descriptor(view[header.payload_start : header.payload_end])
            except ValueError:
                vp8 = None
            if vp8 is not None:
                start = header.payload_start + vp8.size
                # RFC 7741 §4.3: P=0 in the first octet of a frame's first partition.
                keyframe = vp8.frame_start and start < header.payload_end and not packet[start] & 1
                tid = vp8.tid
                if tid is not None:
                    self.tid_bytes[tid] += header.payload_end - header.payload_start
                    if tid > self.max_tid:
                        self.max_tid = tid
                else:
                    self.tid_bytes[0] += header.payload_end - header.payload_start
                if keyframe and start + 10 <= header.payload_end:
                    # RFC 6386 §9.1: 3-byte frame tag, start code, 14-bit sizes.
                    self.width = (packet[start + 6] | packet[start + 7] << 8) & 0x3FFF
                    self.height = (packet[start + 8] | packet[start + 9] << 8) & 0x3FFF
        else:
            self.tid_bytes[0] += header.payload_end - header.payload_start
            if self.is_video:
                # H.264 marks every IDR slice (and SPS) as key: only the first
                # key packet of a frame is where a decoder, or a switch, can
                # start (later slices of that IDR would make a broken picture).
                keyframe = (
                    is_keyframe(self.codec_name, packet[header.payload_start : header.payload_end])
                    and header.timestamp != self._key_ts
                )
        if keyframe:
            self._key_ts = header.timestamp
            self.keyframes_seen += 1
            self.keyframes.on_keyframe(now_ms)

        if self.blocked:
            return
        for relay in self.relays:
            relay.on_rtp(packet)
        if not self.downtracks:
            return
        # Per-packet extension values are read once here, not once per subscriber.
        level = find_extension(packet, header, self._level_id) if self._level_id else None
        orientation = (
            find_extension(packet, header, self._orientation_id) if self._orientation_id else None
        )
        # What every subscriber's copy shares is built once per packet (and
        # extension layout), not once per subscriber: see sfu.core.fanout.
        shared = SharedParts(
            view[header.payload_start :],
            abs_send_time(time.time()),
            level,
            orientation,
        )
        for downtrack in self.downtracks:
            downtrack.write(packet, header, ext_seq, keyframe, arrival_s, vp8, shared)

    def on_rtx(self, packet: bytes, header: RtpHeader, arrival_s: float) -> None:
        """A retransmission on the RTX stream (RFC 4588 §4): unwrap and handle it
        as the original packet."""
        self.rtx_ssrc = header.ssrc
        if self.ssrc is None or header.payload_end - header.payload_start < 2:
            self.padding_only += 1  # bandwidth probes are RTX padding: nothing to forward
            return
        start = header.payload_start
        original_seq = (packet[start] << 8) | packet[start + 1]
        ext_block = packet[header.ext_start - 4 : header.ext_end] if header.ext_start else b""
        original = build_packet(
            header.marker,
            self.payload_type,
            original_seq,
            header.timestamp,
            self.ssrc,
            ext_block,
            packet[start + 2 : header.payload_end],
        )
        try:
            original_header = parse_header(original)
        except RtpError:
            return
        self.rtx_packets += 1
        self.on_rtp(original, original_header, arrival_s)

    def _new_source(self, ssrc: int) -> None:
        if self.ssrc is not None:
            # A new stream: what was learned about the old one does not apply.
            # (The first SSRC keeps a sender report that came before any RTP,
            # as a relayed stream's first one does.)
            logger.info(
                "track %s: publisher SSRC changed %#x -> %#x", self.track_id, self.ssrc, ssrc
            )
            self._unwrap = SeqUnwrapper()
            self.stats = ReceiveStats(self.clock_rate)
            self.nack = NackGenerator()
            self.cache.clear()
            self.last_sr = None
        self.ssrc = ssrc

    # --- control -------------------------------------------------------------

    def add_downtrack(self, downtrack: DownTrack) -> None:
        if downtrack not in self.downtracks:
            self.downtracks = [*self.downtracks, downtrack]

    def remove_downtrack(self, downtrack: DownTrack) -> None:
        # Copy-on-write: the fan-out loop may be iterating the old list.
        self.downtracks = [d for d in self.downtracks if d is not downtrack]

    def add_relay(self, relay: RelayTap) -> None:
        if relay not in self.relays:
            self.relays = [*self.relays, relay]

    def remove_relay(self, relay: RelayTap) -> None:
        self.relays = [r for r in self.relays if r is not relay]

    def cached(self, seq: int) -> bytes | None:
        """The cached packet with 16-bit sequence number `seq` (the one nearest
        the newest), for answering a NACK that names original numbers."""
        last = self._unwrap.last
        if last is None:
            return None
        d = (seq - last) & 0xFFFF
        return self.cache.get(last + d - 0x10000 if d >= 0x8000 else last + d)

    def request_keyframe(self, now_ms: int) -> bool:
        """Ask the publisher for a keyframe (PLI, or FIR when only that was
        negotiated), at most once per KEYFRAME_INTERVAL_MS."""
        if not self.is_video or self.ssrc is None or self.closed:
            return False
        if not self.keyframes.should_request(now_ms):
            return False
        if "ccm fir" in self.feedback and "nack pli" not in self.feedback:
            packet = pack_fir(self.rtcp_ssrc, [(self.ssrc, self.keyframe_requests & 0xFF)])
        else:
            packet = pack_pli(self.rtcp_ssrc, self.ssrc)
        self.keyframe_requests += 1
        self._send_rtcp(packet)
        return True

    def on_sender_report(self, ntp_timestamp: int, rtp_timestamp: int, arrival_s: float) -> None:
        self.last_sr = (ntp_timestamp, rtp_timestamp)
        self.stats.on_sender_report(ntp_timestamp, arrival_s)
        for relay in self.relays:
            relay.on_sender_report(ntp_timestamp, rtp_timestamp)

    def tick(self, now_ms: int, rtt_ms: int) -> None:
        """Send due NACKs upstream; a loss too large to repair asks for a keyframe."""
        if self.ssrc is None:
            return
        due = self.nack.due(now_ms, rtt_ms)
        if due:
            self.nacks_sent += len(due)
            for i in range(0, len(due), 64):
                self._send_rtcp(
                    pack_nack(self.rtcp_ssrc, self.ssrc, [s & 0xFFFF for s in due[i : i + 64]])
                )
        if self.nack.take_keyframe_needed():
            self.request_keyframe(now_ms)

    def report_block(self, now_s: float) -> ReportBlock | None:
        if self.ssrc is None or self.stats.packets == 0:
            return None
        return ReportBlock(*self.stats.report_block(self.ssrc, now_s))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._totals is not None:
            self._totals.add_receiver(self)
        for downtrack in list(self.downtracks):
            downtrack.detach()
        self.downtracks = []
        self.relays = []
        self.cache.clear()
