"""H.264 RTP payload handling (RFC 6184), packetization-mode=1.

Pure Python, no I/O: keyframe detection for the SFU, and packetization /
reassembly of Annex-B access units for the bot.

Payload structures handled (RFC 6184 §5.2, Table 1; NAL unit header in
RFC 6184 §1.3 / §5.3: ``|F|NRI|Type|``):

* single NAL unit packet, types 1-23 (RFC 6184 §5.6);
* STAP-A, type 24: 1-octet header then ``(16-bit size, NAL unit)*``
  (RFC 6184 §5.7.1);
* FU-A, type 28: FU indicator (F, NRI, 28), FU header ``|S|E|R|Type|``, then
  a fragment of the NAL unit without its header octet (RFC 6184 §5.8).

STAP-B, MTAP16/24 and FU-B belong to the interleaved mode
(RFC 6184 §6.4) and are not supported.
"""

from __future__ import annotations

from typing import Any

from sfu.core.vp8 import AssembledFrame, RtpFrameAssembler

__all__ = [
    "AssembledFrame",
    "H264FrameAssembler",
    "is_keyframe",
    "packetize",
    "split_nal_units",
]

# NAL unit types (ITU-T H.264 Table 7-1) and RTP packet types (RFC 6184 §5.2).
NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9
STAP_A = 24
FU_A = 28

_TYPE_MASK = 0x1F
_NRI_MASK = 0x60
_F_BIT = 0x80
_FU_S = 0x80
_FU_E = 0x40

_KEY_TYPES = (NAL_IDR, NAL_SPS)
# Small non-VCL NAL units that packetize() groups into a STAP-A with the
# NAL unit(s) that follow them (RFC 6184 §5.7.1).
_AGGREGATABLE = (NAL_SEI, NAL_SPS, NAL_PPS, NAL_AUD)
# NAL units taken to begin an access unit when the previous packet is
# unknown: an AUD is the first NAL unit when present (ITU-T H.264
# §7.4.1.2.3), and encoders emit the SPS first in IDR access units.
_AU_FIRST_TYPES = (NAL_AUD, NAL_SPS)

_START_CODE = b"\x00\x00\x00\x01"


def split_nal_units(data: bytes | bytearray | memoryview) -> list[bytes]:
    """Split an Annex-B byte stream (ITU-T H.264 Annex B) into NAL units.

    Accepts 3- and 4-octet start codes; trailing zero octets are removed
    from each NAL unit (a NAL unit never ends with 0x00, ITU-T H.264
    §7.4.1), which also drops the leading zero of a 4-octet start code.
    Returns an empty list when there is no start code.
    """
    buf = bytes(data)
    out: list[bytes] = []
    i = buf.find(b"\x00\x00\x01")
    if i < 0:
        return out
    start = i + 3
    while True:
        j = buf.find(b"\x00\x00\x01", start)
        nal = (buf[start:] if j < 0 else buf[start:j]).rstrip(b"\x00")
        if nal:
            out.append(nal)
        if j < 0:
            return out
        start = j + 3


def is_keyframe(payload: bytes | bytearray | memoryview) -> bool:
    """True when the RTP payload carries an IDR slice (5) or an SPS (7).

    Looks at a single NAL unit packet (RFC 6184 §5.6), every NAL unit of a
    STAP-A (RFC 6184 §5.7.1), or the first fragment (S=1) of an FU-A
    (RFC 6184 §5.8). Never raises.
    """
    try:
        n = len(payload)
        if n < 1:
            return False
        kind = payload[0] & _TYPE_MASK
        if kind == STAP_A:
            off = 1
            while off + 2 < n:
                size = (payload[off] << 8) | payload[off + 1]
                off += 2
                if size == 0 or off + size > n:
                    return False
                if payload[off] & _TYPE_MASK in _KEY_TYPES:
                    return True
                off += size
            return False
        if kind == FU_A:
            if n < 2:
                return False
            fu = payload[1]
            return bool(fu & _FU_S) and (fu & _TYPE_MASK) in _KEY_TYPES
        return kind in _KEY_TYPES
    except Exception:  # contract: never raise on garbage input
        return False


def _fragment(nal: bytes, max_payload: int) -> list[bytes]:
    """FU-A fragments of one NAL unit (RFC 6184 §5.8)."""
    indicator = (nal[0] & (_F_BIT | _NRI_MASK)) | FU_A
    kind = nal[0] & _TYPE_MASK
    body = memoryview(nal)[1:]
    chunk = max_payload - 2
    out: list[bytes] = []
    last = len(body) - chunk
    for off in range(0, len(body), chunk):
        header = kind
        if off == 0:
            header |= _FU_S
        if off >= last:
            header |= _FU_E
        out.append(bytes((indicator, header)) + body[off : off + chunk])
    return out


def _stap_a(nals: list[bytes]) -> bytes:
    """Build a STAP-A (RFC 6184 §5.7.1).

    F is set when any aggregated F bit is set and NRI is the maximum of the
    aggregated NRI values (RFC 6184 §5.3).
    """
    f = 0
    nri = 0
    parts = [b""]
    for nal in nals:
        f |= nal[0] & _F_BIT
        nri = max(nri, nal[0] & _NRI_MASK)
        parts.append(len(nal).to_bytes(2, "big"))
        parts.append(nal)
    parts[0] = bytes((f | nri | STAP_A,))
    return b"".join(parts)


