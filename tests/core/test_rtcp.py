"""Tests for sfu.core.rtcp (RFC 3550 §6, RFC 4585 §6, RFC 5104 §4.3.1, REMB)."""

from __future__ import annotations

import random

import pytest

from sfu.core.rtcp import (
    Bye,
    Fir,
    Nack,
    Pli,
    ReceiverReport,
    Remb,
    ReportBlock,
    RtcpError,
    SenderReport,
    SourceDescription,
    TransportCc,
    UnknownRtcp,
    ntp_from_unix,
    ntp_middle32,
    pack_bye,
    pack_fir,
    pack_nack,
    pack_pli,
    pack_receiver_report,
    pack_remb,
    pack_sdes_cname,
    pack_sender_report,
    parse_compound,
    rtt_from_report,
    unix_from_ntp,
)


def h(*parts: str) -> bytes:
    """Hex words to bytes; spaces inside a part are ignored."""
    return bytes.fromhex("".join(parts).replace(" ", ""))


# --------------------------------------------------------------------------- hand-built vectors

# RFC 3550 §6.4.1 SR with RC=2: 4 + 24 + 2 * 24 = 76 bytes -> length 18.
SR_TWO_BLOCKS = h(
    "82 C8 00 12",  # V=2 P=0 RC=2 | PT=200 | length 18
    "11 22 33 44",  # SSRC of sender
    "E1 B2 C3 D4",  # NTP timestamp, most significant word
    "80 00 00 00",  # NTP timestamp, least significant word (0.5 s)
    "00 01 E2 40",  # RTP timestamp 123456
    "00 00 00 0A",  # sender's packet count 10
    "00 00 0F A0",  # sender's octet count 4000
    # report block 1
    "AA BB CC DD",  # SSRC_1
    "40 00 00 05",  # fraction lost 64/256 | cumulative lost 5
    "00 01 00 10",  # extended highest sequence number (1 cycle, seq 16)
    "00 00 00 20",  # interarrival jitter 32
    "12 34 56 78",  # LSR
    "00 01 80 00",  # DLSR 1.5 s
    # report block 2
    "01 02 03 04",  # SSRC_2
    "00 FF FF FF",  # fraction 0 | cumulative lost -1 (duplicates)
    "00 00 FF FF",  # extended highest sequence number
    "00 00 00 00",  # jitter
    "00 00 00 00",  # LSR
    "00 00 00 00",  # DLSR
)
SR_TWO_BLOCKS_PARSED = SenderReport(
    ssrc=0x11223344,
    ntp_timestamp=0xE1B2C3D4_80000000,
    rtp_timestamp=123456,
    packet_count=10,
    octet_count=4000,
    reports=[
        ReportBlock(0xAABBCCDD, 64, 5, 0x00010010, 32, 0x12345678, 0x00018000),
        ReportBlock(0x01020304, 0, -1, 0xFFFF, 0, 0, 0),
    ],
)

# RFC 4585 §6.2.1 generic NACK: PID 65535, BLP 0x0005 (bits 0 and 2) -> 65535, 0, 2.
NACK_WRAP = h(
    "81 CD 00 03",  # V=2 FMT=1 | PT=205 RTPFB | length 3
    "00 00 00 01",  # SSRC of packet sender
    "00 00 00 02",  # SSRC of media source
    "FF FF 00 05",  # PID 65535 | BLP 0b101
)

# REMB 1,500,000 bps = 187500 * 2^3 with two SSRCs:
# Num SSRC 2 | BR Exp 3 | Mantissa 187500 = 0x2DC6C -> 0x02 | 0b000011 10 | 0xDC6C.
REMB_1500K = h(
    "8F CE 00 06",  # V=2 FMT=15 | PT=206 PSFB | length 6
    "00 00 00 01",  # SSRC of packet sender
    "00 00 00 00",  # SSRC of media source (unused, 0)
    "52 45 4D 42",  # "REMB"
    "02 0E DC 6C",  # Num SSRC | BR Exp | BR Mantissa
    "11 11 11 11",  # SSRC feedback
    "22 22 22 22",
)

