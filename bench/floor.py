"""The machine's floor: a bare loop that only SRTP-protects and sends.

It sends what the server sent in the same run (the same packet sizes at the
same rate, one SRTP session and one UDP socket per destination, to the same
subscriber sockets) and nothing else: no receive, no parsing, no rewriting. Its
CPU per packet is what forwarding costs at the least on this machine, in
Python with pylibsrtp, so server-cost / floor-cost holds across machines where
absolute microseconds do not.

Run as a subprocess: ``python -m bench.floor CONFIG_JSON``; prints one JSON line.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import time

import pylibsrtp

from bench.media import VideoSpec, packet_schedule
from bench.stats import percentile

_SEQ = struct.Struct("!H")


def run_floor(streams: list[dict], duration_s: float) -> dict[str, float | int]:
    """``streams``: [{"video": {...} | None, "audio": bool, "dests": [[host, port], ...]}]."""
    plans = []
    for stream in streams:
        video = VideoSpec(**stream["video"]) if stream.get("video") else None
        ticks, tick_ms = packet_schedule(video, bool(stream.get("audio")))
        targets = []
        for host, port in stream["dests"]:
            policy = pylibsrtp.Policy(
                key=os.urandom(30), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND
            )
            sock = socket.socket(
                socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM
            )
            sock.setblocking(False)
            targets.append((pylibsrtp.Session(policy), sock, (host, port)))
        plans.append((ticks, tick_ms, targets))
    tick_ms = 10
    seq = 0
    sent = 0
    errors = 0
    start = time.monotonic()
    cpu_start = time.process_time()
    slice_cpu, slice_sent, slice_end = cpu_start, 0, start + 1.0
    slices_us: list[float] = []
    n = 0
    while True:
        due = start + n * tick_ms / 1000
        now = time.monotonic()
        if now - start >= duration_s:
            break
        if due > now:
            time.sleep(due - now)
        for ticks, _tick_ms, targets in plans:
            for template in ticks[n % len(ticks)]:
                # libsrtp refuses to protect one sequence number twice (RFC 3711
                # §3.3.2: keystream reuse), so each send gets a fresh one.
                seq = (seq + 1) & 0xFFFF
                packet = template[:2] + _SEQ.pack(seq) + template[4:]
                for session, sock, addr in targets:
                    try:
                        sock.sendto(session.protect(packet), addr)
                        sent += 1
                    except (BlockingIOError, OSError):
                        errors += 1
        n += 1
        if time.monotonic() >= slice_end:
            cpu = time.process_time()
            if sent > slice_sent:
                slices_us.append((cpu - slice_cpu) / (sent - slice_sent) * 1e6)
            slice_cpu, slice_sent, slice_end = cpu, sent, slice_end + 1.0
    cpu_s = time.process_time() - cpu_start
    wall_s = time.monotonic() - start
    return {
        "cpu_s": round(cpu_s, 4),
        "wall_s": round(wall_s, 3),
        "packets": sent,
        "send_errors": errors,
        "us_per_packet": round(cpu_s / sent * 1e6, 3) if sent else None,
        "us_per_packet_slices": [round(us, 3) for us in slices_us],
        "us_per_packet_p10": round(p10, 3) if (p10 := percentile(slices_us, 10)) else None,
    }


def main() -> None:
    config = json.loads(sys.argv[1])
    print(json.dumps(run_floor(config["streams"], config["duration_s"])), flush=True)


if __name__ == "__main__":
    main()
