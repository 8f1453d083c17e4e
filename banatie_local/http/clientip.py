"""The client address a request is counted by: the socket peer, or — only behind a
trusted proxy (``server.trusted_proxies``) — the address the proxies forwarded."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from typing import Final

from sanic.request import Request

from banatie_local.config import Network, Settings

log = logging.getLogger("banatie_local.http")

FORWARDING: Final = ("x-forwarded-for", "forwarded", "x-real-ip")
_warned: set[str] = set()


def limited_client(request: Request, settings: Settings) -> str | None:
    """The address the per-IP live limit counts for ``request``, or None when it is
    exempt: a socket peer in ``live.ip_limit_exempt`` (the workstation) with no
    forwarding header. A forwarded request is never exempt, so a reverse proxy on
    the same machine does not make every visitor local."""
    peer = request.ip
    headers = request.headers
    if not any(name in headers for name in FORWARDING):
        return None if _is_trusted(peer, settings.live.exempt_networks) else peer
    trusted = settings.server.trusted_networks
    if not _is_trusted(peer, trusted) and peer not in _warned:
        _warned.add(peer)  # once per peer and process
        log.warning(
            "requests from %s carry forwarding headers, but %s is not in "
            "server.trusted_proxies: they are counted as %s and never exempt from the "
            "per-IP live limit. If a reverse proxy runs there, add it to trusted_proxies.",
            peer, peer, peer,
        )  # fmt: skip
    return client_ip(peer, headers.get("x-forwarded-for"), trusted)


def client_ip(peer: str, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The socket peer, or — only behind a trusted proxy — the rightmost
    ``X-Forwarded-For`` address that is not itself a trusted proxy."""
    if not forwarded_for or not _is_trusted(peer, trusted):
        return peer
    for candidate in reversed([part.strip() for part in forwarded_for.split(",")]):
        if not candidate:
            continue
        try:
            ipaddress.ip_address(candidate)
        except ValueError:
            return peer
        if not _is_trusted(candidate, trusted):
            return candidate
    return peer


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)
