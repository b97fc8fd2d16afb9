"""Cluster state: which nodes exist and who is in which room, behind one
interface (`Membership`) with an in-process implementation (one node, the
default) and a Redis one (`--redis-url`). Key names: `keys.py`."""
