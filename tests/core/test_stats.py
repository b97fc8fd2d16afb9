"""Reception statistics against hand-computed RFC 3550 §6.4.1 / A.3 / A.8 values."""

from __future__ import annotations

import pytest

from sfu.core.rtcp import ReportBlock
from sfu.core.seqnum import SeqUnwrapper
from sfu.core.stats import ReceiveStats, ReceptionReport, SendStats

B = 1 << 16


def feed(stats: ReceiveStats, seqs: list[int], clock_rate: int = 90000) -> None:
    """Constant-delay stream: packet i sent at 20 ms * seq, arrives 50 ms later."""
    for s in seqs:
        ts = (s * clock_rate // 50) & 0xFFFFFFFF
        stats.on_packet(s, ts, s * 0.02 + 0.05, 100)


# (ext seqs received, expected fraction_lost, expected cumulative_lost, loss_fraction)
LOSS_CASES = {
    # A.3: expected 100, received 95, (5 << 8) / 100 = 12.8 -> 12.
    "100_with_5_lost": (
        [B + i for i in range(100) if i not in (10, 20, 30, 40, 50)],
        12,
        5,
        0.05,
    ),
    "no_loss": ([B + i for i in range(50)], 0, 0, 0.0),
    # Duplicates make "lost" negative (RFC 3550 §6.4.1 allows it); fraction 0.
    "duplicates": ([B, B + 1, B + 1, B + 2, B + 2, B + 2], 0, -3, 0.0),
    # 1 of 3 lost: (1 << 8) // 3 = 85.
    "one_of_three": ([B, B + 2], 85, 1, 1 / 3),
    # Reordering is not loss once everything arrived.
    "reordered": ([B + 1, B, B + 3, B + 2], 0, 0, 0.0),
    # 254 of 256 lost: (254 << 8) // 256 = 254.
    "heavy_loss": ([B, B + 255], 254, 254, 254 / 256),
}


@pytest.mark.parametrize(
    ("seqs", "fraction", "cumulative", "loss_fraction"), LOSS_CASES.values(), ids=LOSS_CASES.keys()
)
def test_loss_first_interval(
    seqs: list[int], fraction: int, cumulative: int, loss_fraction: float
) -> None:
    stats = ReceiveStats(90000)
    feed(stats, seqs)
    rb = stats.report_block(0x1234, now_s=10.0)
    assert rb.ssrc == 0x1234
    assert rb.fraction_lost == fraction
    assert rb.cumulative_lost == cumulative
    assert stats.loss_fraction == pytest.approx(loss_fraction)
    assert stats.packets == len(seqs)
    assert stats.bytes == 100 * len(seqs)


def test_fraction_is_per_interval_cumulative_is_not() -> None:
    stats = ReceiveStats(90000)
    feed(stats, [B + i for i in range(100) if i not in (10, 20, 30, 40, 50)])
    first = stats.report_block(1, 2.0)
    assert (first.fraction_lost, first.cumulative_lost) == (12, 5)
    feed(stats, [B + i for i in range(100, 200)])
    second = stats.report_block(1, 4.0)
    assert (second.fraction_lost, second.cumulative_lost) == (0, 5)
    assert stats.loss_fraction == 0.0
    # Next interval: 100 expected (200..299), 51 received, 49 lost.
    feed(stats, [B + i for i in range(200, 300, 2)] + [B + 299])
    third = stats.report_block(1, 6.0)
    assert third.fraction_lost == (49 << 8) // 100
    assert third.cumulative_lost == 5 + 49
    # Nothing new: interval expected 0 -> fraction 0.
    assert stats.report_block(1, 7.0).fraction_lost == 0


def test_interval_with_one_packet_after_long_gap() -> None:
    stats = ReceiveStats(90000)
    feed(stats, [B])
    stats.report_block(1, 1.0)
    # 100 expected in this interval (B+1..B+100), 1 received: (99 << 8) // 100.
    feed(stats, [B + 100])
    assert stats.report_block(1, 2.0).fraction_lost == 253


def test_cumulative_lost_clamped_to_24_bits() -> None:
    stats = ReceiveStats(90000)
    stats.on_packet(B, 0, 0.0, 10)
    stats.on_packet(B + 0x900000, 3000, 0.02, 10)
    rb = stats.report_block(1, 1.0)
    assert rb.cumulative_lost == 0x7FFFFF
    assert stats.cumulative_lost == 0x900000 - 1


@pytest.mark.parametrize(
    ("raw_seqs", "highest_seq"),
    [
        ([100, 101, 102], 102),
        ([65534, 65535, 0, 1], (1 << 16) | 1),
        ([65535, 0, 65534], (1 << 16) | 0),
        ([0, 20000, 40000, 60000, 14464], (1 << 16) | 14464),
    ],
    ids=["no_wrap", "one_wrap", "reorder_over_wrap", "wrap_in_steps"],
)
def test_highest_seq_counts_cycles_from_first_packet(raw_seqs: list[int], highest_seq: int) -> None:
    u = SeqUnwrapper()
    stats = ReceiveStats(90000)
    for i, s in enumerate(raw_seqs):
        stats.on_packet(u.unwrap(s), i * 3000, i * 0.033, 100)
    assert stats.report_block(7, 1.0).highest_seq == highest_seq


def test_reordered_packet_before_first_lowers_base() -> None:
    stats = ReceiveStats(90000)
    feed(stats, [B + 5, B + 4, B + 6])
    rb = stats.report_block(1, 1.0)
    assert rb.cumulative_lost == 0
    assert stats.highest_ext_seq == B + 6


@pytest.mark.parametrize(
    "clock_rate,base_ts",
    [(90000, 0), (48000, 123456), (90000, 0xFFFFFFFF - 5000)],
    ids=["video", "audio", "ts_wraps"],
)
def test_constant_delay_has_zero_jitter(clock_rate: int, base_ts: int) -> None:
    stats = ReceiveStats(clock_rate)
    for i in range(200):
        ts = (base_ts + i * clock_rate // 50) & 0xFFFFFFFF
        stats.on_packet(B + i, ts, 3.0 + i / 50 + 0.08, 1000)
    assert stats.jitter_ms == pytest.approx(0.0, abs=1e-6)
    assert stats.report_block(1, 10.0).jitter == 0


def test_jitter_hand_computed() -> None:
    # clock 8000 Hz, one packet every 0.5 s (4000 units); all values are exact
    # binary fractions so the float arithmetic is exact.
    stats = ReceiveStats(8000)
    delays = [0.0, 0.0, 0.125, 0.125, 0.0]
    for i, delay in enumerate(delays):
        stats.on_packet(B + i, 4000 * i, 0.5 * i + delay, 100)
    # D = 0, 1000, 0, 1000 units; J: 0 -> 62.5 -> 58.59375 -> 117.431640625
    expected = 0.0
    for d in (0.0, 1000.0, 0.0, 1000.0):
        expected += (d - expected) / 16
    assert expected == 117.431640625
    assert stats.jitter == expected
    assert stats.jitter_ms == pytest.approx(117.431640625 / 8)
    assert stats.report_block(1, 5.0).jitter == 117


def test_jitter_ignores_packets_of_the_same_frame_and_late_packets() -> None:
    stats = ReceiveStats(8000)
    stats.on_packet(B, 0, 0.0, 100)
    # Same frame (same timestamp), paced out over 0.25 s: no update.
    stats.on_packet(B + 1, 0, 0.125, 100)
    stats.on_packet(B + 2, 0, 0.25, 100)
    assert stats.jitter == 0.0
    # Next frame measured against the first packet of the previous frame.
    stats.on_packet(B + 3, 4000, 0.5, 100)
    assert stats.jitter == 0.0
    # A retransmission of an old packet arriving late does not count.
    stats.on_packet(B + 1, 0, 2.0, 100)
    assert stats.jitter == 0.0
    stats.on_packet(B + 4, 8000, 1.125, 100)
    assert stats.jitter == 1000 / 16


@pytest.mark.parametrize(
    ("ntp", "sr_arrival_s", "now_s", "lsr", "dlsr"),
    [
        (0x1234_5678_9ABC_DEF0, 10.0, 10.5, 0x5678_9ABC, 32768),
        (0xFFFF_FFFF_FFFF_FFFF, 1.0, 3.25, 0xFFFF_FFFF, 2 * 65536 + 16384),
        (0x0000_0001_0000_0000, 5.0, 5.0, 0x0001_0000, 0),
        (0x0000_0001_0000_0000, 5.0, 4.0, 0x0001_0000, 0),
    ],
    ids=["half_second", "all_ones", "immediate", "clock_went_back"],
)
def test_lsr_dlsr(ntp: int, sr_arrival_s: float, now_s: float, lsr: int, dlsr: int) -> None:
    stats = ReceiveStats(90000)
    feed(stats, [B])
    stats.on_sender_report(ntp, sr_arrival_s)
    rb = stats.report_block(9, now_s)
    assert (rb.lsr, rb.dlsr) == (lsr, dlsr)


def test_no_sr_and_no_packets_reports_zeros() -> None:
    stats = ReceiveStats(90000)
    assert stats.report_block(3, 1.0) == ReceptionReport(3, 0, 0, 0, 0, 0, 0)
    assert stats.highest_ext_seq is None
    assert stats.packets == 0


def test_report_matches_rtcp_report_block_field_order() -> None:
    stats = ReceiveStats(90000)
    feed(stats, [B + i for i in range(100) if i != 7])
    stats.on_sender_report(0x0000_0002_0003_0000, 1.0)
    values = stats.report_block(0xABCD, 1.5)
    block = ReportBlock(*values)
    assert block.ssrc == 0xABCD
    assert block.fraction_lost == 2
    assert block.cumulative_lost == 1
    assert block.highest_seq == 99
    assert block.lsr == 0x0002_0003
    assert block.dlsr == 32768


def test_invalid_clock_rate() -> None:
    with pytest.raises(ValueError):
        ReceiveStats(0)


def test_send_stats() -> None:
    s = SendStats()
    for size in (100, 200, 300):
        s.on_packet(size)
    assert (s.packets, s.octets) == (3, 600)
    s.octets = (1 << 32) + 5
    assert s.octet_count == 5
    assert s.packet_count == 3