# RFC 4585 §6.3.1 PLI: length 2, no FCI.
PLI = h("81 CE 00 02", "00 00 00 0A", "00 00 00 0B")

# RFC 5104 §4.3.1 FIR: media SSRC 0, one FCI entry (SSRC, seq nr 7, reserved).
FIR = h("84 CE 00 04", "00 00 00 0A", "00 00 00 00", "00 00 00 0B", "07 00 00 00")

# RFC 3550 §6.5 SDES, one chunk, CNAME "abc": 01 03 'a' 'b' 'c' + 3 null octets.
SDES_ABC = h("81 CA 00 03", "01 02 03 04", "01 03 61 62 63 00 00 00")

# RFC 3550 §6.6 BYE with two SSRCs and reason "bye" (length octet + 3 bytes = 1 word).
BYE = h("82 CB 00 03", "00 00 00 01", "00 00 00 02", "03 62 79 65")

# RTPFB FMT 15 transport-cc, FCI kept opaque.
TWCC = h("8F CD 00 03", "00 00 00 01", "00 00 00 02", "00 05 00 02")

# RR with P=1: 4 padding octets, the last one holding the count.
RR_PADDED = h("A0 C9 00 02", "DE AD BE EF", "00 00 00 04")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(SR_TWO_BLOCKS, SR_TWO_BLOCKS_PARSED, id="sr-two-blocks"),
        pytest.param(NACK_WRAP, Nack(1, 2, [65535, 0, 2]), id="nack-pid-65535-wrap"),
        pytest.param(
            REMB_1500K, Remb(1, 1_500_000, [0x11111111, 0x22222222]), id="remb-1500k-two-ssrcs"
        ),
        pytest.param(PLI, Pli(10, 11), id="pli"),
        pytest.param(FIR, Fir(10, [(11, 7)]), id="fir"),
        pytest.param(SDES_ABC, SourceDescription([(0x01020304, [(1, b"abc")])]), id="sdes-cname"),
        pytest.param(BYE, Bye([1, 2], b"bye"), id="bye-with-reason"),
        pytest.param(TWCC, TransportCc(1, 2, h("00 05 00 02")), id="transport-cc"),
        pytest.param(RR_PADDED, ReceiverReport(0xDEADBEEF, []), id="rr-padded"),
        pytest.param(
            h("81 C9 00 07", "00 00 00 01", "00 00 00 02", "10 7F FF FF", "0" * 32),
            ReceiverReport(1, [ReportBlock(2, 16, 0x7FFFFF, 0, 0, 0, 0)]),
            id="rr-max-positive-loss",
        ),
        pytest.param(
            h("81 C9 00 07", "00 00 00 01", "00 00 00 02", "00 80 00 00", "0" * 32),
            ReceiverReport(1, [ReportBlock(2, 0, -0x800000, 0, 0, 0, 0)]),
            id="rr-min-negative-loss",
        ),
        pytest.param(
            h("81 C8 00 0D", "00 00 00 01", "0" * 40, "00 00 00 02", "0" * 40, "CA FE BA BE"),
            SenderReport(1, 0, 0, 0, 0, [ReportBlock(2, 0, 0, 0, 0, 0, 0)]),
            id="sr-profile-extension-ignored",
        ),
        pytest.param(
            h("81 CD 00 04", "00 00 00 01", "00 00 00 02", "00 0A FF FF", "00 64 80 00"),
            Nack(1, 2, [10, *range(11, 27), 100, 116]),
            id="nack-two-items-full-blp",
        ),
        pytest.param(h("80 CB 00 00"), Bye([], b""), id="bye-empty"),
        pytest.param(
            h("81 CB 00 02", "00 00 00 01", "00 00 00 00"), Bye([1], b""), id="bye-zero-reason"
        ),
        pytest.param(h("80 CA 00 00"), SourceDescription([]), id="sdes-no-chunks"),
        pytest.param(
            h(
                "82 CA 00 06",
                "00 00 00 01",
                "01 02 61 62 00 00 00 00",  # CNAME "ab": item is 4 bytes -> 4 null octets
                "00 00 00 02",
                "02 01 6E 06 01 78 00 00",  # NAME "n", TOOL "x"
            ),
            SourceDescription([(1, [(1, b"ab")]), (2, [(2, b"n"), (6, b"x")])]),
            id="sdes-two-chunks",
        ),
        pytest.param(
            h("81 CC 00 03", "00 00 00 01", "54 45 53 54", "DA 7A 00 00"),
            UnknownRtcp(204, 1, h("00 00 00 01", "54 45 53 54", "DA 7A 00 00")),
            id="app-unknown",
        ),
        pytest.param(
            h("80 CF 00 02", "00 00 00 01", "04 00 00 00"),
            UnknownRtcp(207, 0, h("00 00 00 01", "04 00 00 00")),
            id="xr-unknown",
        ),
        pytest.param(
            h("83 CD 00 03", "00 00 00 01", "00 00 00 02", "00 01 00 00"),
            UnknownRtcp(205, 3, h("00 00 00 01", "00 00 00 02", "00 01 00 00")),
            id="rtpfb-tmmbr-unknown",
        ),
        pytest.param(
            h("8F CE 00 03", "00 00 00 01", "00 00 00 00", "41 42 43 44"),
            UnknownRtcp(206, 15, h("00 00 00 01", "00 00 00 00", "41 42 43 44")),
            id="afb-not-remb-unknown",
        ),
        pytest.param(
            h("8F CE 00 02", "00 00 00 01", "00 00 00 00"),
            UnknownRtcp(206, 15, h("00 00 00 01", "00 00 00 00")),
            id="afb-empty-unknown",
        ),
        pytest.param(
            h("82 CE 00 02", "00 00 00 01", "00 00 00 02"),
            UnknownRtcp(206, 2, h("00 00 00 01", "00 00 00 02")),
            id="psfb-sli-unknown",
        ),
        pytest.param(
            h("80 D0 00 01", "01 02 03 04"),
            UnknownRtcp(208, 0, h("01 02 03 04")),
            id="unassigned-type-unknown",
        ),
    ],
)
def test_parse_vectors(data: bytes, expected: object) -> None:
    assert parse_compound(data) == [expected]


