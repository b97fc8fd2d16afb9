"""VP8 RTP payload handling (RFC 7741).

Pure Python, no I/O: used by the SFU (keyframe detection, descriptor
inspection) and by the bot (packetization and frame reassembly).

Wire format of the payload descriptor (RFC 7741 §4.2)::

     0 1 2 3 4 5 6 7
    +-+-+-+-+-+-+-+-+
    |X|R|N|S|R| PID |  required
    +-+-+-+-+-+-+-+-+
    |I|L|T|K| RSV   |  present when X=1
    +-+-+-+-+-+-+-+-+
    |M| PictureID   |  present when I=1 (second octet only when M=1)
    +-+-+-+-+-+-+-+-+
    |   PictureID   |
    +-+-+-+-+-+-+-+-+
    |   TL0PICIDX   |  present when L=1
    +-+-+-+-+-+-+-+-+
    |TID|Y| KEYIDX  |  present when T=1 or K=1
    +-+-+-+-+-+-+-+-+

The descriptor is followed by the VP8 payload; when S=1 and PID=0 the
payload begins with the VP8 payload header (RFC 7741 §4.3), i.e. the
frame tag of the VP8 bitstream, whose bit 0 is the inverse keyframe flag P.

The frame assembler machinery (:class:`RtpFrameAssembler`) is codec
agnostic; :mod:`sfu.core.h264` reuses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = [
    "AssembledFrame",
    "RtpFrameAssembler",
    "Vp8Descriptor",
    "Vp8FrameAssembler",
    "is_keyframe",
    "packetize",
    "parse_descriptor",
]

# First octet (RFC 7741 §4.2).
_X = 0x80
_N = 0x20
_S = 0x10
_PID_MASK = 0x07
# Extension octet (RFC 7741 §4.2).
_I = 0x80
_L = 0x40
_T = 0x20
_K = 0x10
# PictureID octet: M=1 announces a 15-bit picture id (RFC 7741 §4.2).
_M = 0x80

# Length of the descriptor written by packetize(): required octet, X octet
# and a two-octet (15-bit) PictureID.
_PACKETIZER_DESCRIPTOR_SIZE = 4


@dataclass(slots=True)
class Vp8Descriptor:
    """Decoded VP8 payload descriptor (RFC 7741 §4.2)."""

    size: int
    """Length of the descriptor in octets; the VP8 payload starts there."""
    start: bool
    """S bit: the packet starts a VP8 partition."""
    partition: int
    """PID: partition index (0..7)."""
    non_reference: bool
    """N bit: the frame can be discarded without affecting other frames."""
    picture_id: int | None
    """PictureID (7 or 15 bits) or None when absent."""
    picture_id_bits: int
    """7, 15, or 0 when no PictureID is present."""
    tl0picidx: int | None
    """TL0PICIDX or None when absent (L=0)."""
    tid: int | None
    """Temporal layer index or None when absent (T=0)."""
    layer_sync: bool
    """Y bit; only meaningful when T=1."""
    keyidx: int | None
    """KEYIDX or None when absent (K=0)."""

    @property
    def frame_start(self) -> bool:
        """True for the first packet of a frame: S=1 and PID=0 (RFC 7741 §4.2)."""
        return self.start and self.partition == 0


def parse_descriptor(payload: bytes | bytearray | memoryview) -> Vp8Descriptor:
    """Parse the VP8 payload descriptor at the start of an RTP payload.

    Raises ValueError when the payload is shorter than the descriptor it
    announces (RFC 7741 §4.2).
    """
    n = len(payload)
    if n < 1:
        raise ValueError("VP8 payload descriptor: empty payload")
    b0 = payload[0]
    size = 1
    picture_id: int | None = None
    picture_id_bits = 0
    tl0picidx: int | None = None
    tid: int | None = None
    layer_sync = False
    keyidx: int | None = None
    if b0 & _X:
        if n < 2:
            raise ValueError("VP8 payload descriptor: truncated extension octet")
        ext = payload[1]
        size = 2
        if ext & _I:
            if n < size + 1:
                raise ValueError("VP8 payload descriptor: truncated PictureID")
            p0 = payload[size]
            if p0 & _M:
                if n < size + 2:
                    raise ValueError("VP8 payload descriptor: truncated 15-bit PictureID")
                picture_id = ((p0 & 0x7F) << 8) | payload[size + 1]
                picture_id_bits = 15
                size += 2
            else:
                picture_id = p0 & 0x7F
                picture_id_bits = 7
                size += 1
        if ext & _L:
            if n < size + 1:
                raise ValueError("VP8 payload descriptor: truncated TL0PICIDX")
            tl0picidx = payload[size]
            size += 1
        if ext & (_T | _K):
            # One octet carries TID/Y/KEYIDX when either T or K is set.
            if n < size + 1:
                raise ValueError("VP8 payload descriptor: truncated TID/KEYIDX")
            tk = payload[size]
            size += 1
            if ext & _T:
                tid = tk >> 6
                layer_sync = bool(tk & 0x20)
            if ext & _K:
                keyidx = tk & 0x1F
    # Positional, in field order: keyword arguments make the dataclass's
    # __init__ about three times slower, and this runs once per packet.
    return Vp8Descriptor(
        size,
        bool(b0 & _S),  # start
        b0 & _PID_MASK,  # partition
        bool(b0 & _N),  # non_reference
        picture_id,
        picture_id_bits,
        tl0picidx,
        tid,
        layer_sync,
        keyidx,
    )


def _descriptor_size(payload: bytes | bytearray | memoryview) -> int:
    """Length of the descriptor, or -1 when truncated. Allocation-free fast path."""
    n = len(payload)
    if n < 1:
        return -1
    if not payload[0] & _X:
        return 1
    if n < 2:
        return -1
    ext = payload[1]
    size = 2
    if ext & _I:
        if n < 3:
            return -1
        size += 2 if payload[2] & _M else 1
    if ext & _L:
        size += 1
    if ext & (_T | _K):
        size += 1
    return size if size <= n else -1


def is_keyframe(payload: bytes | bytearray | memoryview) -> bool:
    """True when the RTP payload is the first packet of a VP8 keyframe.

    Requires S=1 and PID=0 in the descriptor (RFC 7741 §4.2) and P=0 in the
    VP8 payload header that follows it (RFC 7741 §4.3). Never raises.
    """
    try:
        if len(payload) < 2 or (payload[0] & (_S | _PID_MASK)) != _S:
            return False
        size = _descriptor_size(payload)
        if size < 0 or size >= len(payload):
            return False
        return not payload[size] & 0x01
    except Exception:  # contract: never raise on garbage input
        return False


def packetize(frame: bytes, picture_id: int, max_payload: int = 1180) -> list[bytes]:
    """Split one encoded VP8 frame into RTP payloads (RFC 7741 §4.4).

    Every payload starts with a 4-octet descriptor: X=1, I=1 and a 15-bit
    PictureID (M=1, RFC 7741 §4.2). S=1 only on the first packet and PID is
    always 0 (the frame is not split along partition boundaries, which
    RFC 7741 §4.4 permits). ``max_payload`` bounds the size of each payload,
    descriptor included. The caller sets the RTP marker bit on the last
    payload (RFC 7741 §4.1).
    """
    if not frame:
        raise ValueError("cannot packetize an empty VP8 frame")
    chunk = max_payload - _PACKETIZER_DESCRIPTOR_SIZE
    if chunk < 1:
        raise ValueError(f"max_payload {max_payload} leaves no room for VP8 data")
    pid = picture_id & 0x7FFF
    tail = bytes((_I, _M | (pid >> 8), pid & 0xFF))
    first = bytes((_X | _S,)) + tail
    rest = bytes((_X,)) + tail
    view = memoryview(frame)
    out = [first + view[:chunk]]
    for offset in range(chunk, len(frame), chunk):
        out.append(rest + view[offset : offset + chunk])
    return out


# ---------------------------------------------------------------------------
# Frame reassembly
# ---------------------------------------------------------------------------


class AssembledFrame(NamedTuple):
    """One complete frame produced by a frame assembler."""

    data: bytes
    """The codec bitstream of the frame (payload format headers stripped)."""
    keyframe: bool
    """True when the frame is independently decodable."""
    timestamp: int
    """RTP timestamp shared by the frame's packets (RFC 3550 §5.1)."""
    first_seq: int
    last_seq: int
    continuous: bool
    """True when ``first_seq`` directly follows the previous emitted frame's
    ``last_seq``: no packet (hence no frame) was lost in between, so the
    decoder's reference chain is intact. Always False for the first frame."""


