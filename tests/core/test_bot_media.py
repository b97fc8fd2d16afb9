"""Bot media: frame counter barcode, pre-encoded clips, sources, decoder."""

from __future__ import annotations

import random
import time

import av
import numpy as np
import pytest

from sfu.core import h264, vp8
from sfu_bot import media
from sfu_bot.media import (
    AudioSource,
    EncodedVideo,
    VideoDecoder,
    VideoSource,
    draw_frame,
    encode_audio,
    encode_video,
    read_counter,
)

WIDTH, HEIGHT, FPS, FRAMES, GOP, BITRATE = 320, 240, 30, 30, 10, 400_000


@pytest.fixture(autouse=True)
def _isolated_disk_cache(tmp_path, monkeypatch):
    """Never touch the user's ~/.cache from tests."""
    monkeypatch.setenv("PYSFU_BOT_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module", params=["vp8", "h264"])
def clip(request) -> EncodedVideo:
    t0 = time.perf_counter()
    video = encode_video(request.param, WIDTH, HEIGHT, FPS, FRAMES, GOP, BITRATE, cache=False)
    elapsed = time.perf_counter() - t0
    size = sum(map(len, video.frames))
    print(
        f"\nencode {request.param} {WIDTH}x{HEIGHT} {FRAMES} frames: {elapsed * 1000:.0f} ms, "
        f"{size} bytes ({size * 8 * FPS / FRAMES / 1000:.0f} kbit/s)"
    )
    assert elapsed < 5.0
    return video


# -- barcode -----------------------------------------------------------------


