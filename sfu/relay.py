"""The relay between nodes: a track published here, forwarded to other nodes.

When a subscriber on node B wants a track published on node A, B asks A for
it over UDP (a SUBSCRIBE datagram naming the track and a channel number B
picked) and A sends each packet of the track to B once, however many
subscribers B has; B feeds them into a local PublishedTrack whose DownTracks
fan out as for a local publisher. B's keyframe requests and NACKs travel back
to A on the same channel and are answered there: a NACK from A's packet
cache, a keyframe request by asking the publisher (throttled as for local
subscribers).

The relay is soft state. B repeats SUBSCRIBE every LEASE_REFRESH_MS while it
has subscribers; A stops a stream that was not refreshed for LEASE_MS, so a
node that dies stops being sent to within seconds, with or without Redis.
Everything on the wire is authenticated with the cluster secret
(:mod:`sfu.core.relay_wire`). Nothing here knows about rooms: the control
plane describes tracks (:class:`RemoteTrackSpec`) and finds local ones by id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sfu.core.relay_wire import (
    MAX_TRACK_ID_BYTES,
    Kind,
    RelayError,
    ReplayWindow,
    Sealer,
    open_datagram,
    pack_sender_report,
    unpack_sender_report,
)
from sfu.core.rtcp import Fir, Nack, Pli, RtcpError, parse_compound
from sfu.core.rtp import RtpError, parse_header
from sfu.counters import MediaTotals
from sfu.receiver import Receiver
from sfu.sdp import Codec
from sfu.track import QUALITIES, PublishedTrack

logger = logging.getLogger(__name__)

#: How often a receiving node repeats SUBSCRIBE while it has subscribers.
LEASE_REFRESH_MS = 1000
#: A stream not refreshed for this long stops (its receiving node is gone).
LEASE_MS = 5000
#: A relayed track with no subscriber for this long is released.
IDLE_RELEASE_MS = 5000
#: Bounds on what other nodes can make this node hold.
MAX_OUT_STREAMS = 20_000
MAX_IN_STREAMS = 20_000
MAX_SENDERS = 4096
RELAY_RTT_MS = 20  # NACK retry spacing on the relay: nodes sit in one data centre

Address = tuple[str, int]
FindTrack = Callable[[str], PublishedTrack | None]


class SpecError(ValueError):
    """A track record from another node that does not describe a track."""


@dataclass(frozen=True, slots=True)
class RemoteTrackSpec:
    """What a node needs to receive a track published on another node: the
    publisher's codec, the extension ids it reads per packet and the layers."""

    track_id: str
    kind: str
    codec: Codec
    feedback: frozenset[str]
    cname: str
    rids: tuple[str, ...] = ()  # sorted; empty without simulcast
    qualities: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    extension_ids: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        track: PublishedTrack,
        qualities: dict[str, str] | None = None,
        sizes: dict[str, tuple[int, int]] | None = None,
    ) -> RemoteTrackSpec:
        first = track.layers[0]
        return cls(
            track_id=track.track_id,
            kind=track.kind,
            codec=track.codec,
            feedback=first.feedback,
            cname=track.cname,
            rids=tuple(sorted(layer.rid for layer in track.layers if layer.rid is not None)),
            qualities=dict(qualities or {}),
            sizes=dict(sizes or {}),
            extension_ids=dict(first.extension_ids),
        )

    def to_dict(self) -> dict[str, Any]:
        codec = self.codec
        return {
            "track_id": self.track_id,
            "kind": self.kind,
            "codec": {
                "payload_type": codec.payload_type,
                "name": codec.name,
                "clock_rate": codec.clock_rate,
                "channels": codec.channels,
                "fmtp": codec.fmtp,
            },
            "feedback": sorted(self.feedback),
            "cname": self.cname,
            "rids": list(self.rids),
            "qualities": dict(self.qualities),
            "sizes": {rid: list(size) for rid, size in self.sizes.items()},
            "extension_ids": dict(self.extension_ids),
        }

    @classmethod
    def from_dict(cls, data: Any) -> RemoteTrackSpec:
        """Validate a record read from Redis; raises SpecError naming the problem."""
        try:
            codec = data["codec"]
            track_id = _text(data["track_id"], "track_id", MAX_TRACK_ID_BYTES)
            if not track_id:
                raise SpecError("track_id is empty")
            kind = data["kind"]
            if kind not in ("audio", "video"):
                raise SpecError(f"kind {kind!r}")
            payload_type = codec["payload_type"]
            clock_rate = codec["clock_rate"]
            if not _is_int(payload_type) or not _is_int(clock_rate):
                raise SpecError("codec payload type and clock rate must be integers")
            if not 0 <= payload_type <= 127 or not 0 < clock_rate <= 1_000_000:
                raise SpecError("codec payload type or clock rate out of range")
            channels = codec.get("channels")
            if channels is not None and (not isinstance(channels, int) or not 0 < channels <= 8):
                raise SpecError("channels must be 1 to 8")
            rids = tuple(_text(r, "rid", 16) for r in _list(data.get("rids", []), "rids"))
            if len(rids) > 3 or list(rids) != sorted(set(rids)):
                raise SpecError("rids must be at most 3, sorted and distinct")
            qualities = {
                _text(r, "rid", 16): q
                for r, q in _dict(data.get("qualities", {}), "qualities").items()
                if q in QUALITIES
            }
            sizes = {
                _text(r, "rid", 16): _size(s)
                for r, s in _dict(data.get("sizes", {}), "sizes").items()
            }
            extension_ids = {
                _text(uri, "extension", 256): i
                for uri, i in _dict(data.get("extension_ids", {}), "extension_ids").items()
                if _ext_id(i)
            }
            return cls(
                track_id=track_id,
                kind=kind,
                codec=Codec(
                    payload_type,
                    _text(codec["name"], "codec name", 32),
                    clock_rate,
                    int(channels) if channels is not None else None,
                    _text(codec.get("fmtp", ""), "fmtp", 1024),
                ),
                feedback=frozenset(
                    _text(f, "feedback", 64) for f in _list(data.get("feedback", []), "feedback")
                ),
                cname=_text(data.get("cname", ""), "cname", 255),
                rids=rids,
                qualities=qualities,
                sizes=sizes,
                extension_ids=extension_ids,
            )
        except SpecError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise SpecError(f"bad track record: {exc!r}") from None


