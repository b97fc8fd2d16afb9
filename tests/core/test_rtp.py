"""Tests for sfu.core.rtp (RFC 3550 §5.1, RFC 5761 §4, RFC 8285)."""

from __future__ import annotations

import random

import pytest

from sfu.core.rtp import (
    RtpError,
    RtpHeader,
    abs_send_time,
    build_extension_block,
    build_packet,
    find_extension,
    is_rtcp,
    iter_extensions,
    parse_abs_send_time,
    parse_header,
)

# --------------------------------------------------------------------------- vectors

# V=2, P=0, X=0, CC=0 | M=0, PT=96 | seq 1 | ts 2 | SSRC 0x12345678 | "abc"
MINIMAL = bytes.fromhex("806000010000000212345678") + b"abc"

# V=2, P=1, X=1, CC=2 | M=1, PT=111 | seq 65535 | ts 0xDEADBEEF | SSRC 0x01020304
# CSRCs 0x0A0B0C0D, 0x11121314
# one-byte extension block (0xBEDE, 2 words):
#   id 1 L=0 "x" | id 3 L=2 01 02 03 | two padding bytes
# payload AA BB, then 3 padding octets (00 00 03)
FULL = bytes.fromhex("B2EFFFFFDEADBEEF010203040A0B0C0D11121314BEDE00021078320102030000AABB000003")

# RFC 8285 §4.3 two-byte form, appbits 0:
#   id 20 len 5 "hello" | id 2 len 0 | 3 padding bytes  (12 bytes = 3 words)
TWO_BYTE_BLOCK = bytes.fromhex("100000031405") + b"hello" + bytes.fromhex("0200000000")


def _packet_with_ext(block: bytes, payload: bytes = b"\x01") -> bytes:
    """Fixed header with X set, followed by a raw extension block."""
    return bytes.fromhex("906000010000000200000003") + block + payload


# --------------------------------------------------------------------------- parse_header


def test_parse_minimal_vector() -> None:
    h = parse_header(MINIMAL)
    assert h == RtpHeader(
        marker=False,
        payload_type=96,
        seq=1,
        timestamp=2,
        ssrc=0x12345678,
        csrc_count=0,
        ext_profile=0,
        ext_start=0,
        ext_end=0,
        payload_start=12,
        payload_end=15,
        padding=0,
    )
    assert MINIMAL[h.payload_start : h.payload_end] == b"abc"


def test_parse_full_vector() -> None:
    h = parse_header(FULL)
    assert h.marker is True
    assert h.payload_type == 111
    assert h.seq == 65535
    assert h.timestamp == 0xDEADBEEF
    assert h.ssrc == 0x01020304
    assert h.csrc_count == 2
    assert h.ext_profile == 0xBEDE
    assert (h.ext_start, h.ext_end) == (24, 32)
    assert (h.payload_start, h.payload_end) == (32, 34)
    assert h.padding == 3
    assert FULL[h.payload_start : h.payload_end] == b"\xaa\xbb"
    assert iter_extensions(FULL, h) == [(1, b"x"), (3, b"\x01\x02\x03")]


def test_parse_padding_may_fill_everything_after_header() -> None:
    # RFC 3550 §5.1: padding count may cover all bytes after the header.
    data = bytes.fromhex("A0600001000000020000000300000004")
    h = parse_header(data)
    assert (h.payload_start, h.payload_end, h.padding) == (12, 12, 4)


