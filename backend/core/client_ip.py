"""The address a request comes from, trusting ``X-Forwarded-For`` only from configured proxies.

Login lock-outs (django-axes) and the token endpoint's throttle count per client address.
Without this, a client could name any address in ``X-Forwarded-For`` and get a fresh counter
with every request. The header is read only when the connecting peer (``REMOTE_ADDR``) is one
of ``MYOLABEL_TRUSTED_PROXIES``; then the right-most address that is not itself a trusted
proxy is the client (addresses further left were written by the client and prove nothing).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip())


def trusted_networks() -> tuple[Network, ...]:
    """``MYOLABEL_TRUSTED_PROXIES`` as networks (a bare address is a /32 or /128)."""
    return _networks(tuple(settings.MYOLABEL_TRUSTED_PROXIES))


def _parse(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    address = address.strip()
    if address.startswith("[") and "]" in address:  # "[v6]:port", as some proxies write it
        address = address[1:address.index("]")]
    elif address.count(":") == 1:  # "v4:port"
        address = address.split(":")[0]
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None


def _is_trusted(address, networks: tuple[Network, ...]) -> bool:
    return any(address in network for network in networks)


def client_ip(request) -> str | None:
    """The client's address for ``request`` (a Django or DRF request)."""
    meta = request.META
    peer = _parse(meta.get("REMOTE_ADDR") or "")
    networks = trusted_networks()
    if peer is None or not networks or not _is_trusted(peer, networks):
        return str(peer) if peer is not None else None
    forwarded = [_parse(part) for part in meta.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    for address in reversed(forwarded):
        if address is None:
            # A malformed hop: nothing to its left can be trusted; the last proxy is the client.
            break
        if not _is_trusted(address, networks):
            return str(address)
        peer = address
    return str(peer)
