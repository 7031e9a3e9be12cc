"""The client of a request as the service records it: its address and its user agent.

Every access event stores the client that read (`domain.access.Client`), and a refused
authentication the same address (`domain.refusals.AuthenticationRefused.client`). Both come from
the network, so neither is believed beyond what the service itself can see:

- The address is the socket peer's. Only when the peer is one of the trusted proxies
  (`CASETRAIL_TRUSTED_PROXIES`, CIDRs) is the configured header (`CASETRAIL_TRUSTED_PROXY_HEADER`,
  e.g. `X-Forwarded-For`) read, and then from the right: each proxy appends the address it was
  connected from, so the rightmost address that is not itself a trusted proxy is the client
  (anything left of it was written by that client, and may be anything). An entry that is not an
  IP address ends the walk at the last proxy that was trusted: whoever wrote it is not believed.
  A header from an untrusted peer is ignored entirely.
- The user agent is attacker-controlled text: it is cut to `USER_AGENT_MAX` characters, with
  control and format characters (Unicode Cc, Cf: newlines, bidi overrides, zero-width ones)
  removed, and it is never logged.

Proven by tests/integration/test_knowledge_records.py (over real HTTP: an untrusted peer's header
ignored, a trusted proxy's used, the user agent bounded) and the unit tests beside it.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from domain.access import Client

# Longer user agents are cut: real browsers send 100-300 characters.
USER_AGENT_MAX: Final = 256
# The header may list this many hops at most; more are not read (a long header is an attack).
MAX_HOPS: Final = 32
# The peer when the server does not know it (no socket address: an in-process test client).
UNKNOWN_PEER: Final = "unknown"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class ProxyTrust:
    """Which header names the client's address, and which peers may set it."""

    header: str | None = None
    proxies: tuple[Network, ...] = ()

    def trusts(self, address: Address) -> bool:
        # An IPv4 peer may arrive as an IPv4-mapped IPv6 address on a dual-stack socket.
        mapped = getattr(address, "ipv4_mapped", None)
        return any(address in network or (mapped and mapped in network) for network in self.proxies)


def parse_address(text: str) -> Address | None:
    """An IP address from a peer or a forwarded entry: `1.2.3.4`, `1.2.3.4:5678`, `::1`,
    `[::1]:5678`, `"[::1]"`; None if it is none of these."""
    value = text.strip().strip('"')
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def client_address(peer: str | None, forwarded: Sequence[str], trust: ProxyTrust) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the rightmost
    forwarded address that is not a trusted proxy (`forwarded`: the header's values, in the
    order received)."""
    if peer is None:
        return UNKNOWN_PEER
    peer_address = parse_address(peer)
    if peer_address is None:
        return _bounded(peer)
    if trust.header is None or not trust.trusts(peer_address):
        return str(peer_address)
    hops = [hop for value in forwarded for hop in value.split(",") if hop.strip()]
    current = peer_address
    for hop in reversed(hops[-MAX_HOPS:]):
        address = parse_address(hop)
        if address is None:
            break  # written by someone not trusted: stop at the last trusted proxy
        current = address
        if not trust.trusts(address):
            break
    return str(current)


def user_agent(value: str | None) -> str:
    """The user agent, bounded and with control and format characters removed."""
    if not value:
        return ""
    kept = "".join(
        c for c in value[: USER_AGENT_MAX * 4] if unicodedata.category(c) not in {"Cc", "Cf"}
    )
    return kept[:USER_AGENT_MAX]


def _bounded(text: str) -> str:
    """A peer that is not an IP address (a Unix socket's path...): kept, bounded, printable."""
    return "".join(c for c in text[:64] if c.isprintable())


def resolve_client(
    peer: str | None, forwarded: Sequence[str], agent: str | None, trust: ProxyTrust
) -> Client:
    return Client(address=client_address(peer, forwarded, trust), user_agent=user_agent(agent))