def test_parse_accepts_memoryview_and_bytearray() -> None:
    for buf in (memoryview(FULL), bytearray(FULL)):
        assert parse_header(buf) == parse_header(FULL)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"", "too short", id="empty"),
        pytest.param(MINIMAL[:11], "too short", id="truncated-11-bytes"),
        pytest.param(b"\x40" + MINIMAL[1:], "version is 1", id="version-1"),
        pytest.param(b"\x00" + MINIMAL[1:], "version is 0", id="version-0"),
        pytest.param(b"\xc0" + MINIMAL[1:], "version is 3", id="version-3"),
        pytest.param(
            bytes.fromhex("836000010000000200000003AAAAAAAABBBBBBBB"),
            "CSRC list overruns",
            id="csrc-overrun",
        ),
        pytest.param(
            bytes.fromhex("906000010000000200000003"),
            "extension header overruns",
            id="ext-header-missing",
        ),
        pytest.param(
            bytes.fromhex("906000010000000200000003BEDE"),
            "extension header overruns",
            id="ext-header-truncated",
        ),
        pytest.param(
            bytes.fromhex("916000010000000200000003AAAAAAAABEDE"),
            "extension header overruns",
            id="ext-header-after-csrc-truncated",
        ),
        pytest.param(
            _packet_with_ext(bytes.fromhex("BEDE000210AA0000"), b""),
            "extension length overruns",
            id="ext-length-overrun",
        ),
        pytest.param(
            bytes.fromhex("A06000010000000200000003AABB0000"),
            "padding count is 0",
            id="padding-zero",
        ),
        pytest.param(
            bytes.fromhex("A06000010000000200000003AABB0005"),
            "exceeds",
            id="padding-too-large",
        ),
        pytest.param(
            bytes.fromhex("A060000100000002000000FF"),
            "exceeds",
            id="padding-in-header",
        ),
        pytest.param(
            bytes.fromhex("B06000010000000200000003BEDE000110AA000002"),
            "exceeds",
            id="padding-into-extension",
        ),
    ],
)
def test_parse_header_rejects(data: bytes, message: str) -> None:
    with pytest.raises(RtpError, match=message):
        parse_header(data)


def test_rtp_error_is_value_error() -> None:
    assert issubclass(RtpError, ValueError)


# --------------------------------------------------------------------------- is_rtcp


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(b"\x80\xc8\x00\x06", True, id="sr-200"),
        pytest.param(b"\x81\xc9\x00\x07", True, id="rr-201"),
        pytest.param(b"\x81\xcd\x00\x03", True, id="rtpfb-205"),
        pytest.param(b"\x81\xce\x00\x02", True, id="psfb-206"),
        pytest.param(b"\x80\xc0", True, id="lower-bound-192"),
        pytest.param(b"\x80\xdf", True, id="upper-bound-223"),
        pytest.param(b"\x80\xbf", False, id="marker-pt63-191"),
        pytest.param(b"\x80\xe0", False, id="marker-pt96-224"),
        pytest.param(b"\x80\x60", False, id="pt96-no-marker"),
        pytest.param(b"\x80\x48", False, id="pt72-no-marker"),
        pytest.param(MINIMAL, False, id="rtp-packet"),
        pytest.param(b"\x80", False, id="one-byte"),
        pytest.param(b"", False, id="empty"),
    ],
)
def test_is_rtcp(data: bytes, expected: bool) -> None:
    assert is_rtcp(data) is expected


# --------------------------------------------------------------------------- extensions


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        pytest.param(
            bytes.fromhex("BEDE000210AA21BBCC000000"),
            [(1, b"\xaa"), (2, b"\xbb\xcc")],
            id="one-byte-two-elements",
        ),
        pytest.param(
            bytes.fromhex("BEDE000310AA0000000021BBCC000000"),
            [(1, b"\xaa"), (2, b"\xbb\xcc")],
            id="one-byte-padding-between",
        ),
        pytest.param(
            bytes.fromhex("BEDE0005") + b"\xef" + bytes(range(16)) + b"\x00\x00\x00",
            [(14, bytes(range(16)))],
            id="one-byte-max-16-bytes",
        ),
        pytest.param(
            bytes.fromhex("BEDE000210AAF300000020BB"),
            [(1, b"\xaa")],
            id="one-byte-id15-stops",
        ),
        pytest.param(
            bytes.fromhex("BEDE0001F0FFFFFF"),
            [],
            id="one-byte-id15-first",
        ),
        pytest.param(TWO_BYTE_BLOCK, [(20, b"hello"), (2, b"")], id="two-byte-vector"),
        pytest.param(
            bytes.fromhex("100F00020F01AA00FF02BBCC"),
            [(15, b"\xaa"), (255, b"\xbb\xcc")],
            id="two-byte-appbits-f",
        ),
        pytest.param(bytes.fromhex("BEDE0000"), [], id="one-byte-empty-block"),
        pytest.param(bytes.fromhex("1234000110AA0000"), [], id="unknown-profile"),
        pytest.param(bytes.fromhex("1010000110AA0000"), [], id="not-two-byte-0x1010"),
    ],
)
def test_iter_and_find_extensions(block: bytes, expected: list[tuple[int, bytes]]) -> None:
    data = _packet_with_ext(block)
    h = parse_header(data)
    assert iter_extensions(data, h) == expected
    for ext_id, value in expected:
        assert find_extension(data, h, ext_id) == value
    seen = {ext_id for ext_id, _ in expected}
    for absent in (3, 7, 13):
        if absent not in seen:
            assert find_extension(data, h, absent) is None


