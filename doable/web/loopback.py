"""Whether a request came from this machine: the Dapr sidecar (it shares the pod's loopback) or
the person at the laptop (the console's local sign-in)."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str | None) -> bool:
    """`host` as the server saw the client: an address (IPv4, IPv6, IPv4-mapped IPv6, bracketed)
    or "localhost"."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback
