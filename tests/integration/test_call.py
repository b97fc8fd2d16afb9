"""Publish and subscribe through the SFU with real bots on 127.0.0.1: real ICE, DTLS
and SRTP, no mock in the media path."""

from __future__ import annotations

import asyncio
import time

from sfu_bot.client import Bot
from signaling.app import ENGINE, ROOMS
from tests.integration.conftest import BotFactory, Node


def _tracks_flowing(bot: Bot, count: int, min_packets: int = 30) -> bool:
    return len(bot.tracks) >= count and all(t.packets >= min_packets for t in bot.tracks.values())


async def test_two_participants_exchange_audio_and_video(make_bot: BotFactory) -> None:
    alice = await make_bot("alice")
    bob = await make_bot("bob")
    await alice.publish()
    await bob.publish()
    for me in (alice, bob):
        await me.wait_until(lambda me=me: _tracks_flowing(me, 2), 10, f"{me.name} receives")
        kinds = sorted(t.kind for t in me.tracks.values())
        assert kinds == ["audio", "video"]
        for track in me.tracks.values():
            assert track.missing() == [], f"{me.name} {track.kind} lost {track.missing()[:10]}"
    # RTCP: publishers get REMB; subscribers get sender reports whose RTP time is
    # translated into the subscriber's timestamp space (lip sync), i.e. close to
    # the timestamps of the packets they receive, not the publisher's random base.
    await alice.wait_until(
        lambda: all(t.sender_reports for t in alice.tracks.values()), 5, "sender reports"
    )
    assert alice.remb_received is not None and alice.remb_received >= 100_000
    for track in alice.tracks.values():
        _ntp, sr_rtp = track.sender_reports[-1]
        clock = 48000 if track.kind == "audio" else 90000
        distance = abs(((sr_rtp - track.last_timestamp + 2**31) % 2**32) - 2**31)
        assert distance < 3 * clock, f"{track.kind} SR rtp time is {distance / clock:.1f} s off"


async def test_five_participants_everyone_receives_everyone(make_bot: BotFactory) -> None:
    bots = [await make_bot(f"p{i}") for i in range(5)]
    for bot in bots:
        await bot.publish(width=160, height=120, frames=60, gop=30)
    for bot in bots:
        # 4 others x (audio + video)
        await bot.wait_until(
            lambda bot=bot: _tracks_flowing(bot, 8, 20), 20, f"{bot.name} receives 8 tracks"
        )
        senders = {p for p in bot.participants}
        assert len(senders) == 4 and bot.participant_id not in senders


async def test_payloads_are_forwarded_byte_for_byte(make_bot: BotFactory) -> None:
    publisher = await make_bot("pub", record=True)
    subscriber = await make_bot("sub", record=True)
    await publisher.publish(audio=False)
    await subscriber.wait_until(
        lambda: _tracks_flowing(subscriber, 1, 200), 15, "200 video packets"
    )
    track = next(iter(subscriber.tracks.values()))
    sent = publisher.stream("cam").recorded
    assert sent is not None and track.payloads is not None
    sent_by_position = list(sent.items())  # (pub seq, payload) in send order
    received = sorted(track.payloads.items())  # (sub ext seq, payload)
    # Align on the first received packet, then every packet must match the
    # publisher's packet at the same distance: same bytes, no gap, no reordering.
    first_seq, first_payload = received[0]
    starts = [i for i, (_seq, payload) in enumerate(sent_by_position) if payload == first_payload]
    assert len(starts) == 1, "first forwarded payload not found exactly once in what was sent"
    start = starts[0]
    for sub_seq, payload in received:
        pub_seq, pub_payload = sent_by_position[start + (sub_seq - first_seq)]
        assert payload == pub_payload, (
            f"payload differs at subscriber seq {sub_seq} / publisher seq {pub_seq}"
        )
    assert len(received) >= 200


async def test_late_joiner_starts_on_a_keyframe_within_one_second(make_bot: BotFactory) -> None:
    publisher = await make_bot("pub")
    # A long GOP: without the server's keyframe request the next one would be 10 s away.
    await publisher.publish(audio=False, gop=300, frames=300)
    await asyncio.sleep(3.0)
    joined_at = time.monotonic()
    late = await make_bot("late", decode=True)
    await late.wait_until(
        lambda: any(t.frames_decoded > 0 for t in late.tracks.values()), 5, "a decoded frame"
    )
    track = next(iter(late.tracks.values()))
    assert track.first_is_keyframe is True
    assert track.first_packet_at is not None
    assert track.first_packet_at - joined_at < 1.0, (
        f"first video after {track.first_packet_at - joined_at:.2f} s"
    )
    assert publisher.keyframe_requests_received >= 1


async def test_publisher_leg_loss_is_repaired_by_nack(make_bot: BotFactory) -> None:
    publisher = await make_bot("pub")
    # The subscriber does not NACK itself: only the server's NACKs upstream can repair.
    subscriber = await make_bot("sub", send_nacks=False)
    await publisher.publish(audio=False, drop_every=20)
    await subscriber.wait_until(
        lambda: _tracks_flowing(subscriber, 1, 400), 20, "400 video packets"
    )
    await asyncio.sleep(0.3)  # let the last repairs land
    cam = publisher.stream("cam")
    assert cam.dropped >= 20
    assert cam.nacks >= cam.dropped * 0.9
    track = next(iter(subscriber.tracks.values()))
    recent = sorted(track.seqs)[:-20]  # the newest few may still be under repair
    gaps = [s for s in range(recent[0], recent[-1] + 1) if s not in track.seqs]
    assert gaps == [], f"{len(gaps)} packets never repaired"