@pytest.mark.parametrize(
    ("built", "expected"),
    [
        pytest.param(
            lambda: pack_sender_report(
                0x11223344,
                0xE1B2C3D4_80000000,
                123456,
                10,
                4000,
                SR_TWO_BLOCKS_PARSED.reports,
            ),
            SR_TWO_BLOCKS,
            id="sr-two-blocks",
        ),
        pytest.param(lambda: pack_nack(1, 2, [2, 0, 65535]), NACK_WRAP, id="nack-wrap"),
        pytest.param(lambda: pack_nack(1, 2, [65535, 0, 2, 0, 2]), NACK_WRAP, id="nack-dedupe"),
        pytest.param(
            lambda: pack_remb(1, 1_500_000, [0x11111111, 0x22222222]), REMB_1500K, id="remb"
        ),
        pytest.param(lambda: pack_pli(10, 11), PLI, id="pli"),
        pytest.param(lambda: pack_fir(10, [(11, 7)]), FIR, id="fir"),
        pytest.param(lambda: pack_sdes_cname(0x01020304, b"abc"), SDES_ABC, id="sdes"),
        pytest.param(lambda: pack_bye([1, 2], b"bye"), BYE, id="bye"),
        pytest.param(
            lambda: pack_sdes_cname(1, b"ab"),
            h("81 CA 00 03", "00 00 00 01", "01 02 61 62 00 00 00 00"),
            id="sdes-four-null-octets",
        ),
        pytest.param(
            lambda: pack_sdes_cname(1, b"a"),
            h("81 CA 00 02", "00 00 00 01", "01 01 61 00"),
            id="sdes-one-null-octet",
        ),
        pytest.param(lambda: pack_bye([7]), h("81 CB 00 01", "00 00 00 07"), id="bye-no-reason"),
        pytest.param(
            lambda: pack_bye([7], b"gone"),
            h("81 CB 00 03", "00 00 00 07", "04 67 6F 6E", "65 00 00 00"),
            id="bye-reason-padded",
        ),
        pytest.param(
            lambda: pack_receiver_report(5, []), h("80 C9 00 01", "00 00 00 05"), id="rr-empty"
        ),
    ],
)
def test_builders_match_vectors(built: object, expected: bytes) -> None:
    assert built() == expected  # type: ignore[operator]


