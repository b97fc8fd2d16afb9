"""The room service: an HTTP API for operators (admin tokens)."""

from __future__ import annotations

from aiohttp import web


def add_room_api(app: web.Application) -> None:
    """Register the room service routes on `app`."""
