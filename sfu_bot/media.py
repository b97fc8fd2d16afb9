"""Pre-encoded media for bots (uses PyAV and numpy; never imported by the SFU).

A publishing bot must cost almost no CPU, so video and audio are encoded
once per process (and cached on disk across runs) and then replayed in a
loop by :class:`VideoSource` / :class:`AudioSource`. Every video frame
carries a barcode of its index (:func:`draw_frame`) that survives lossy
compression, so a subscribing bot can decode (:class:`VideoDecoder`) and
check what it sees with :func:`read_counter`.

Encoding is blocking CPU work (tens to hundreds of milliseconds for short
clips); call :func:`encode_video` / :func:`encode_audio` from a thread
(``asyncio.to_thread``) when an event loop is running and the clip is not
cached yet.

Cache: results are kept in a module-level dict keyed by the arguments and,
unless disabled, in one file per key under ``~/.cache/pysfu-bot/``
(``$PYSFU_BOT_CACHE_DIR`` overrides the directory; an empty value or
``off`` disables the disk cache).
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
import threading
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av
import numpy as np
from av.video.frame import PictureType
from numpy.lib.stride_tricks import sliding_window_view

from sfu.core import h264 as _h264

__all__ = [
    "AudioSource",
    "EncodedAudio",
    "EncodedVideo",
    "VideoDecoder",
    "VideoSource",
    "bitstream_is_keyframe",
    "draw_frame",
    "encode_audio",
    "encode_simulcast",
    "encode_video",
    "read_counter",
    "vp8_keyframe_size",
]

# Bump whenever the picture, the sound or the encoder settings change, so
# stale disk-cache files are not reused.
_CACHE_VERSION = 1

# ---------------------------------------------------------------------------
# Picture with a machine-readable frame counter
# ---------------------------------------------------------------------------

# Barcode layout: one row of 28 cells across the top band of the picture:
# 4 start-guard cells, the 16-bit index (MSB first), a 4-bit check value,
# 4 end-guard cells. A cell is white (bit 1) or black (bit 0).
_GUARD_START = (1, 0, 1, 1)
_GUARD_END = (1, 1, 0, 1)
_DATA_BITS = 16
_CHECK_BITS = 4
_CELLS = len(_GUARD_START) + _DATA_BITS + _CHECK_BITS + len(_GUARD_END)
_MIN_CELL = 4  # pixels
MIN_WIDTH = _CELLS * _MIN_CELL  # 112
MIN_HEIGHT = 32
# Video-range luma levels (ITU-R BT.601): black 16, white 235.
_BLACK = 16
_WHITE = 235
_THRESHOLD = (_BLACK + _WHITE) / 2
# A cell whose mean luma lies closer than this to the threshold is neither
# black nor white: the picture does not carry a readable code.
_MARGIN = 45


def _check_value(value: int) -> int:
    """4-bit check of a 16-bit value: XOR of its nibbles, XOR 0b1010."""
    return (value ^ (value >> 4) ^ (value >> 8) ^ (value >> 12) ^ 0xA) & 0xF


def _code_cells(index: int) -> list[int]:
    value = index & 0xFFFF
    check = _check_value(value)
    data = [(value >> (_DATA_BITS - 1 - k)) & 1 for k in range(_DATA_BITS)]
    chk = [(check >> (_CHECK_BITS - 1 - k)) & 1 for k in range(_CHECK_BITS)]
    return [*_GUARD_START, *data, *chk, *_GUARD_END]


def _geometry(width: int, height: int) -> tuple[int, int, int]:
    """(band height, cell width, left margin) of the barcode for a picture size."""
    band_h = max(16, (height // 6) // 16 * 16)
    cell_w = width // _CELLS
    x0 = (width - cell_w * _CELLS) // 2
    return band_h, cell_w, x0


_Y_PERIOD = 384
_C_PERIOD = 160


def _triangle(v: np.ndarray, period: int) -> np.ndarray:
    """Triangle wave 0..period/2..0 (no sharp wrap edge for the encoder)."""
    v = v % period
    return np.minimum(v, period - v)


@lru_cache(maxsize=16)
def _ramps(width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1-D triangle ramps; rows of the gradient are windows into them."""
    y = (40 + _triangle(np.arange(_Y_PERIOD + width + height), _Y_PERIOD)).astype(np.uint8)
    c = np.arange(_C_PERIOD + (width + height) // 2)
    u = (88 + _triangle(c, _C_PERIOD)).astype(np.uint8)  # 88..168
    v = (168 - _triangle(c, _C_PERIOD) // 2).astype(np.uint8)  # 128..168
    return y, u, v


def draw_frame(index: int, width: int, height: int) -> np.ndarray:
    """Draw picture number ``index`` as a packed yuv420p array.

    Returns a ``uint8`` array of shape ``(height * 3 // 2, width)`` holding
    the Y plane followed by the U and V planes (the layout
    ``av.VideoFrame.from_ndarray(arr, format="yuv420p")`` expects); the
    luma is ``arr[:height]``. The picture is a diagonal gradient and a box
    that both move with ``index``, under a top band holding a barcode of
    ``index & 0xFFFF`` (see :func:`read_counter`).

    ``width`` and ``height`` must be even, ``width >= 112`` and
    ``height >= 32``.
    """
    if width % 2 or height % 2:
        raise ValueError("width and height must be even for yuv420p")
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        raise ValueError(f"picture must be at least {MIN_WIDTH}x{MIN_HEIGHT}")
    n = width * height
    cw, ch = width // 2, height // 2
    out = np.empty(n * 3 // 2, dtype=np.uint8)
    luma = out[:n].reshape(height, width)
    u = out[n : n + n // 4].reshape(ch, cw)
    v = out[n + n // 4 :].reshape(ch, cw)

    # Moving diagonal gradients: row r of a plane is a window of a ramp that
    # starts r (+ a per-frame shift) samples later, so no 2-D arithmetic.
    ramp_y, ramp_u, ramp_v = _ramps(width, height)
    ty = (index * 6) % _Y_PERIOD
    luma[:] = sliding_window_view(ramp_y, width)[ty : ty + height]
    tu = (index * 8) % _C_PERIOD
    u[:] = sliding_window_view(ramp_u, cw)[tu : tu + ch]
    tv = (index * 4) % _C_PERIOD
    v[:] = sliding_window_view(ramp_v, cw)[tv : tv + ch][::-1]

    # A box bouncing left and right below the band (motion for the encoder).
    band_h, cell_w, x0 = _geometry(width, height)
    side = max(8, (height - band_h) // 4) & ~1
    span = max(1, width - side)
    bx = (index * 4) % (2 * span)
    bx = (bx if bx < span else 2 * span - bx) & ~1
    by = (band_h + (height - band_h - side) // 2) & ~1
    luma[by : by + side, bx : bx + side] = 200
    u[by // 2 : (by + side) // 2, bx // 2 : (bx + side) // 2] = 60
    v[by // 2 : (by + side) // 2, bx // 2 : (bx + side) // 2] = 200

    # The barcode band: neutral grey background, black/white cells, no colour.
    luma[:band_h, :] = 128
    for c, bit in enumerate(_code_cells(index)):
        luma[:band_h, x0 + c * cell_w : x0 + (c + 1) * cell_w] = _WHITE if bit else _BLACK
    u[: band_h // 2, :] = 128
    v[: band_h // 2, :] = 128
    return out.reshape(height * 3 // 2, width)


# 8-bit formats whose first plane is the luma (decoders output yuv420p).
_LUMA_FIRST_FORMATS = frozenset(
    ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray")
)


def _luma(frame: av.VideoFrame | np.ndarray) -> np.ndarray:
    if isinstance(frame, np.ndarray):
        if frame.ndim != 2:
            raise ValueError("expected a 2-D luma array")
        return frame
    if frame.format.name in _LUMA_FIRST_FORMATS:
        plane = frame.planes[0]
        buf = np.frombuffer(plane, dtype=np.uint8)
        return buf.reshape(plane.height, plane.line_size)[:, : plane.width]
    return frame.to_ndarray(format="gray")


def read_counter(frame: av.VideoFrame | np.ndarray) -> int | None:
    """Read back the index drawn by :func:`draw_frame`.

    ``frame`` is a decoded ``av.VideoFrame`` (any YUV format, or anything
    PyAV can convert to grey) or a 2-D luma array such as
    ``draw_frame(i, w, h)[:h]``. Returns ``index & 0xFFFF``, or None when
    the picture does not carry a valid code: a cell is neither clearly
    black nor white, a guard pattern differs, or the check value is wrong.
    """
    try:
        luma = _luma(frame)
    except Exception:  # unreadable frame: no code
        return None
    height, width = luma.shape
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        return None
    band_h, cell_w, x0 = _geometry(width, height)
    # Average the centre of each cell, away from edges blurred by the codec.
    rows = luma[band_h // 4 : band_h - band_h // 4, x0 : x0 + cell_w * _CELLS]
    profile = rows.mean(axis=0, dtype=np.float32).reshape(_CELLS, cell_w)
    inset = cell_w // 4
    means = profile[:, inset : cell_w - inset].mean(axis=1)
    if np.any(np.abs(means - _THRESHOLD) < _MARGIN):
        return None
    bits = [int(b) for b in (means > _THRESHOLD)]
    g = len(_GUARD_START)
    if tuple(bits[:g]) != _GUARD_START or tuple(bits[-len(_GUARD_END) :]) != _GUARD_END:
        return None
    value = 0
    for b in bits[g : g + _DATA_BITS]:
        value = (value << 1) | b
    check = 0
    for b in bits[g + _DATA_BITS : g + _DATA_BITS + _CHECK_BITS]:
        check = (check << 1) | b
    if check != _check_value(value):
        return None
    return value


# ---------------------------------------------------------------------------
# Encoded clips and their caches
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EncodedVideo:
    """A pre-encoded clip: one bitstream per frame (VP8 frames, or H.264
    Annex-B access units), in display order."""

    frames: list[bytes]
    keyframes: list[bool]
    counters: list[int]
    """The index drawn in each frame (what :func:`read_counter` returns)."""
    width: int
    height: int
    fps: int
    codec: str
    gop: int = 0
    temporal_ids: tuple[int, ...] | None = None
    """VP8 temporal layer (TID, RFC 7741 §4.2) of each frame when encoded with
    temporal scalability, else None. Frames of layer 1 are never referenced by
    layer 0 frames and reference only layer 0 frames (each one is a sync frame)."""

    @property
    def temporal_layers(self) -> int:
        return 1 if self.temporal_ids is None else max(self.temporal_ids) + 1


@dataclass(frozen=True, slots=True)
class EncodedAudio:
    """Opus packets of 20 ms each, 48 kHz stereo (48 kHz RTP clock: RFC 7587 §4.1)."""

    frames: list[bytes]
    sample_rate: int = 48000
    channels: int = 2
    frame_ms: int = 20


_VIDEO_CACHE: dict[tuple[str | int, ...], EncodedVideo] = {}
_AUDIO_CACHE: dict[int, EncodedAudio] = {}
_LOCK = threading.Lock()
_MAGIC = b"PYSFUBOT"


def _cache_dir() -> Path | None:
    env = os.environ.get("PYSFU_BOT_CACHE_DIR")
    if env is not None:
        if env.strip().lower() in ("", "0", "off", "none"):
            return None
        return Path(env).expanduser()
    return Path.home() / ".cache" / "pysfu-bot"


def _disk_load(name: str) -> tuple[dict, list[bytes]] | None:
    directory = _cache_dir()
    if directory is None:
        return None
    try:
        blob = (directory / name).read_bytes()
        if not blob.startswith(_MAGIC):
            return None
        (hlen,) = struct.unpack_from("!I", blob, len(_MAGIC))
        start = len(_MAGIC) + 4
        header = json.loads(blob[start : start + hlen])
        lengths = header["lengths"]
        body = memoryview(blob)[start + hlen :]
        if sum(lengths) != len(body):
            return None
        frames = []
        off = 0
        for n in lengths:
            frames.append(bytes(body[off : off + n]))
            off += n
        return header, frames
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None


def _disk_store(name: str, header: dict, frames: list[bytes]) -> None:
    directory = _cache_dir()
    if directory is None:
        return
    header = dict(header, lengths=[len(f) for f in frames])
    encoded = json.dumps(header, separators=(",", ":")).encode()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".bin")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_MAGIC + struct.pack("!I", len(encoded)) + encoded)
                for frame in frames:
                    f.write(frame)
            os.replace(tmp, directory / name)  # atomic: concurrent runs are safe
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass  # the disk cache is an optimisation only


def bitstream_is_keyframe(codec: str, frame: bytes) -> bool:
    """Whether an encoded frame is a keyframe, from its bitstream.

    VP8: bit 0 of the frame tag is 0 (RFC 7741 §4.3 / RFC 6386 §9.1).
    H.264: the access unit contains an IDR slice (NAL type 5).
    """
    if not frame:
        return False
    if codec == "vp8":
        return not frame[0] & 0x01
    return any(nal[0] & 0x1F == 5 for nal in _h264.split_nal_units(frame))


def vp8_keyframe_size(
    frame: bytes | bytearray | memoryview, offset: int = 0
) -> tuple[int, int] | None:
    """(width, height) of the VP8 keyframe whose bitstream starts at ``offset``, or None.

    Reads the uncompressed keyframe header (RFC 6386 §9.1): a 3-byte frame tag
    whose bit 0 is 0 for a keyframe, the start code 9d 01 2a, then two 16-bit
    little-endian fields holding a 14-bit width and a 14-bit height (the top two
    bits are the scaling mode). Needs only the first 10 bytes; no decoding.
    """
    if len(frame) < offset + 10 or frame[offset] & 0x01:
        return None
    if frame[offset + 3 : offset + 6] != b"\x9d\x01\x2a":
        return None
    width = (frame[offset + 6] | (frame[offset + 7] << 8)) & 0x3FFF
    height = (frame[offset + 8] | (frame[offset + 9] << 8)) & 0x3FFF
    return width, height


# Two VP8 temporal layers with libvpx's built-in two-layer pattern (as exposed
# by FFmpeg's libvpx "ts-parameters"): even frames are layer 0, odd frames
# layer 1; layer 0 refers only to layer 0 and layer 1 frames are not referenced.
_TL0_SHARE = 0.6  # share of the bitrate spent on layer 0


def _temporal_options(layers: int, bitrate_bps: int) -> dict[str, str]:
    if layers == 1:
        return {}
    if layers != 2:
        raise ValueError("temporal_layers must be 1 or 2")
    total = max(2, bitrate_bps // 1000)
    base = max(1, int(total * _TL0_SHARE))
    return {
        "ts-parameters": (
            f"ts_number_layers=2:ts_target_bitrate={base},{total}:ts_rate_decimator=2,1:"
            "ts_periodicity=2:ts_layer_id=0,1:ts_layering_mode=2"
        )
    }


def _video_encoder(
    codec: str,
    width: int,
    height: int,
    fps: int,
    gop: int,
    bitrate_bps: int,
    temporal_layers: int = 1,
) -> av.CodecContext:
    if codec == "vp8":
        ctx = av.CodecContext.create("libvpx", "w")
        options = {
            "deadline": "realtime",
            "cpu-used": "8",
            "lag-in-frames": "0",  # one packet out per frame in
            "auto-alt-ref": "0",  # no invisible alt-ref frames
            "error-resilient": "1",
            "keyint_min": str(gop),
            **_temporal_options(temporal_layers, bitrate_bps),
        }
    elif codec == "h264":
        ctx = av.CodecContext.create("libx264", "w")
        options = {
            "preset": "veryfast",
            "tune": "zerolatency",
            "profile": "baseline",
            "forced-idr": "1",  # a forced keyframe is an IDR, not an open-GOP I
            # Constrained baseline level 3.1: profile-level-id 42c01f
            # (RFC 6184 §8.1); in-band SPS/PPS before every IDR.
            "x264-params": (
                f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:level=3.1:repeat-headers=1"
            ),
        }
    else:
        raise ValueError(f"unsupported video codec {codec!r} (expected 'vp8' or 'h264')")
    ctx.width = width
    ctx.height = height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, fps)
    ctx.framerate = Fraction(fps, 1)
    ctx.bit_rate = bitrate_bps
    ctx.gop_size = gop
    ctx.max_b_frames = 0
    ctx.options = options
    return ctx


def _temporal_ids(temporal_layers: int, frame_count: int) -> tuple[int, ...] | None:
    if temporal_layers == 1:
        return None
    return tuple(i % temporal_layers for i in range(frame_count))


def _encode_video(
    codec: str,
    width: int,
    height: int,
    fps: int,
    frame_count: int,
    gop: int,
    bitrate_bps: int,
    temporal_layers: int = 1,
) -> EncodedVideo:
    ctx = _video_encoder(codec, width, height, fps, gop, bitrate_bps, temporal_layers)
    by_pts: dict[int, bytes] = {}
    for i in range(frame_count):
        frame = av.VideoFrame.from_ndarray(draw_frame(i, width, height), format="yuv420p")
        frame.pts = i
        frame.pict_type = PictureType.I if i % gop == 0 else PictureType.NONE
        for packet in ctx.encode(frame):
            by_pts[packet.pts] = bytes(packet)
    for packet in ctx.encode(None):
        by_pts[packet.pts] = bytes(packet)
    if sorted(by_pts) != list(range(frame_count)) or not all(by_pts.values()):
        raise RuntimeError(f"{codec} encoder did not produce exactly one frame per picture")
    frames = [by_pts[i] for i in range(frame_count)]
    keyframes = [bitstream_is_keyframe(codec, f) for f in frames]
    expected = [i % gop == 0 for i in range(frame_count)]
    if keyframes != expected:
        got = [i for i, k in enumerate(keyframes) if k]
        raise RuntimeError(f"{codec} keyframes at {got}, expected every {gop} frames")
    return EncodedVideo(
        frames=frames,
        keyframes=keyframes,
        counters=[i & 0xFFFF for i in range(frame_count)],
        width=width,
        height=height,
        fps=fps,
        codec=codec,
        gop=gop,
        temporal_ids=_temporal_ids(temporal_layers, frame_count),
    )


def encode_video(
    codec: str,
    width: int,
    height: int,
    fps: int,
    frame_count: int,
    gop: int,
    bitrate_bps: int,
    *,
    cache: bool = True,
    temporal_layers: int = 1,
) -> EncodedVideo:
    """Encode ``frame_count`` pictures from :func:`draw_frame` (cached).

    ``codec`` is "vp8" (libvpx, realtime) or "h264" (libx264, constrained
    baseline, no B-frames, tune zerolatency, Annex-B with in-band SPS/PPS).
    Frame ``i`` is a keyframe exactly when ``i % gop == 0``; this is checked
    on the bitstream and RuntimeError is raised otherwise. ``cache=False``
    bypasses both caches (to measure encoding time). Blocking.

    ``temporal_layers=2`` (VP8 only, ``gop`` even) encodes two temporal layers:
    frame ``i`` belongs to layer ``i % 2`` (``EncodedVideo.temporal_ids``).
    """
    codec = codec.lower()
    if codec not in ("vp8", "h264"):
        raise ValueError(f"unsupported video codec {codec!r} (expected 'vp8' or 'h264')")
    if frame_count < 1 or gop < 1 or fps < 1 or bitrate_bps < 1:
        raise ValueError("frame_count, gop, fps and bitrate_bps must be positive")
    if temporal_layers not in (1, 2):
        raise ValueError("temporal_layers must be 1 or 2")
    if temporal_layers > 1 and (codec != "vp8" or gop % temporal_layers):
        # Keyframes (every gop frames) must fall on layer 0 frames.
        raise ValueError("temporal layers need vp8 and an even gop")
    draw_frame(0, width, height)  # validates the size early
    args = (codec, width, height, fps, frame_count, gop, bitrate_bps)
    if not cache:
        return _encode_video(*args, temporal_layers)
    key: tuple[str | int, ...] = args + ((temporal_layers,) if temporal_layers > 1 else ())
    with _LOCK:
        video = _VIDEO_CACHE.get(key)
        if video is not None:
            return video
        tl = f"-tl{temporal_layers}" if temporal_layers > 1 else ""
        name = (
            f"video-{codec}-{width}x{height}-{fps}fps-{frame_count}f-gop{gop}-"
            f"{bitrate_bps}bps{tl}-v{_CACHE_VERSION}.bin"
        )
        loaded = _disk_load(name)
        if loaded is not None:
            header, frames = loaded
            if (
                header.get("key") == list(key)
                and len(frames) == frame_count
                and all(
                    bitstream_is_keyframe(codec, f) == (i % gop == 0) for i, f in enumerate(frames)
                )
            ):
                video = EncodedVideo(
                    frames=frames,
                    keyframes=[i % gop == 0 for i in range(frame_count)],
                    counters=[i & 0xFFFF for i in range(frame_count)],
                    width=width,
                    height=height,
                    fps=fps,
                    codec=codec,
                    gop=gop,
                    temporal_ids=_temporal_ids(temporal_layers, frame_count),
                )
        if video is None:
            video = _encode_video(*args, temporal_layers)
            _disk_store(name, {"key": list(key)}, video.frames)
        _VIDEO_CACHE[key] = video
        return video


def encode_simulcast(
    codec: str,
    layers: list[tuple[int, int, int]],
    fps: int,
    frame_count: int,
    gop: int,
    *,
    temporal_layers: int = 1,
    cache: bool = True,
) -> list[EncodedVideo]:
    """Encode one clip per simulcast layer, ``layers`` being (width, height,
    bitrate_bps) each (cached like :func:`encode_video`).

    Every layer draws the same pictures (the same counter in frame ``i``) and
    has its keyframes at the same indices (``i % gop == 0``), so sources that
    advance together stay aligned and can jump to a keyframe together. Blocking.
    """
    return [
        encode_video(
            codec,
            width,
            height,
            fps,
            frame_count,
            gop,
            bitrate_bps,
            cache=cache,
            temporal_layers=temporal_layers,
        )
        for width, height, bitrate_bps in layers
    ]


_SAMPLE_RATE = 48000  # Opus RTP clock is always 48 kHz (RFC 7587 §4.1)
_FRAME_MS = 20
_TONE_HZ = 440.0
_TONE_AMPLITUDE = 1000  # about -30 dBFS in s16: quiet


def _encode_audio(duration_ms: int) -> EncodedAudio:
    count = max(1, duration_ms // _FRAME_MS)
    spf = _SAMPLE_RATE * _FRAME_MS // 1000  # 960 samples per channel
    total = count * spf
    # Whole number of periods in the clip so the loop joins without a click.
    cycles = max(1, round(_TONE_HZ * total / _SAMPLE_RATE))
    t = np.arange(total, dtype=np.float64)
    tone = (_TONE_AMPLITUDE * np.sin(2 * math.pi * cycles * t / total)).astype(np.int16)
    stereo = np.repeat(tone, 2)  # interleaved L R

    ctx = av.CodecContext.create("libopus", "w")
    ctx.sample_rate = _SAMPLE_RATE
    ctx.layout = "stereo"
    ctx.format = "s16"
    ctx.bit_rate = 32000
    ctx.time_base = Fraction(1, _SAMPLE_RATE)
    ctx.options = {"application": "audio", "frame_duration": str(_FRAME_MS)}
    packets: list[bytes] = []
    for i in range(count):
        chunk = stereo[i * spf * 2 : (i + 1) * spf * 2].reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
        frame.sample_rate = _SAMPLE_RATE
        frame.pts = i * spf
        packets.extend(bytes(p) for p in ctx.encode(frame))
    packets.extend(bytes(p) for p in ctx.encode(None))
    # The encoder's look-ahead yields one more packet at flush; keep one per frame.
    if len(packets) < count:
        raise RuntimeError(f"opus encoder produced {len(packets)} packets for {count} frames")
    return EncodedAudio(frames=packets[:count])


def encode_audio(duration_ms: int = 1000) -> EncodedAudio:
    """Opus, 48 kHz stereo, 20 ms packets of a quiet 440 Hz-ish tone (cached).

    The clip holds ``duration_ms // 20`` packets (at least one); the tone
    frequency is adjusted to a whole number of periods so it loops cleanly.
    Blocking.
    """
    if duration_ms < 1:
        raise ValueError("duration_ms must be positive")
    with _LOCK:
        audio = _AUDIO_CACHE.get(duration_ms)
        if audio is not None:
            return audio
        name = f"audio-opus-48k-stereo-{duration_ms}ms-v{_CACHE_VERSION}.bin"
        loaded = _disk_load(name)
        if (
            loaded is not None
            and loaded[0].get("key") == duration_ms
            and len(loaded[1]) == max(1, duration_ms // _FRAME_MS)
            and all(loaded[1])
        ):
            audio = EncodedAudio(frames=loaded[1])
        else:
            audio = _encode_audio(duration_ms)
            _disk_store(name, {"key": duration_ms}, audio.frames)
        _AUDIO_CACHE[duration_ms] = audio
        return audio


# ---------------------------------------------------------------------------
# Looping sources
# ---------------------------------------------------------------------------


class VideoSource:
    """Replays an :class:`EncodedVideo` forever, one frame per call.

    After the last frame the loop wraps to frame 0, which is a keyframe,
    so the output is always a valid bitstream.
    """

    def __init__(self, video: EncodedVideo) -> None:
        if not video.frames:
            raise ValueError("empty video")
        if not video.keyframes[0]:
            raise ValueError("frame 0 of a looped video must be a keyframe")
        self.video = video
        n = len(video.frames)
        # next_key[i]: first keyframe position at or after i, wrapping to 0.
        next_key = [0] * n
        following = 0
        for i in range(n - 1, -1, -1):
            if video.keyframes[i]:
                following = i
            next_key[i] = following
        self._next_key = next_key
        self._pos = 0
        self._want_keyframe = False
        self.last_index = -1
        """Index in the clip of the frame the last :meth:`next_frame` returned."""
        self.loops = 0
        """Number of times playback wrapped around to frame 0."""
        self.keyframe_requests = 0
        self.skipped = 0
        """Frames skipped to answer keyframe requests."""

    @property
    def position(self) -> int:
        """Index of the frame the next call returns (before any keyframe jump)."""
        return self._pos

    def request_keyframe(self) -> None:
        """Make the next :meth:`next_frame` jump to the nearest following keyframe.

        The jump skips content (the counters jump too) but answers a
        keyframe request (PLI/FIR) at once with a decodable frame.
        """
        self._want_keyframe = True
        self.keyframe_requests += 1

    def next_frame(self) -> tuple[bytes, bool, int]:
        """Return ``(bitstream, is_keyframe, counter)`` and advance one position."""
        n = len(self.video.frames)
        pos = self._pos
        if self._want_keyframe:
            self._want_keyframe = False
            target = self._next_key[pos]
            if target != pos:
                self.skipped += (target - pos) % n
                if target < pos:
                    self.loops += 1
                pos = target
        nxt = pos + 1
        if nxt == n:
            nxt = 0
            self.loops += 1
        self._pos = nxt
        self.last_index = pos
        v = self.video
        return v.frames[pos], v.keyframes[pos], v.counters[pos]


class AudioSource:
    """Replays an :class:`EncodedAudio` forever, one 20 ms packet per call."""

    def __init__(self, audio: EncodedAudio) -> None:
        if not audio.frames:
            raise ValueError("empty audio")
        self.audio = audio
        self._pos = 0

    def next_frame(self) -> bytes:
        frames = self.audio.frames
        packet = frames[self._pos]
        self._pos = (self._pos + 1) % len(frames)
        return packet


# ---------------------------------------------------------------------------
# Decoding (subscriber side)
# ---------------------------------------------------------------------------


class VideoDecoder:
    """Decode VP8 frames or H.264 Annex-B access units with PyAV.

    :meth:`decode` never raises: errors from corrupt input are counted in
    ``errors`` and yield no picture.
    """

    def __init__(self, codec: str) -> None:
        codec = codec.lower()
        if codec not in ("vp8", "h264"):
            raise ValueError(f"unsupported video codec {codec!r} (expected 'vp8' or 'h264')")
        self.codec = codec
        self._ctx = av.CodecContext.create(codec, "r")
        # Frame threading would delay output by a frame per thread; bots
        # decode small pictures, many per core.
        self._ctx.thread_count = 1
        self.errors = 0
        self.decoded = 0

    def decode(self, frame_bytes: bytes) -> list[av.VideoFrame]:
        """Decode one frame's bitstream; returns the pictures it produced."""
        if not frame_bytes:
            self.errors += 1
            return []
        try:
            frames = self._ctx.decode(av.Packet(frame_bytes))
        except Exception:  # FFmpeg errors on corrupt data: contract is to not raise
            self.errors += 1
            return []
        self.decoded += len(frames)
        return frames
