"""A process's CPU time and memory as the operating system counts them (Linux
/proc), so the server is measured from outside, not by code it runs itself."""

from __future__ import annotations

import os

__all__ = [
    "cpu_seconds",
    "parse_cpu_ticks",
    "parse_rss_bytes",
    "parse_schedstat_ns",
    "parse_user_system_ticks",
    "user_system_seconds",
    "rss_bytes",
]

_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def parse_user_system_ticks(stat: str) -> tuple[int, int]:
    """(utime, stime) in clock ticks from the text of /proc/<pid>/stat.

    proc(5): the command name (field 2) is in parentheses and may itself hold
    spaces or parentheses, so fields are counted from the last ')'; utime and
    stime are fields 14 and 15.
    """
    rest = stat[stat.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): field n is rest[n - 3].
    return int(rest[11]), int(rest[12])


def user_system_seconds(pid: int) -> tuple[float, float]:
    """User and system (kernel) CPU seconds, at clock-tick resolution."""
    with open(f"/proc/{pid}/stat") as f:
        user, system = parse_user_system_ticks(f.read())
    return user / _TICKS_PER_S, system / _TICKS_PER_S


def parse_cpu_ticks(stat: str) -> int:
    """utime + stime, in clock ticks, from the text of /proc/<pid>/stat."""
    return sum(parse_user_system_ticks(stat))


def parse_rss_bytes(status: str) -> int:
    """Resident set size in bytes from the text of /proc/<pid>/status (VmRSS)."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            value, unit = line.split()[1:3]
            if unit != "kB":
                raise ValueError(f"unexpected VmRSS unit {unit!r}")
            return int(value) * 1024
    raise ValueError("no VmRSS line (a zombie or kernel thread?)")


def parse_schedstat_ns(schedstat: str) -> int:
    """Nanoseconds on a CPU from the text of /proc/<pid>/task/<tid>/schedstat
    (first field; the kernel's scheduler accounting, exact where utime/stime
    are sampled at the clock tick)."""
    return int(schedstat.split()[0])


def cpu_seconds(pid: int) -> float:
    """CPU seconds all the process's threads have used so far.

    From the scheduler's per-thread nanosecond counters when the kernel has
    them (a 10 s window measured in 10 ms ticks would be off by up to 0.1 %
    per tick, worse for short windows), else utime + stime.
    """
    total_ns = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total_ns += parse_schedstat_ns(f.read())
            except FileNotFoundError:
                continue  # a thread that just ended
        if total_ns:
            return total_ns / 1e9
    except OSError:
        pass
    with open(f"/proc/{pid}/stat") as f:
        return parse_cpu_ticks(f.read()) / _TICKS_PER_S


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return parse_rss_bytes(f.read())


def parse_udp_counters(snmp: str) -> dict[str, int]:
    """The "Udp:" counters of /proc/net/snmp (a header line of names, then a
    line of values), e.g. RcvbufErrors: datagrams dropped because a socket's
    receive buffer was full."""
    rows = [line.split() for line in snmp.splitlines() if line.startswith("Udp:")]
    if len(rows) < 2:
        raise ValueError("no Udp: lines")
    names, values = rows[0][1:], rows[1][1:]
    return {name: int(value) for name, value in zip(names, values, strict=True)}


def udp_counters() -> dict[str, int]:
    """This network namespace's UDP counters (loopback traffic included)."""
    with open("/proc/net/snmp") as f:
        return parse_udp_counters(f.read())
