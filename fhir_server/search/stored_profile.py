"""A profile stored on the server, by canonical url (`url` or `url|version`), compiled once per stored version (https://hl7.org/fhir/R4/profiling.html).

The server's validation rule, whoever writes: used by the REST write path
(`interactions/stored_profiles.py`, which adds the caller's check for `$validate`) and by `$import`
(`jobs/import_.py`), so a stored profile binds every path that stores data. The lookup is one
indexed statement on the search index (`store/canonical.latest`, the newest live StructureDefinition with that url and
version); the content is read and compiled only for a version not compiled yet (`profiles/stored.py`,
keyed by id, versionId and lastUpdated), so an update or delete by any process applies at once.
"""

from __future__ import annotations

from typing import Any

import orjson

from profiles import stored
from profiles.snapshot import Definition

from ..store import canonical
from ..store.sql import Tx
from .parameters import param_id

_URL = param_id("StructureDefinition", "url")
_VERSION = param_id("StructureDefinition", "version")


def find(tx: Tx, url: str) -> Definition | None:
    """The compiled StructureDefinition stored with this url (and version), or None."""
    wanted, bar, version = url.partition("|")
    tx.flush(check_references=False)  # a StructureDefinition written earlier in this transaction
    header = canonical.latest(
        tx.conn, "StructureDefinition", _URL, wanted, _VERSION, version if bar and version else None
    )
    if header is None:
        return None
    # a version rolled back and written again by a retried transaction gets a new lastUpdated
    key = f"{header.res_id}/{header.version}/{header.last_updated}"
    found = stored.cached(key)
    if found is None:
        (current,) = tx.current_by_pks([header.pk])
        sd: dict[str, Any] = orjson.loads(current.content)
        if sd.get("url") != wanted or (bar and version and sd.get("version") != version):
            return None  # a url or version longer than the index keeps
        found = stored.definition(key, sd)
    return found
