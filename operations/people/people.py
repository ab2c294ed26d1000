"""What a user does with persons: list them, look at one, name, hide, merge, and move faces between them (a split
or a correction). Every change a user makes is marked theirs (``by_user``): clustering never undoes it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from adapters import images
from adapters.stores.sql.face_store import FaceRow, PersonRow
from operations.collections import collections
from operations.errors import InvalidInput, NotFound
from operations.people import face_vectors
from operations.services import Services

logger = logging.getLogger(__name__)

MAX_NAME = 64
CROP_MARGIN = 0.3  # of the box, on each side: a face crop shows the hair and chin too


@dataclass(frozen=True)
class Person:
    row: PersonRow
    cover: int | None  # the face shown for the person
    shown: bool  # in the people strip: named, or enough faces and not hidden


@dataclass(frozen=True)
class ImageFace:
    face: FaceRow
    person: PersonRow | None


def list_people(services: Services, collection: str, everyone: bool = False) -> list[Person]:
    """The persons, most faces first; by default the ones a user sees (named, or at least IMGSEARCH_FACE_MIN_FACES
    faces and not hidden)."""
    collections.require(services, collection)
    rows = services.face_store.persons(collection)
    covers = services.face_store.covers(collection, [r.id for r in rows if r.cover_face is None])
    minimum = services.settings.face_min_faces
    people = [Person(row, row.cover_face or covers.get(row.id), _shown(row, minimum)) for row in rows]
    return people if everyone else [p for p in people if p.shown]


def get_person(services: Services, collection: str, person: int) -> Person:
    collections.require(services, collection)
    found = services.face_store.persons(collection, [person])
    if not found:
        raise NotFound(f"person {person} not found in collection {collection!r}")
    row = found[0]
    cover = row.cover_face or services.face_store.covers(collection, [row.id]).get(row.id)
    return Person(row, cover, _shown(row, services.settings.face_min_faces))


def _shown(row: PersonRow, minimum: int) -> bool:
    """In the people strip: not hidden, and named, made by a user, or with enough faces."""
    return not row.hidden and (bool(row.name) or row.by_user or row.faces >= minimum)


def faces_of(services: Services, collection: str, person: int, limit: int, offset: int) -> list[FaceRow]:
    get_person(services, collection, person)
    return services.face_store.faces_of_person(collection, person, limit, offset)


def update(
    services: Services,
    collection: str,
    person: int,
    name: str | None = None,
    hidden: bool | None = None,
    cover_face: int | None = None,
    clear_name: bool = False,
) -> Person:
    get_person(services, collection, person)
    values: dict[str, object] = {}
    if clear_name:
        values["name"] = None
    elif name is not None:
        values["name"] = valid_name(name)
    if hidden is not None:
        values["hidden"] = hidden
    if cover_face is not None:
        face = services.face_store.get_faces(collection, [cover_face]).get(cover_face)
        if face is None or face.person != person:
            raise InvalidInput(f"cover_face {cover_face} is not a face of person {person}")
        values["cover_face"] = cover_face
    services.face_store.update_person(person, **values)
    return get_person(services, collection, person)


def valid_name(name: str) -> str:
    name = " ".join(name.split())
    if not 1 <= len(name) <= MAX_NAME:
        raise InvalidInput(f"a person's name is 1 to {MAX_NAME} characters")
    return name


def merge(services: Services, collection: str, ids: Sequence[int]) -> Person:
    """The persons become the first of them (it takes the first name among them if it has none)."""
    unique = list(dict.fromkeys(ids))
    if len(unique) < 2:
        raise InvalidInput("merge takes at least two different persons")
    people = [get_person(services, collection, person) for person in unique]
    target = people[0].row
    moved = {f.id: target.id for p in unique[1:] for f in services.face_store.faces_of_person(collection, p, 10**9, 0)}
    services.face_store.assign(moved, by_user=True)
    name = target.name or next((p.row.name for p in people if p.row.name), None)
    services.face_store.update_person(target.id, **({"name": name} if name else {}))
    services.face_store.delete_persons(unique[1:])
    logger.info("merged persons %s of %s into %d", unique[1:], collection, target.id)
    return get_person(services, collection, target.id)


def move_faces(
    services: Services, collection: str, person: int, face_ids: Sequence[int], to: int | None = None
) -> Person:
    """Faces of ``person`` to the person ``to``, or to a new person of their own (a split); the person they went
    to is returned. A face moved by a user stays where the user put it."""
    get_person(services, collection, person)
    found = services.face_store.get_faces(collection, list(face_ids))
    wrong = sorted(set(face_ids) - {f.id for f in found.values() if f.person == person})
    if wrong or not face_ids:
        raise InvalidInput(f"faces {wrong[:10]} are not faces of person {person}" if wrong else "no faces given")
    return assign_faces(services, collection, face_ids, to)


def assign_faces(services: Services, collection: str, face_ids: Sequence[int], to: int | None = None) -> Person:
    """Faces (placed or waiting) to the person ``to``, or to a new person of their own: a user's decision."""
    found = services.face_store.get_faces(collection, list(face_ids))
    missing = sorted(set(face_ids) - set(found))
    if missing or not face_ids:
        raise InvalidInput(f"no face {missing[:10]} in collection {collection!r}" if missing else "no faces given")
    if to is None:
        to = services.face_store.create_persons(collection, 1, by_user=True)[0]
    else:
        get_person(services, collection, to)
        services.face_store.update_person(to)
    services.face_store.assign(dict.fromkeys(face_ids, to), by_user=True)
    services.face_store.drop_empty_persons(collection)
    return get_person(services, collection, to)


def image_faces(services: Services, collection: str, image_id: str) -> list[ImageFace]:
    record = collections.require_image(services, collection, image_id)
    rows = services.face_store.faces_of(collection, [record.id]).get(record.id, [])
    persons = {p.id: p for p in services.face_store.persons(collection, [r.person for r in rows if r.person])}
    return [ImageFace(row, persons.get(row.person) if row.person else None) for row in rows]


def crop(services: Services, collection: str, face: int, size: int) -> bytes:
    """A JPEG of the face (with some margin), from the stored picture, at most ``size`` pixels a side."""
    row = services.face_store.get_faces(collection, [face]).get(face)
    if row is None:
        raise NotFound(f"face {face} not found in collection {collection!r}")
    record = services.metadata.fetch(collection, [row.image], with_data=True).get(row.image)
    if record is None or not record.data:
        raise NotFound(f"the image of face {face} is gone")
    picture = images.decode_rgb(record.data, services.settings.max_image_pixels)
    scale = max(picture.size) / max(record.width, record.height)
    box = row.box
    margin_x, margin_y = box.width * CROP_MARGIN, box.height * CROP_MARGIN
    left, top = max(0.0, (box.x - margin_x) * scale), max(0.0, (box.y - margin_y) * scale)
    right = min(picture.width, (box.x + box.width + margin_x) * scale)
    bottom = min(picture.height, (box.y + box.height + margin_y) * scale)
    return images.jpeg_of(picture.crop((round(left), round(top), round(right), round(bottom))), size)


def wipe(services: Services, collection: str) -> int:
    """Every face and person of the collection (a fresh start: the next face job reads every photo again)."""
    collections.require(services, collection)
    removed = services.face_store.wipe(collection)
    face_vectors.delete(services.vectors, collection, removed)
    logger.info("wiped %d faces of %s", len(removed), collection)
    return len(removed)
