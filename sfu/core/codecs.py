"""Keyframe detection per codec and the table of codecs the SFU negotiates.

Keyframe detection runs on every forwarded video packet (the SFU must know
where a subscriber may start decoding or switch layers), so the detectors only
look at the first bytes of the RTP payload and never raise: a short or
garbage payload is simply "not a keyframe".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sfu.core.h264 import is_keyframe as h264_is_keyframe
from sfu.core.vp8 import is_keyframe as vp8_is_keyframe

__all__ = [
    "SUPPORTED",
    "CodecSpec",
    "av1_is_keyframe",
    "find_spec",
    "h264_is_keyframe",
    "is_keyframe",
    "vp8_is_keyframe",
    "vp9_is_keyframe",
]

Payload = bytes | bytearray | memoryview

# RFC 9628 §4.2 VP9 payload descriptor, first octet: |I|P|L|F|B|E|V|Z|
_VP9_I = 0x80  # picture ID present
_VP9_P = 0x40  # inter-picture predicted
_VP9_L = 0x20  # layer indices present
_VP9_B = 0x08  # start of a frame
# Picture ID octet: |M| PICTURE ID | ; M=1 means a 15-bit picture ID (2 octets).
_VP9_M = 0x80

# AV1 RTP payload format §4.4 aggregation header: |Z|Y| W |N|-|-|-|
# N=1: the packet is the first packet of a coded video sequence.
_AV1_N = 0x08


def vp9_is_keyframe(payload: Payload) -> bool:
    """True for the first packet of a VP9 keyframe (RFC 9628 §4.2).

    Keyframe start = P=0 (no inter-picture prediction) and B=1 (start of a
    frame); when layer indices are present the spatial layer must be 0, since
    higher spatial layers of a keyframe still predict from the layer below.
    """
    n = len(payload)
    if n < 1:
        return False
    b0 = payload[0]
    if b0 & _VP9_P or not b0 & _VP9_B:
        return False
    off = 1
    if b0 & _VP9_I:
        if n < 2:
            return False
        off = 3 if payload[1] & _VP9_M else 2
        if n < off:
            return False  # truncated picture ID
    if not b0 & _VP9_L:
        return True
    if n <= off:
        return False
    # Layer indices octet: |TID(3)|U|SID(3)|D|
    return (payload[off] >> 1) & 0x07 == 0


def av1_is_keyframe(payload: Payload) -> bool:
    """True when the AV1 aggregation header's N bit is set (new coded video sequence)."""
    return len(payload) >= 1 and bool(payload[0] & _AV1_N)


_DETECTORS: dict[str, Callable[[Payload], bool]] = {
    "vp8": vp8_is_keyframe,
    "vp9": vp9_is_keyframe,
    "h264": h264_is_keyframe,
    "av1": av1_is_keyframe,
}


def is_keyframe(codec: str, payload: Payload) -> bool:
    """Dispatch on the codec name ("vp8", "vp9", "h264", "av1"); others -> False.

    Pass the name in lower case: that is the allocation-free path. Other
    spellings ("VP8", "video/VP8") are accepted at the cost of a lookup.
    """
    detector = _DETECTORS.get(codec)
    if detector is None:
        detector = _DETECTORS.get(codec.rpartition("/")[2].lower())
        if detector is None:
            return False
    return detector(payload)


@dataclass(frozen=True, slots=True)
class CodecSpec:
    """One codec the SFU offers (RFC 8866 §6.6 rtpmap / §6.15 fmtp, RFC 4585 §4.2).

    ``name`` is the SDP encoding name, ``channels`` is None for video (SDP
    carries no encoding parameters there), ``rtx_pt`` is the RFC 4588 RTX
    payload type or None.
    """

    name: str
    kind: str
    clock_rate: int
    channels: int | None
    default_pt: int
    rtx_pt: int | None
    fmtp: str
    rtcp_fb: tuple[str, ...]

    @property
    def mime_type(self) -> str:
        """``kind/name``, e.g. "video/VP8"."""
        return f"{self.kind}/{self.name}"


# The SFU does receiver-side congestion control with REMB (goog-remb), not
# transport-cc, so transport-cc is not offered.
_VIDEO_FB = ("nack", "nack pli", "ccm fir", "goog-remb")

SUPPORTED: tuple[CodecSpec, ...] = (
    CodecSpec("opus", "audio", 48000, 2, 111, None, "minptime=10;useinbandfec=1", ()),
    CodecSpec("VP8", "video", 90000, None, 96, 97, "", _VIDEO_FB),
    CodecSpec(
        "H264",
        "video",
        90000,
        None,
        102,
        103,
        "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        _VIDEO_FB,
    ),
    CodecSpec("VP9", "video", 90000, None, 98, 99, "profile-id=0", _VIDEO_FB),
    CodecSpec("AV1", "video", 90000, None, 45, 46, "", _VIDEO_FB),
)

_BY_NAME: dict[str, CodecSpec] = {spec.name.lower(): spec for spec in SUPPORTED}


def find_spec(name: str) -> CodecSpec | None:
    """Return the spec for an encoding name or MIME type, case-insensitively."""
    return _BY_NAME.get(name.rpartition("/")[2].lower())