def _text(value: Any, what: str, limit: int) -> str:
    if not isinstance(value, str) or len(value.encode()) > limit:
        raise SpecError(f"{what} must be a string of at most {limit} bytes")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise SpecError(f"{what} must be a list")
    return value


def _dict(value: Any, what: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise SpecError(f"{what} must be an object")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ext_id(value: Any) -> bool:
    """An extension id must be an integer; one outside 1..255 (RFC 8285 §4.2,
    §4.3) is dropped rather than trusted."""
    if not _is_int(value):
        raise SpecError("an extension id must be an integer")
    return 1 <= value <= 255


def _size(value: Any) -> tuple[int, int]:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(_is_int(v) and 0 <= v <= 16384 for v in value)
    ):
        raise SpecError("a size must be [width, height], 0 to 16384")
    return value[0], value[1]


def layers_by_rid(track: PublishedTrack) -> list[Receiver]:
    """The track's layers in wire order: sorted by RID (the order both nodes
    can compute from the record, whatever order the track sorted them into)."""
    return sorted(track.layers, key=lambda layer: layer.rid or "")


# --- sending side ---------------------------------------------------------------


class RelayTap:
    """One layer of one track, sent to one node on one channel. Receiver calls
    it per packet: no task, no await, one seal and one sendto."""

    __slots__ = ("_addr", "_channel", "_layer", "_relay")

    def __init__(self, relay: Relay, addr: Address, channel: int, layer: int) -> None:
        self._relay = relay
        self._addr = addr
        self._channel = channel
        self._layer = layer

    def on_rtp(self, packet: bytes) -> None:
        self._relay.send(Kind.RTP, self._layer, self._channel, packet, self._addr)

    def on_sender_report(self, ntp_timestamp: int, rtp_timestamp: int) -> None:
        self._relay.send(
            Kind.SENDER_REPORT,
            self._layer,
            self._channel,
            pack_sender_report(ntp_timestamp, rtp_timestamp),
            self._addr,
        )


@dataclass(eq=False)
class OutStream:
    """A track this node sends to another node."""

    track: PublishedTrack
    addr: Address
    channel: int
    node_id: str
    layers: list[Receiver]
    taps: list[RelayTap]
    refreshed_ms: int

    def detach(self) -> None:
        for layer, tap in zip(self.layers, self.taps, strict=True):
            layer.remove_relay(tap)


