"""Collections: one Milvus collection and one set of metadata rows under the same validated name."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from adapters.metadata_store import CollectionRecord
from operations.errors import Conflict, InvalidInput, NotFound
from operations.services import Services

logger = logging.getLogger(__name__)

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
METRIC = "IP"


@dataclass(frozen=True)
class CollectionSummary:
    record: CollectionRecord
    count: int


def validate_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise InvalidInput(
            f"invalid collection name {name!r}: use 1-64 letters, digits or _, not starting with a digit"
        )
    return name


def require(services: Services, name: str) -> CollectionRecord:
    record = services.metadata.get_collection(validate_name(name))
    if record is None:
        raise NotFound(f"collection {name!r} does not exist")
    return record


def require_compatible(services: Services, record: CollectionRecord) -> None:
    """A collection's vectors only mean something to the model that made them."""
    info = services.encoder.info
    if record.model != info.model or record.dim != info.dim:
        raise Conflict(
            f"collection {record.name!r} was built with {record.model} ({record.dim}-d) but the service runs "
            f"{info.model} ({info.dim}-d)"
        )


def check_writable(services: Services, name: str) -> None:
    """Refuse early (409) to add images to a collection of another model; a new name is fine."""
    record = services.metadata.get_collection(validate_name(name))
    if record is not None:
        require_compatible(services, record)


def ensure(services: Services, name: str) -> CollectionRecord:
    info = services.encoder.info
    record = services.metadata.create_collection(validate_name(name), info.model, info.dim, METRIC)
    require_compatible(services, record)
    services.vectors.ensure_collection(name, record.dim)
    return record


def summarise(services: Services, name: str) -> CollectionSummary:
    record = require(services, name)
    return CollectionSummary(record, services.metadata.count(name))


def list_all(services: Services) -> list[CollectionSummary]:
    return [CollectionSummary(r, services.metadata.count(r.name)) for r in services.metadata.list_collections()]


def drop(services: Services, name: str) -> int:
    """Rows go first: a failure between the two steps leaves only unreachable vectors, never rows
    that claim a vector which is gone. Dropping again finishes the job."""
    validate_name(name)
    in_metadata = services.metadata.get_collection(name) is not None
    in_vectors = services.vectors.has_collection(name)
    if not in_metadata and not in_vectors:
        raise NotFound(f"collection {name!r} does not exist")
    removed = services.metadata.delete_collection(name)
    services.vectors.drop_collection(name)
    logger.info("dropped collection %s (%d images)", name, removed)
    return removed
