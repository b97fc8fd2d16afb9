"""Publisher: the media side of a participant's publisher transport.

Answers the client's offers, creates one PublishedTrack per accepted m-section
(one Receiver per simulcast layer), routes incoming RTP to the layers by SSRC
(learning SSRCs by MID and RID, RFC 8843 §9.2 and RFC 8852), and sends the
publisher receiver reports, NACKs, keyframe requests and REMB.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from sfu.core.demux import Demuxer
from sfu.core.rate import LossBasedRate
from sfu.core.rtcp import RtcpError, SenderReport, pack_receiver_report, pack_remb, parse_compound
from sfu.core.rtp import (
    EXT_MID,
    EXT_RID,
    EXT_RRID,
    RtpError,
    RtpHeader,
    find_extension,
    parse_header,
)
from sfu.counters import MediaTotals
from sfu.negotiate import (
    AcceptedMedia,
    LimitExceeded,
    NegotiationError,
    UnsupportedMedia,
    answer_publish,
)
from sfu.receiver import Receiver
from sfu.sdp import SdpError, SessionDescription, parse, serialize
from sfu.track import PublishedTrack
from sfu.transport import PeerTransport, TransportConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MediaLimits:
    audio_codecs: tuple[str, ...] = ("opus",)
    video_codecs: tuple[str, ...] = ("vp8", "h264", "vp9", "av1")
    max_publish_bitrate_bps: int = 4_000_000
    min_publish_bitrate_bps: int = 150_000
    max_tracks_per_publisher: int = 16


@dataclass(slots=True)
class PublishResult:
    answer_sdp: str
    added: list[tuple[AcceptedMedia, PublishedTrack]]
    removed: list[PublishedTrack]
    rejected: list[str]


def new_track_id() -> str:
    return "TR_" + secrets.token_urlsafe(9)


class Publisher:
    def __init__(
        self,
        peer_id: str,
        transport_config: TransportConfig,
        certificate: object,
        limits: MediaLimits,
        on_state: Callable[[str], None],
        totals: MediaTotals | None = None,
    ) -> None:
        self.peer_id = peer_id
        self.totals = totals
        self.cname = peer_id
        self.limits = limits
        self.transport = PeerTransport(
            transport_config,
            certificate,
            controlling=False,
            name=f"{peer_id}/pub",
            on_rtp=self._on_rtp,
            on_rtcp=self._on_rtcp,
            on_state=on_state,
        )
        self.tracks: dict[str, PublishedTrack] = {}  # by mid
        self._demux: Demuxer[Receiver] = Demuxer()
        self._mid_ext_id = 0
        self._rid_ext_id = 0
        self._rrid_ext_id = 0
        self._answer: SessionDescription | None = None
        self._remote_ufrag: str | None = None
        self._version = 0
        self.rtcp_ssrc = secrets.randbits(32) or 1
        self.rate = LossBasedRate(
            limits.min_publish_bitrate_bps,
            limits.max_publish_bitrate_bps,
            limits.max_publish_bitrate_bps,
        )
        self.malformed_rtp = 0
        self.malformed_rtcp = 0
        self.unroutable = 0
        self.closed = False

    async def negotiate(self, offer_sdp: str) -> PublishResult:
        """Answer an offer (the first or a renegotiation). Raises NegotiationError
        (or SdpError, a ValueError) with a message for the client."""
        try:
            offer = parse(offer_sdp)
        except SdpError as exc:
            raise NegotiationError(f"the offer does not parse: {exc}") from None
        local = await self.transport.prepare()
        if self.closed:  # the participant left while candidates were gathered
            raise NegotiationError("the participant left")
        self._version += 1
        result = answer_publish(
            offer,
            local,
            audio_codecs=self.limits.audio_codecs,
            video_codecs=self.limits.video_codecs,
            previous=self._answer,
            version=self._version,
        )
        if self._remote_ufrag is not None and result.remote.ice_ufrag != self._remote_ufrag:
            raise UnsupportedMedia("ICE restart is not supported: reconnect instead")
        accepted_mids = {m.mid for m in result.accepted}
        if len(accepted_mids) > self.limits.max_tracks_per_publisher:
            raise LimitExceeded(
                f"{len(accepted_mids)} tracks offered; the limit is "
                f"{self.limits.max_tracks_per_publisher} per participant"
            )

        for media in result.accepted:
            existing = self.tracks.get(media.mid)
            if existing is not None:
                if existing.codec.payload_type != media.codec.payload_type:
                    raise UnsupportedMedia(
                        f"mid {media.mid}: changing the codec of a published track is not supported"
                    )
                if set(media.rids) != {layer.rid for layer in existing.layers if layer.rid}:
                    raise UnsupportedMedia(
                        f"mid {media.mid}: changing the simulcast layers of a published track "
                        "is not supported"
                    )
        added: list[tuple[AcceptedMedia, PublishedTrack]] = []
        removed: list[PublishedTrack] = []
        for mid in list(self.tracks):
            if mid not in accepted_mids:
                removed.append(self.tracks.pop(mid))
                self._demux.remove_media(mid)
        for media in result.accepted:
            if media.mid in self.tracks:
                continue
            ids = media.extension_ids
            self._mid_ext_id = ids.get(EXT_MID, self._mid_ext_id)
            self._rid_ext_id = ids.get(EXT_RID, self._rid_ext_id)
            self._rrid_ext_id = ids.get(EXT_RRID, self._rrid_ext_id)
            track_id = new_track_id()
            layers = [
                Receiver(
                    track_id=track_id,
                    kind=media.kind,
                    codec=media.codec,
                    rtx_payload_type=media.rtx_payload_type,
                    extension_ids=media.extension_ids,
                    feedback=media.feedback,
                    rtcp_ssrc=self.rtcp_ssrc,
                    send_rtcp=self.transport.send_rtcp,
                    cname=media.cname or self.cname,
                    rid=rid,
                    totals=self.totals,
                )
                for rid in (media.rids or [None])
            ]
            track = PublishedTrack(
                track_id, media.kind, media.codec, media.cname or self.cname, layers
            )
            self.tracks[media.mid] = track
            self._demux.add_media(
                media.mid,
                layers[0],
                media.codec.payload_type,
                media.rtx_payload_type,
                ssrc=media.ssrc,
                rtx_ssrc=media.rtx_ssrc,
                rid_targets={layer.rid: layer for layer in layers if layer.rid is not None},
            )
            added.append((media, track))

        self._answer = result.answer
        if self._remote_ufrag is None:
            self._remote_ufrag = result.remote.ice_ufrag
            setup = result.answer.media[0].setup if result.answer.media else "active"
            self.transport.start(result.remote, "client" if setup == "active" else "server")
        return PublishResult(
            answer_sdp=serialize(result.answer),
            added=added,
            removed=removed,
            rejected=[r.reason for r in result.rejected],
        )

    def remove_track(self, track_id: str) -> PublishedTrack | None:
        for mid, track in self.tracks.items():
            if track.track_id == track_id:
                del self.tracks[mid]
                self._demux.remove_media(mid)
                return track
        return None

    def _extension_text(self, packet: bytes, header: RtpHeader, ext_id: int) -> str | None:
        if not ext_id:
            return None
        try:
            value = find_extension(packet, header, ext_id)
        except RtpError:
            return None
        # RFC 8843 §15 / RFC 8852 §3.3: MID and RID are short alphanumeric tokens.
        return value.decode("ascii", "replace") if value else None

    # --- per packet ----------------------------------------------------------

    def _on_rtp(self, packet: bytes, arrival_s: float) -> None:
        try:
            header = parse_header(packet)
        except RtpError:
            self.malformed_rtp += 1
            return
        route = self._demux.routes.get(header.ssrc)
        if route is None:
            route = self._demux.learn(
                header.ssrc,
                header.payload_type,
                self._extension_text(packet, header, self._mid_ext_id),
                self._extension_text(packet, header, self._rid_ext_id),
                self._extension_text(packet, header, self._rrid_ext_id),
            )
            if route is None:
                self.unroutable += 1
                return
        if route.rtx:
            route.target.on_rtx(packet, header, arrival_s)
        else:
            route.target.on_rtp(packet, header, arrival_s)

    def _on_rtcp(self, packet: bytes) -> None:
        try:
            packets = parse_compound(packet)
        except RtcpError:
            self.malformed_rtcp += 1
            return
        for item in packets:
            if isinstance(item, SenderReport):
                route = self._demux.routes.get(item.ssrc)
                if route is not None and not route.rtx:
                    route.target.on_sender_report(
                        item.ntp_timestamp, item.rtp_timestamp, time.monotonic()
                    )

    # --- periodic ------------------------------------------------------------

    def tick(self, now_ms: int) -> None:
        for track in self.tracks.values():
            track.tick(now_ms)
            for layer in track.layers:
                layer.tick(now_ms, 50)

    def send_reports(self, now_s: float, now_ms: int) -> None:
        """RR for every received stream plus a REMB (draft-alvestrand-rmcat-remb)."""
        if not self.transport.connected:
            return
        blocks = []
        ssrcs = []
        worst_loss = 0.0
        for track in self.tracks.values():
            for layer in track.layers:
                block = layer.report_block(now_s)
                if block is not None:
                    blocks.append(block)
                    ssrcs.append(block.ssrc)
                    worst_loss = max(worst_loss, block.fraction_lost / 256)
        if not blocks:
            return
        bitrate = self.rate.update(worst_loss, now_ms)
        for i in range(0, len(blocks), 31):
            report = pack_receiver_report(self.rtcp_ssrc, blocks[i : i + 31])
            if i == 0:
                report += pack_remb(self.rtcp_ssrc, bitrate, ssrcs)
            self.transport.send_rtcp(report)

    def retire(self) -> None:
        """Close the tracks and hand this publisher's counts to the node's
        totals, synchronously: a metrics scrape during the transport's close
        must find them either live or retired, never neither."""
        if self.closed:
            return
        self.closed = True
        for track in self.tracks.values():
            track.close()
        self.tracks.clear()
        if self.totals is not None:
            self.totals.add_publisher(self)
            self.totals = None

    async def close(self) -> None:
        self.retire()
        await self.transport.close()