class _Pending:
    __slots__ = ("packets", "marker_seq", "start_seq", "data", "keyframe")

    def __init__(self) -> None:
        # seq -> (payload, per-packet info from _inspect)
        self.packets: dict[int, tuple[bytes, Any]] = {}
        self.marker_seq: int | None = None
        self.start_seq: int | None = None
        self.data: bytes | None = None  # set once complete
        self.keyframe = False


_HISTORY = 1024  # remembered (seq -> timestamp) pairs, power of two
# A packet whose timestamp is further behind the last finished frame than
# this (5 s of the 90 kHz video clock, RFC 7741 §4.1 / RFC 6184 §5.1) means
# the sender restarted its timestamps rather than a late packet.
_RESTART_TS = 5 * 90000


def _ts_diff(a: int, b: int) -> int:
    """Signed distance a - b between 32-bit RTP timestamps (RFC 3550 §5.1)."""
    d = (a - b) & 0xFFFFFFFF
    return d - 0x100000000 if d & 0x80000000 else d


class RtpFrameAssembler:
    """Codec-agnostic reassembly of video frames from RTP packets.

    A frame is the set of packets sharing one RTP timestamp; it is complete
    when every sequence number from its first packet to the packet with the
    marker bit set (the last packet of a frame, RFC 7741 §4.1 and
    RFC 6184 §5.1) is present. Sequence numbers are compared modulo 2^16
    and timestamps modulo 2^32 (RFC 3550 §5.1). Packets may arrive out of
    order; frames are released in timestamp order, so a complete frame waits
    behind an older incomplete one until that one completes or is evicted.

    At most ``max_pending`` frames (distinct timestamps) are kept; beyond
    that the oldest incomplete frame is discarded and counted in
    ``incomplete``. Frames that complete but cannot be depacketized
    (malformed payloads) are also counted in ``incomplete``. Packets that
    belong to a frame older than the last released or discarded one are
    ignored and counted in ``late``; undecodable packets in ``invalid``.

    Subclasses implement :meth:`_inspect`, :meth:`_is_start`,
    :meth:`_depacketize` and :meth:`_is_keyframe_frame`.
    """

    def __init__(self, max_pending: int = 4) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be >= 1")
        self.max_pending = max_pending
        self._pending: dict[int, _Pending] = {}
        self._anchor: int | None = None  # timestamp used to order frames
        self._last_done_ts: int | None = None
        self._last_emitted_seq: int | None = None
        self._hist_seq = [-1] * _HISTORY
        self._hist_ts = [0] * _HISTORY
        self.frames = 0
        self.incomplete = 0
        self.late = 0
        self.invalid = 0

    # -- hooks ---------------------------------------------------------------

    def _inspect(self, payload: bytes) -> Any:
        """Per-packet information kept with the payload; None drops the packet."""
        raise NotImplementedError

    def _is_start(self, payload: bytes, info: Any, prev_other_ts: bool) -> bool:
        """Whether the packet is the first of its frame.

        Only asked when the packet with the previous sequence number does not
        belong to the same frame: ``prev_other_ts`` is True when that packet
        has been seen (with another timestamp), False when it is unknown.
        """
        raise NotImplementedError

    def _depacketize(self, packets: list[tuple[bytes, Any]]) -> bytes | None:
        """Join the payloads of a frame (in seq order); None when malformed."""
        raise NotImplementedError

    def _is_keyframe_frame(self, data: bytes) -> bool:
        raise NotImplementedError

    # -- public --------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Number of frames currently held (incomplete or waiting to be released)."""
        return len(self._pending)

    def feed(self, seq: int, timestamp: int, marker: bool, payload: bytes) -> list[AssembledFrame]:
        """Add one RTP packet; return the frames that became releasable."""
        seq &= 0xFFFF
        timestamp &= 0xFFFFFFFF
        if self._last_done_ts is not None:
            behind = -_ts_diff(timestamp, self._last_done_ts)
            if behind >= 0:
                if behind <= _RESTART_TS:
                    self.late += 1
                    return []
                # Far behind: the sender restarted its timestamps.
                self.reset()
        payload = bytes(payload)
        info = self._inspect(payload)
        if info is None:
            self.invalid += 1
            return []
        if self._anchor is None:
            self._anchor = timestamp
        frame = self._pending.get(timestamp)
        if frame is None:
            frame = self._pending[timestamp] = _Pending()
        elif seq in frame.packets or frame.data is not None:
            return []  # duplicate
        frame.packets[seq] = (payload, info)
        if marker and frame.marker_seq is None:
            frame.marker_seq = seq
        slot = seq & (_HISTORY - 1)
        self._hist_seq[slot] = seq
        self._hist_ts[slot] = timestamp

        self._try_complete(timestamp, frame)
        # The packet may be the "previous packet" that confirms the start of
        # the next frame (codecs whose payload format lacks a start flag).
        nxt = (seq + 1) & 0xFFFF
        nslot = nxt & (_HISTORY - 1)
        if self._hist_seq[nslot] == nxt:
            nts = self._hist_ts[nslot]
            if nts != timestamp:
                nframe = self._pending.get(nts)
                if nframe is not None:
                    self._try_complete(nts, nframe)
        return self._release()

    def flush(self) -> list[AssembledFrame]:
        """End of stream: discard incomplete frames, release the complete ones."""
        return self._release(force=True)

    def reset(self) -> None:
        """Forget all state but the counters (pending frames count as incomplete)."""
        self.incomplete += len(self._pending)
        self._pending.clear()
        self._anchor = None
        self._last_done_ts = None
        self._last_emitted_seq = None
        self._hist_seq = [-1] * _HISTORY

    # -- internals -----------------------------------------------------------

    def _prev_ts(self, seq: int) -> int | None:
        prev = (seq - 1) & 0xFFFF
        slot = prev & (_HISTORY - 1)
        if self._hist_seq[slot] == prev:
            return self._hist_ts[slot]
        return None

    def _try_complete(self, timestamp: int, frame: _Pending) -> None:
        if frame.data is not None or frame.marker_seq is None:
            return
        packets = frame.packets
        s = frame.marker_seq
        for _ in range(len(packets)):
            entry = packets.get(s)
            if entry is None:
                return  # gap: wait for the missing packet
            prev_ts = self._prev_ts(s)
            # A predecessor with the same timestamp rules out a frame start.
            if prev_ts != timestamp and self._is_start(entry[0], entry[1], prev_ts is not None):
                break
            s = (s - 1) & 0xFFFF
        else:
            return
        start = s
        count = ((frame.marker_seq - start) & 0xFFFF) + 1
        ordered = [packets[(start + i) & 0xFFFF] for i in range(count)]
        data = self._depacketize(ordered)
        # An empty result marks a complete but malformed frame: it is dropped
        # (and counted) when its turn comes in _release().
        frame.start_seq = start
        frame.data = data or b""
        frame.keyframe = bool(data) and self._is_keyframe_frame(data)
        frame.packets = {}

    def _mark_done(self, timestamp: int) -> None:
        self._last_done_ts = timestamp
        self._anchor = timestamp

    def _oldest(self) -> int:
        anchor = self._anchor if self._anchor is not None else 0
        return min(self._pending, key=lambda t: _ts_diff(t, anchor))

    def _release(self, force: bool = False) -> list[AssembledFrame]:
        out: list[AssembledFrame] = []
        while self._pending:
            ts = self._oldest()
            frame = self._pending[ts]
            if frame.data is None:
                if not force and len(self._pending) <= self.max_pending:
                    break
                del self._pending[ts]
                self.incomplete += 1
                self._mark_done(ts)
                continue
            del self._pending[ts]
            self._mark_done(ts)
            if not frame.data:
                self.incomplete += 1
                continue
            assert frame.start_seq is not None and frame.marker_seq is not None
            continuous = (
                self._last_emitted_seq is not None
                and frame.start_seq == (self._last_emitted_seq + 1) & 0xFFFF
            )
            self._last_emitted_seq = frame.marker_seq
            self.frames += 1
            out.append(
                AssembledFrame(
                    data=frame.data,
                    keyframe=frame.keyframe,
                    timestamp=ts,
                    first_seq=frame.start_seq,
                    last_seq=frame.marker_seq,
                    continuous=continuous,
                )
            )
        return out


class Vp8FrameAssembler(RtpFrameAssembler):
    """Reassemble VP8 frames from RTP payloads (RFC 7741 §4.5.1).

    A frame starts at the packet with S=1 and PID=0 (RFC 7741 §4.2) and ends
    at the packet with the RTP marker bit (RFC 7741 §4.1). The emitted data
    is the VP8 bitstream with every payload descriptor stripped; ``keyframe``
    comes from the P bit of the frame tag (RFC 7741 §4.3).
    """

    def _inspect(self, payload: bytes) -> Any:
        size = _descriptor_size(payload)
        return None if size < 0 else size

    def _is_start(self, payload: bytes, info: Any, prev_other_ts: bool) -> bool:
        return (payload[0] & (_S | _PID_MASK)) == _S

    def _depacketize(self, packets: list[tuple[bytes, Any]]) -> bytes | None:
        return b"".join(memoryview(p)[size:] for p, size in packets) or None

    def _is_keyframe_frame(self, data: bytes) -> bool:
        return not data[0] & 0x01
