"""The client address a request is counted by: the socket peer, or — only behind a
trusted proxy (``server.trusted_proxies``) — the address the proxies forwarded."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from banatie_local.config import Network


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
