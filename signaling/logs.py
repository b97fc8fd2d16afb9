"""Logging: text or JSON lines, each naming its node and, when it is about a
participant, the room and participant; tokens and API secrets never written.

The room and participant come from context variables the session sets once it
has joined. asyncio copies the context into every task a session starts (its
transports, its negotiation), so lines logged there carry them too without
every call site passing them along.
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import re
from collections.abc import Iterable

room_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("sfu_room", default=None)
participant_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "sfu_participant", default=None
)

#: A JWT: three base64url parts, the first two JSON objects ("eyJ" is `{"`).
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s"


class ContextFilter(logging.Filter):
    """Adds `node`, `room` and `participant` to every record and blanks out
    tokens and the given secrets (defence in depth: nothing should log them,
    this makes sure a mistake does not leak one)."""

    def __init__(self, node_id: str, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.node_id = node_id
        self._secrets = [s for s in secrets if len(s) >= 8]

    def filter(self, record: logging.LogRecord) -> bool:
        record.node = self.node_id
        if getattr(record, "room", None) is None:
            record.room = room_var.get()
        if getattr(record, "participant", None) is None:
            record.participant = participant_var.get()
        context = f" node={self.node_id}"
        if record.room is not None:
            context += f" room={record.room}"
        if record.participant is not None:
            context += f" participant={record.participant}"
        record.context = context
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad call: logging reports it when it formats
            return True
        cleaned = self.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True

    def redact(self, text: str) -> str:
        text = _JWT.sub("[token]", text)
        for secret in self._secrets:
            text = text.replace(secret, "[secret]")
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, node, room,
    participant (when known), exc (with a traceback)."""

    def __init__(self, redact: ContextFilter | None = None) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "node": getattr(record, "node", None),
        }
        for key in ("room", "participant"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            exc = self.formatException(record.exc_info)
            entry["exc"] = self._redact.redact(exc) if self._redact else exc
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self, redact: ContextFilter | None = None) -> None:
        super().__init__(TEXT_FORMAT)
        self._redact = redact

    def formatException(self, ei: object) -> str:  # noqa: N802 - logging's name
        text = super().formatException(ei)  # type: ignore[arg-type]
        return self._redact.redact(text) if self._redact else text


def configure(*, level: str, fmt: str, node_id: str, secrets: Iterable[str] = ()) -> ContextFilter:
    """Root logging for `sfu serve`: one stderr handler in the chosen format."""
    context = ContextFilter(node_id, secrets)
    handler = logging.StreamHandler()
    handler.addFilter(context)
    handler.setFormatter(JsonFormatter(context) if fmt == "json" else TextFormatter(context))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    return context