# --- receiving side -------------------------------------------------------------


@dataclass(eq=False)
class InStream:
    """A track published on another node, received here."""

    spec: RemoteTrackSpec
    addr: Address
    channel: int
    track: PublishedTrack
    layers: list[Receiver]  # wire order
    subscribed_ms: int = 0
    idle_since_ms: int | None = None


@dataclass(slots=True)
class RelayStats:
    out_streams: int = 0
    in_streams: int = 0
    packets_sent: int = 0
    bytes_sent: int = 0
    packets_received: int = 0
    bytes_received: int = 0
    rejected: int = 0  # bad tag, version or type: not from this cluster
    replayed: int = 0
    malformed: int = 0
    unknown_channel: int = 0
    send_errors: int = 0
    nacks_received: int = 0
    retransmitted: int = 0
    keyframe_requests_received: int = 0
    subscribes_received: int = 0
    unknown_tracks: int = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


class Relay(asyncio.DatagramProtocol):
    """This node's relay socket: sends its tracks to other nodes and receives
    theirs. `find_track` looks up a track published on this node by id."""

    def __init__(
        self,
        node_id: str,
        key: bytes,
        find_track: FindTrack,
        totals: MediaTotals | None = None,
    ) -> None:
        self.node_id = node_id
        self._totals = totals
        self._key = key
        self._sealer = Sealer(key, time.time_ns() // 1000, secrets.randbits(64))
        self._find_track = find_track
        self._transport: asyncio.DatagramTransport | None = None
        self.address: Address | None = None
        self._out: dict[tuple[Address, int], OutStream] = {}
        self._in: dict[int, InStream] = {}
        self._in_by_track: dict[str, InStream] = {}
        #: Replay windows by sender id (authenticated senders only).
        self._windows: OrderedDict[int, ReplayWindow] = OrderedDict()
        self._rtcp_ssrc = secrets.randbits(32) or 1
        self.stats = RelayStats()

    # --- lifetime ------------------------------------------------------------

    async def start(self, host: str, port: int) -> Address:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
        self._transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            import socket

            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        bound = transport.get_extra_info("sockname")
        self.address = (bound[0], bound[1])
        return self.address

    def close(self) -> None:
        for stream in list(self._out.values()):
            stream.detach()
        self._out.clear()
        for stream in list(self._in.values()):
            self._send_control(Kind.UNSUBSCRIBE, stream.channel, b"", stream.addr)
            stream.track.close()
        self._in.clear()
        self._in_by_track.clear()
        self.stats.out_streams = self.stats.in_streams = 0
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def set_key(self, key: bytes) -> None:
        """A new cluster secret (Redis lost it and it was made anew)."""
        if key != self._key:
            self._key = key
            self._sealer = Sealer(key, self._sealer.counter, self._sealer.sender)
            self._windows.clear()

    # --- sending -------------------------------------------------------------

    def send(self, kind: int, layer: int, channel: int, payload: bytes, addr: Address) -> None:
        transport = self._transport
        if transport is None:
            return
        datagram = self._sealer.seal(kind, layer, channel, payload)
        try:
            transport.sendto(datagram, addr)
        except OSError:
            self.stats.send_errors += 1
            return
        stats = self.stats
        stats.packets_sent += 1
        stats.bytes_sent += len(datagram)

    def _send_control(self, kind: int, channel: int, payload: bytes, addr: Address) -> None:
        self.send(kind, 0, channel, payload, addr)

    # --- receiving a track from another node ---------------------------------

    def acquire(self, spec: RemoteTrackSpec, addr: Address, now_ms: int) -> PublishedTrack:
        """The local PublishedTrack for a track on the node at `addr`, asking that
        node to send it if this is the first subscriber here."""
        stream = self._in_by_track.get(spec.track_id)
        if stream is not None and stream.addr != addr:
            self._release(stream)  # the track's node moved its relay address
            stream = None
        if stream is not None:
            stream.idle_since_ms = None
            return stream.track
        if len(self._in) >= MAX_IN_STREAMS:
            raise RuntimeError(f"more than {MAX_IN_STREAMS} relayed tracks on this node")
        channel = secrets.randbits(32)
        while channel in self._in or channel == 0:
            channel = secrets.randbits(32)
        wire_rids: list[str | None] = list(spec.rids) if spec.rids else [None]
        layers = []
        for index, rid in enumerate(wire_rids):
            layers.append(
                Receiver(
                    track_id=spec.track_id,
                    kind=spec.kind,
                    codec=spec.codec,
                    rtx_payload_type=None,  # the sending node unwraps RTX
                    extension_ids=spec.extension_ids,
                    feedback=spec.feedback,
                    rtcp_ssrc=self._rtcp_ssrc,
                    send_rtcp=self._feedback_sender(channel, index, addr),
                    cname=spec.cname,
                    rid=rid,
                    totals=self._totals,
                )
            )
        # Qualities are known from the record only when the publisher named them.
        track = PublishedTrack(spec.track_id, spec.kind, spec.codec, spec.cname, list(layers))
        if track.simulcast:
            track.set_qualities(spec.qualities, spec.sizes)
        stream = InStream(spec, addr, channel, track, layers)
        self._in[channel] = stream
        self._in_by_track[spec.track_id] = stream
        self.stats.in_streams = len(self._in)
        self._subscribe(stream, now_ms)
        logger.info(
            "relay: receiving track %s from %s:%d on channel %#x",
            spec.track_id,
            addr[0],
            addr[1],
            channel,
        )
        return track

    def _feedback_sender(self, channel: int, layer: int, addr: Address) -> Callable[[bytes], bool]:
        def send_feedback(packet: bytes) -> bool:
            self.send(Kind.FEEDBACK, layer, channel, packet, addr)
            return True

        return send_feedback

    def _subscribe(self, stream: InStream, now_ms: int) -> None:
        stream.subscribed_ms = now_ms
        body = f"{stream.spec.track_id}\n{self.node_id}".encode()
        self._send_control(Kind.SUBSCRIBE, stream.channel, body, stream.addr)

    def release_track(self, track_id: str) -> None:
        """The track was unpublished (or its node is gone): stop receiving it."""
        stream = self._in_by_track.get(track_id)
        if stream is not None:
            self._release(stream)

    def _release(self, stream: InStream) -> None:
        self._in.pop(stream.channel, None)
        if self._in_by_track.get(stream.spec.track_id) is stream:
            del self._in_by_track[stream.spec.track_id]
        self._send_control(Kind.UNSUBSCRIBE, stream.channel, b"", stream.addr)
        stream.track.close()
        self.stats.in_streams = len(self._in)
        logger.info("relay: stopped receiving track %s", stream.spec.track_id)

    def inbound_layers(self) -> list[Receiver]:
        return [layer for stream in self._in.values() for layer in stream.layers]

    def inbound(self, track_id: str) -> PublishedTrack | None:
        stream = self._in_by_track.get(track_id)
        return stream.track if stream is not None else None

    # --- datagrams -----------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        try:
            datagram = open_datagram(self._key, data)
        except RelayError:
            self.stats.rejected += 1
            return
        source: Address = (addr[0], addr[1])
        window = self._windows.get(datagram.sender)
        if window is None:
            # Only authenticated senders get a window: a stranger allocates nothing.
            window = self._windows[datagram.sender] = ReplayWindow()
            if len(self._windows) > MAX_SENDERS:
                self._windows.popitem(last=False)
        if not window.accept(datagram.counter):
            self.stats.replayed += 1
            return
        stats = self.stats
        stats.packets_received += 1
        stats.bytes_received += len(data)
        kind = datagram.kind
        if kind == Kind.RTP or kind == Kind.SENDER_REPORT:
            self._on_media(source, kind, datagram.channel, datagram.layer, datagram.payload)
        elif kind == Kind.FEEDBACK:
            self._on_feedback(source, datagram.channel, datagram.layer, datagram.payload)
        elif kind == Kind.SUBSCRIBE:
            self._on_subscribe(source, datagram.channel, datagram.payload)
        elif kind == Kind.UNSUBSCRIBE:
            stream = self._out.pop((source, datagram.channel), None)
            if stream is not None:
                stream.detach()
                self.stats.out_streams = len(self._out)
                logger.info(
                    "relay: node %s stopped track %s", stream.node_id, stream.track.track_id
                )

    def _on_media(
        self, source: Address, kind: int, channel: int, layer: int, payload: memoryview
    ) -> None:
        stream = self._in.get(channel)
        if stream is None or layer >= len(stream.layers) or source != stream.addr:
            self.stats.unknown_channel += 1
            return
        receiver = stream.layers[layer]
        if kind == Kind.SENDER_REPORT:
            try:
                ntp, rtp = unpack_sender_report(payload)
            except RelayError:
                self.stats.malformed += 1
                return
            receiver.on_sender_report(ntp, rtp, time.monotonic())
            return
        packet = bytes(payload)
        try:
            header = parse_header(packet)
        except RtpError:
            self.stats.malformed += 1
            return
        receiver.on_rtp(packet, header, time.monotonic())

    def _on_subscribe(self, source: Address, channel: int, payload: memoryview) -> None:
        self.stats.subscribes_received += 1
        track_id, _, node_id = bytes(payload).decode("utf-8", "replace").partition("\n")
        now_ms = int(time.monotonic() * 1000)
        stream = self._out.get((source, channel))
        if stream is not None:
            stream.refreshed_ms = now_ms
            return
        track = self._find_track(track_id)
        if track is None or track.closed:
            self.stats.unknown_tracks += 1
            return
        if len(self._out) >= MAX_OUT_STREAMS:
            logger.warning("relay: %d outgoing streams, refusing more", len(self._out))
            return
        layers = layers_by_rid(track)
        taps = [RelayTap(self, source, channel, i) for i in range(len(layers))]
        stream = OutStream(track, source, channel, node_id[:64], layers, taps, now_ms)
        for layer, tap in zip(layers, taps, strict=True):
            layer.add_relay(tap)
            # The other node's subscribers need a keyframe to start from.
            layer.request_keyframe(now_ms)
            if layer.last_sr is not None:
                tap.on_sender_report(*layer.last_sr)
        self._out[(source, channel)] = stream
        self.stats.out_streams = len(self._out)
        logger.info(
            "relay: sending track %s to node %s (%s:%d)",
            track_id,
            stream.node_id,
            source[0],
            source[1],
        )

    def _on_feedback(self, source: Address, channel: int, layer: int, payload: memoryview) -> None:
        stream = self._out.get((source, channel))
        if stream is None or layer >= len(stream.layers):
            self.stats.unknown_channel += 1
            return
        receiver = stream.layers[layer]
        try:
            packets = parse_compound(bytes(payload))
        except RtcpError:
            self.stats.malformed += 1
            return
        now_ms = int(time.monotonic() * 1000)
        for item in packets:
            if isinstance(item, Pli | Fir):
                self.stats.keyframe_requests_received += 1
                receiver.request_keyframe(now_ms)
            elif isinstance(item, Nack):
                self.stats.nacks_received += len(item.lost)
                tap = stream.taps[layer]
                for seq in item.lost[:64]:
                    packet = receiver.cached(seq)
                    if packet is not None:
                        self.stats.retransmitted += 1
                        tap.on_rtp(packet)

    # --- periodic --------------------------------------------------------------

    def tick(self, now_ms: int) -> None:
        for key, stream in list(self._out.items()):
            if stream.track.closed or now_ms - stream.refreshed_ms > LEASE_MS:
                stream.detach()
                del self._out[key]
                logger.info(
                    "relay: stopped sending track %s to node %s (%s)",
                    stream.track.track_id,
                    stream.node_id,
                    "unpublished" if stream.track.closed else "lease expired",
                )
        self.stats.out_streams = len(self._out)
        for stream in list(self._in.values()):
            track = stream.track
            track.tick(now_ms)
            for layer in stream.layers:
                layer.tick(now_ms, RELAY_RTT_MS)
            if track.downtracks:
                stream.idle_since_ms = None
            elif stream.idle_since_ms is None:
                stream.idle_since_ms = now_ms
            elif now_ms - stream.idle_since_ms >= IDLE_RELEASE_MS:
                self._release(stream)
                continue
            if now_ms - stream.subscribed_ms >= LEASE_REFRESH_MS:
                self._subscribe(stream, now_ms)

    def snapshot(self) -> dict[str, Any]:
        return {
            **self.stats.as_dict(),
            "out": [
                {"track": s.track.track_id, "node": s.node_id, "channel": s.channel}
                for s in self._out.values()
            ],
            "in": [
                {
                    "track": s.spec.track_id,
                    "from": f"{s.addr[0]}:{s.addr[1]}",
                    "channel": s.channel,
                    "downtracks": len(s.track.downtracks),
                }
                for s in self._in.values()
            ],
        }
