"""What a Milvus collection holds per image: the vector and the scalar fields that filters read inside the vector
search (so a filtered top-k is the true top-k of the filtered set). Collections made before these fields existed
have the id and the vector only; ``operations/collections/upgrade.py`` rebuilds them with the fields."""

from __future__ import annotations

from typing import Any

from pymilvus import CollectionSchema, DataType, MilvusClient

ID_FIELD, VECTOR_FIELD = "id", "vector"
ADDED, SOURCE, MIME, WIDTH, HEIGHT, TAGS = "added", "source", "mime", "width", "height", "tags"
TAKEN, CAMERA, LATITUDE, LONGITUDE = "taken", "camera", "lat", "lon"  # from EXIF
MAX_TAGS, MAX_TAG_LENGTH, MAX_SOURCE_LENGTH = 64, 256, 512  # tag length in bytes: 64 characters of UTF-8 fit
MAX_CAMERA_LENGTH = 512  # bytes: 128 characters
UNKNOWN_TAKEN, UNKNOWN_POSITION = -(2**62), 999.0  # no capture time / no position: outside every filter's range
SCALAR_FIELDS = (ADDED, SOURCE, MIME, WIDTH, HEIGHT, TAGS, TAKEN, CAMERA, LATITUDE, LONGITUDE)


def collection_schema(dim: int) -> CollectionSchema:
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field(ID_FIELD, DataType.INT64, is_primary=True)
    schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field(ADDED, DataType.INT64)  # unix seconds, UTC
    schema.add_field(SOURCE, DataType.VARCHAR, max_length=MAX_SOURCE_LENGTH)
    schema.add_field(MIME, DataType.VARCHAR, max_length=32)
    schema.add_field(WIDTH, DataType.INT64)
    schema.add_field(HEIGHT, DataType.INT64)
    schema.add_field(
        TAGS, DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=MAX_TAGS, max_length=MAX_TAG_LENGTH
    )
    schema.add_field(TAKEN, DataType.INT64)  # unix seconds of the capture time (see UNKNOWN_TAKEN)
    schema.add_field(CAMERA, DataType.VARCHAR, max_length=MAX_CAMERA_LENGTH)
    schema.add_field(LATITUDE, DataType.DOUBLE)
    schema.add_field(LONGITUDE, DataType.DOUBLE)
    return schema


def has_scalar_fields(description: dict[str, Any]) -> bool:
    """From ``describe_collection``: whether the collection carries every scalar field."""
    names = {field["name"] for field in description.get("fields", [])}
    return all(name in names for name in SCALAR_FIELDS)


def default_fields() -> dict[str, Any]:
    """For a write that names no fields (the adapter's own tests): an image with nothing known about it."""
    return {
        ADDED: 0,
        SOURCE: "",
        MIME: "",
        WIDTH: 0,
        HEIGHT: 0,
        TAGS: [],
        TAKEN: UNKNOWN_TAKEN,
        CAMERA: "",
        LATITUDE: UNKNOWN_POSITION,
        LONGITUDE: UNKNOWN_POSITION,
    }
