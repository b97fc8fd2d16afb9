"""Placement: which node a client joining a room should connect to.

Any node accepts any client, so placement is advice, not a rule. The advice:
keep a room together (every participant of a room on one node needs no relay
at all), unless that node is already carrying `soft_limit` forwarded streams;
then, or for a room nobody is in yet, the least loaded node. Load is counted
in forwarded streams (DownTracks), the figure the server's CPU follows (see
bench/README.md: cost per packet times subscribers), with participants as the
tie-break.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from signaling.cluster.membership import NodeInfo

#: Forwarded streams a node takes before a room spills to another node.
DEFAULT_SOFT_LIMIT = 400


def choose_node(
    nodes: Sequence[NodeInfo],
    room_members: Mapping[str, int],
    soft_limit: int = DEFAULT_SOFT_LIMIT,
) -> NodeInfo | None:
    """`room_members`: node id -> participants of the room on that node."""
    if not nodes:
        return None
    hosting = [n for n in nodes if room_members.get(n.node_id, 0) > 0 and n.downtracks < soft_limit]
    if hosting:
        return min(
            hosting,
            key=lambda n: (-room_members[n.node_id], n.downtracks, n.participants, n.node_id),
        )
    return min(nodes, key=lambda n: (n.downtracks, n.participants, n.node_id))
