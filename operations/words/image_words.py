"""The words in and about one image: what `GET /img/{c}/{id}/text` shows and a description set by hand."""

from __future__ import annotations

from adapters.stores.sql.text_store import ImageTexts
from operations.collections import collections
from operations.search.search import validate_text
from operations.services import Services

MAX_DESCRIPTION_CHARS = 4000


def of_image(services: Services, collection: str, image_id: str) -> ImageTexts:
    image = collections.require_image(services, collection, image_id)
    return services.texts.texts([image.id]).get(image.id, ImageTexts())


def set_description(services: Services, collection: str, image_id: str, description: str | None) -> ImageTexts:
    """Replaces the description (empty or None clears it); the next keyword search sees it."""
    text = (description or "").strip()
    if text:
        text = validate_text(text, MAX_DESCRIPTION_CHARS)  # length and Unicode, as for search texts
    image = collections.require_image(services, collection, image_id)
    services.texts.set_fields(collection, {image.id: {"description": text or None}})
    return services.texts.texts([image.id]).get(image.id, ImageTexts())
