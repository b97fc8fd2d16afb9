"""Placement advice, as a table."""

from __future__ import annotations

import pytest

from signaling.cluster.membership import NodeInfo
from signaling.cluster.placement import choose_node


def _n(node_id: str, downtracks: int, participants: int = 0) -> NodeInfo:
    return NodeInfo(node_id, downtracks=downtracks, participants=participants)


@pytest.mark.parametrize(
    ("nodes", "members", "limit", "expected"),
    [
        ([], {}, 400, None),
        ([_n("a", 10), _n("b", 5)], {}, 400, "b"),  # new room: least loaded
        ([_n("a", 10), _n("b", 5)], {"a": 3}, 400, "a"),  # keep the room together
        ([_n("a", 400), _n("b", 5)], {"a": 3}, 400, "b"),  # host full: spill
        ([_n("a", 50), _n("b", 60), _n("c", 0)], {"a": 1, "b": 4}, 400, "b"),  # most members
        ([_n("a", 50), _n("b", 10)], {"a": 2, "b": 2}, 400, "b"),  # tie: less loaded
        ([_n("a", 5, 9), _n("b", 5, 2)], {}, 400, "b"),  # tie-break: participants
        ([_n("a", 500), _n("b", 450)], {"a": 1, "b": 1}, 400, "b"),  # all full: least loaded
    ],
)
def test_choose_node(
    nodes: list[NodeInfo], members: dict[str, int], limit: int, expected: str | None
) -> None:
    chosen = choose_node(nodes, members, limit)
    assert (chosen.node_id if chosen else None) == expected
