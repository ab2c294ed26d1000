"""Faces and persons travel with a collection's copy (``operations/collections/copy_collection.py``): each copied
image's faces, their vectors (nothing is read again) and the persons they are in, with the names and the user's
corrections. A named person already in the destination is reused by name; an unnamed one is made anew."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from adapters.stores.sql.face_store import FaceStore
from operations.people.face_vectors import collection_name

logger = logging.getLogger(__name__)


def copy_people(source: Any, destination: Any, name: str, images: Mapping[int, int]) -> int:
    """``source`` and ``destination`` have ``metadata`` and ``vectors``; ``images`` maps a source image id to its
    id in the destination (the images this copy wrote). Returns the faces copied."""
    if not images:
        return 0
    source_faces, target = FaceStore(source.metadata.engine), FaceStore(destination.metadata.engine)
    rows = [row for row in source_faces.all_faces(name) if row.image in images]
    scanned = sorted(source_faces.scanned(list(images)))
    if not scanned:
        return 0
    by_image: dict[int, list] = {image: [] for image in scanned}
    for row in rows:
        by_image.setdefault(row.image, []).append(row)
    new, _ = target.replace(name, "copied", {images[i]: [r.box for r in found] for i, found in by_image.items()})
    face_map = {
        row.id: new_id for i, found in by_image.items() for row, new_id in zip(found, new[images[i]], strict=True)
    }
    vectors = source.vectors.get(collection_name(name), list(face_map))
    if vectors:
        dim = len(next(iter(vectors.values())))  # the source's face model's (128 for dlib, another for ONNX)
        destination.vectors.ensure_collection(collection_name(name), dim)
        ids = [face for face in face_map if face in vectors]
        destination.vectors.upsert(
            collection_name(name), [face_map[f] for f in ids], np.stack([vectors[f] for f in ids])
        )
    person_map = _persons(source_faces, target, name, {row.person for row in rows if row.person is not None})
    for by_user in (False, True):
        placed = {face_map[r.id]: person_map[r.person] for r in rows if r.person is not None and r.by_user == by_user}
        if placed:
            target.assign(placed, by_user=by_user)
    target.mark_clustered([face_map[r.id] for r in rows if r.person is None and r.clustered])
    logger.info("copied %d faces of %s in %d persons", len(face_map), name, len(person_map))
    return len(face_map)


def _persons(source: FaceStore, target: FaceStore, name: str, wanted: set[int]) -> dict[int, int]:
    known = target.named(name)
    mapping: dict[int, int] = {}
    for person in source.persons(name, sorted(wanted)):
        if person.name and person.name in known:
            mapping[person.id] = known[person.name]
            continue
        made = target.create_persons(name, 1, by_user=person.by_user, name=person.name)[0]
        if person.hidden:
            target.update_person(made, hidden=True)
        mapping[person.id] = made
    return mapping
