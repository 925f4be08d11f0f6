"""The client address is the one the gateway's hop saw, never a value the client wrote."""

import httpx
import pytest
from common.address import (
    ClientAddress,
    Network,
    client_address,
    parse_networks,
    throttle_key,
)
from common.settings import ServiceSettings
from common.testing import serve
from fastapi import FastAPI
from pydantic import ValidationError

LOOPBACK = parse_networks("127.0.0.0/8,::1")
# Behind a TLS proxy (10.0.0.5) in front of the gateway: both hops are trusted.
WITH_TLS_PROXY = parse_networks("127.0.0.0/8,::1,10.0.0.5")


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "trusted", "expected"),
    [
        # Not from a trusted hop: the peer, whatever the header says.
        ("198.51.100.7", "203.0.113.9", LOOPBACK, "198.51.100.7"),
        # From the gateway: the entry it appended (the rightmost), not the client's own.
        ("127.0.0.1", "203.0.113.9, 198.51.100.7", LOOPBACK, "198.51.100.7"),
        ("127.0.0.1", "198.51.100.7", LOOPBACK, "198.51.100.7"),
        ("127.0.0.1", None, LOOPBACK, "127.0.0.1"),
        # A TLS proxy the gateway trusts appended the client; the gateway appended the proxy.
        ("127.0.0.1", "203.0.113.9, 198.51.100.7, 10.0.0.5", WITH_TLS_PROXY, "198.51.100.7"),
        # The same chain while the TLS proxy is not trusted here: all its clients are one.
        ("127.0.0.1", "203.0.113.9, 198.51.100.7, 10.0.0.5", LOOPBACK, "10.0.0.5"),
        # Every hop trusted: the client is one of them (curl on the gateway's host).
        ("127.0.0.1", "127.0.0.1", LOOPBACK, "127.0.0.1"),
        # Something no proxy writes: the last address a trusted hop vouched for stands.
        ("127.0.0.1", "198.51.100.7, not-an-address", LOOPBACK, "127.0.0.1"),
        ("127.0.0.1", "not-an-address, 198.51.100.7", LOOPBACK, "198.51.100.7"),
        # Ports and brackets, IPv6, IPv4-mapped IPv6.
        ("127.0.0.1", "198.51.100.7:5555", LOOPBACK, "198.51.100.7"),
        ("::1", "[2001:DB8::1]:4711", LOOPBACK, "2001:db8::1"),
        ("127.0.0.1", "::ffff:198.51.100.7", LOOPBACK, "198.51.100.7"),
        (None, "198.51.100.7", LOOPBACK, "unknown"),
    ],
)
def test_client_address(
    peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...], expected: str
) -> None:
    assert client_address(peer, forwarded_for, trusted) == expected


def test_throttles_count_an_ipv6_client_by_its_64_and_ipv4_by_address() -> None:
    assert throttle_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert throttle_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert throttle_key("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert throttle_key("198.51.100.7") == "198.51.100.7"
    assert throttle_key("unknown") == "unknown"


def test_trusted_proxies_that_do_not_parse_fail_at_start_up() -> None:
    with pytest.raises(ValidationError, match=r"TRUSTED_PROXIES|trusted_proxies"):
        ServiceSettings(trusted_proxies="127.0.0.1,gateway.internal")
    assert ServiceSettings().trusted_proxies == "127.0.0.0/8,::1"  # make run: Traefik on loopback


def test_the_dependency_reads_every_forwarded_header_over_real_http() -> None:
    app = FastAPI()
    app.state.settings = ServiceSettings()

    @app.get("/address/")
    async def address(found: ClientAddress) -> str:
        return found

    with serve(app) as url, httpx.Client(base_url=url) as client:
        # The test client is on loopback, where make run's gateway is: its hop is trusted.
        plain = client.get("/address/").json()
        one = client.get("/address/", headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.7"})
        two = client.get(
            "/address/",
            headers=[("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-For", "198.51.100.8")],
        )

    assert plain == "127.0.0.1"
    assert one.json() == "198.51.100.7"
    assert two.json() == "198.51.100.8"