# --------------------------------------------------------------------------- round trips

BLOCKS = [
    ReportBlock(0x01, 0, 0, 0, 0, 0, 0),
    ReportBlock(0xFFFFFFFF, 255, -0x800000, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF),
    ReportBlock(0x1234, 12, 0x7FFFFF, 0x0002FFFF, 1000, 0xABCD0000, 65536),
]


@pytest.mark.parametrize(
    ("packet", "expected"),
    [
        pytest.param(
            pack_sender_report(1, 2**64 - 1, 2**32 - 1, 7, 8),
            SenderReport(1, 2**64 - 1, 2**32 - 1, 7, 8, []),
            id="sr-no-blocks",
        ),
        pytest.param(
            pack_sender_report(1, 2, 3, 4, 5, BLOCKS),
            SenderReport(1, 2, 3, 4, 5, BLOCKS),
            id="sr-three-blocks",
        ),
        pytest.param(
            pack_sender_report(1, 2, 3, 4, 5, [BLOCKS[2]] * 31),
            SenderReport(1, 2, 3, 4, 5, [BLOCKS[2]] * 31),
            id="sr-31-blocks",
        ),
        pytest.param(
            pack_receiver_report(9, BLOCKS), ReceiverReport(9, BLOCKS), id="rr-three-blocks"
        ),
        pytest.param(
            pack_receiver_report(9, [BLOCKS[0]] * 31),
            ReceiverReport(9, [BLOCKS[0]] * 31),
            id="rr-31-blocks",
        ),
        pytest.param(
            pack_receiver_report(9, [ReportBlock(1, 0, -0x900000, 0, 0, 0, 0)]),
            ReceiverReport(9, [ReportBlock(1, 0, -0x800000, 0, 0, 0, 0)]),
            id="rr-clamps-negative-loss",
        ),
        pytest.param(
            pack_receiver_report(9, [ReportBlock(1, 0, 0x900000, 0, 0, 0, 0)]),
            ReceiverReport(9, [ReportBlock(1, 0, 0x7FFFFF, 0, 0, 0, 0)]),
            id="rr-clamps-positive-loss",
        ),
        *(
            pytest.param(
                pack_sdes_cname(0xCAFE, b"x" * n),
                SourceDescription([(0xCAFE, [(1, b"x" * n)])]),
                id=f"sdes-cname-{n}",
            )
            for n in (0, 1, 2, 3, 4, 5, 255)
        ),
        pytest.param(pack_bye([]), Bye([], b""), id="bye-none"),
        pytest.param(
            pack_bye(list(range(31)), b"r" * 255), Bye(list(range(31)), b"r" * 255), id="bye-max"
        ),
        pytest.param(pack_pli(0, 2**32 - 1), Pli(0, 2**32 - 1), id="pli"),
        pytest.param(
            pack_fir(3, [(1, 0), (2, 255), (2**32 - 1, 9)]),
            Fir(3, [(1, 0), (2, 255), (2**32 - 1, 9)]),
            id="fir-three",
        ),
        pytest.param(pack_remb(4, 0, []), Remb(4, 0, []), id="remb-zero"),
        pytest.param(
            pack_remb(4, 262_143, list(range(255))),
            Remb(4, 262_143, list(range(255))),
            id="remb-255-ssrcs",
        ),
    ],
)
def test_builder_round_trip(packet: bytes, expected: object) -> None:
    assert len(packet) % 4 == 0
    assert parse_compound(packet) == [expected]


