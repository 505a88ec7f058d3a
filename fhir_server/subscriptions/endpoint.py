"""Which rest-hook endpoints the server calls (https://hl7.org/fhir/R4/subscription.html#channels, https://owasp.org/www-community/attacks/Server_Side_Request_Forgery).

An endpoint must be an http(s) URL. Private, link-local and loopback addresses are refused unless
the settings allow them (`subscription_allow_private`, `subscription_allow_loopback`): a hostname
is resolved and every address it resolves to must be allowed, at creation and again before each call.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from ..errors import Invalid
from ..settings import Settings

WHERE = "Subscription.channel.endpoint"


def check(url: str, settings: Settings) -> None:
    """400 unless `url` is an http(s) URL whose host the policy allows."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(f"A rest-hook endpoint must be an http or https URL, not '{url[:200]}'", WHERE)
    if parts.username or parts.password:
        raise Invalid("A rest-hook endpoint must not carry credentials; use channel.header", WHERE)
    refused = refusal(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), settings)
    if refused:
        raise Invalid(refused, WHERE)


def refusal(host: str, port: int, settings: Settings) -> str | None:
    """Why the policy refuses `host` (None: allowed)."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return f"The endpoint host '{host}' does not resolve"
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address.is_loopback:
            if not settings.subscription_allow_loopback:
                return f"The endpoint host '{host}' is a loopback address, which this server does not call"
        elif (
            address.is_private or address.is_link_local or address.is_reserved or address.is_unspecified
        ) and not settings.subscription_allow_private:
            return f"The endpoint host '{host}' is a private address, which this server does not call"
    return None
