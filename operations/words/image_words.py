"""The words in and about one image: what `GET /img/{c}/{id}/text` shows and a description set by hand."""

from __future__ import annotations

from adapters.stores.text_store import ImageTexts
from operations.collections import collections
from operations.errors import InvalidInput
from operations.services import Services

MAX_DESCRIPTION_CHARS = 4000


def of_image(services: Services, collection: str, image_id: str) -> ImageTexts:
    image = collections.require_image(services, collection, image_id)
    return services.texts.texts([image.id]).get(image.id, ImageTexts())


def set_description(services: Services, collection: str, image_id: str, description: str | None) -> ImageTexts:
    """Replaces the description (empty or None clears it); the next keyword search sees it."""
    text = (description or "").strip()
    if len(text) > MAX_DESCRIPTION_CHARS:
        raise InvalidInput(f"description is {len(text)} characters, over the limit of {MAX_DESCRIPTION_CHARS}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput("description is not valid Unicode (lone surrogate)") from exc
    image = collections.require_image(services, collection, image_id)
    services.texts.set_fields(collection, {image.id: {"description": text or None}})
    return services.texts.texts([image.id]).get(image.id, ImageTexts())
