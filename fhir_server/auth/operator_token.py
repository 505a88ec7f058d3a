"""Access tokens an operator mints from the command line, e.g. for curl or scripts in development.

The token is an ordinary SMART access token (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html)
of a registered client, signed with the server's key and recorded like any other, so it can be
introspected and revoked; whoever can run the command already controls the database.
"""

from __future__ import annotations

import time

from ..errors import Invalid
from ..settings import Settings
from ..store.sql import Store
from . import clients
from .scopes import parse
from .server import AuthorizationServer
from .tokens import Grant, new_grant_id


def mint(store: Store, settings: Settings, client_id: str, scope: str, minutes: int) -> str:
    """A system-context access token for `client_id` with `scope`, valid for `minutes`."""
    granted = parse(scope)
    if not granted.resources or any(r.context != "system" for r in granted.resources):
        raise Invalid(f"'{scope}' must be system/ scopes, e.g. system/*.cruds", "scope")
    server = AuthorizationServer(store, settings)
    with store.write() as tx:
        if clients.get(tx.conn, client_id) is None:
            raise Invalid(f"No client '{client_id}' is registered", "client")
        grant = Grant(new_grant_id(), client_id, "system", granted)
        response = server.issuer.issue(tx.conn, grant, now=int(time.time()), lifetime=minutes * 60)
    return str(response["access_token"])
