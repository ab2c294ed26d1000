"""Collections: one Milvus collection and one set of metadata rows under the same validated name."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from adapters.encoders.encoder_base import EncoderBase
from adapters.stores.sql.metadata_store import CollectionRecord, ImageRecord, MetadataStore
from operations.errors import Conflict, InvalidInput, NotFound
from operations.people import face_vectors
from operations.services import Services

logger = logging.getLogger(__name__)

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
METRIC = "IP"
# How /img/search ranks (operations/search/hybrid.py): semantic is Chinese-CLIP's ranking, the seed's top-k.
SEARCH_MODES = ("semantic", "keyword", "hybrid")
DEFAULT_SEARCH_MODE = "semantic"


@dataclass(frozen=True)
class CollectionSummary:
    record: CollectionRecord
    count: int
    index: dict[str, Any] | None = None


def index_summary(services: Services, record: CollectionRecord) -> dict[str, Any] | None:
    """The backend and index a collection's vectors use (built when it was created, whatever today's settings
    say) and what a search passes; None while Milvus cannot say (down, or the collection has no vectors yet)."""
    name = record.vector_collection
    try:
        info = services.vectors.index_info(name)
        search = services.vectors.search_params_for(name, 1)
    except Exception as exc:
        logger.debug("no index description for %s: %s", name, exc)
        return None
    return {"backend": services.vectors.backend, "index_type": info.index_type, "params": info.params} | {
        "search_params": search
    }


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


def encoder_for(services: Services, record: CollectionRecord) -> EncoderBase:
    """A collection's vectors only mean something to the model that made them: every search and every
    write on it uses that model."""
    encoder = services.models.get(record.model)
    if encoder.info.dim != record.dim:
        raise Conflict(
            f"collection {record.name!r} holds {record.dim}-d vectors but model {record.model} now gives "
            f"{encoder.info.dim}-d ones (another checkpoint?)"
        )
    return encoder


def model_for_writes(services: Services, name: str, model: str | None = None) -> str:
    """The model a write into ``name`` uses: the collection's own, or for a new one the requested model
    (default: the service's). Asking for another model than the collection's is refused (409)."""
    record = services.metadata.get_collection(validate_name(name))
    if record is None:
        return services.models.validate(model or services.models.default_name)
    if model is not None and model != record.model:
        if model == record.next_model and record.next_state:  # a write begun before a switch: both get it
            return model
        raise Conflict(f"collection {name!r} is bound to {record.model}; it cannot take {model} vectors")
    encoder_for(services, record)
    return record.model


def ensure(services: Services, name: str, model: str | None = None, search_mode: str | None = None) -> CollectionRecord:
    """Create the collection bound to its model (name, dim, resolution) or return it; see model_for_writes.
    ``search_mode`` is set on a new collection, or changed on an existing one when given."""
    model = model_for_writes(services, name, model)
    info = services.models.get(model).info
    mode = validate_search_mode(search_mode) if search_mode is not None else None
    record = services.metadata.create_collection(name, info.model, info.dim, METRIC, mode)
    if model not in (record.model, record.next_model):  # created concurrently with another model
        raise Conflict(f"collection {name!r} is bound to {record.model}; it cannot take {model} vectors")
    services.vectors.ensure_collection(record.vector_collection, record.dim)
    if mode is not None and record.search_mode != mode:
        record = set_search_mode(services.metadata, name, mode)
    return record


def validate_search_mode(mode: str) -> str:
    if mode not in SEARCH_MODES:
        raise InvalidInput(f"search_mode must be one of {', '.join(SEARCH_MODES)}, got {mode!r}")
    return mode


def set_search_mode(metadata: MetadataStore, name: str, mode: str) -> CollectionRecord:
    """The ranking a search of this collection gets when it names no mode; semantic unless a person chose. Needs
    the metadata store alone, so the CLI can change it while a service (holding Milvus Lite) runs."""
    validate_search_mode(mode)
    if not metadata.set_search_mode(validate_name(name), None if mode == DEFAULT_SEARCH_MODE else mode):
        raise NotFound(f"collection {name!r} does not exist")
    logger.info("collection %s: searches without a mode are %s", name, mode)
    record = metadata.get_collection(name)
    assert record is not None
    return record


def require_image(services: Services, collection: str, image_id: str) -> ImageRecord:
    """A searchable image of an existing collection, bytes included, or 404. The collection is looked up only
    when the image is missing, to say which of the two is: image reads and thumbnails cost one query."""
    image = services.metadata.get_image(collection, image_id)
    if image is None:
        require(services, collection)
        raise NotFound(f"image {image_id!r} not found in collection {collection!r}")
    return image


def summarise(services: Services, name: str) -> CollectionSummary:
    record = require(services, name)
    return CollectionSummary(record, services.metadata.count(name), index_summary(services, record))


def list_all(services: Services) -> list[CollectionSummary]:
    return [
        CollectionSummary(r, services.metadata.count(r.name), index_summary(services, r))
        for r in services.metadata.list_collections()
    ]


def drop(services: Services, name: str) -> int:
    """Rows go first: a failure between the two steps leaves only unreachable vectors, never rows
    that claim a vector which is gone. Dropping again finishes the job."""
    validate_name(name)
    record = services.metadata.get_collection(name)
    # The Milvus collections of every generation (a re-embed's too), and the name itself (a half-dropped one).
    milvus = (
        [name] if record is None else [record.vector_collection, *([record.next_vectors] * bool(record.next_vectors))]
    )
    in_vectors = any(services.vectors.has_collection(m) for m in milvus)
    if record is None and not in_vectors:
        raise NotFound(f"collection {name!r} does not exist")
    face_vectors.drop(services, name)
    removed = services.metadata.delete_collection(name)
    for milvus_name in milvus:
        services.vectors.drop_collection(milvus_name)
    services.video_store.drop_collection(name)
    logger.info("dropped collection %s (%d images)", name, removed)
    return removed