@pytest.mark.parametrize(
    ("lost", "expected_items", "expected_lost"),
    [
        pytest.param([10], ["000A0000"], [10], id="single"),
        pytest.param([5, 5, 5], ["00050000"], [5], id="duplicates"),
        pytest.param(list(range(10, 27)), ["000AFFFF"], list(range(10, 27)), id="pid-plus-16"),
        pytest.param(
            list(range(10, 28)), ["000AFFFF", "001B0000"], list(range(10, 28)), id="pid-plus-17"
        ),
        pytest.param([26, 10], ["000A8000"], [10, 26], id="unordered-bit-15"),
        pytest.param([0, 65535], ["FFFF0001"], [65535, 0], id="wrap-pair"),
        pytest.param(
            [65534, 65535, 0, 1, 100],
            ["FFFE0007", "00640000"],
            [65534, 65535, 0, 1, 100],
            id="run-across-wrap",
        ),
        pytest.param(
            [100, 0, 65535], ["FFFF0001", "00640000"], [65535, 0, 100], id="wrap-then-gap"
        ),
        pytest.param(
            [65530, *range(0, 11)], ["FFFAFFE0"], [65530, *range(0, 11)], id="wrap-16-window"
        ),
        pytest.param(
            [65530, *range(0, 12)],
            ["FFFAFFE0", "000B0000"],
            [65530, *range(0, 12)],
            id="wrap-17-window",
        ),
        pytest.param([0, 32768], ["00000000", "80000000"], [0, 32768], id="half-circle-apart"),
    ],
)
def test_pack_nack_grouping(
    lost: list[int], expected_items: list[str], expected_lost: list[int]
) -> None:
    packet = pack_nack(0xA, 0xB, lost)
    fci = packet[12:]
    assert fci == h(*expected_items)
    assert packet[:4] == h("81 CD", f"{2 + len(expected_items):04X}")
    (nack,) = parse_compound(packet)
    assert isinstance(nack, Nack)
    assert (nack.sender_ssrc, nack.media_ssrc) == (0xA, 0xB)
    assert nack.lost == expected_lost
    assert sorted(nack.lost) == sorted(set(lost))


def test_pack_nack_random_round_trip() -> None:
    rng = random.Random(3)
    for _ in range(300):
        base = rng.randrange(65536)
        lost = {(base + rng.randrange(200)) & 0xFFFF for _ in range(rng.randrange(1, 60))}
        (nack,) = parse_compound(pack_nack(1, 2, lost))
        assert isinstance(nack, Nack)
        assert len(nack.lost) == len(lost)
        assert set(nack.lost) == lost
        # In wrap-aware order: every step moves forward less than half the circle.
        for a, b in zip(nack.lost, nack.lost[1:], strict=False):
            assert 0 < (b - a) & 0xFFFF < 0x8000


@pytest.mark.parametrize(
    ("bitrate", "exp", "mantissa"),
    [
        pytest.param(0, 0, 0, id="zero"),
        pytest.param(1, 0, 1, id="one"),
        pytest.param(262_143, 0, 262_143, id="max-mantissa-exp0"),
        pytest.param(262_144, 1, 131_072, id="needs-exp1"),
        pytest.param(262_145, 1, 131_072, id="rounds-down"),
        pytest.param(1_500_000, 3, 187_500, id="1.5M-exact"),
        pytest.param(1_500_007, 3, 187_500, id="1.5M-rounds-down"),
        pytest.param(10**9, 12, 244_140, id="1G"),
        pytest.param(262_143 << 63, 63, 262_143, id="largest"),
    ],
)
def test_pack_remb_encoding(bitrate: int, exp: int, mantissa: int) -> None:
    packet = pack_remb(1, bitrate, [2])
    word = int.from_bytes(packet[16:20], "big")
    assert word >> 24 == 1
    assert (word >> 18) & 0x3F == exp
    assert word & 0x3FFFF == mantissa
    (remb,) = parse_compound(packet)
    assert isinstance(remb, Remb)
    assert remb.bitrate_bps == mantissa << exp
    assert remb.bitrate_bps <= bitrate
    assert bitrate - remb.bitrate_bps < 1 << exp


def test_compound_sr_sdes_remb_nack() -> None:
    data = b"".join(
        [
            SR_TWO_BLOCKS,
            SDES_ABC,
            REMB_1500K,
            NACK_WRAP,
            PLI,
            RR_PADDED,  # padding on the last packet, RFC 3550 §6.4.1
        ]
    )
    assert parse_compound(data) == [
        SR_TWO_BLOCKS_PARSED,
        SourceDescription([(0x01020304, [(1, b"abc")])]),
        Remb(1, 1_500_000, [0x11111111, 0x22222222]),
        Nack(1, 2, [65535, 0, 2]),
        Pli(10, 11),
        ReceiverReport(0xDEADBEEF, []),
    ]


