"""Faces and persons in the metadata DB (SQLite or MySQL alike); the face vectors live in Milvus under the face ids.

``by_user`` marks what a person decided (a name, a correction, a merge): clustering reads it and never undoes it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, and_, delete, func, insert, or_, select, update

from adapters.stores.sql.sql_schema import chunks, face_scans, faces, images, persons, schema_lock, utc_now


@dataclass(frozen=True)
class FaceBox:
    """A face as found: its box in the original's pixels and the detector's score."""

    x: int
    y: int
    width: int
    height: int
    score: float


@dataclass(frozen=True)
class FaceRow:
    id: int
    image: int
    box: FaceBox
    person: int | None
    by_user: bool
    clustered: bool = False


@dataclass(frozen=True)
class PersonRow:
    id: int
    name: str | None
    hidden: bool
    by_user: bool
    cover_face: int | None
    faces: int
    images: int


def overlap(a: FaceBox, b: FaceBox) -> float:
    """Intersection over union of two boxes."""
    width = max(0, min(a.x + a.width, b.x + b.width) - max(a.x, b.x))
    height = max(0, min(a.y + a.height, b.y + b.height) - max(a.y, b.y))
    inter = width * height
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


def _face(row) -> FaceRow:  # type: ignore[no-untyped-def]
    box = FaceBox(row.x, row.y, row.width, row.height, float(row.score))
    person = None if row.person is None else int(row.person)
    return FaceRow(int(row.id), int(row.image), box, person, bool(row.by_user), bool(row.clustered))


class FaceStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def clustering(self, collection: str) -> Iterator[None]:
        """One clustering of a collection at a time (a sync's and a face job's would both place the same faces):
        across threads here, across processes by the database's named lock on MySQL."""
        with self._lock, schema_lock(self.engine, f"people:{collection}"):
            yield

    # --- faces -------------------------------------------------------------------------------------------------
    def scanned(self, ids: Sequence[int]) -> set[int]:
        """Of ``ids``, the images the face model has read."""
        with self.engine.connect() as conn:
            return {
                int(i)
                for chunk in chunks(list(ids))
                for (i,) in conn.execute(select(face_scans.c.image).where(face_scans.c.image.in_(chunk)))
            }

    def replace(self, collection: str, model: str, found: Mapping[int, Sequence[FaceBox]]) -> tuple[dict, list[int]]:
        """Each image's faces replaced by ``found`` (and marked read) in one transaction: the new face ids per
        image, and the ids removed (their vectors go too). A face found where one was before (boxes overlapping
        by half) keeps that one's person and whether a user put it there: a redo keeps names and corrections."""
        now = utc_now()
        new: dict[int, list[int]] = {}
        with self.engine.begin() as conn:
            ids = list(found)
            before: dict[int, list[FaceRow]] = {}
            for chunk in chunks(ids):
                for row in conn.execute(select(faces).where(faces.c.image.in_(chunk))):
                    before.setdefault(int(row.image), []).append(_face(row))
            removed = [face.id for rows in before.values() for face in rows]
            for chunk in chunks(removed):
                conn.execute(delete(faces).where(faces.c.id.in_(chunk)))
            for chunk in chunks(ids):
                conn.execute(delete(face_scans).where(face_scans.c.image.in_(chunk)))
            for image, boxes in found.items():
                new[image] = []
                earlier = [face for face in before.get(image, []) if face.person is not None]
                for box in boxes:
                    same = max(earlier, key=lambda face: overlap(face.box, box), default=None)
                    kept = same if same is not None and overlap(same.box, box) >= 0.5 else None
                    if kept is not None:
                        earlier.remove(kept)
                    row = {"collection": collection, "image": image, "x": box.x, "y": box.y, "width": box.width}
                    row |= {"height": box.height, "score": box.score, "created_at": now}
                    row |= {"person": kept.person if kept else None, "by_user": bool(kept and kept.by_user)}
                    row["clustered"] = kept is not None
                    new[image].append(int(conn.execute(insert(faces).values(row)).inserted_primary_key[0]))
            if found:
                conn.execute(
                    insert(face_scans),
                    [
                        {"image": i, "collection": collection, "model": model, "faces": len(b), "scanned_at": now}
                        for i, b in found.items()
                    ],
                )
        return new, removed

    def faces_of(self, collection: str, image_ids: Sequence[int]) -> dict[int, list[FaceRow]]:
        found: dict[int, list[FaceRow]] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(list(image_ids)):
                query = select(faces).where(faces.c.collection == collection, faces.c.image.in_(chunk))
                for row in conn.execute(query.order_by(faces.c.image, faces.c.x)):
                    found.setdefault(int(row.image), []).append(_face(row))
        return found

    def get_faces(self, collection: str, face_ids: Sequence[int]) -> dict[int, FaceRow]:
        with self.engine.connect() as conn:
            return {
                int(row.id): _face(row)
                for chunk in chunks(list(face_ids))
                for row in conn.execute(select(faces).where(faces.c.collection == collection, faces.c.id.in_(chunk)))
            }

    def all_faces(self, collection: str) -> list[FaceRow]:
        with self.engine.connect() as conn:
            return [_face(row) for row in conn.execute(select(faces).where(faces.c.collection == collection))]

    def faces_of_person(self, collection: str, person: int, limit: int, offset: int) -> list[FaceRow]:
        query = select(faces).where(faces.c.collection == collection, faces.c.person == person)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(faces.c.image.desc(), faces.c.id).limit(limit).offset(offset))
            return [_face(row) for row in rows]

    def assign(self, assignments: Mapping[int, int | None], by_user: bool = False) -> None:
        """Faces to persons (None: to nobody); ``by_user``: a person's correction, kept by every later run."""
        by_person: dict[int | None, list[int]] = {}
        for face, person in assignments.items():
            by_person.setdefault(person, []).append(face)
        with self.engine.begin() as conn:
            for person, ids in by_person.items():
                for chunk in chunks(ids):
                    values = {"person": person, "clustered": True} | ({"by_user": True} if by_user else {})
                    conn.execute(update(faces).where(faces.c.id.in_(chunk)).values(**values))

    def mark_clustered(self, face_ids: Sequence[int]) -> None:
        with self.engine.begin() as conn:
            for chunk in chunks(list(face_ids)):
                conn.execute(update(faces).where(faces.c.id.in_(chunk)).values(clustered=True))

    def delete_faces_of(self, image_ids: Sequence[int]) -> list[int]:
        """The images' faces and scans removed (an image's row going takes them too); the face ids removed."""
        with self.engine.begin() as conn:
            removed = [
                int(i)
                for chunk in chunks(list(image_ids))
                for (i,) in conn.execute(select(faces.c.id).where(faces.c.image.in_(chunk)))
            ]
            for chunk in chunks(list(image_ids)):
                conn.execute(delete(faces).where(faces.c.image.in_(chunk)))
                conn.execute(delete(face_scans).where(face_scans.c.image.in_(chunk)))
        return removed

    def wipe(self, collection: str) -> list[int]:
        """Every face, scan and person of the collection; the face ids removed."""
        with self.engine.begin() as conn:
            removed = [int(i) for (i,) in conn.execute(select(faces.c.id).where(faces.c.collection == collection))]
            conn.execute(delete(faces).where(faces.c.collection == collection))
            conn.execute(delete(face_scans).where(face_scans.c.collection == collection))
            conn.execute(delete(persons).where(persons.c.collection == collection))
        return removed

    def has_unplaced(self, collection: str) -> bool:
        """Whether some face has not been through clustering yet."""
        query = select(faces.c.id).where(
            faces.c.collection == collection, faces.c.person.is_(None), faces.c.clustered.is_(False)
        )
        with self.engine.connect() as conn:
            return conn.execute(query.limit(1)).first() is not None

    def scan_count(self, collection: str) -> tuple[int, int]:
        """(images read, faces found) of the collection."""
        query = select(func.count(), func.coalesce(func.sum(face_scans.c.faces), 0))
        with self.engine.connect() as conn:
            read, found = conn.execute(query.where(face_scans.c.collection == collection)).one()
        return int(read), int(found)

    # --- persons -----------------------------------------------------------------------------------------------
    def create_persons(self, collection: str, count: int, by_user: bool = False, name: str | None = None) -> list[int]:
        now = utc_now()
        row = {"collection": collection, "name": name, "hidden": False, "by_user": by_user, "created_at": now}
        with self.engine.begin() as conn:
            return [int(conn.execute(insert(persons).values(row)).inserted_primary_key[0]) for _ in range(count)]

    def persons(self, collection: str, ids: Sequence[int] | None = None) -> list[PersonRow]:
        """The persons with their face and image counts, most faces first (of ``ids`` only: their faces only are
        counted)."""
        counting = faces.c.person.is_not(None) if ids is None else faces.c.person.in_(list(ids))
        counts = (
            select(
                faces.c.person,
                func.count().label("faces"),
                func.count(func.distinct(faces.c.image)).label("images"),
            )
            .where(faces.c.collection == collection, counting)
            .group_by(faces.c.person)
            .subquery()
        )
        query = (
            select(
                persons,
                func.coalesce(counts.c.faces, 0).label("n_faces"),
                func.coalesce(counts.c.images, 0).label("n_images"),
            )
            .outerjoin(counts, counts.c.person == persons.c.id)
            .where(persons.c.collection == collection)
        )
        if ids is not None:
            query = query.where(persons.c.id.in_(list(ids)))
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(func.coalesce(counts.c.faces, 0).desc(), persons.c.id)).all()
        return [
            PersonRow(int(r.id), r.name, bool(r.hidden), bool(r.by_user), r.cover_face, int(r.n_faces), int(r.n_images))
            for r in rows
        ]

    def covers(self, collection: str, people: Sequence[int]) -> dict[int, int]:
        """A face to show for each person that has none chosen: its largest (the sharpest, as a rule)."""
        best: dict[int, tuple[int, int]] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(sorted(set(people))):
                query = select(faces.c.id, faces.c.person, faces.c.width).where(
                    faces.c.collection == collection, faces.c.person.in_(chunk)
                )
                for face, person, width in conn.execute(query):
                    if person not in best or (width, -face) > (best[person][1], -best[person][0]):
                        best[int(person)] = (int(face), int(width))
        return {person: face for person, (face, _) in best.items()}

    def update_person(self, person: int, **values: object) -> None:
        """A user's change (name, hidden, cover face): the person is the user's from then on."""
        with self.engine.begin() as conn:
            conn.execute(update(persons).where(persons.c.id == person).values(by_user=True, **values))

    def delete_persons(self, ids: Sequence[int]) -> None:
        with self.engine.begin() as conn:
            for chunk in chunks(list(ids)):
                conn.execute(update(faces).where(faces.c.person.in_(chunk)).values(person=None))
                conn.execute(delete(persons).where(persons.c.id.in_(chunk)))

    def forget_machine_work(self, collection: str) -> None:
        """For a clustering from scratch: the persons nobody named or changed go, with the machine's placements
        in them (unless a user placed a face there). A person a user named keeps its faces: the user saw them."""
        users = select(persons.c.id).where(persons.c.collection == collection, persons.c.by_user.is_(True))
        with self.engine.begin() as conn:
            mine = and_(
                faces.c.collection == collection,
                faces.c.by_user.is_(False),
                or_(faces.c.person.is_(None), faces.c.person.not_in(users)),
            )
            conn.execute(update(faces).where(mine).values(person=None, clustered=False))
            kept = select(faces.c.person).where(faces.c.collection == collection, faces.c.person.is_not(None))
            conn.execute(
                delete(persons).where(
                    persons.c.collection == collection, persons.c.by_user.is_(False), persons.c.id.not_in(kept)
                )
            )

    def drop_empty_persons(self, collection: str) -> None:
        """Persons the machine made that no face is in any more (a user moved them all away)."""
        kept = select(faces.c.person).where(faces.c.collection == collection, faces.c.person.is_not(None))
        with self.engine.begin() as conn:
            conn.execute(
                delete(persons).where(
                    persons.c.collection == collection, persons.c.by_user.is_(False), persons.c.id.not_in(kept)
                )
            )

    def named(self, collection: str) -> dict[str, int]:
        """Names of persons and their ids (a name given twice: the older person). Asked on every text search:
        one narrow query, no face counts."""
        query = select(persons.c.id, persons.c.name).where(
            persons.c.collection == collection, persons.c.name.is_not(None)
        )
        found: dict[str, int] = {}
        with self.engine.connect() as conn:
            for person, name in conn.execute(query.order_by(persons.c.id)):
                found.setdefault(name, int(person))
        return found

    def existing(self, collection: str, ids: Sequence[int]) -> set[int]:
        """Which of ``ids`` are persons of the collection (a filter's check: no face counts)."""
        query = select(persons.c.id).where(persons.c.collection == collection, persons.c.id.in_(list(ids)))
        with self.engine.connect() as conn:
            return {int(i) for (i,) in conn.execute(query)}

    def images_with(self, collection: str, people: Sequence[int], every: bool) -> list[int]:
        """Searchable images with every one (``every``) or any of the persons in them."""
        query = (
            select(faces.c.image)
            .join(images, and_(images.c.id == faces.c.image, images.c.indexed.is_(True)))
            .where(faces.c.collection == collection, faces.c.person.in_(list(people)))
            .group_by(faces.c.image)
        )
        if every:
            query = query.having(func.count(func.distinct(faces.c.person)) == len(set(people)))
        with self.engine.connect() as conn:
            return sorted(int(i) for (i,) in conn.execute(query))
