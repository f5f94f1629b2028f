"""Who a request came from: the socket peer, or what trusted proxies say about it.

A proxy in front (Caddy on the same host) makes every request arrive from its own address;
it names the real client in `X-Forwarded-For`. That header is believed only when the peer
is a trusted proxy, and read from the right: each trusted proxy appends the address it got
the request from, so the right-most address that is not a trusted proxy is the first hop
no trusted proxy vouches for. Anything left of it may have been written by the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

LOOPBACK = "127.0.0.0/8,::1/128"


def parse_networks(text: str) -> tuple[Network, ...]:
    """A comma-separated list of addresses or CIDR blocks (`127.0.0.1`, `10.0.0.0/8`)."""
    networks = []
    for part in text.split(","):
        entry = part.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            # The value is not echoed: settings errors name the variable only.
            raise ValueError("holds an entry that is not an IP address or CIDR block") from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    value = text.strip().strip('"')
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(address: Address, trusted: Iterable[Network]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)


def rate_key(address: str) -> str:
    """What a per-client limit counts by: the address, or for IPv6 its /64 network (one
    subscriber line gets a whole /64, so counting single addresses would let one visitor
    take 2^64 turns)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]
) -> str:
    """The client's address as text. `forwarded_for` holds every `X-Forwarded-For` header
    line in order. Without a usable peer, "unknown" (one shared bucket)."""
    peer_address = _address(peer) if peer else None
    if peer_address is None:
        return peer.strip()[:64] if peer and peer.strip() else "unknown"
    if not is_trusted(peer_address, trusted):
        return str(peer_address)
    hops = [hop for line in forwarded_for for hop in line.split(",") if hop.strip()]
    nearest = peer_address
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:  # garbage: nothing further left can be believed
            break
        if not is_trusted(address, trusted):
            return str(address)
        nearest = address
    # Every hop is trusted (or the header is absent or broken): the nearest trusted one.
    return str(nearest)
