"""Who may talk to the server: the Host and Origin checks (pure, plus a small ASGI middleware), so a web
page elsewhere can neither drive a local server with a form post nor read it through DNS rebinding."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["LOOPBACK_HOSTS", "Exposure", "Guard", "is_loopback"]

Refuse = Callable[[Scope, Receive, Send, str, str, str], Awaitable[None]]  # answers a refused request


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the server on this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _hostname(value: str) -> str:
    """The host of a Host header or an Origin's netloc, without port or IPv6 brackets, lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


@dataclass(frozen=True)
class Exposure:
    """Who may talk to the server. ``hosts``: names a request's Host header may carry (DNS rebinding: a web
    page whose name resolves to 127.0.0.1 still sends its own name), None for any; ``origins``: browser
    origins allowed besides the loopback ones (a page on any other site is refused, so it cannot drive the
    server with a form post). Requests without an Origin header (scripts, SDKs, curl) are not browsers'."""

    hosts: tuple[str, ...] | None = LOOPBACK_HOSTS
    origins: tuple[str, ...] = ()

    def refusal(self, headers: Any) -> str | None:
        host = _hostname(headers.get("host", ""))
        if self.hosts is not None and host not in self.hosts:
            return f"Host {host!r} is not served here (allowed: {', '.join(self.hosts)}; add names with --allow-host)"
        origin = headers.get("origin")
        if origin is not None and origin != "null":
            parsed = urlsplit(origin)
            if _hostname(parsed.netloc) not in LOOPBACK_HOSTS and origin.rstrip("/") not in self.origins:
                return f"requests from the web page at {origin} are refused (allow it with --allow-origin {origin})"
        elif origin == "null" and "null" not in self.origins:
            return "requests from sandboxed or file:// pages (Origin: null) are refused"
        return None


class Guard:
    """ASGI middleware (not BaseHTTPMiddleware, which would buffer streams and hide disconnects): a request
    whose Host or Origin the exposure refuses gets 403 before any handler runs."""

    def __init__(self, app: ASGIApp, exposure: Exposure, refuse: Refuse) -> None:
        self.app, self.exposure, self.refuse = app, exposure, refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self.exposure.refusal(Headers(scope=scope))
            if refusal is not None:
                await self.refuse(scope, receive, send, scope["method"], scope["path"], refusal)
                return
        await self.app(scope, receive, send)