def test_sdes_cname_helper() -> None:
    sdes = SourceDescription([(1, [(2, b"name")]), (2, [(2, b"n"), (1, b"cn")])])
    assert sdes.cname(2) == b"cn"
    assert sdes.cname(1) is None
    assert sdes.cname(3) is None


# --------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"", "empty", id="empty"),
        pytest.param(h("81 C9 00"), "header truncated", id="header-3-bytes"),
        pytest.param(PLI + h("80 C9"), "header truncated", id="trailing-junk"),
        pytest.param(h("41 C9 00 01", "00 00 00 01"), "version is 1", id="version-1"),
        pytest.param(h("C1 C9 00 01", "00 00 00 01"), "version is 3", id="version-3"),
        pytest.param(PLI + h("01 CE 00 02") + PLI[4:], "version is 0", id="second-bad-version"),
        pytest.param(h("81 C9 00 07", "00 00 00 01"), "declares 32 bytes", id="length-overrun"),
        pytest.param(PLI[:-1], "declares 12 bytes", id="length-overrun-by-one"),
        pytest.param(h("A0 C9 00 01", "00 00 00 00"), "padding count is 0", id="padding-zero"),
        pytest.param(h("A0 C9 00 01", "00 00 00 05"), "exceeds", id="padding-too-large"),
        pytest.param(h("A0 C9 00 00"), "padding count is 0", id="padding-no-body"),
        pytest.param(h("81 C8 00 06", "00" * 24), "SR truncated", id="sr-missing-block"),
        pytest.param(h("80 C8 00 05", "00" * 20), "SR truncated", id="sr-short-sender-info"),
        pytest.param(h("82 C9 00 07", "00" * 28), "RR truncated", id="rr-missing-second-block"),
        pytest.param(h("A0 C9 00 01", "00 00 00 04"), "RR truncated", id="rr-ssrc-eaten-by-pad"),
        pytest.param(h("81 CD 00 02", "00" * 8), "NACK FCI is 0 bytes", id="nack-no-fci"),
        pytest.param(
            h("A1 CD 00 03", "00" * 8, "FF FF 00 02"), "NACK FCI is 2 bytes", id="nack-fci-2-bytes"
        ),
        pytest.param(h("81 CD 00 01", "00 00 00 01"), "RTPFB truncated", id="rtpfb-no-media-ssrc"),
        pytest.param(h("81 CE 00 01", "00 00 00 01"), "PSFB truncated", id="pli-no-media-ssrc"),
        pytest.param(h("84 CE 00 02", "00" * 8), "FIR FCI is 0 bytes", id="fir-no-fci"),
        pytest.param(h("84 CE 00 03", "00" * 12), "FIR FCI is 4 bytes", id="fir-fci-truncated"),
        pytest.param(
            h("8F CE 00 03", "00" * 8, "52 45 4D 42"), "REMB truncated", id="remb-no-bitrate"
        ),
        pytest.param(
            h("8F CE 00 05", "00" * 8, "52 45 4D 42", "03 00 00 01", "00 00 00 01"),
            "REMB truncated: 3 SSRCs",
            id="remb-ssrcs-overrun",
        ),
        pytest.param(
            h("81 CA 00 02", "00 00 00 01", "01 02 61 62"), "no end-of-list", id="sdes-no-end"
        ),
        pytest.param(
            h("81 CA 00 02", "00 00 00 01", "01 09 61 62"), "overruns", id="sdes-item-overrun"
        ),
        pytest.param(
            h("81 CA 00 02", "00 00 00 01", "01 01 61 05"), "no length octet", id="sdes-no-length"
        ),
        pytest.param(
            h("82 CA 00 02", "00 00 00 01", "00 00 00 00"), "no room for its SSRC", id="sdes-sc-2"
        ),
        pytest.param(h("82 CB 00 01", "00 00 00 01"), "BYE truncated", id="bye-sc-overrun"),
        pytest.param(
            h("81 CB 00 02", "00 00 00 01", "09 61 62 63"), "reason overruns", id="bye-reason"
        ),
    ],
)
def test_parse_compound_rejects(data: bytes, message: str) -> None:
    with pytest.raises(RtcpError, match=message):
        parse_compound(data)


