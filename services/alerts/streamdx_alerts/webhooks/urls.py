"""Which URLs a subscription may POST to.

``http``/``https`` only, a host, no credentials or fragment, at most 2048 characters.
Loopback, private, link-local and other non-global addresses (and ``localhost``) are refused
unless ``WEBHOOK_ALLOW_PRIVATE`` is set (tests, on-premises receivers): at creation for IP
literals and local names, and again before every POST for the addresses the host name
resolves to (a public name cannot later be pointed at an internal service). The re-check and
the connection resolve the name separately, so a DNS answer changing between the two is not
caught; a deployment that must exclude that routes webhooks through an egress proxy.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

__all__ = ["MAX_URL_LENGTH", "UnsafeAddress", "check_resolved_host", "validate_url"]

MAX_URL_LENGTH = 2048


class UnsafeAddress(ValueError):
    """The URL's host is, or resolves to, an address webhooks may not reach."""


def _local_name(host: str) -> bool:
    host = host.rstrip(".").lower()
    return host == "localhost" or host.endswith(".localhost")


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None


def _public(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_global and not addr.is_multicast


def validate_url(url: str, *, allow_private: bool) -> str:
    """``url`` if a subscription may use it, else :class:`ValueError` with the reason.

    Parameters
    ----------
    url : str
        The endpoint URL.
    allow_private : bool
        Accept loopback/private hosts (``WEBHOOK_ALLOW_PRIVATE``).
    """
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"URL longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"malformed URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("URL scheme must be http or https")
    host = parts.hostname
    if not host:
        raise ValueError("URL has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials in the URL are not allowed (receivers verify the signature)")
    if parts.fragment:
        raise ValueError("URL fragment not allowed")
    if port == 0:
        raise ValueError("URL port 0 not allowed")
    if not allow_private:
        addr = _ip(host)
        if _local_name(host) or (addr is not None and not _public(addr)):
            raise UnsafeAddress("loopback/private hosts are not allowed (WEBHOOK_ALLOW_PRIVATE is off)")
    return url


async def check_resolved_host(url: str) -> None:
    """Raise :class:`UnsafeAddress` if the host of ``url`` resolves to a non-global address.

    Used before each POST when private hosts are not allowed. A name that does not resolve
    passes (the POST then fails with a connection error and is retried).
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if _local_name(host):
        raise UnsafeAddress("host is local")
    literal = _ip(host)
    if literal is not None:
        if not _public(literal):
            raise UnsafeAddress("host is a private address")
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return
    for info in infos:
        addr = _ip(str(info[4][0]))
        if addr is not None and not _public(addr):
            raise UnsafeAddress("host resolves to a private address")
