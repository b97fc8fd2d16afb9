"""The relay's wire format between cluster nodes (sfu.core.relay_wire): sealing and
opening datagrams, every way a datagram is refused, the sender counter, sender
report bodies and the replay window."""

from __future__ import annotations

import struct

import pytest

from sfu.core.relay_wire import (
    HEADER_BYTES,
    OVERHEAD_BYTES,
    TAG_BYTES,
    Kind,
    RelayError,
    ReplayWindow,
    Sealer,
    open_datagram,
    pack_sender_report,
    unpack_sender_report,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
U64 = 1 << 64
T_US = 1_700_000_000_000_000  # a wall clock in microseconds, as Relay starts its Sealer

KINDS = {
    "rtp": Kind.RTP,
    "sender_report": Kind.SENDER_REPORT,
    "feedback": Kind.FEEDBACK,
    "subscribe": Kind.SUBSCRIBE,
    "unsubscribe": Kind.UNSUBSCRIBE,
}


def test_kind_all_lists_every_kind() -> None:
    assert frozenset(KINDS.values()) == Kind.ALL


# --- seal / open -------------------------------------------------------------------

# Rows: (kind, layer, channel, payload)
ROUND_TRIPS = {
    "rtp": (Kind.RTP, 0, 1, b"\x80\x60\x00\x01" + bytes(8) + b"\x10\x00payload"),
    "rtp_top_layer": (Kind.RTP, 2, 0xFFFFFFFF, bytes(range(256)) * 4),
    "sender_report": (Kind.SENDER_REPORT, 1, 0x12345678, pack_sender_report(1 << 63, 90000)),
    "feedback": (Kind.FEEDBACK, 0, 7, b"\x81\xce\x00\x02" + bytes(8)),
    "subscribe": (Kind.SUBSCRIBE, 0, 42, b"TR_video\nND_node-b"),
    "unsubscribe_empty": (Kind.UNSUBSCRIBE, 0, 42, b""),
}


@pytest.mark.parametrize(
    ("kind", "layer", "channel", "payload"), ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys()
)
def test_seal_open_round_trip(kind: int, layer: int, channel: int, payload: bytes) -> None:
    sealer = Sealer(KEY, 1000)
    data = sealer.seal(kind, layer, channel, payload)
    assert len(data) == OVERHEAD_BYTES + len(payload)
    datagram = open_datagram(KEY, data)
    assert datagram.kind == kind
    assert datagram.layer == layer
    assert datagram.channel == channel
    assert datagram.counter == 1001  # the counter grows before each seal
    assert bytes(datagram.payload) == payload
    # The payload travels in the clear between header and tag.
    assert data[HEADER_BYTES : len(data) - TAG_BYTES] == payload


def test_seal_accepts_a_memoryview_payload() -> None:
    payload = bytearray(b"abcdef")
    data = Sealer(KEY, 0).seal(Kind.RTP, 0, 1, memoryview(payload)[1:4])
    assert bytes(open_datagram(KEY, data).payload) == b"bcd"


def test_header_layout() -> None:
    data = Sealer(KEY, 0x0102030405060708, sender=0x1112).seal(Kind.FEEDBACK, 2, 0xA0B0C0D0, b"x")
    assert data[:HEADER_BYTES] == struct.pack(
        "!BBBxIQQ", 1, 3, 2, 0xA0B0C0D0, 0x1112, 0x0102030405060709
    )
    datagram = open_datagram(KEY, data)
    assert (datagram.sender, datagram.counter) == (0x1112, 0x0102030405060709)


# Rows: (first_counter, number of seals, expected counters in the datagrams, final counter)
COUNTERS = {
    "from_zero": (0, 3, [1, 2, 3], 3),
    "from_wall_clock_us": (T_US, 2, [T_US + 1, T_US + 2], T_US + 2),
    "wraps_at_2_64": (U64 - 2, 3, [U64 - 1, 0, 1], 1),
    "first_counter_masked_to_64_bits": (U64 + 5, 1, [6], 6),
    "negative_first_counter_masked": (-1, 2, [0, 1], 1),
}


@pytest.mark.parametrize(
    ("first", "count", "expected", "final"), COUNTERS.values(), ids=COUNTERS.keys()
)
def test_counter_increments_per_seal_and_wraps(
    first: int, count: int, expected: list[int], final: int
) -> None:
    sealer = Sealer(KEY, first)
    seen = [open_datagram(KEY, sealer.seal(Kind.RTP, 0, 1, b"p")).counter for _ in range(count)]
    assert seen == expected
    assert sealer.counter == final


@pytest.mark.parametrize("length", [16, 17, 32, 64], ids=lambda n: f"{n}_bytes")
def test_sealer_key_lengths_accepted(length: int) -> None:
    key = bytes(length)
    assert open_datagram(key, Sealer(key, 0).seal(Kind.RTP, 0, 1, b"ok")).counter == 1


@pytest.mark.parametrize("length", [0, 1, 15, 65, 128], ids=lambda n: f"{n}_bytes")
def test_sealer_refuses_key_length(length: int) -> None:
    with pytest.raises(ValueError, match="16 to 64 bytes"):
        Sealer(bytes(length), 0)


# --- refusals ----------------------------------------------------------------------


def _good() -> bytes:
    return Sealer(KEY, 77).seal(Kind.RTP, 0, 5, b"ab")


def _with_byte(data: bytes, index: int, value: int) -> bytes:
    return data[:index] + bytes([value]) + data[index + 1 :]


# Rows: (datagram, what the error message says)
REFUSED = {
    "empty": (b"", "shorter"),
    "one_byte": (b"\x01", "shorter"),
    "header_only": (_good()[:HEADER_BYTES], "shorter"),
    "one_short_of_overhead": (_good()[: OVERHEAD_BYTES - 1], "shorter"),
    "version_0": (_with_byte(_good(), 0, 0), "version 0"),
    "version_2": (_with_byte(_good(), 0, 2), "version 2"),
    "version_255": (_with_byte(_good(), 0, 255), "version 255"),
    "tag_of_another_key": (Sealer(OTHER_KEY, 77).seal(Kind.RTP, 0, 5, b"ab"), "bad tag"),
    "truncated_tag": (_good()[:-1], "bad tag"),
    "extra_byte": (_good() + b"\x00", "bad tag"),
    "tag_zeroed": (_good()[:-TAG_BYTES] + bytes(TAG_BYTES), "bad tag"),
    "payload_swapped": (_good()[:HEADER_BYTES] + b"ba" + _good()[-TAG_BYTES:], "bad tag"),
    "type_0": (Sealer(KEY, 0).seal(0, 0, 1, b""), "unknown relay datagram type 0"),
    "type_6": (Sealer(KEY, 0).seal(6, 0, 1, b""), "unknown relay datagram type 6"),
    "type_9": (Sealer(KEY, 0).seal(9, 0, 1, b"x"), "unknown relay datagram type 9"),
    "type_255": (Sealer(KEY, 0).seal(255, 0, 1, b""), "unknown relay datagram type 255"),
}


@pytest.mark.parametrize(("data", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_open_refuses(data: bytes, message: str) -> None:
    with pytest.raises(RelayError, match=message):
        open_datagram(KEY, data)


def test_relay_error_is_a_value_error() -> None:
    assert issubclass(RelayError, ValueError)


SMALL = Sealer(KEY, 123456789).seal(Kind.SUBSCRIBE, 1, 0xDEADBEEF, b"TR")


@pytest.mark.parametrize("index", range(len(SMALL)), ids=lambda i: f"byte{i}")
def test_any_single_flipped_bit_is_refused(index: int) -> None:
    assert open_datagram(KEY, SMALL).counter == 123456790
    for bit in range(8):
        damaged = _with_byte(SMALL, index, SMALL[index] ^ (1 << bit))
        with pytest.raises(RelayError):
            open_datagram(KEY, damaged)


# --- sender reports ----------------------------------------------------------------

# Rows: (ntp, rtp, expected (ntp, rtp) after the round trip)
SENDER_REPORTS = {
    "plain": (0xE8A1_2345_6789_ABCD, 123456, (0xE8A1_2345_6789_ABCD, 123456)),
    "zeros": (0, 0, (0, 0)),
    "maxima": (U64 - 1, 0xFFFFFFFF, (U64 - 1, 0xFFFFFFFF)),
    "rtp_masked_to_32_bits": (1, (1 << 32) + 7, (1, 7)),
    "ntp_masked_to_64_bits": (U64 + 3, 9, (3, 9)),
}


@pytest.mark.parametrize(
    ("ntp", "rtp", "expected"), SENDER_REPORTS.values(), ids=SENDER_REPORTS.keys()
)
def test_sender_report_round_trip(ntp: int, rtp: int, expected: tuple[int, int]) -> None:
    body = pack_sender_report(ntp, rtp)
    assert len(body) == 12
    assert unpack_sender_report(body) == expected
    assert unpack_sender_report(memoryview(b"xx" + body)[2:]) == expected


def test_sender_report_through_a_datagram() -> None:
    data = Sealer(KEY, 0).seal(Kind.SENDER_REPORT, 1, 9, pack_sender_report(5, 6))
    assert unpack_sender_report(open_datagram(KEY, data).payload) == (5, 6)


@pytest.mark.parametrize("length", [0, 1, 8, 11, 13, 24], ids=lambda n: f"{n}_bytes")
def test_sender_report_bad_body_length(length: int) -> None:
    with pytest.raises(RelayError, match="sender report"):
        unpack_sender_report(bytes(length))


# --- replay window -----------------------------------------------------------------

# Rows: (window size, counters in arrival order, accepted flags)
WINDOWS = {
    "first_value": (4, [5], [True]),
    "first_value_zero": (4, [0], [True]),
    "first_value_huge": (4, [U64 - 1], [True]),
    "in_order": (4, [1, 2, 3, 4, 5, 6], [True] * 6),
    "duplicate_of_first": (4, [7, 7], [True, False]),
    "duplicate_of_highest": (4, [1, 2, 2], [True, True, False]),
    "duplicate_inside_window": (4, [5, 3, 3], [True, True, False]),
    "reordered_within_window": (4, [10, 8, 9, 7], [True, True, True, True]),
    "reordered_then_repeated": (4, [10, 8, 9, 7, 8, 10], [True] * 4 + [False] * 2),
    "older_than_window": (4, [10, 6], [True, False]),
    "oldest_in_window": (4, [10, 7], [True, True]),
    "gap_filled_late": (4, [1, 3, 2], [True, True, True]),
    "window_slides_in_order": (4, [1, 2, 3, 4, 5, 1, 2], [True] * 5 + [False, False]),
    "missing_one_accepted_until_it_slides_out": (4, [1, 3, 4, 5, 2, 2], [True] * 5 + [False]),
    "missing_one_slid_out": (4, [1, 3, 4, 5, 6, 2], [True] * 5 + [False]),
    "jump_larger_than_window_then_old": (4, [1, 2, 10, 2, 6, 7], [True] * 3 + [False] * 2 + [True]),
    "jump_exactly_size": (4, [1, 5, 1, 2], [True, True, False, True]),
    "jump_size_minus_one_keeps_old": (4, [1, 4, 1, 2], [True, True, False, True]),
    "jump_size_plus_one": (4, [1, 6, 1, 2, 3], [True, True, False, False, True]),
    "size_one_only_new": (1, [5, 5, 4, 6], [True, False, False, True]),
    "default_size_boundary": (None, [2000, 2000 - 1023, 2000 - 1024], [True, True, False]),
    "default_size_duplicate_at_edge": (None, [2000, 977, 977], [True, True, False]),
    "near_2_64": (4, [U64 - 3, U64 - 1, U64 - 2, U64 - 3], [True, True, True, False]),
}


@pytest.mark.parametrize(("size", "counters", "accepted"), WINDOWS.values(), ids=WINDOWS.keys())
def test_replay_window(size: int | None, counters: list[int], accepted: list[bool]) -> None:
    window = ReplayWindow() if size is None else ReplayWindow(size)
    assert [window.accept(c) for c in counters] == accepted
    assert window.highest == max(counters)


def test_replay_window_default_size() -> None:
    assert ReplayWindow().size == 1024
    assert ReplayWindow().highest is None
