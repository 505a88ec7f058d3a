"""The client address login throttling counts by: socket peer, or X-Forwarded-For from trusted proxies (fhir_server/api/client_address.py)."""

from __future__ import annotations

from fhir_server.api.client_address import client_address, trusted_networks

PROXIES = trusted_networks(["10.0.0.0/8", "::1"])


def test_without_trusted_proxies_the_socket_peer_is_the_client_whatever_x_forwarded_for_says() -> None:
    assert client_address("198.51.100.7", ["203.0.113.1"], ()) == "198.51.100.7"
    assert client_address("198.51.100.7", ["203.0.113.1"], PROXIES) == "198.51.100.7"


def test_behind_a_trusted_proxy_the_client_is_the_right_most_untrusted_hop() -> None:
    forged_then_real = ["6.6.6.6, 198.51.100.7", "10.1.2.3"]
    assert client_address("10.0.0.5", forged_then_real, PROXIES) == "198.51.100.7"
    assert client_address("::1", ["198.51.100.7"], PROXIES) == "198.51.100.7"


def test_a_trusted_proxy_without_x_forwarded_for_is_itself_the_client() -> None:
    assert client_address("10.0.0.5", [], PROXIES) == "10.0.0.5"
    assert client_address("10.0.0.5", ["10.0.0.9"], PROXIES) == "10.0.0.9"


def test_an_unknown_peer_is_counted_as_unknown() -> None:
    assert client_address(None, ["203.0.113.1"], PROXIES) == "unknown"