def test_rtcp_error_is_value_error() -> None:
    assert issubclass(RtcpError, ValueError)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        pytest.param(
            lambda: pack_sender_report(1, 0, 0, 0, 0, [BLOCKS[0]] * 32),
            "32 report blocks",
            id="sr-32-blocks",
        ),
        pytest.param(
            lambda: pack_receiver_report(1, [BLOCKS[0]] * 32), "32 report blocks", id="rr-32"
        ),
        pytest.param(
            lambda: pack_receiver_report(1, [ReportBlock(1, 256, 0, 0, 0, 0, 0)]),
            "fraction lost",
            id="fraction-256",
        ),
        pytest.param(
            lambda: pack_receiver_report(1, [ReportBlock(1, 0, 0, 2**32, 0, 0, 0)]),
            "out of range",
            id="highest-seq-overflow",
        ),
        pytest.param(lambda: pack_receiver_report(2**32, []), "out of range", id="rr-ssrc"),
        pytest.param(lambda: pack_sender_report(1, 2**64, 0, 0, 0), "out of range", id="sr-ntp"),
        pytest.param(lambda: pack_sdes_cname(1, b"x" * 256), "CNAME", id="cname-256"),
        pytest.param(lambda: pack_bye(list(range(32))), "SC limit", id="bye-32"),
        pytest.param(lambda: pack_bye([1], b"x" * 256), "reason", id="bye-reason-256"),
        pytest.param(lambda: pack_nack(1, 2, []), "at least one", id="nack-empty"),
        pytest.param(lambda: pack_nack(1, 2, [65536]), "0..65535", id="nack-65536"),
        pytest.param(lambda: pack_nack(1, 2, [-1, 5]), "0..65535", id="nack-negative"),
        pytest.param(lambda: pack_nack(2**32, 2, [1]), "out of range", id="nack-ssrc"),
        pytest.param(lambda: pack_pli(-1, 0), "out of range", id="pli-ssrc"),
        pytest.param(lambda: pack_fir(1, []), "at least one", id="fir-empty"),
        pytest.param(lambda: pack_fir(1, [(1, 256)]), "out of range", id="fir-seq-256"),
        pytest.param(lambda: pack_remb(1, -1, []), "negative", id="remb-negative"),
        pytest.param(lambda: pack_remb(1, 1 << 81, []), "does not fit", id="remb-too-large"),
        pytest.param(lambda: pack_remb(1, 1, list(range(256))), "Num SSRC", id="remb-256-ssrcs"),
    ],
)
def test_builders_reject(build: object, message: str) -> None:
    with pytest.raises(RtcpError, match=message):
        build()  # type: ignore[operator]


# --------------------------------------------------------------------------- NTP and RTT


@pytest.mark.parametrize(
    ("unix_s", "ntp"),
    [
        pytest.param(0.0, 2_208_988_800 << 32, id="unix-epoch"),
        pytest.param(1.5, ((2_208_988_800 + 1) << 32) | 0x80000000, id="half-second"),
        pytest.param(0.25, (2_208_988_800 << 32) | 0x40000000, id="quarter"),
        pytest.param(1_700_000_000.0, (1_700_000_000 + 2_208_988_800) << 32, id="2023"),
        # RFC 4330 §3: era 1 starts 2036-02-07T06:28:16Z = Unix 2085978496.
        pytest.param(2_085_978_496.0, 0, id="era-1-start"),
        pytest.param(2_085_978_497.5, (1 << 32) | 0x80000000, id="era-1"),
    ],
)
def test_ntp_from_unix(unix_s: float, ntp: int) -> None:
    assert ntp_from_unix(unix_s) == ntp
    assert unix_from_ntp(ntp) == pytest.approx(unix_s, abs=1e-6)


def test_ntp_round_trip_precision() -> None:
    rng = random.Random(5)
    for _ in range(200):
        t = rng.uniform(0, 4_000_000_000)
        assert unix_from_ntp(ntp_from_unix(t)) == pytest.approx(t, abs=1e-6)


