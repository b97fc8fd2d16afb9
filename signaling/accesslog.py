"""The HTTP access log, without query strings.

Browsers pass the access token as `?access_token=` on the WebSocket URL (they
cannot set headers there), so aiohttp's default format (`%r`, the request
line) would write every token to the log. This one logs the path only.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger


class AccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %d %.1f ms',
            request.remote,
            request.method,
            request.path,
            response.status,
            time * 1000,
        )
