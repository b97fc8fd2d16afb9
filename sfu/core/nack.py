"""Loss tracking for a received RTP stream: decides which NACKs to send.

The server is the receiver of a publisher's stream and asks for lost packets
with RFC 4585 §6.2.1 generic NACKs. This module only decides *which* extended
sequence numbers to ask for and *when*; packing them into PID/BLP pairs is the
RTCP writer's job.

Policy:

* A packet newer than the highest seen so far reveals the gap before it as
  missing (RFC 4585 §6.2.1 leaves detection to the receiver; a gap in the
  sequence numbers is the usual signal).
* A missing packet is requested again at most once per
  ``max(rtt_ms, min_interval_ms)``: asking sooner than a round trip cannot be
  answered in time and only duplicates the retransmission (RFC 4585 §3.1 asks
  receivers not to flood the sender with feedback).
* After ``max_retries`` requests plus one more interval, or ``max_age_ms``
  after detection, a packet is given up: a video decoder will have moved on
  (or asked for a keyframe) by then.
* If more than ``max_missing`` packets would be outstanding the set is
  cleared and :attr:`NackGenerator.keyframe_needed` is raised: one keyframe
  (RFC 4585 §6.3.1 PLI) is cheaper than hundreds of retransmissions.
"""

from __future__ import annotations

from itertools import islice

__all__ = ["NackGenerator"]

# Indexes into the per-missing-packet state list.
_DETECTED = 0
_LAST_SENT = 1
_TRIES = 2


class NackGenerator:
    """Tracks missing packets of one received stream (RFC 4585 §6.2.1).

    Missing packets live in a dict keyed by extended sequence number. Gaps are
    always discovered above every seq already tracked, so the dict's insertion
    order is ascending ext seq *and* ascending detection time, which lets the
    age check stop at the first young entry.

    Memory bound: at most ``max_missing`` entries (each a 3-item list).

    Counters: ``nacked`` (sequence numbers requested, counting repeats),
    ``recovered`` (missing packets that arrived later, by reordering or
    retransmission), ``given_up`` (missing packets abandoned by age or retries;
    entries discarded by a ``max_missing`` overflow are not counted there, the
    keyframe request replaces them).
    """

    __slots__ = (
        "_highest",
        "_keyframe_needed",
        "_missing",
        "given_up",
        "max_age_ms",
        "max_missing",
        "max_retries",
        "min_interval_ms",
        "nacked",
        "recovered",
    )

    def __init__(
        self,
        max_missing: int = 512,
        max_age_ms: int = 1000,
        max_retries: int = 10,
        min_interval_ms: int = 20,
    ) -> None:
        if max_missing < 1 or max_retries < 1 or max_age_ms < 0 or min_interval_ms < 0:
            raise ValueError("NackGenerator limits must be positive")
        self.max_missing = max_missing
        self.max_age_ms = max_age_ms
        self.max_retries = max_retries
        self.min_interval_ms = min_interval_ms
        self._highest: int | None = None
        self._missing: dict[int, list[int]] = {}
        self._keyframe_needed = False
        self.nacked = 0
        self.recovered = 0
        self.given_up = 0

    @property
    def keyframe_needed(self) -> bool:
        """True when losses overflowed ``max_missing`` since the last take."""
        return self._keyframe_needed

    def take_keyframe_needed(self) -> bool:
        """Return :attr:`keyframe_needed` and clear it."""
        needed = self._keyframe_needed
        self._keyframe_needed = False
        return needed

    @property
    def missing_count(self) -> int:
        """Number of packets currently tracked as missing."""
        return len(self._missing)

    @property
    def highest(self) -> int | None:
        """Highest extended sequence number received (None before any)."""
        return self._highest

    def on_packet(self, ext_seq: int, now_ms: int) -> int:
        """Record the arrival of ``ext_seq``; return how many seqs became missing.

        The return value is the size of the gap between the previous highest
        seq and this one, also when the gap overflowed ``max_missing`` and was
        turned into a keyframe request instead of being tracked. In-order,
        duplicate and late packets return 0; a late packet that was missing is
        removed from the missing set and counted in ``recovered``.
        """
        highest = self._highest
        if highest is None:
            self._highest = ext_seq
            return 0
        if ext_seq <= highest:
            if self._missing.pop(ext_seq, None) is not None:
                self.recovered += 1
            return 0
        self._highest = ext_seq
        gap = ext_seq - highest - 1
        if gap == 0:
            return 0
        missing = self._missing
        if len(missing) + gap > self.max_missing:
            # Entries past their age may just not have been swept by due() yet;
            # drop them before deciding the stream is beyond repair.
            self._expire(now_ms)
            if len(missing) + gap > self.max_missing:
                missing.clear()
                self._keyframe_needed = True
                return gap
        for seq in range(highest + 1, ext_seq):
            missing[seq] = [now_ms, 0, 0]
        return gap

    def due(self, now_ms: int, rtt_ms: int) -> list[int]:
        """Return the ext seqs to NACK now, in ascending order.

        Each returned seq counts as one request (``nacked``). Entries older
        than ``max_age_ms`` or out of retries are dropped (``given_up``).
        """
        missing = self._missing
        out: list[int] = []
        if not missing:
            return out
        interval = rtt_ms if rtt_ms > self.min_interval_ms else self.min_interval_ms
        oldest_ok = now_ms - self.max_age_ms
        max_retries = self.max_retries
        expired: list[int] | None = None
        for seq, st in missing.items():
            tries = st[_TRIES]
            if st[_DETECTED] < oldest_ok:
                if expired is None:
                    expired = []
                expired.append(seq)
                continue
            if tries and now_ms - st[_LAST_SENT] < interval:
                continue
            if tries >= max_retries:
                # The last request had a full interval to be answered.
                if expired is None:
                    expired = []
                expired.append(seq)
                continue
            st[_LAST_SENT] = now_ms
            st[_TRIES] = tries + 1
            out.append(seq)
        if expired is not None:
            for seq in expired:
                del missing[seq]
            self.given_up += len(expired)
        self.nacked += len(out)
        return out

    def reset(self) -> None:
        """Forget all state except the counters (e.g. after an SSRC change)."""
        self._highest = None
        self._missing.clear()
        self._keyframe_needed = False

    def _expire(self, now_ms: int) -> None:
        # Insertion order == detection order, so the old entries are a prefix.
        missing = self._missing
        oldest_ok = now_ms - self.max_age_ms
        expired = 0
        for st in missing.values():
            if st[_DETECTED] >= oldest_ok:
                break
            expired += 1
        if expired:
            for seq in list(islice(missing, expired)):
                del missing[seq]
            self.given_up += expired