@pytest.mark.parametrize("size", [(320, 240), (160, 90), (112, 32), (640, 360)])
@pytest.mark.parametrize("index", [0, 1, 0x5A5A, 0xFFFF, 70000])
def test_draw_and_read_counter(size: tuple[int, int], index: int) -> None:
    w, h = size
    picture = draw_frame(index, w, h)
    assert picture.shape == (h * 3 // 2, w) and picture.dtype == np.uint8
    assert read_counter(picture[:h]) == index & 0xFFFF
    frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
    assert read_counter(frame) == index & 0xFFFF
    assert read_counter(frame.reformat(format="rgb24")) == index & 0xFFFF


def test_pictures_move() -> None:
    a, b = draw_frame(3, WIDTH, HEIGHT), draw_frame(4, WIDTH, HEIGHT)
    assert np.count_nonzero(a[HEIGHT // 3 : HEIGHT] != b[HEIGHT // 3 : HEIGHT]) > WIDTH * 20


def test_read_counter_rejects_garbage() -> None:
    rng = np.random.default_rng(0)
    assert read_counter(np.zeros((HEIGHT, WIDTH), np.uint8)) is None
    assert read_counter(np.full((HEIGHT, WIDTH), 255, np.uint8)) is None
    assert read_counter(rng.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8)) is None
    assert read_counter(np.zeros((10, 10), np.uint8)) is None
    band_h, cell_w, x0 = media._geometry(WIDTH, HEIGHT)
    for cell in (0, 2, 5, 20, 27):  # guard, guard, data, check, guard
        luma = draw_frame(1234, WIDTH, HEIGHT)[:HEIGHT].copy()
        cells = luma[:band_h, x0 + cell * cell_w : x0 + (cell + 1) * cell_w]
        cells[:] = 251 - cells  # invert one cell
        assert read_counter(luma) is None, cell
    luma = draw_frame(1234, WIDTH, HEIGHT)[:HEIGHT].copy()
    luma[:band_h, x0 + 9 * cell_w : x0 + 10 * cell_w] = 128  # ambiguous cell
    assert read_counter(luma) is None


def test_draw_frame_rejects_bad_sizes() -> None:
    for w, h in [(321, 240), (320, 241), (100, 240), (320, 30)]:
        with pytest.raises(ValueError):
            draw_frame(0, w, h)


# -- encoded clips -----------------------------------------------------------


def test_clip_keyframes_and_counters(clip: EncodedVideo) -> None:
    assert len(clip.frames) == FRAMES and all(clip.frames)
    assert clip.keyframes == [i % GOP == 0 for i in range(FRAMES)]
    assert clip.counters == list(range(FRAMES))
    assert [media.bitstream_is_keyframe(clip.codec, f) for f in clip.frames] == clip.keyframes
    assert (clip.width, clip.height, clip.fps) == (WIDTH, HEIGHT, FPS)
    if clip.codec == "h264":
        nals = h264.split_nal_units(clip.frames[0])
        sps = next(n for n in nals if n[0] & 0x1F == 7)
        assert sps[1] == 66 and sps[2] & 0x40  # constrained baseline
        assert all(
            n[0] & 0x1F in (1, 5, 6, 7, 8) for f in clip.frames for n in h264.split_nal_units(f)
        )


def _rtp_round_trip(clip: EncodedVideo, rng: random.Random) -> list[vp8.AssembledFrame]:
    """Packetize every frame, deliver with jitter, reassemble."""
    packets = []
    seq = 65000
    for i, frame in enumerate(clip.frames):
        if clip.codec == "vp8":
            payloads = vp8.packetize(frame, picture_id=i, max_payload=500)
            assert vp8.is_keyframe(payloads[0]) == clip.keyframes[i]
        else:
            payloads = h264.packetize(frame, max_payload=500)
            assert any(map(h264.is_keyframe, payloads)) == clip.keyframes[i]
        ts = (4_000_000_000 + i * 90000 // FPS) & 0xFFFFFFFF
        for j, p in enumerate(payloads):
            packets.append((seq & 0xFFFF, ts, j == len(payloads) - 1, p))
            seq += 1
    jittered = [p for _, p in sorted((i + rng.uniform(0, 4), p) for i, p in enumerate(packets))]
    if clip.codec == "vp8":
        asm: vp8.RtpFrameAssembler = vp8.Vp8FrameAssembler()
    else:
        asm = h264.H264FrameAssembler()
    out = []
    for p in jittered:
        out.extend(asm.feed(*p))
    out.extend(asm.flush())
    assert asm.incomplete == 0
    return out


def test_packetize_reassemble_decode(clip: EncodedVideo) -> None:
    out = _rtp_round_trip(clip, random.Random(11))
    assert len(out) == FRAMES
    assert [f.keyframe for f in out] == clip.keyframes
    decoder = VideoDecoder(clip.codec)
    seen = []
    for f in out:
        if clip.codec == "vp8":
            assert f.data == clip.frames[len(seen)]
        for picture in decoder.decode(f.data):
            assert (picture.width, picture.height) == (WIDTH, HEIGHT)
            seen.append(read_counter(picture))
    assert seen == clip.counters
    assert decoder.errors == 0


def test_decoder_never_raises(clip: EncodedVideo) -> None:
    decoder = VideoDecoder(clip.codec)
    rng = random.Random(2)
    garbage = [b"", b"\x00", bytes(rng.randrange(256) for _ in range(300))]
    corrupt = bytearray(clip.frames[0])
    for i in range(len(corrupt) // 3, len(corrupt), 7):
        corrupt[i] ^= 0x5A
    for data in [*garbage, bytes(corrupt), clip.frames[5][: len(clip.frames[5]) // 2]]:
        result = decoder.decode(data)
        assert isinstance(result, list)
    assert decoder.errors >= 1
    # Still usable: a keyframe decodes and reads back.
    pictures = decoder.decode(clip.frames[10])
    assert [read_counter(p) for p in pictures] in ([10], [])
    with pytest.raises(ValueError):
        VideoDecoder("vp9")


# -- sources -----------------------------------------------------------------


def test_video_source_loops_and_jumps(clip: EncodedVideo) -> None:
    src = VideoSource(clip)
    first = [src.next_frame() for _ in range(3)]
    assert [c for _, _, c in first] == [0, 1, 2]
    assert first[0][1] is True and first[0][0] == clip.frames[0]
    src.request_keyframe()
    data, key, counter = src.next_frame()
    assert (key, counter, data) == (True, 10, clip.frames[10])
    assert src.next_frame()[2] == 11
    assert src.skipped == 7
    # A request at a keyframe position is answered by that frame.
    while src.position != 20:
        src.next_frame()
    src.request_keyframe()
    assert src.next_frame()[1:] == (True, 20)
    # Past the last keyframe the jump wraps to frame 0.
    while src.position != 25:
        src.next_frame()
    src.request_keyframe()
    src.request_keyframe()  # several requests, one jump
    assert src.next_frame()[1:] == (True, 0)
    assert src.loops == 1
    assert [src.next_frame()[2] for _ in range(FRAMES)] == [*range(1, FRAMES), 0]
    assert src.loops == 2


def test_video_source_rejects_bad_clips(clip: EncodedVideo) -> None:
    bad = EncodedVideo(
        frames=clip.frames[1:],
        keyframes=clip.keyframes[1:],
        counters=clip.counters[1:],
        width=WIDTH,
        height=HEIGHT,
        fps=FPS,
        codec=clip.codec,
    )
    with pytest.raises(ValueError):
        VideoSource(bad)


def test_audio() -> None:
    t0 = time.perf_counter()
    audio = encode_audio(500)
    print(f"\nencode opus 500 ms: {(time.perf_counter() - t0) * 1000:.0f} ms")
    assert len(audio.frames) == 25 and all(audio.frames)
    for packet in audio.frames:
        toc = packet[0]
        config, stereo, code = toc >> 3, toc & 0x04, toc & 0x03
        # One 20 ms frame per packet (RFC 6716 §3.1 TOC byte).
        assert code == 0 and stereo
        assert config in (1, 5, 9, 13, 15, 19, 23, 27, 31)
    decoder = av.CodecContext.create("opus", "r")
    samples = 0
    for packet in audio.frames:
        for frame in decoder.decode(av.Packet(packet)):
            assert frame.sample_rate == 48000
            samples += frame.samples
    assert samples == 25 * 960
    src = AudioSource(audio)
    assert [src.next_frame() for _ in range(27)] == audio.frames + audio.frames[:2]
    assert encode_audio(500) is audio


# -- caches ------------------------------------------------------------------


def test_memory_and_disk_cache(tmp_path, monkeypatch) -> None:
    args = ("vp8", 160, 120, 15, 8, 4, 150_000)
    monkeypatch.setattr(media, "_VIDEO_CACHE", {})
    first = encode_video(*args)
    assert encode_video(*args) is first  # in-memory
    files = list((tmp_path / "cache").glob("video-vp8-160x120-*.bin"))
    assert len(files) == 1

    monkeypatch.setattr(media, "_VIDEO_CACHE", {})
    t0 = time.perf_counter()
    loaded = encode_video(*args)  # from disk
    print(f"\nload from disk cache: {(time.perf_counter() - t0) * 1000:.1f} ms")
    assert loaded is not first and loaded == first

    files[0].write_bytes(b"PYSFUBOT garbage")  # corrupt file: re-encode
    monkeypatch.setattr(media, "_VIDEO_CACHE", {})
    again = encode_video(*args)
    assert again.keyframes == first.keyframes and len(again.frames) == 8

    monkeypatch.setenv("PYSFU_BOT_CACHE_DIR", "off")
    monkeypatch.setattr(media, "_VIDEO_CACHE", {})
    assert encode_video("h264", 160, 120, 15, 4, 2, 100_000).keyframes == [True, False] * 2
    assert not list((tmp_path / "cache").glob("video-h264-*"))


def test_encode_video_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        encode_video("vp9", WIDTH, HEIGHT, FPS, 10, 5, BITRATE)
    with pytest.raises(ValueError):
        encode_video("vp8", WIDTH, HEIGHT, FPS, 0, 5, BITRATE)
    with pytest.raises(ValueError):
        encode_video("vp8", 319, HEIGHT, FPS, 10, 5, BITRATE)
