"""Collections made before the filter fields existed are rebuilt with them, once, at start-up.

Milvus can neither add fields to a collection nor (Milvus Lite) rename one, so a collection ``c`` is copied into
``c__upgrade`` with its fields filled from the metadata DB (added, source, mime, size, tags), ``c`` is dropped
and made again with the new schema, and the copy is written back. No image is re-encoded. A crash at any step
is finished by the next start: while the old ``c`` exists the copy is made afresh; once it is gone, the copy is
complete and is written back.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from adapters.stores.sql.sql_schema import schema_lock
from operations.ingest.vector_fields import fields_for_ids
from operations.services import Services

logger = logging.getLogger(__name__)
SUFFIX = "__upgrade"
BATCH = 1000


def upgrade_collections(services: Services) -> list[str]:
    """The collections upgraded now (usually none). Several processes starting at once: one does it."""
    upgraded = []
    with schema_lock(services.metadata.engine, "upgrade"):
        for record in services.metadata.list_collections():
            if _upgrade(services, record.name, record.dim):
                upgraded.append(record.name)
    return upgraded


def _upgrade(services: Services, name: str, dim: int) -> bool:
    vectors, temp = services.vectors, name + SUFFIX
    has_old = vectors.has_collection(name) and not vectors.has_scalar_fields(name)
    if not has_old and not vectors.has_collection(temp):
        return False
    started = time.monotonic()
    if has_old:
        logger.warning("collection %s predates search filters: rebuilding it with them (no re-encoding)", name)
        vectors.drop_collection(temp)  # a copy left by a crash before the old one was dropped: made again
        vectors.ensure_collection(temp, dim)
        copied = _copy(services, name, name, temp)
        vectors.flush(temp)
        vectors.drop_collection(name)
    else:
        logger.warning("collection %s: finishing an upgrade a stopped process began", name)
        vectors.drop_collection(name)  # a partial write-back
    vectors.ensure_collection(name, dim)
    copied = _copy(services, name, temp, name)
    vectors.flush(name)
    vectors.drop_collection(temp)
    logger.warning(
        "collection %s upgraded: %d vectors with filter fields in %.1f s", name, copied, time.monotonic() - started
    )
    return True


def _copy(services: Services, collection: str, source: str, target: str) -> int:
    """Every vector of ``source`` into ``target`` with the fields of the collection's metadata rows."""
    vectors, copied = services.vectors, 0
    for ids in vectors.iter_ids(source, BATCH):
        found = vectors.get(source, ids)
        fields = fields_for_ids(services.metadata, collection, list(found))
        keep = [i for i in ids if i in found and i in fields]  # a vector without a row is reconcile's to delete
        if keep:
            vectors.upsert(target, keep, np.stack([found[i] for i in keep]), [fields[i] for i in keep])
            copied += len(keep)
    return copied