@pytest.mark.parametrize(
    ("ntp", "middle"),
    [
        pytest.param(0x0123456789ABCDEF, 0x456789AB, id="pattern"),
        # RFC 3550 §6.4.1 figure 2: SR with NTP 0xb44db705:2000.... -> LSR 0xb705:2000.
        pytest.param(0xB44DB705_20000000, 0xB7052000, id="rfc3550-figure"),
        pytest.param(0, 0, id="zero"),
        pytest.param(2**64 - 1, 0xFFFFFFFF, id="max"),
    ],
)
def test_ntp_middle32(ntp: int, middle: int) -> None:
    assert ntp_middle32(ntp) == middle


@pytest.mark.parametrize(
    ("lsr", "dlsr", "arrival", "rtt"),
    [
        # RFC 3550 §6.4.1 figure 2: A=0xb710:8000, LSR=0xb705:2000, DLSR=0x0005:4000 -> 6.125 s.
        pytest.param(0xB7052000, 0x00054000, 0xB7108000, 6.125, id="rfc3550-example"),
        pytest.param(0x00010000, 0x00018000, 0x00030000, 0.5, id="half-second"),
        pytest.param(0x00010000, 0x00010000, 0x00020000, 0.0, id="zero-rtt"),
        pytest.param(0xFFFF0000, 0x00008000, 0x00010000, 1.5, id="middle32-wraps"),
        pytest.param(0x00010000, 0x0000FFFF, 0x00020000, 1 / 65536, id="one-unit"),
        pytest.param(0, 0x00010000, 0x00050000, None, id="lsr-zero"),
        pytest.param(0x00010000, 0x00020000, 0x00020000, None, id="negative"),
    ],
)
def test_rtt_from_report(lsr: int, dlsr: int, arrival: int, rtt: float | None) -> None:
    assert rtt_from_report(lsr, dlsr, arrival) == rtt


def test_rtt_with_ntp_helpers() -> None:
    sr_sent = 1_700_000_000.25
    hold = 0.75  # receiver's DLSR
    arrival = sr_sent + hold + 0.040
    lsr = ntp_middle32(ntp_from_unix(sr_sent))
    dlsr = int(hold * 65536)
    rtt = rtt_from_report(lsr, dlsr, ntp_middle32(ntp_from_unix(arrival)))
    assert rtt == pytest.approx(0.040, abs=2 / 65536)


# --------------------------------------------------------------------------- robustness


def test_random_bytes_only_raise_rtcp_error() -> None:
    rng = random.Random(1)
    pts = [200, 201, 202, 203, 204, 205, 206, 207]
    parsed = 0
    for i in range(2000):
        data = bytearray(rng.randbytes(rng.randrange(0, 72)))
        if len(data) >= 4 and i % 2:
            # Half the time make the header plausible (V=2, known type, exact
            # length) so the per-type parsers see the random bodies.
            data[0] = 0x80 | (data[0] & 0x3F)
            data[1] = rng.choice(pts)
            words = len(data) // 4 - 1
            del data[(words + 1) * 4 :]
            data[2:4] = words.to_bytes(2, "big")
        data = bytes(data)
        try:
            parse_compound(data)
        except RtcpError:
            continue
        except Exception as exc:  # pragma: no cover - the failure we are hunting
            pytest.fail(f"parse_compound raised {type(exc).__name__} for {data.hex()}: {exc}")
        parsed += 1
    assert parsed > 50  # the test would be vacuous if nothing ever parsed


def test_mutated_valid_packets_only_raise_rtcp_error() -> None:
    rng = random.Random(2)
    seeds = [SR_TWO_BLOCKS, NACK_WRAP, REMB_1500K, PLI, FIR, SDES_ABC, BYE, TWCC, RR_PADDED]
    for _ in range(2000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            del data[rng.randrange(len(data)) :]
        try:
            parse_compound(bytes(data))
        except RtcpError:
            pass
        except Exception as exc:  # pragma: no cover
            pytest.fail(f"parse_compound raised {type(exc).__name__} for {data.hex()}: {exc}")
