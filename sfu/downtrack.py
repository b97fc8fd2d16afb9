"""DownTrack: one subscriber's copy of one published track.

Per packet: gate video until a keyframe, translate sequence number and timestamp
(RtpMunger) and, for VP8, PictureID / TL0PICIDX (Vp8Munger), drop VP8 temporal
layers above the chosen one, rewrite the header in the subscriber's terms (its
SSRC, payload type and header-extension ids) and send. Per RTCP: answer NACKs
from the layer's packet cache (RTX when negotiated), pass keyframe requests
upstream, and report sender reports translated from the publisher's so lip sync
survives.

Simulcast: the DownTrack forwards one layer (`receiver`). `update_layer` asks a
LayerSelector for the layer that fits the subscriber's preference, bandwidth
and what is arriving; a different spatial layer becomes the `_target`, the
DownTrack attaches to it too and asks it for a keyframe, and the switch happens
at that keyframe (a decoder cannot start a new stream anywhere else). Until
then the old layer keeps flowing, so a switch costs the subscriber no frame.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sfu.core.fanout import ExtensionLayout, SharedParts, extension_layout
from sfu.core.layers import Layer, LayerSelector, max_spatial_for_size
from sfu.core.munger import RtpMunger
from sfu.core.rtcp import pack_sdes_cname, pack_sender_report
from sfu.core.rtp import (
    EXT_ABS_SEND_TIME,
    EXT_AUDIO_LEVEL,
    EXT_MID,
    EXT_VIDEO_ORIENTATION,
    RtpError,
    abs_send_time,
    parse_header,
)
from sfu.core.seqnum import seq_diff
from sfu.core.vp8 import parse_descriptor
from sfu.core.vp8_munger import Vp8Munger, rewrite_descriptor

if TYPE_CHECKING:
    from sfu.core.rtp import RtpHeader
    from sfu.core.vp8 import Vp8Descriptor
    from sfu.receiver import Receiver
    from sfu.track import PublishedTrack

_HEADER = struct.Struct("!BBHII")
_OSN = struct.Struct("!H")
#: After the first layer choice, this long during which layers may still be
#: coming up: choices skip the climb hysteresis.
STARTUP_MS = 1500
RESEND_MIN_INTERVAL_S = 0.1  # one retransmission of a seq per 100 ms at most
_RESEND_SLOTS = 512


class DownTrack:
    def __init__(
        self,
        track: PublishedTrack,
        *,
        subscriber_id: str,
        mid: str,
        ssrc: int,
        payload_type: int,
        rtx_ssrc: int | None,
        rtx_payload_type: int | None,
        send_rtp: Callable[[bytes], bool],
        seq_start: int,
        ts_start: int,
    ) -> None:
        self.track = track
        #: The layer forwarded (or, before the first packet, the one awaited).
        self.receiver: Receiver = track.layers[-1]
        #: The layer being switched to, waiting for its keyframe.
        self._target: Receiver | None = None
        self.subscriber_id = subscriber_id
        self.track_id = track.track_id
        self.kind = track.kind
        self.is_video = track.is_video
        self.mid = mid
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.rtx_ssrc = rtx_ssrc
        self.rtx_payload_type = rtx_payload_type
        self.use_rtx = False
        self._send = send_rtp
        self._mid_value = mid.encode()
        #: The header extensions written (none until the answer is applied).
        self._layout: ExtensionLayout = extension_layout(0, self._mid_value, 0, 0, 0)
        self.munger = RtpMunger(seq_start, ts_start)
        self._source: int | None = None
        self._last_src_ts = 0
        self._last_out_ts = 0
        self._last_arrival_s = 0.0
        self._rtx_seq = seq_start ^ 0x5A5A
        self._resent_seq = [-1] * _RESEND_SLOTS
        self._resent_at = [0.0] * _RESEND_SLOTS
        self._sr_sent: dict[int, float] = {}
        #: The subscriber's answer accepted this m-section.
        self.negotiated = False
        #: False until negotiated and the subscriber transport is up.
        self.active = False
        #: set_quality "off" or an unsubscribe in progress: forward nothing.
        self.paused = False
        self.detached = False
        self.rtt_ms: float | None = None
        self.loss_fraction = 0.0
        self.jitter = 0
        self.remb_bps: int | None = None
        # counters
        self.packets_sent = 0
        self.octets_sent = 0
        self.dropped_waiting_keyframe = 0
        self.dropped_late = 0
        self.nacks_received = 0
        self.retransmitted = 0
        self.nack_misses = 0
        self.keyframe_requests = 0
        self.first_packet_at: float | None = None
        # layer selection
        self.selector = LayerSelector()
        self.quality = "high"
        self.video_size: tuple[int, int] | None = None
        self._chosen = False
        self._first_choice_ms = 0
        self._switch_reason = ""
        #: Max VP8 temporal layer wanted (-1: all) and the one applied so far; the
        #: applied one changes only at frame starts, upwards only at a TL0 frame.
        self._max_temporal = -1
        self._active_temporal = -1
        self._target_temporal = -1
        #: Outgoing seq of the first packet since the last (re)start: the VP8
        #: munger can renumber retransmissions from this period only.
        self._period_start: int | None = None
        self.vp8 = Vp8Munger() if track.codec.name.lower() == "vp8" else None
        #: The last forwarded VP8 descriptor while the munger passes ids through.
        self._last_vp8: Vp8Descriptor | None = None
        #: Called after the forwarded spatial layer changed (and at the first one).
        self.on_layer_change: Callable[[DownTrack], None] | None = None
        self.forwarded_quality: str | None = None
        self.switches_up = 0
        self.switches_down = 0
        self.dropped_temporal = 0
        self.budget_bps: int | None = None

    def configure(self, extension_ids: dict[str, int], use_rtx: bool) -> None:
        """Apply what the subscriber's answer accepted."""
        # Resolved once here, not per packet: 0 means "not negotiated".
        self._layout = extension_layout(
            extension_ids.get(EXT_MID, 0),
            self._mid_value,
            extension_ids.get(EXT_ABS_SEND_TIME, 0),
            extension_ids.get(EXT_AUDIO_LEVEL, 0),
            extension_ids.get(EXT_VIDEO_ORIENTATION, 0),
        )
        self.use_rtx = use_rtx and self.rtx_ssrc is not None and self.rtx_payload_type is not None

    def attach(self) -> None:
        self.track.add_downtrack(self)
        self.receiver.add_downtrack(self)

    @property
    def awaited_layer(self) -> Receiver | None:
        """The layer whose keyframe this DownTrack waits for, if any."""
        if not self.active or self.paused or not self.is_video:
            return None
        if self._target is not None:
            return self._target
        # Not started, or the publisher restarted this layer with a new SSRC.
        return self.receiver if self._source != self.receiver.ssrc else None

    # --- per packet ----------------------------------------------------------

    def write(
        self,
        packet: bytes,
        header: RtpHeader,
        ext_seq: int,
        keyframe: bool,
        arrival_s: float,
        vp8: Vp8Descriptor | None,
        shared: SharedParts,
    ) -> None:
        """Forward one packet of a layer this DownTrack is attached to; `shared`
        holds what every subscriber's copy of it has in common."""
        if not self.active or self.paused:
            return
        source = header.ssrc
        if source != self._source:
            wanted = self._target or self.receiver
            if source != wanted.ssrc:
                return  # the layer being left, or one attached a moment ago
            if self.is_video and not keyframe:
                # A decoder can only start at a keyframe: hold video back until one.
                self.dropped_waiting_keyframe += 1
                return
            self._switch(wanted, source, header, ext_seq, arrival_s, vp8)
        if vp8 is not None and vp8.tid is not None:
            # Cheap comparison first: frame_start is a property (a call).
            if self._active_temporal != self._max_temporal and vp8.frame_start:
                self._apply_temporal(vp8, keyframe)
            if 0 <= self._active_temporal < vp8.tid:
                # A temporal layer this subscriber does not get (RFC 7741 §4.2:
                # TID); close the sequence gap and the PictureID gap.
                self.munger.drop(source, ext_seq)
                if self.vp8 is not None:
                    self._vp8_munger().drop_frame(
                        vp8.picture_id, picture_id_bits=vp8.picture_id_bits or 15
                    )
                self.dropped_temporal += 1
                return
        if header.payload_end <= header.payload_start:
            # Padding only (bandwidth probing): not forwarded, and the outgoing
            # sequence closes over it so the subscriber sees no loss.
            self.munger.drop(source, ext_seq)
            return
        translated = self.munger.translate(source, ext_seq, header.timestamp)
        if translated is None:
            self.dropped_late += 1
            return
        out_seq, out_ts = translated
        if self._period_start is None:
            self._period_start = out_seq
        # Remember one (source, out) timestamp pair: their difference is the offset
        # that translates the publisher's sender reports.
        self._last_src_ts = header.timestamp
        self._last_out_ts = out_ts
        self._last_arrival_s = arrival_s
        munger = self.vp8
        if munger is not None and vp8 is not None and munger.changed:
            out = self._rewrite(packet, header, out_seq, out_ts, shared, vp8)
        else:
            if munger is not None and vp8 is not None:
                # Pass-through (no switch or drop yet): the ids go out as they
                # came, and the munger is brought up to date only when needed.
                self._last_vp8 = vp8
            # _rewrite's common case inlined (a call per packet x subscriber):
            # the subscriber's fixed header + the shared tail, one concatenation.
            layout = self._layout
            first = 0xA0 if header.padding else 0x80
            if layout.always or shared.block(layout):
                first |= 0x10  # X: an extension block follows (RFC 3550 §5.3.1)
            out = _HEADER.pack(
                first,
                (0x80 if header.marker else 0) | self.payload_type,
                out_seq,
                out_ts,
                self.ssrc,
            ) + shared.tail(layout)
        if self._send(out):
            self.packets_sent += 1
            self.octets_sent += header.payload_end - header.payload_start
            if self.first_packet_at is None:
                self.first_packet_at = time.monotonic()

    def _switch(
        self,
        layer: Receiver,
        source: int,
        header: RtpHeader,
        ext_seq: int,
        arrival_s: float,
        vp8: Vp8Descriptor | None,
    ) -> None:
        """Start forwarding `layer` from this packet (a keyframe for video)."""
        advance = 1
        forwarded_before = self.munger.started
        if forwarded_before:
            # Keep timestamps moving with wall-clock time across a source change.
            elapsed_s = max(arrival_s - self._last_arrival_s, 0.0)
            advance = max(1, int(elapsed_s * layer.clock_rate))
        self.munger.start(source, ext_seq, header.timestamp, ts_advance=advance)
        if self.vp8 is not None and vp8 is not None:
            self._vp8_munger().switch(
                vp8.picture_id, vp8.tl0picidx, picture_id_bits=vp8.picture_id_bits or 15
            )
        if layer is self._target:
            self._max_temporal = self._target_temporal
        self._active_temporal = self._max_temporal  # a keyframe references nothing
        self._source = source
        self._period_start = None  # set by the next translated packet
        old = self.receiver
        self._target = None
        if self._chosen and layer is not old:
            self.selector.on_switched(
                int(arrival_s * 1000),
                Layer(self.track.layers.index(layer), self._max_temporal),
                self._switch_reason,
            )
        self._switch_reason = ""
        if layer is not old:
            old.remove_downtrack(self)
            self.receiver = layer
            layers = self.track.layers
            if not forwarded_before:
                pass  # the first layer: not a switch
            elif layers.index(layer) > layers.index(old):
                self.switches_up += 1
            else:
                self.switches_down += 1
        quality = self.track.quality_of(layer) if self.is_video else None
        if quality != self.forwarded_quality:
            self.forwarded_quality = quality
            if self.on_layer_change is not None:
                self.on_layer_change(self)

    def _vp8_munger(self) -> Vp8Munger:
        """The VP8 munger, told the ids last sent if it was passing them through
        (it is not fed per packet until its ids differ from the publisher's)."""
        munger = self.vp8
        assert munger is not None
        last = self._last_vp8
        if not munger.changed and last is not None:
            # A fresh munger: one that saw only old frames could misread
            # PictureIDs that wrapped since.
            munger = self.vp8 = Vp8Munger()
            munger.translate(
                last.picture_id, last.tl0picidx, picture_id_bits=last.picture_id_bits or 15
            )
            self._last_vp8 = None
        return munger

    def _apply_temporal(self, vp8: Vp8Descriptor, keyframe: bool) -> None:
        """Move the temporal ceiling towards the wanted one at a frame start."""
        wanted = self._max_temporal
        active = self._active_temporal
        if keyframe or (wanted >= 0 and (active < 0 or wanted < active)):
            # Down at any frame: frames of the kept layers never reference the
            # dropped ones. Anything at a keyframe, which references nothing.
            self._active_temporal = wanted
            return
        tid = vp8.tid
        # Up one layer at a time, at a frame of that layer with the Y bit set:
        # RFC 7741 §4.2, such a frame references only TL0 frames (or sync
        # frames), which the subscriber has; a TL0 frame alone does not make
        # the next TL1/TL2 frames decodable (their references may be older
        # upper-layer frames it never got).
        if vp8.layer_sync and tid is not None and tid == active + 1:
            self._active_temporal = tid if wanted < 0 or tid < wanted else wanted

    def _head(self, header: RtpHeader, out_seq: int, out_ts: int, shared: SharedParts) -> bytes:
        """The subscriber's fixed header (RFC 3550 §5.1): its SSRC and payload
        type, the translated sequence number and timestamp."""
        layout = self._layout
        first = 0xA0 if header.padding else 0x80
        if layout.always or shared.block(layout):
            first |= 0x10  # X: an extension block follows (RFC 3550 §5.3.1)
        return _HEADER.pack(
            first, (0x80 if header.marker else 0) | self.payload_type, out_seq, out_ts, self.ssrc
        )

    def _rewrite(
        self,
        packet: bytes,
        header: RtpHeader,
        out_seq: int,
        out_ts: int,
        shared: SharedParts,
        vp8: Vp8Descriptor | None = None,
    ) -> bytes:
        """The subscriber's copy: its own fixed header before the extension block
        and payload shared with every subscriber of its layout. Payload and any
        padding are copied unchanged (the server never decodes media); only the
        VP8 descriptor's ids are renumbered."""
        head = self._head(header, out_seq, out_ts, shared)
        munger = self.vp8
        if vp8 is not None and munger is not None:
            if munger.changed:
                descriptor = self._renumbered_descriptor(packet, header.payload_start, vp8)
                rest = shared.payload[vp8.size :]
                return b"".join((head, shared.block(self._layout), descriptor, rest))
            # Pass-through (no switch or drop yet): the ids go out as they came,
            # and the munger is brought up to date only when it is needed.
            self._last_vp8 = vp8
        return head + shared.tail(self._layout)

    def _renumbered_descriptor(self, packet: bytes, start: int, vp8: Vp8Descriptor) -> bytearray:
        """The VP8 descriptor with this subscriber's PictureID / TL0PICIDX."""
        munger = self.vp8
        assert munger is not None
        picture_id, tl0 = munger.translate(
            vp8.picture_id, vp8.tl0picidx, picture_id_bits=vp8.picture_id_bits or 15
        )
        descriptor = bytearray(packet[start : start + vp8.size])  # at most 6 octets
        rewrite_descriptor(descriptor, 0, picture_id, tl0)
        return descriptor

    def _rtx(
        self,
        packet: bytes,
        header: RtpHeader,
        out_seq: int,
        out_ts: int,
        send_time: bytes,
        vp8: Vp8Descriptor | None = None,
    ) -> bytes:
        """RFC 4588 §4: the original sequence number, then the original payload, on
        the RTX SSRC with its own sequence; the original padding is not carried."""
        self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        ext_block = self._layout.block(send_time, None, None)
        head = _HEADER.pack(
            0x80 | (0x10 if ext_block else 0),
            (0x80 if header.marker else 0) | (self.rtx_payload_type or 0),
            self._rtx_seq,
            out_ts,
            self.rtx_ssrc or 0,
        )
        start = header.payload_start
        end = header.payload_end
        if vp8 is not None and self.vp8 is not None and self.vp8.changed:
            descriptor = self._renumbered_descriptor(packet, start, vp8)
            rest = memoryview(packet)[start + vp8.size : end]
            return b"".join((head, ext_block, _OSN.pack(out_seq), descriptor, rest))
        return b"".join((head, ext_block, _OSN.pack(out_seq), memoryview(packet)[start:end]))

    # --- RTCP from the subscriber --------------------------------------------

    def on_nack(self, lost: list[int], now_s: float) -> None:
        """Retransmit what the subscriber lost, from the Receiver's cache (RFC 4585
        §6.2.1), as RTX (RFC 4588) when the subscriber negotiated it."""
        receiver = self.receiver
        send_time = abs_send_time(time.time())
        for out_seq in lost:
            self.nacks_received += 1
            found = self.munger.source_of(out_seq)
            if (
                found is None
                or found[0] != receiver.ssrc
                or (
                    self.vp8 is not None
                    and (self._period_start is None or seq_diff(out_seq, self._period_start) < 0)
                )
            ):
                # A packet of a layer left behind, or (VP8) of an earlier period
                # of this layer: its VP8 ids can no longer be renumbered, and
                # the keyframe that started this period replaced it.
                self.nack_misses += 1
                continue
            packet = receiver.cache.get(found[1])
            if packet is None:
                self.nack_misses += 1
                continue
            slot = out_seq % _RESEND_SLOTS
            if (
                self._resent_seq[slot] == out_seq
                and now_s - self._resent_at[slot] < RESEND_MIN_INTERVAL_S
            ):
                continue
            try:
                header = parse_header(packet)
            except RtpError:
                continue
            translated = self.munger.translate(found[0], found[1], header.timestamp)
            if translated is None or translated[0] != out_seq:
                self.nack_misses += 1
                continue
            vp8 = None
            if self.vp8 is not None and header.payload_end > header.payload_start:
                try:
                    vp8 = parse_descriptor(
                        memoryview(packet)[header.payload_start : header.payload_end]
                    )
                except ValueError:
                    vp8 = None
            if self.use_rtx:
                out = self._rtx(packet, header, out_seq, translated[1], send_time, vp8)
            else:
                # Retransmissions carry no audio level / orientation, as before.
                shared = SharedParts(
                    memoryview(packet)[header.payload_start :], send_time, None, None
                )
                out = self._rewrite(packet, header, out_seq, translated[1], shared, vp8)
            if self._send(out):
                self.retransmitted += 1
                self._resent_seq[slot] = out_seq
                self._resent_at[slot] = now_s

    def on_keyframe_request(self, now_ms: int) -> None:
        self.keyframe_requests += 1
        self.receiver.request_keyframe(now_ms)

    def on_report_block(
        self, fraction_lost: int, jitter: int, lsr: int, dlsr: int, now_s: float
    ) -> None:
        self.loss_fraction = fraction_lost / 256
        self.jitter = jitter
        sent_at = self._sr_sent.get(lsr)
        if sent_at is not None:
            # RFC 3550 §6.4.1: RTT = arrival - LSR - DLSR; our SRs carry the
            # publisher's NTP time, so LSR is matched to our own send time.
            rtt_s = now_s - sent_at - dlsr / 65536
            if rtt_s >= 0:
                self.rtt_ms = rtt_s * 1000

    # --- periodic ------------------------------------------------------------

    def sender_report(self, now_s: float) -> bytes | None:
        """SR + SDES for this stream: the publisher's NTP/RTP pair, with the RTP time
        shifted into our timestamp space, so the subscriber can sync audio and video."""
        last_sr = self.receiver.last_sr
        if not self.active or self._source is None or last_sr is None:
            return None
        ntp, rtp = last_sr
        offset = (self._last_out_ts - self._last_src_ts) & 0xFFFFFFFF
        report = pack_sender_report(
            self.ssrc, ntp, (rtp + offset) & 0xFFFFFFFF, self.packets_sent, self.octets_sent
        )
        middle = (ntp >> 16) & 0xFFFFFFFF
        self._sr_sent[middle] = now_s
        if len(self._sr_sent) > 8:
            del self._sr_sent[next(iter(self._sr_sent))]
        return report + pack_sdes_cname(self.ssrc, self.receiver.cname.encode()[:255])

    def pause(self) -> None:
        """set_quality "off": forward nothing until resume()."""
        self.paused = True
        self.forwarded_quality = None
        if self._target is not None:
            self._target.remove_downtrack(self)
            self._target = None

    def resume(self, now_ms: int) -> None:
        """Forward again after a pause: restart at the next keyframe; the munger keeps
        the outgoing sequence continuous and moves timestamps on by the time paused."""
        self.paused = False
        self._source = None
        if self.active and self.is_video:
            self.update_layer(now_ms, self.budget_bps)
            layer = self.awaited_layer
            if layer is not None:
                layer.request_keyframe(now_ms)

    # --- layer selection -----------------------------------------------------

    def set_preference(
        self, quality: str | None = None, video_size: tuple[int, int] | None = None
    ) -> None:
        """The subscriber's wish: a quality (set_quality) and/or the size it renders."""
        if quality is not None:
            self.quality = quality
        if video_size is not None:
            self.video_size = video_size

    def max_spatial(self) -> int:
        track = self.track
        index = track.max_index_for_quality(self.quality)
        if self.video_size is not None:
            width, height = self.video_size
            index = min(index, max_spatial_for_size(track.sizes(), width, height))
        return index

    def next_layer_bps(self) -> int | None:
        """The measured bitrate of the first arriving spatial layer above the
        one forwarded (or being switched to); None at the top."""
        layers = self.track.layers
        rates = self.track.rates()
        heading = self._target or self.receiver
        if heading not in layers:
            return None
        for i in range(layers.index(heading) + 1, len(layers)):
            if rates[i].arriving and rates[i].bitrate_bps:
                return rates[i].bitrate_bps
        return None

    def update_layer(self, now_ms: int, budget_bps: int | None) -> None:
        """Choose the layer to forward; start a switch when it differs."""
        self.budget_bps = budget_bps
        if not self.is_video or not self.active or self.paused or self.detached:
            return
        layers = self.track.layers
        heading = self._target or self.receiver
        current = None
        if self._chosen and now_ms - self._first_choice_ms >= STARTUP_MS:
            temporal = self._target_temporal if self._target is not None else self._max_temporal
            current = Layer(layers.index(heading), temporal)
        # else: a first choice. Right after subscribing, the publisher's layers
        # may still be coming up and the estimate still unknown; until
        # STARTUP_MS has passed every choice is a first one (best fit, no hold).
        choice = self.selector.choose(
            now_ms, self.track.rates(), self.max_spatial(), budget_bps, current
        )
        if choice is None:
            # Nothing measured yet (a track just published): wait for the layer
            # the preference allows rather than the top one.
            if not self._chosen and self._source is None:
                self._await_initial(layers[self.max_spatial()])
            return
        if not self._chosen:
            self._chosen = True
            self._first_choice_ms = now_ms
        wanted = layers[choice.spatial]
        if wanted is heading:
            # Same spatial layer; a temporal change applies to the layer that
            # will carry it (the pending target's keyframe sets its own).
            if self._target is None:
                self._max_temporal = choice.temporal
            else:
                self._target_temporal = choice.temporal
            return
        if self._target is not None:
            self._target.remove_downtrack(self)
            self._target = None
        if wanted is self.receiver:
            self._max_temporal = choice.temporal
            return  # back to the layer still being forwarded: switch called off
        self._target_temporal = choice.temporal
        self._target = wanted
        self._switch_reason = self.selector.reason
        wanted.add_downtrack(self)
        wanted.request_keyframe(now_ms)

    def on_layers_reordered(self) -> None:
        """The track re-sorted its layers by picture size: indices and quality
        names moved, so the selector starts over and the client hears which
        quality it now gets."""
        self.selector = LayerSelector()
        self._chosen = False
        if self.forwarded_quality is not None and self._source is not None:
            quality = self.track.quality_of(self.receiver)
            if quality != self.forwarded_quality:
                self.forwarded_quality = quality
                if self.on_layer_change is not None:
                    self.on_layer_change(self)

    def _await_initial(self, layer: Receiver) -> None:
        if layer is not self.receiver:
            self.receiver.remove_downtrack(self)
            self.receiver = layer
            layer.add_downtrack(self)

    def detach(self) -> None:
        """The track went away or the subscriber left: stop for good."""
        self.active = False
        self.detached = True
        self.receiver.remove_downtrack(self)
        if self._target is not None:
            self._target.remove_downtrack(self)
            self._target = None
        self.track.remove_downtrack(self)

    def stats(self) -> dict[str, object]:
        return {
            "track_id": self.track_id,
            "mid": self.mid,
            "ssrc": self.ssrc,
            "packets_sent": self.packets_sent,
            "octets_sent": self.octets_sent,
            "retransmitted": self.retransmitted,
            "nacks_received": self.nacks_received,
            "dropped_waiting_keyframe": self.dropped_waiting_keyframe,
            "rtt_ms": self.rtt_ms,
            "loss_fraction": self.loss_fraction,
            "quality": self.forwarded_quality,
            "switches_up": self.switches_up,
            "switches_down": self.switches_down,
            "dropped_temporal": self.dropped_temporal,
        }
