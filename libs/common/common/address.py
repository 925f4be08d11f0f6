"""The client's address as the gateway saw it, and the key throttles count it under.

Each proxy appends the address of its own peer to ``X-Forwarded-For``; whatever sits further
left was written by someone else, ultimately the client, and proves nothing. So the client
address is found from the right: a request whose peer is not a trusted proxy comes from that
peer (``X-Forwarded-For`` is ignored); otherwise the entries are read right to left, skipping
trusted proxies, and the first other address is the client. ``TRUSTED_PROXIES`` names the
gateway's own hop (Traefik; loopback for ``make run``) and, behind a TLS proxy in front of
Traefik, that proxy too (deploy/README.md: Traefik must trust it as well, or it drops the
entries the proxy sent).

Throttles count an IPv6 client by its /64: one subscriber routinely holds a whole /64, and
counting its addresses one by one would give it 2**64 tries.

Uvicorn's own ``--proxy-headers`` rewrites the peer from the same header; run it with
``--no-proxy-headers`` (the images do), or trust no more addresses there than here: then its
answer and this one agree.
"""

import ipaddress
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, Request

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

UNKNOWN = "unknown"
IPV6_CLIENT_PREFIX = 64


@lru_cache(maxsize=16)
def parse_networks(text: str) -> tuple[Network, ...]:
    """``TRUSTED_PROXIES``: comma-separated addresses or CIDR networks (ValueError if one is
    neither)."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()
    )


def parse_address(entry: str) -> Address | None:
    """An ``X-Forwarded-For`` entry (``a.b.c.d``, ``a.b.c.d:port``, ``v6``, ``[v6]:port``) as
    an address (an IPv4-mapped IPv6 one as IPv4); None when it is none of these."""
    text = entry.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, trusted: tuple[Network, ...]) -> bool:
    return any(address in network for network in trusted)


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]
) -> str:
    """The client's address given the request's peer and its ``X-Forwarded-For``."""
    candidate = parse_address(peer or "")
    if candidate is None:
        return peer or UNKNOWN
    if not forwarded_for or not _trusted(candidate, trusted):
        return str(candidate)
    for entry in reversed(forwarded_for.split(",")):
        address = parse_address(entry)
        if address is None:
            # No proxy writes this: the chain is unreadable from here on. The last address a
            # trusted hop vouched for stands.
            break
        candidate = address
        if not _trusted(address, trusted):
            break
    # All trusted: the client is itself one of the proxies (a curl on the gateway's host).
    return str(candidate)


def throttle_key(address: str) -> str:
    """What a throttle counts ``address`` under: itself, or for IPv6 its /64."""
    parsed = parse_address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, IPV6_CLIENT_PREFIX), strict=False))
    return str(parsed) if parsed is not None else address


async def get_client_address(request: Request) -> str:
    """The dependency: the request's client address, trusting the app settings'
    ``trusted_proxies``."""
    peer = request.client.host if request.client else None
    trusted = parse_networks(request.app.state.settings.trusted_proxies)
    # Repeated headers are one list, in order (RFC 9110 section 5.3).
    forwarded_for = ", ".join(request.headers.getlist("x-forwarded-for"))
    return client_address(peer, forwarded_for, trusted)


ClientAddress = Annotated[str, Depends(get_client_address)]