def packetize(access_unit: bytes, max_payload: int = 1180) -> list[bytes]:
    """Packetize one Annex-B access unit (RFC 6184 §6.3, non-interleaved mode).

    SEI/SPS/PPS/AUD NAL units are aggregated into a STAP-A together with
    the NAL unit that follows them when everything fits in ``max_payload``
    (RFC 6184 §5.7.1); other NAL units go as single NAL unit packets
    (RFC 6184 §5.6), or as FU-A fragments when larger than ``max_payload``
    (RFC 6184 §5.8). The caller sets the RTP marker bit on the last payload
    (RFC 6184 §5.1). Raises ValueError when there is no NAL unit.
    """
    if max_payload < 3:
        raise ValueError(f"max_payload {max_payload} too small for FU-A")
    nals = split_nal_units(access_unit)
    if not nals:
        raise ValueError("access unit contains no Annex-B NAL unit")
    out: list[bytes] = []
    group: list[bytes] = []
    group_size = 1  # STAP-A header octet

    def flush() -> None:
        if len(group) == 1:
            out.append(group[0])
        elif group:
            out.append(_stap_a(group))
        group.clear()

    for nal in nals:
        kind = nal[0] & _TYPE_MASK
        if group:
            if group_size + 2 + len(nal) <= max_payload:
                group.append(nal)
                group_size += 2 + len(nal)
                if kind not in _AGGREGATABLE:
                    flush()
                continue
            flush()
        if kind in _AGGREGATABLE and 3 + len(nal) <= max_payload:
            group.append(nal)
            group_size = 3 + len(nal)
        elif len(nal) <= max_payload:
            out.append(nal)
        else:
            out.extend(_fragment(nal, max_payload))
    flush()
    return out


class H264FrameAssembler(RtpFrameAssembler):
    """Reassemble Annex-B access units from RTP payloads (RFC 6184 §7.1).

    An access unit is the set of packets with one RTP timestamp, ending at
    the packet with the marker bit (RFC 6184 §5.1). RFC 6184 has no
    start-of-access-unit flag, so the first packet is identified as the one
    whose predecessor in sequence number was seen with another timestamp,
    or, when that predecessor is unknown (lost, or before the stream's
    first packet), one whose first NAL unit is an AUD or an SPS, which
    encoders put at the front of an access unit. Consequently, a non-IDR access unit whose
    preceding packet was lost is never completed (it is evicted and counted
    in ``incomplete``); it would not be decodable anyway.

    Emitted data uses 4-octet start codes; ``keyframe`` is True when the
    access unit contains an IDR slice.
    """

    def _inspect(self, payload: bytes) -> Any:
        if not payload:
            return None
        kind = payload[0] & _TYPE_MASK
        if 1 <= kind <= 23:
            return kind
        if kind == STAP_A:
            return kind if len(payload) >= 4 else None
        if kind == FU_A:
            return kind if len(payload) >= 2 else None
        return None  # 0, STAP-B, MTAP, FU-B, reserved

    def _is_start(self, payload: bytes, info: Any, prev_other_ts: bool) -> bool:
        if prev_other_ts:
            return True
        if info == STAP_A:
            first = payload[3] & _TYPE_MASK
        elif info == FU_A:
            if not payload[1] & _FU_S:
                return False
            first = payload[1] & _TYPE_MASK
        else:
            first = info
        return first in _AU_FIRST_TYPES

    def _depacketize(self, packets: list[tuple[bytes, Any]]) -> bytes | None:
        out = bytearray()
        in_fu = False
        for payload, kind in packets:
            if kind == FU_A:
                fu = payload[1]
                if fu & _FU_S:
                    if in_fu:
                        return None
                    out += _START_CODE
                    # Rebuild the NAL header from the FU indicator's F/NRI
                    # and the FU header's type (RFC 6184 §5.8).
                    out.append((payload[0] & (_F_BIT | _NRI_MASK)) | (fu & _TYPE_MASK))
                    in_fu = True
                elif not in_fu:
                    return None  # continuation without its start fragment
                out += memoryview(payload)[2:]
                if fu & _FU_E:
                    in_fu = False
                continue
            if in_fu:
                return None  # FU-A interrupted before its end fragment
            if kind == STAP_A:
                n = len(payload)
                off = 1
                while off < n:
                    if off + 2 > n:
                        return None
                    size = (payload[off] << 8) | payload[off + 1]
                    off += 2
                    if size == 0 or off + size > n:
                        return None
                    out += _START_CODE
                    out += memoryview(payload)[off : off + size]
                    off += size
            else:
                out += _START_CODE
                out += payload
        if in_fu:
            return None
        return bytes(out)

    def _is_keyframe_frame(self, data: bytes) -> bool:
        return any(nal[0] & _TYPE_MASK == NAL_IDR for nal in split_nal_units(data))
