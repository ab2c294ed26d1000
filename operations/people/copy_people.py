"""Faces and persons travel with a collection: its copy (``operations/collections/copy_collection.py``) and its
export, which a load restores (``{split}_faces.jsonl``). Each image's faces go with their vectors (nothing is read
again) and the persons they are in, with the names and the user's corrections. A named person already where they
land is reused by name; an unnamed one is made anew."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adapters.stores.sql.face_store import FaceBox, FaceStore
from operations.ingest.streams import batched
from operations.people import face_vectors
from operations.people.face_vectors import collection_name

logger = logging.getLogger(__name__)

LOAD_BATCH = 500  # images whose faces a load stores at a time
SOURCE_MODEL = "copied"  # what the face store records as the reader of faces that came with a copy or a load


@dataclass(frozen=True)
class CarriedPerson:
    key: int  # the person's id where the faces come from: faces with one key land in one person
    name: str | None
    hidden: bool
    by_user: bool


@dataclass(frozen=True)
class CarriedFace:
    box: FaceBox
    vector: np.ndarray | None  # None: Milvus had none (a redo of the face job reads it again)
    by_user: bool
    clustered: bool
    person: CarriedPerson | None


def gather(metadata: Any, vectors: Any, name: str, image_ids: Sequence[int]) -> dict[int, list[CarriedFace]]:
    """The faces of those of ``image_ids`` whose faces were read (an image read without faces maps to [])."""
    store = FaceStore(metadata.engine)
    scanned = sorted(store.scanned(list(image_ids)))
    if not scanned:
        return {}
    rows = store.faces_of(name, scanned)
    found = [row for image in scanned for row in rows.get(image, [])]
    stored = vectors.get(collection_name(name), [row.id for row in found]) if found else {}
    persons = {
        p.id: CarriedPerson(p.id, p.name, p.hidden, p.by_user)
        for p in store.persons(name, sorted({row.person for row in found if row.person is not None}))
    }
    return {
        image: [
            CarriedFace(
                row.box,
                np.asarray(stored[row.id], dtype=np.float32) if row.id in stored else None,
                row.by_user,
                row.clustered,
                persons.get(row.person) if row.person is not None else None,
            )
            for row in rows.get(image, [])
        ]
        for image in scanned
    }


def put(metadata: Any, vectors: Any, name: str, found: Mapping[int, Sequence[CarriedFace]]) -> int:
    """``found`` (keyed by image ids of ``metadata``) stored there, replacing what those images had. Returns the
    faces stored."""
    if not found:
        return 0
    target = FaceStore(metadata.engine)
    new, removed = target.replace(name, SOURCE_MODEL, {image: [f.box for f in faces] for image, faces in found.items()})
    face_vectors.delete(vectors, name, removed)
    placed = [
        (face_id, face) for image, faces in found.items() for face_id, face in zip(new[image], faces, strict=True)
    ]
    with_vector = [(face_id, face.vector) for face_id, face in placed if face.vector is not None]
    if with_vector:  # sized by the vectors that came (the source's face model), refused beside another model's
        face_vectors.put(vectors, name, [i for i, _ in with_vector], np.stack([v for _, v in with_vector]))
    persons = _persons(target, name, {face.person for _, face in placed if face.person is not None})
    for by_user in (False, True):
        assigned = {
            face_id: persons[face.person.key]
            for face_id, face in placed
            if face.person is not None and face.by_user == by_user
        }
        if assigned:
            target.assign(assigned, by_user=by_user)
    target.mark_clustered([face_id for face_id, face in placed if face.person is None and face.clustered])
    return len(placed)


def copy_people(source: Any, destination: Any, name: str, images: Mapping[int, int]) -> int:
    """``source`` and ``destination`` have ``metadata`` and ``vectors``; ``images`` maps a source image id to its
    id in the destination (the images this copy wrote). Returns the faces copied."""
    found = gather(source.metadata, source.vectors, name, list(images))
    count = put(destination.metadata, destination.vectors, name, {images[i]: faces for i, faces in found.items()})
    if found:
        logger.info("copied %d faces of %s", count, name)
    return count


def load_people(metadata: Any, vectors: Any, name: str, path: Path) -> int:
    """An export's faces file into the collection a load wrote: each line's image found by its id (the loader
    strips spaces around ids, so does this). Returns the faces stored."""
    stored = 0
    for chunk in batched(read_face_lines(path), LOAD_BATCH):
        rows = metadata.lookup(name, [image_id.strip() for image_id, _ in chunk])
        found = {rows[i.strip()].id: faces for i, faces in chunk if i.strip() in rows}
        stored += put(metadata, vectors, name, found)
    return stored


def face_line(image_id: str, faces: Sequence[CarriedFace]) -> str:
    """One line of ``{split}_faces.jsonl``: an image's faces (none: read, no face in it)."""
    items = [
        {
            "box": [face.box.x, face.box.y, face.box.width, face.box.height],
            "score": face.box.score,
            "feature": None if face.vector is None else [round(float(v), 7) for v in face.vector],
            "by_user": face.by_user,
            "clustered": face.clustered,
            "person": None if face.person is None else vars(face.person),
        }
        for face in faces
    ]
    return json.dumps({"image_id": image_id, "faces": items}, ensure_ascii=False) + "\n"


def read_face_lines(path: Path) -> Iterator[tuple[str, list[CarriedFace]]]:
    """The lines ``face_line`` wrote; a line that is not one is skipped with a warning (the images still load)."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                faces = [
                    CarriedFace(
                        FaceBox(*(int(v) for v in face["box"]), float(face["score"])),
                        None if face["feature"] is None else np.asarray(face["feature"], dtype=np.float32),
                        bool(face["by_user"]),
                        bool(face["clustered"]),
                        None if face["person"] is None else CarriedPerson(**face["person"]),
                    )
                    for face in item["faces"]
                ]
                yield str(item["image_id"]), faces
            except (ValueError, KeyError, TypeError) as exc:
                logger.warning("%s line %d is not an image's faces (%s): skipped", path.name, number, exc)


def _persons(target: FaceStore, name: str, wanted: set[CarriedPerson]) -> dict[int, int]:
    known = target.named(name)
    mapping: dict[int, int] = {}
    for person in sorted(wanted, key=lambda p: p.key):
        if person.key in mapping:
            continue
        if person.name and person.name in known:
            mapping[person.key] = known[person.name]
            continue
        made = target.create_persons(name, 1, by_user=person.by_user, name=person.name)[0]
        if person.hidden:
            target.update_person(made, hidden=True)
        mapping[person.key] = made
        if person.name:
            known[person.name] = made
    return mapping