def test_find_extension_returns_first_match() -> None:
    data = _packet_with_ext(bytes.fromhex("BEDE000110AA10BB"))
    h = parse_header(data)
    assert find_extension(data, h, 1) == b"\xaa"


def test_extensions_absent() -> None:
    h = parse_header(MINIMAL)
    assert iter_extensions(MINIMAL, h) == []
    assert find_extension(MINIMAL, h, 1) is None


def test_find_extension_id15_stops() -> None:
    data = _packet_with_ext(bytes.fromhex("BEDE000210AAF300000020BB"))
    h = parse_header(data)
    assert find_extension(data, h, 2) is None


@pytest.mark.parametrize(
    ("block", "message"),
    [
        pytest.param(bytes.fromhex("BEDE000113AABBCC"), "overruns", id="one-byte-overrun"),
        pytest.param(bytes.fromhex("BEDE000110AA21BB"), "overruns", id="one-byte-second-overrun"),
        pytest.param(bytes.fromhex("1000000100000005"), "no length byte", id="two-byte-no-length"),
        pytest.param(bytes.fromhex("100000010509AABB"), "overruns", id="two-byte-overrun"),
    ],
)
def test_extension_overrun(block: bytes, message: str) -> None:
    data = _packet_with_ext(block)
    h = parse_header(data)
    with pytest.raises(RtpError, match=message):
        iter_extensions(data, h)
    with pytest.raises(RtpError, match=message):
        find_extension(data, h, 99)


# --------------------------------------------------------------------------- build_extension_block


@pytest.mark.parametrize(
    ("elements", "expected"),
    [
        pytest.param([], b"", id="empty"),
        pytest.param([(1, b"\x01")], bytes.fromhex("BEDE000110010000"), id="one-byte"),
        pytest.param(
            [(1, b"ab"), (2, b"\x01\x02\x03")],
            bytes.fromhex("BEDE000211") + b"ab" + bytes.fromhex("2201020300"),
            id="one-byte-two-elements",
        ),
        pytest.param(
            [(3, b"wxyz"), (4, b"\x00\x00\x01")],
            bytes.fromhex("BEDE000333") + b"wxyz" + bytes.fromhex("42000001000000"),
            id="one-byte-three-words",
        ),
        pytest.param(
            [(14, bytes(16))],
            bytes.fromhex("BEDE0005EF") + bytes(16) + b"\x00\x00\x00",
            id="one-byte-limits",
        ),
        pytest.param([(20, b"hello"), (2, b"")], TWO_BYTE_BLOCK, id="two-byte-vector"),
        pytest.param(
            [(15, b"x")], bytes.fromhex("100000010F01") + b"x" + b"\x00", id="two-byte-id15"
        ),
        pytest.param([(1, b"")], bytes.fromhex("1000000101000000"), id="two-byte-empty-value"),
        pytest.param(
            [(1, bytes(17))],
            bytes.fromhex("100000050111") + bytes(17) + b"\x00",
            id="two-byte-17-bytes",
        ),
        pytest.param(
            [(255, bytes(255))],
            bytes.fromhex("10000041FFFF") + bytes(255) + b"\x00\x00\x00",
            id="two-byte-limits",
        ),
    ],
)
def test_build_extension_block(elements: list[tuple[int, bytes]], expected: bytes) -> None:
    block = build_extension_block(elements)
    assert block == expected
    assert len(block) % 4 == 0
    if elements:
        data = _packet_with_ext(block)
        assert iter_extensions(data, parse_header(data)) == elements


