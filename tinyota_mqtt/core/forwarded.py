"""Who the client is when a reverse proxy stands in front: X-Forwarded-For read only from trusted peers.

Behind a proxy every connection comes from the proxy's address, so per-address limits (the
login throttle, its KDF bound) would treat the whole world as one client. The proxy names the
real client in ``X-Forwarded-For`` (nginx: ``$proxy_add_x_forwarded_for`` appends the address it
saw) or ``X-Real-IP``. Anyone can send those headers, so they count only when the connection
comes from a configured proxy, and ``X-Forwarded-For`` is read from the right: entries appended
by trusted proxies are skipped, the first other one is the client; what lies to its left was
written by the client itself and is ignored. (Tornado's ``xheaders=True`` believes every peer.)
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

Address = IPv4Address | IPv6Address
MAX_HOPS = 16  # a longer chain is no proxy setup anyone runs; stop reading there


def parse_address(text: str) -> Address | None:
    """An address from a header entry: ``1.2.3.4``, ``1.2.3.4:5678``, ``::1`` or ``[::1]:5678``."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ip_address(text)
    except ValueError:
        return None


def is_trusted(address: Address | None, trusted: Sequence[IPv4Network | IPv6Network]) -> bool:
    return address is not None and any(address in network for network in trusted)


def client_address(peer: str, trusted: Sequence[IPv4Network | IPv6Network],
                   forwarded_for: str | None, real_ip: str | None) -> str:
    """The address to account a request to: ``peer`` unless ``peer`` is a trusted proxy."""
    if not trusted or not is_trusted(parse_address(peer), trusted):
        return peer
    if forwarded_for:
        nearest: Address | None = None
        for hop in reversed(forwarded_for.split(",")[-MAX_HOPS:]):
            address = parse_address(hop)
            if address is None:
                break  # garbage behind a trusted proxy: the last good hop is all we know
            nearest = address
            if not is_trusted(address, trusted):
                break
        return str(nearest) if nearest is not None else peer
    if real_ip:
        address = parse_address(real_ip)
        if address is not None:
            return str(address)
    return peer
