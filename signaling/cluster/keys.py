"""Every Redis key and channel the cluster uses, in one place.

All names start with ``sfu:{cluster}:`` so several clusters can share one
Redis. This list is the reference for operators.

- ``nodes`` (set): node ids that registered; an id whose ``node:{id}`` key has
  expired is a dead node and is pruned by whoever reads the set.
- ``node:{id}`` (string, JSON, TTL ``NODE_TTL_S``): the node's record
  (signaling URL, relay address, load), refreshed by its heartbeat.
- ``room:{room}`` (hash): participant id -> JSON record (node, identity,
  name, tracks).
- ``node-rooms:{id}`` (set): rooms a node has participants in, so a dead
  node's participants can be found and removed.
- ``events:{room}`` (pub/sub channel): membership events of one room.
- ``relay-secret`` (string, hex): the key that authenticates the relay
  between nodes (:mod:`sfu.core.relay_wire`); made by the first node with
  SET NX, and written back the same way by every node if Redis loses it.
"""

from __future__ import annotations

#: A node missing its heartbeat this long is gone (the issue asks for < 10 s).
NODE_TTL_S = 6
HEARTBEAT_S = 2.0


class Keys:
    def __init__(self, cluster: str = "default") -> None:
        if not cluster or any(c in cluster for c in ":*?[] "):
            raise ValueError(f"bad cluster name {cluster!r}")
        self.prefix = f"sfu:{cluster}:"

    @property
    def nodes(self) -> str:
        return self.prefix + "nodes"

    def node(self, node_id: str) -> str:
        return f"{self.prefix}node:{node_id}"

    def room(self, room: str) -> str:
        return f"{self.prefix}room:{room}"

    def node_rooms(self, node_id: str) -> str:
        return f"{self.prefix}node-rooms:{node_id}"

    def events(self, room: str) -> str:
        return f"{self.prefix}events:{room}"

    @property
    def secret(self) -> str:
        return self.prefix + "relay-secret"

    @property
    def events_pattern(self) -> str:
        return f"{self.prefix}events:*"

    def room_of_channel(self, channel: str) -> str:
        return channel[len(self.prefix) + len("events:") :]