@pytest.mark.parametrize(
    "elements",
    [
        pytest.param([(0, b"x")], id="id-0"),
        pytest.param([(256, b"x")], id="id-256"),
        pytest.param([(-1, b"x")], id="id-negative"),
        pytest.param([(1, bytes(256))], id="value-256-bytes"),
        pytest.param([(0, b"")], id="id-0-empty"),
        pytest.param([(1, b"ok"), (300, b"")], id="second-element-bad"),
    ],
)
def test_build_extension_block_rejects(elements: list[tuple[int, bytes]]) -> None:
    with pytest.raises(RtpError, match="extension id"):
        build_extension_block(elements)


# --------------------------------------------------------------------------- build_packet


def test_build_packet_matches_full_vector_layout() -> None:
    # Same header fields as a CSRC-free FULL: check the byte layout exactly.
    block = build_extension_block([(1, b"x"), (3, b"\x01\x02\x03")])
    data = build_packet(True, 111, 65535, 0xDEADBEEF, 0x01020304, block, b"\xaa\xbb", 3)
    assert data == bytes.fromhex("B0EFFFFFDEADBEEF01020304BEDE00021078320102030000AABB000003")
    assert build_packet(False, 96, 1, 2, 0x12345678, b"", b"abc") == MINIMAL


@pytest.mark.parametrize(
    ("marker", "pt", "seq", "ts", "ssrc", "elements", "payload", "padding"),
    [
        pytest.param(False, 0, 0, 0, 0, [], b"", 0, id="all-zero"),
        pytest.param(True, 127, 65535, 2**32 - 1, 2**32 - 1, [], b"p", 0, id="all-max"),
        pytest.param(False, 96, 1234, 5678, 42, [(1, b"mid")], b"payload", 0, id="one-byte-ext"),
        pytest.param(
            True, 100, 7, 90000, 9, [(1, b"0"), (10, b"\x80\x00\x01")], b"x" * 1200, 0, id="two-ext"
        ),
        pytest.param(False, 111, 9, 9, 9, [(40, b"")], b"opus", 0, id="two-byte-ext"),
        pytest.param(False, 96, 2, 3, 4, [], b"abc", 1, id="padding-1"),
        pytest.param(True, 96, 2, 3, 4, [(5, b"ab")], b"", 255, id="padding-255-empty-payload"),
        pytest.param(
            False, 96, 2, 3, 4, [(5, b"ab")], memoryview(b"view"), 4, id="memoryview-payload"
        ),
    ],
)
def test_build_packet_round_trip(
    marker: bool,
    pt: int,
    seq: int,
    ts: int,
    ssrc: int,
    elements: list[tuple[int, bytes]],
    payload: bytes | memoryview,
    padding: int,
) -> None:
    block = build_extension_block(elements)
    data = build_packet(marker, pt, seq, ts, ssrc, block, payload, padding)
    assert isinstance(data, bytes)
    h = parse_header(data)
    assert (h.marker, h.payload_type, h.seq, h.timestamp, h.ssrc) == (marker, pt, seq, ts, ssrc)
    assert h.csrc_count == 0
    assert h.padding == padding
    assert data[h.payload_start : h.payload_end] == bytes(payload)
    assert iter_extensions(data, h) == elements
    assert bool(data[0] & 0x10) == bool(elements)
    assert bool(data[0] & 0x20) == bool(padding)
    if padding:
        assert data[-1] == padding
        assert len(data) == h.payload_end + padding
    if elements:
        assert h.ext_profile in (0xBEDE, 0x1000)
        assert data[h.ext_start - 4 : h.ext_end] == block
    else:
        assert (h.ext_profile, h.ext_start, h.ext_end) == (0, 0, 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"payload_type": 128}, "payload type", id="pt-128"),
        pytest.param({"payload_type": -1}, "payload type", id="pt-negative"),
        pytest.param({"seq": 65536}, "out of range", id="seq-65536"),
        pytest.param({"timestamp": 2**32}, "out of range", id="ts-overflow"),
        pytest.param({"ssrc": -1}, "out of range", id="ssrc-negative"),
        pytest.param({"padding": 256}, "padding", id="padding-256"),
        pytest.param({"padding": -1}, "padding", id="padding-negative"),
        pytest.param({"ext_block": b"\xbe\xde\x00"}, "multiple of 4", id="ext-block-unaligned"),
    ],
)
def test_build_packet_rejects(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "marker": False,
        "payload_type": 96,
        "seq": 1,
        "timestamp": 2,
        "ssrc": 3,
        "ext_block": b"",
        "payload": b"x",
        "padding": 0,
    }
    args.update(kwargs)
    with pytest.raises(RtpError, match=message):
        build_packet(**args)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- abs-send-time


