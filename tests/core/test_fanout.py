"""Tests for sfu.core.fanout: the subscriber-leg extension block (RFC 8285) and
the per-packet parts subscribers share."""

from __future__ import annotations

import random

import pytest

from sfu.core.fanout import ExtensionLayout, SharedParts, extension_layout
from sfu.core.rtp import build_extension_block, iter_extensions, parse_header

SEND_TIME = b"\x12\x34\x56"


def _elements(
    layout: tuple[int, bytes, int, int, int],
    send_time: bytes,
    level: bytes | None,
    orientation: bytes | None,
) -> list[tuple[int, bytes]]:
    """What DownTrack wrote before: MID, send time, level, orientation."""
    mid_id, mid, send_time_id, level_id, orientation_id = layout
    elements = []
    if mid_id:
        elements.append((mid_id, mid))
    if send_time_id:
        elements.append((send_time_id, send_time))
    if level is not None and level_id:
        elements.append((level_id, level))
    if orientation is not None and orientation_id:
        elements.append((orientation_id, orientation))
    return elements


@pytest.mark.parametrize(
    ("layout", "level", "orientation", "expected"),
    [
        pytest.param((0, b"0", 0, 0, 0), None, None, b"", id="nothing-negotiated"),
        pytest.param((0, b"0", 0, 3, 4), None, None, b"", id="no-values-for-the-ids"),
        pytest.param(
            (1, b"0", 2, 3, 4),
            None,
            None,
            bytes.fromhex("BEDE0002") + b"\x10" + b"0" + b"\x22" + SEND_TIME + b"\x00\x00",
            id="video-mid-and-send-time",
        ),
        pytest.param(
            (1, b"12", 2, 3, 4),
            None,
            b"\x01",
            bytes.fromhex("BEDE0003") + b"\x1112" + b"\x22" + SEND_TIME + b"\x40\x01\x00\x00\x00",
            id="video-with-orientation",
        ),
        pytest.param(
            (1, b"3", 2, 3, 4),
            b"\x85",
            None,
            bytes.fromhex("BEDE0002") + b"\x103" + b"\x22" + SEND_TIME + b"\x30\x85",
            id="audio-with-level-fills-the-words",
        ),
        pytest.param(
            (0, b"0", 0, 3, 4),
            b"\x85",
            b"\x02",
            bytes.fromhex("BEDE0001") + b"\x30\x85\x40\x02",
            id="only-publisher-values",
        ),
        pytest.param(
            (1, b"abcdefghijklmnopq", 2, 0, 0),
            None,
            None,
            bytes.fromhex("10000006") + b"\x01\x11abcdefghijklmnopq" + b"\x02\x03" + SEND_TIME,
            id="17-octet-mid-needs-two-byte-form",
        ),
        pytest.param(
            (15, b"0", 2, 0, 0),
            None,
            None,
            bytes.fromhex("10000002") + b"\x0f\x010" + b"\x02\x03" + SEND_TIME,
            id="mid-id-15-needs-two-byte-form",
        ),
        pytest.param(
            (1, b"0", 2, 3, 0),
            bytes(17),
            None,
            bytes.fromhex("10000007")
            + b"\x01\x010"
            + b"\x02\x03"
            + SEND_TIME
            + b"\x03\x11"
            + bytes(17)
            + b"\x00",
            id="long-level-value-needs-two-byte-form",
        ),
        pytest.param(
            (1, b"0", 0, 0, 20),
            None,
            b"\x01",
            bytes.fromhex("10000002") + b"\x01\x010\x14\x01\x01\x00\x00",
            id="orientation-id-20-needs-two-byte-form",
        ),
    ],
)
def test_block(
    layout: tuple[int, bytes, int, int, int],
    level: bytes | None,
    orientation: bytes | None,
    expected: bytes,
) -> None:
    block = ExtensionLayout(*layout).block(SEND_TIME, level, orientation)
    assert block == expected
    assert block == build_extension_block(_elements(layout, SEND_TIME, level, orientation))


def test_block_matches_build_extension_block_for_random_layouts() -> None:
    rng = random.Random(8285)
    for _ in range(3000):
        layout = (
            rng.choice((0, 1, 5, 14, 15, 200)),
            rng.randbytes(rng.choice((1, 2, 16, 17))),
            rng.choice((0, 2, 14, 15)),
            rng.choice((0, 3, 14, 16)),
            rng.choice((0, 4, 13, 99)),
        )
        level = rng.choice((None, b"\x7f", rng.randbytes(rng.choice((1, 16, 17)))))
        orientation = rng.choice((None, b"\x00", rng.randbytes(rng.choice((1, 16, 17)))))
        send_time = rng.randbytes(3)
        elements = _elements(layout, send_time, level, orientation)
        assert ExtensionLayout(*layout).block(send_time, level, orientation) == (
            build_extension_block(elements)
        ), (layout, level, orientation)


@pytest.mark.parametrize(
    ("layout", "always"),
    [
        ((1, b"0", 2, 3, 4), True),
        ((1, b"0", 0, 0, 0), True),
        ((0, b"0", 2, 0, 0), True),
        ((0, b"0", 0, 3, 4), False),
        ((0, b"0", 0, 0, 0), False),
    ],
)
def test_always_means_every_block_has_an_element(
    layout: tuple[int, bytes, int, int, int], always: bool
) -> None:
    assert ExtensionLayout(*layout).always is always
    if always:
        assert ExtensionLayout(*layout).block(SEND_TIME, None, None)


def test_equal_layouts_are_one_object() -> None:
    assert extension_layout(1, b"3", 2, 3, 4) is extension_layout(1, b"3", 2, 3, 4)
    assert extension_layout(1, b"3", 2, 3, 4) is not extension_layout(1, b"5", 2, 3, 4)


@pytest.mark.parametrize(
    ("layout", "level", "orientation", "payload"),
    [
        pytest.param((1, b"0", 2, 3, 4), None, b"\x01", b"\x90\xe0payload", id="video"),
        pytest.param((0, b"0", 0, 0, 0), None, None, b"bare", id="no-extensions"),
        pytest.param((1, b"7", 2, 3, 4), b"\x85", None, b"opus\x00\x00\x03", id="with-padding"),
    ],
)
def test_shared_parts(
    layout: tuple[int, bytes, int, int, int],
    level: bytes | None,
    orientation: bytes | None,
    payload: bytes,
) -> None:
    ext = extension_layout(*layout)
    shared = SharedParts(memoryview(b"head" + payload)[4:], SEND_TIME, level, orientation)
    block = ext.block(SEND_TIME, level, orientation)
    assert shared.block(ext) == block
    tail = shared.tail(ext)
    assert tail == block + payload
    assert shared.tail(ext) is tail  # built once per packet and layout
    # A header in front makes the packet the subscriber gets.
    first = 0x90 if block else 0x80
    packet = bytes((first, 96)) + bytes(10) + tail
    header = parse_header(packet)
    assert iter_extensions(packet, header) == _elements(layout, SEND_TIME, level, orientation)
    assert packet[header.payload_start :] == payload
