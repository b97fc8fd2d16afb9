"""Keyframe detection per codec and the supported-codec table."""

from __future__ import annotations

import dataclasses

import pytest

from sfu.core.codecs import (
    SUPPORTED,
    CodecSpec,
    av1_is_keyframe,
    find_spec,
    is_keyframe,
    vp9_is_keyframe,
)

# RFC 9628 §4.2 first octet: |I|P|L|F|B|E|V|Z|
VP9_CASES = {
    "b_only": (b"\x08\x00", True),
    "b_and_e_and_v": (b"\x0e\x00", True),
    "inter_predicted": (b"\x48\x00", False),
    "not_frame_start": (b"\x00\x00", False),
    "end_of_frame_only": (b"\x04\x00", False),
    "pid7": (b"\x88\x05\x00", True),
    "pid15": (b"\x88\x92\x34\x00", True),
    "pid15_truncated": (b"\x88\x92", False),
    "pid_missing": (b"\x88", False),
    "layers_sid0": (b"\xa8\x92\x34\x00\x00", True),
    "layers_sid0_tid2_d": (b"\xa8\x92\x34\x41\x00", True),
    "layers_sid1": (b"\xa8\x92\x34\x02\x00", False),
    "layers_sid2_with_d": (b"\xa8\x92\x34\x05\x00", False),
    "layers_without_pid_sid0": (b"\x28\x00\x00", True),
    "layers_without_pid_sid1": (b"\x28\x02\x00", False),
    "layers_truncated": (b"\xa8\x92\x34", False),
    "flexible_mode_sid0": (b"\xb8\x05\x00", True),
    "empty": (b"", False),
}


@pytest.mark.parametrize(("payload", "expected"), VP9_CASES.values(), ids=VP9_CASES.keys())
def test_vp9_is_keyframe(payload: bytes, expected: bool) -> None:
    assert vp9_is_keyframe(payload) is expected
    assert vp9_is_keyframe(memoryview(payload)) is expected
    assert is_keyframe("vp9", payload) is expected


# AV1 aggregation header: |Z|Y| W |N|-|-|-|
AV1_CASES = {
    "n_set": (b"\x08\x0a", True),
    "n_set_w1": (b"\x18\x0a\x00", True),
    "n_clear": (b"\x10\x0a", False),
    "continuation": (b"\x80\x00", False),
    "all_but_n": (b"\xf7", False),
    "empty": (b"", False),
}


@pytest.mark.parametrize(("payload", "expected"), AV1_CASES.values(), ids=AV1_CASES.keys())
def test_av1_is_keyframe(payload: bytes, expected: bool) -> None:
    assert av1_is_keyframe(payload) is expected
    assert av1_is_keyframe(memoryview(payload)) is expected
    assert is_keyframe("av1", payload) is expected


DISPATCH_CASES = {
    # VP8 (RFC 7741): descriptor S=1 PID=0, then payload header P=0 -> keyframe.
    "vp8_key": ("vp8", b"\x10\x00\x00\x00", True),
    "vp8_delta": ("vp8", b"\x10\x01\x00\x00", False),
    "vp8_upper": ("VP8", b"\x10\x00\x00\x00", True),
    "vp8_mime": ("video/VP8", b"\x10\x00\x00\x00", True),
    # H.264 (RFC 6184): NAL type 5 = IDR, 7 = SPS, 1 = non-IDR slice.
    "h264_idr": ("h264", b"\x65\x88", True),
    "h264_sps": ("h264", b"\x67\x42", True),
    "h264_non_idr": ("h264", b"\x41\x9a", False),
    "h264_upper": ("H264", b"\x65\x88", True),
    "vp9": ("vp9", b"\x08", True),
    "av1": ("av1", b"\x08", True),
    "opus_never": ("opus", b"\x08", False),
    "unknown_codec": ("h265", b"\x08", False),
    "empty_name": ("", b"\x08", False),
}


@pytest.mark.parametrize(
    ("codec", "payload", "expected"), DISPATCH_CASES.values(), ids=DISPATCH_CASES.keys()
)
def test_is_keyframe_dispatch(codec: str, payload: bytes, expected: bool) -> None:
    assert is_keyframe(codec, payload) is expected


GARBAGE = [b"", b"\x00", b"\xff", b"\xff" * 2, b"\xff" * 3, b"\x80", b"\x1c", b"\x7c", b"\x18"]


@pytest.mark.parametrize("codec", ["vp8", "vp9", "h264", "av1"])
@pytest.mark.parametrize("payload", GARBAGE, ids=lambda p: p.hex() or "empty")
def test_garbage_never_raises(codec: str, payload: bytes) -> None:
    result = is_keyframe(codec, payload)
    assert isinstance(result, bool)
    if not payload:
        assert result is False


def test_short_payloads_all_prefixes() -> None:
    # Every prefix of a valid layered VP9 keyframe descriptor must be handled.
    full = b"\xa8\x92\x34\x00\x00"
    results = [vp9_is_keyframe(full[:n]) for n in range(len(full) + 1)]
    assert results == [False, False, False, False, True, True]


SPEC_CASES = {
    "opus": ("opus", ("opus", "audio", 48000, 2, 111, None, "minptime=10;useinbandfec=1", ())),
    "vp8": (
        "VP8",
        ("VP8", "video", 90000, None, 96, 97, "", ("nack", "nack pli", "ccm fir", "goog-remb")),
    ),
    "h264": (
        "h264",
        (
            "H264",
            "video",
            90000,
            None,
            102,
            103,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            ("nack", "nack pli", "ccm fir", "goog-remb"),
        ),
    ),
    "vp9": (
        "video/vp9",
        (
            "VP9",
            "video",
            90000,
            None,
            98,
            99,
            "profile-id=0",
            ("nack", "nack pli", "ccm fir", "goog-remb"),
        ),
    ),
    "av1": (
        "Av1",
        ("AV1", "video", 90000, None, 45, 46, "", ("nack", "nack pli", "ccm fir", "goog-remb")),
    ),
}


@pytest.mark.parametrize(("query", "fields"), SPEC_CASES.values(), ids=SPEC_CASES.keys())
def test_find_spec(query: str, fields: tuple[object, ...]) -> None:
    spec = find_spec(query)
    assert spec is not None
    assert dataclasses.astuple(spec) == fields
    assert spec in SUPPORTED


@pytest.mark.parametrize(
    "name", ["h265", "", "pcmu", "video/"], ids=["h265", "empty", "pcmu", "slash"]
)
def test_find_spec_unknown(name: str) -> None:
    assert find_spec(name) is None


def test_table_is_consistent() -> None:
    assert [s.name for s in SUPPORTED] == ["opus", "VP8", "H264", "VP9", "AV1"]
    pts = [s.default_pt for s in SUPPORTED] + [s.rtx_pt for s in SUPPORTED if s.rtx_pt]
    assert len(pts) == len(set(pts))
    assert all(96 <= pt <= 127 or pt == 45 or pt == 46 for pt in pts)
    assert find_spec("vp8").mime_type == "video/VP8"  # type: ignore[union-attr]
    spec = SUPPORTED[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.clock_rate = 8000  # type: ignore[misc]
    assert isinstance(spec, CodecSpec)