async def test_subscriber_leg_loss_is_repaired_from_the_server_cache(make_bot: BotFactory) -> None:
    publisher = await make_bot("pub")
    subscriber = await make_bot("sub", drop_incoming_every=25)
    await publisher.publish(audio=False)
    await subscriber.wait_until(
        lambda: _tracks_flowing(subscriber, 1, 400), 20, "400 video packets"
    )
    await asyncio.sleep(0.3)
    track = next(iter(subscriber.tracks.values()))
    assert subscriber.dropped_incoming >= 15
    # Repairs came as RTX (RFC 4588) from the server, not from the publisher.
    assert track.rtx_packets >= subscriber.dropped_incoming * 0.9
    assert publisher.stream("cam").nacks == 0
    recent = sorted(track.seqs)[:-20]
    gaps = [s for s in range(recent[0], recent[-1] + 1) if s not in track.seqs]
    assert gaps == [], f"{len(gaps)} packets never repaired"


async def test_decoding_subscriber_reads_the_published_pictures(make_bot: BotFactory) -> None:
    publisher = await make_bot("pub")
    subscriber = await make_bot("sub", decode=True)
    await publisher.publish(audio=False, width=320, height=240, gop=30)
    await subscriber.wait_until(
        lambda: any(len(t.counters) >= 60 for t in subscriber.tracks.values()),
        15,
        "60 decoded counters",
    )
    track = next(iter(subscriber.tracks.values()))
    sent = list(publisher.stream("cam").sent_counters.values())
    decoded = track.counters[:60]
    # The decoded counters are a contiguous run of what was sent, in order.
    starts = [
        i for i in range(len(sent) - len(decoded) + 1) if sent[i : i + len(decoded)] == decoded
    ]
    assert starts, f"decoded counters {decoded[:10]}... do not match what was sent"
    assert track.decode_errors == 0


async def test_h264_is_forwarded(make_bot: BotFactory) -> None:
    publisher = await make_bot("pub")
    subscriber = await make_bot("sub", decode=True)
    await publisher.publish(audio=False, video="h264", gop=30)
    await subscriber.wait_until(
        lambda: any(t.frames_decoded >= 20 for t in subscriber.tracks.values()),
        15,
        "20 H.264 frames",
    )
    track = next(iter(subscriber.tracks.values()))
    assert track.codec == "h264" and track.first_is_keyframe
    assert len(track.counters) >= 10


async def test_two_video_tracks_with_one_payload_type_are_demuxed_by_mid(
    make_bot: BotFactory,
) -> None:
    publisher = await make_bot("pub")
    subscriber = await make_bot("sub", decode=True)
    # No a=ssrc lines: the server must learn each stream's SSRC from its MID.
    ids = await publisher.publish(audio=False, screen=True, signal_ssrcs=False)
    await subscriber.wait_until(
        lambda: (
            len(subscriber.tracks) == 2
            and all(t.frames_decoded > 10 for t in subscriber.tracks.values())
        ),
        15,
        "both video tracks decode",
    )
    sizes = {}
    for track_id, track in subscriber.tracks.items():
        assert track.decoder is not None
        sizes[track_id] = track.frames_decoded
    assert set(sizes) == {ids["cam"], ids["screen"]}
    # Each track carries its own stream: the screen track decodes at double size.
    cam = subscriber.tracks[ids["cam"]]
    screen = subscriber.tracks[ids["screen"]]
    assert cam.ssrc != screen.ssrc
    assert cam.width is not None and screen.width == 2 * cam.width, (cam.width, screen.width)


async def test_leaving_and_dropping_release_everything(node: Node, make_bot: BotFactory) -> None:
    engine = node.app[ENGINE]
    watcher = await make_bot("watcher")
    task_counts = []
    for how in ("leave", "drop", "leave", "drop"):
        bot = await make_bot(f"leaver-{how}")
        tracks = await bot.publish()
        await watcher.wait_until(lambda: _tracks_flowing(watcher, 2, 10), 10, "watcher receives")
        pid = bot.participant_id
        assert pid in engine.peers
        peer = engine.peers[pid]
        await (bot.leave() if how == "leave" else bot.drop())
        left = await watcher.wait_for(
            "participant_left", lambda m, pid=pid: m["participant_id"] == pid, timeout=30
        )
        assert left["participant_id"] == pid
        unpublished = {
            m["track_id"]
            for m in watcher.messages
            if m["type"] == "track_unpublished" and m["participant_id"] == pid
        }
        assert unpublished == set(tracks.values())
        await watcher.wait_until(lambda pid=pid: pid not in engine.peers, 5, "peer released")
        assert peer.publisher is not None and peer.publisher.transport.state == "closed"
        assert all(t.closed for t in peer.publisher.tracks.values()) or not peer.publisher.tracks
        # The watcher's offer renegotiates the freed m-sections away.
        await watcher.wait_until(lambda: not watcher.participants, 5, "room empty for the watcher")
        watcher.tracks.clear()
        await asyncio.sleep(0.2)
        task_counts.append(len(asyncio.all_tasks()))
    assert node.app[ROOMS].stats()["participants"] == 1
    # After the first cycle (the watcher's own subscriber transport now exists),
    # every further join/leave returns to the same number of tasks.
    assert task_counts[1:] == [task_counts[1]] * 3, task_counts