@pytest.mark.parametrize(
    ("now_s", "encoded", "decoded"),
    [
        pytest.param(0.0, b"\x00\x00\x00", 0.0, id="zero"),
        pytest.param(1.0, b"\x04\x00\x00", 1.0, id="one-second"),
        pytest.param(1.5, b"\x06\x00\x00", 1.5, id="one-and-half"),
        pytest.param(2**-18, b"\x00\x00\x01", 2**-18, id="one-tick"),
        pytest.param(63.0, b"\xfc\x00\x00", 63.0, id="sixty-three"),
        pytest.param(64 - 2**-18, b"\xff\xff\xff", 64 - 2**-18, id="last-tick-before-wrap"),
        pytest.param(64.0, b"\x00\x00\x00", 0.0, id="wraps-at-64"),
        pytest.param(65.25, b"\x05\x00\x00", 1.25, id="after-wrap"),
        pytest.param(128.5, b"\x02\x00\x00", 0.5, id="two-wraps"),
        pytest.param(1_700_000_000.0, None, 1_700_000_000.0 % 64, id="unix-epoch-scale"),
    ],
)
def test_abs_send_time(now_s: float, encoded: bytes | None, decoded: float) -> None:
    value = abs_send_time(now_s)
    assert len(value) == 3
    if encoded is not None:
        assert value == encoded
    assert parse_abs_send_time(value) == pytest.approx(decoded, abs=2**-18)
    assert 0.0 <= parse_abs_send_time(value) < 64.0


def test_abs_send_time_round_trip_precision() -> None:
    rng = random.Random(7)
    for _ in range(200):
        t = rng.uniform(0, 64)
        back = parse_abs_send_time(abs_send_time(t))
        # Rounded to the nearest 1/2^18 s, modulo the 64 s wrap.
        err = min(abs(back - t), 64 - abs(back - t))
        assert err <= 2**-19 + 1e-12


@pytest.mark.parametrize("value", [b"", b"\x00\x00", b"\x00\x00\x00\x00"], ids=["0", "2", "4"])
def test_parse_abs_send_time_rejects_wrong_length(value: bytes) -> None:
    with pytest.raises(RtpError, match="3 bytes"):
        parse_abs_send_time(value)


# --------------------------------------------------------------------------- robustness


def test_random_bytes_only_raise_rtp_error() -> None:
    rng = random.Random(1)
    parsed = 0
    for i in range(2000):
        data = bytearray(rng.randbytes(rng.randrange(0, 80)))
        if data and i % 2:
            # Force version 2 half the time so the deeper checks get exercised.
            data[0] = 0x80 | (data[0] & 0x3F)
        data = bytes(data)
        try:
            h = parse_header(data)
        except RtpError:
            continue
        except Exception as exc:  # pragma: no cover - the failure we are hunting
            pytest.fail(f"parse_header raised {type(exc).__name__} for {data.hex()}: {exc}")
        parsed += 1
        assert 12 <= h.payload_start <= h.payload_end <= len(data)
        try:
            iter_extensions(data, h)
            find_extension(data, h, 1)
        except RtpError:
            pass
        except Exception as exc:  # pragma: no cover
            pytest.fail(f"extension parsing raised {type(exc).__name__} for {data.hex()}: {exc}")
    assert parsed > 100  # the test would be vacuous if nothing ever parsed
