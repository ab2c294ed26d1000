"""Words in and about images, and the keyword index over them, in the metadata DB (SQLite or MySQL alike).

Neither backend's full-text search matches a two-character Chinese word out of the box (SQLite FTS5's tokenizers,
MariaDB's FULLTEXT), so the index is a table of character bigrams this store keeps itself; adapters/text_grams.py
holds the matching rules. ``refresh`` rebuilds an image's document and grams from everything they come from, so
every writer (load, ingest, sync, tags, descriptions, OCR) calls that one method after its change.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cachetools import TTLCache
from sqlalchemy import (
    Engine,
    Integer,
    Select,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    union_all,
    update,
)

from adapters import file_names, text_grams
from adapters.stores.sql.sql_schema import (
    chunks,
    gram_rows,
    image_files,
    image_tags,
    image_texts,
    images,
    sources,
    utc_now,
)
from adapters.stores.sql.sql_schema import (
    text_grams as grams_table,
)

FIELDS = text_grams.FIELDS  # the order of the fields in a document
GRAM_COUNTS_KEPT = 100_000
GRAM_COUNTS_TTL_S = 300
WRITABLE = ("caption", "description", "ocr", "ocr_lines")
_LAST_CHAR = "\U0010ffff"


@dataclass(frozen=True)
class ImageTexts:
    """An image's fields as people wrote or OCR read them (names: its file name and source paths)."""

    caption: str | None = None
    description: str | None = None
    ocr: str | None = None
    ocr_lines: list[dict[str, Any]] | None = None  # None: OCR has not read it; []: it found no text
    names: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    @property
    def writable(self) -> dict[str, Any]:
        """The fields a writer sets (names and tags come from their own tables), for copies and exports."""
        return {"caption": self.caption, "description": self.description, "ocr": self.ocr, "ocr_lines": self.ocr_lines}

    def field_text(self, name: str) -> str:
        if name == "name":
            return "\n".join(self.names)
        if name == "tags":
            return " ".join(self.tags)
        return getattr(self, name) or ""


class TextStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # How common each gram is only guides a search's plan (which entries to read first), never its result:
        # counts a few minutes old are as good, and a word typed again skips the probe.
        self._counts: TTLCache[tuple[str, str, int], int] = TTLCache(maxsize=GRAM_COUNTS_KEPT, ttl=GRAM_COUNTS_TTL_S)
        self._counts_lock = threading.Lock()
        self._postings: dict[int, Select] = {}

    def set_fields(self, collection: str, values: Mapping[int, Mapping[str, Any]], also: Sequence[int] = ()) -> None:
        """Sets some of WRITABLE per image (None clears one), then refreshes those images' documents (and those of
        ``also``: images whose names or tags are new)."""
        if not values:
            self.refresh(also)
            return
        with self.engine.begin() as conn:
            present = set()
            for chunk in chunks(list(values)):
                present.update(
                    int(r.image)
                    for r in conn.execute(select(image_texts.c.image).where(image_texts.c.image.in_(chunk)))
                )
            new = []
            for image, fields in values.items():
                row = {name: _stored(name, value) for name, value in fields.items() if name in WRITABLE}
                if image in present:
                    conn.execute(update(image_texts).where(image_texts.c.image == image).values(**row))
                else:
                    base = {"image": image, "collection": collection, "document": "", "updated_at": utc_now()}
                    new.append({**base, **{name: row.get(name) for name in WRITABLE}})
            for part in chunks(new, 1000):
                conn.execute(insert(image_texts), list(part))
        self.refresh([*values, *also])

    def refresh(self, ids: Sequence[int]) -> None:
        """Rebuilds the documents and grams of these images from their fields, names and tags (an id whose image
        is gone is dropped)."""
        for chunk in chunks(sorted(set(ids))):
            with self.engine.begin() as conn:
                texts = self._texts(conn, chunk)
                rows, grams = [], []
                for image, collection, fields in texts:
                    document = text_grams.FIELD_SEPARATOR.join(
                        text_grams.normalise(fields.field_text(n)) for n in FIELDS
                    )
                    rows.append({**_raw(fields), "image": image, "collection": collection, "document": document})
                    grams.extend(gram_rows(collection, image, document))
                conn.execute(delete(grams_table).where(grams_table.c.image.in_(chunk)))
                conn.execute(delete(image_texts).where(image_texts.c.image.in_(chunk)))
                now = utc_now()
                kept = [
                    {**row, "updated_at": now}
                    for row in rows
                    if row["document"].strip(text_grams.FIELD_SEPARATOR + " ") or _has_raw(row)
                ]
                if kept:
                    conn.execute(insert(image_texts), kept)
                for part in chunks(grams, 5000):
                    conn.execute(insert(grams_table), list(part))

    def texts(self, ids: Sequence[int]) -> dict[int, ImageTexts]:
        with self.engine.connect() as conn:
            found: dict[int, ImageTexts] = {}
            for chunk in chunks(sorted(set(ids))):
                found.update({image: fields for image, _, fields in self._texts(conn, chunk)})
            return found

    def written(self, ids: Sequence[int]) -> dict[int, tuple[str | None, str | None, str | None]]:
        """(caption, description, ocr) of the images among ``ids`` that have any: one query, for search hits."""
        found = {}
        with self.engine.connect() as conn:
            for chunk in chunks(sorted(set(ids))):
                columns = (image_texts.c.image, image_texts.c.caption, image_texts.c.description, image_texts.c.ocr)
                for r in conn.execute(select(*columns).where(image_texts.c.image.in_(chunk))):
                    found[int(r.image)] = (r.caption, r.description, r.ocr)
        return found

    def candidates(self, collection: str, term: str) -> set[int]:
        """Images whose grams could hold ``term`` (a superset of those that do)."""
        wanted = text_grams.term_grams(term)
        where = [grams_table.c.collection == collection]
        if len(term) == 1:
            query = select(grams_table.c.image).where(
                *where, grams_table.c.gram >= term, grams_table.c.gram <= term + _LAST_CHAR
            )
        else:
            query = (
                select(grams_table.c.image)
                .where(*where, grams_table.c.gram.in_(sorted(wanted)))
                .group_by(grams_table.c.image)
                .having(func.count() == len(wanted))
            )
        with self.engine.connect() as conn:
            return {int(row.image) for row in conn.execute(query)}

    def gram_counts(self, collection: str, grams: Sequence[str], cap: int) -> dict[str, int]:
        """How many images hold each gram, counted up to ``cap`` (so a common gram costs ``cap`` steps), as of the
        last few minutes: one statement for those not counted lately."""
        with self._counts_lock:
            found = {gram: count for gram in grams if (count := self._counts.get((collection, gram, cap))) is not None}
        missing = [gram for gram in grams if gram not in found]
        if missing:
            counted = self._count_grams(collection, missing, cap)
            with self._counts_lock:
                for gram, count in counted.items():
                    self._counts[(collection, gram, cap)] = count
            found.update(counted)
        return found

    def _count_grams(self, collection: str, grams: Sequence[str], cap: int) -> dict[str, int]:
        parts = [
            select(literal(i).label("i"), func.count().label("n")).select_from(
                select(grams_table.c.image)
                .where(grams_table.c.collection == collection, grams_table.c.gram == gram)
                .limit(cap)
                .subquery()
            )
            for i, gram in enumerate(grams)
        ]
        if not parts:
            return {}
        query = parts[0] if len(parts) == 1 else union_all(*parts)
        with self.engine.connect() as conn:
            return {grams[int(r.i)]: int(r.n) for r in conn.execute(query)}

    def postings(
        self, collection: str, gram: str, offset: int, limit: int, also: Sequence[str] = ()
    ) -> list[tuple[int, int]]:
        """(image, weight) of the searchable images holding ``gram`` and every gram of ``also`` (checked in that
        order: rarest first), best first (ties: the newer image first), from ``offset`` on."""
        statement = self._postings.get(len(also))
        if statement is None:  # built once per number of grams: building one costs more than running it
            statement = self._postings[len(also)] = _postings_statement(len(also))
        values = {"collection": collection, "gram": gram, "limit": limit, "offset": offset}
        values.update({f"also_{i}": other for i, other in enumerate(also)})
        with self.engine.connect() as conn:
            return [(int(r.image), int(r.weight)) for r in conn.execute(statement, values)]

    def holding(self, collection: str, grams: Sequence[str], ids: Sequence[int]) -> dict[int, dict[str, int]]:
        """Of the images ``ids``, which of ``grams`` each holds, with the entries' weights."""
        found: dict[int, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(sorted(set(ids))):
                query = select(grams_table.c.image, grams_table.c.gram, grams_table.c.weight).where(
                    grams_table.c.collection == collection,
                    grams_table.c.gram.in_(sorted(set(grams))),
                    grams_table.c.image.in_(chunk),
                )
                for r in conn.execute(query):
                    found.setdefault(int(r.image), {})[r.gram] = int(r.weight)
        return found

    def documents(self, collection: str, ids: Sequence[int]) -> dict[int, str]:
        """Normalised documents of the searchable images among ``ids``."""
        found: dict[int, str] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(sorted(set(ids))):
                query = (
                    select(image_texts.c.image, image_texts.c.document)
                    .join(images, and_(images.c.id == image_texts.c.image, images.c.indexed.is_(True)))
                    .where(image_texts.c.image.in_(chunk), image_texts.c.collection == collection)
                )
                found.update((int(r.image), r.document) for r in conn.execute(query))
        return found

    def without_ocr(self, ids: Sequence[int]) -> set[int]:
        """The images among ``ids`` that OCR has not read yet."""
        done: set[int] = set()
        with self.engine.connect() as conn:
            for chunk in chunks(sorted(set(ids))):
                query = select(image_texts.c.image).where(
                    image_texts.c.image.in_(chunk), image_texts.c.ocr_lines.is_not(None)
                )
                done.update(int(r.image) for r in conn.execute(query))
        return set(ids) - done

    @staticmethod
    def _texts(conn: Any, ids: Sequence[int]) -> list[tuple[int, str, ImageTexts]]:
        """(image, collection, fields) for the images among ``ids`` that exist."""
        # An image of a source folder is named by its files' current paths (its first path is in ``source`` too,
        # and goes stale when the file moves); an upload or ingest by the name it came with.
        owners = {
            int(r.id): (r.collection, None if r.preview else r.source)
            for r in conn.execute(
                select(images.c.id, images.c.collection, images.c.source, images.c.preview).where(images.c.id.in_(ids))
            )
        }
        stored = {int(r.image): r for r in conn.execute(select(image_texts).where(image_texts.c.image.in_(ids)))}
        names: dict[int, list[str]] = {}
        paths = select(image_files.c.image, sources.c.path, image_files.c.path.label("file")).join(
            sources, sources.c.id == image_files.c.source_id
        )
        for r in conn.execute(paths.where(image_files.c.image.in_(ids))):
            names.setdefault(int(r.image), []).append(f"{r.path}/{file_names.readable(r.file)}")
        tags: dict[int, list[str]] = {}
        for r in conn.execute(select(image_tags.c.image, image_tags.c.tag).where(image_tags.c.image.in_(ids))):
            tags.setdefault(int(r.image), []).append(r.tag)
        result = []
        for image, (collection, source) in owners.items():
            row = stored.get(image)
            listed = names.get(image, [])
            own = [file_names.readable(source)] if source else []
            result.append(
                (
                    image,
                    collection,
                    ImageTexts(
                        row.caption if row else None,
                        row.description if row else None,
                        row.ocr if row else None,
                        json.loads(row.ocr_lines) if row is not None and row.ocr_lines is not None else None,
                        tuple(own + sorted(listed)),
                        tuple(sorted(tags.get(image, []))),
                    ),
                )
            )
        return result


def _postings_statement(others: int) -> Select:
    """The entries of one gram of images that hold ``others`` more grams, best first, with bound parameters."""
    query = (
        select(grams_table.c.image, grams_table.c.weight)
        .join(images, and_(images.c.id == grams_table.c.image, images.c.indexed.is_(True)))
        .where(grams_table.c.collection == bindparam("collection"), grams_table.c.gram == bindparam("gram"))
        .order_by(grams_table.c.weight.desc(), grams_table.c.image.desc())
        .limit(bindparam("limit", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
    )
    for i in range(others):
        held = grams_table.alias(f"also_{i}")
        query = query.where(
            exists().where(
                held.c.collection == bindparam("collection"),
                held.c.gram == bindparam(f"also_{i}"),
                held.c.image == grams_table.c.image,
            )
        )
    return query


def _stored(name: str, value: Any) -> Any:
    if name == "ocr_lines":
        return json.dumps(value, ensure_ascii=False) if value is not None else None
    return value or None


def _raw(fields: ImageTexts) -> dict[str, Any]:
    return {name: _stored(name, value) for name, value in fields.writable.items()}


def _has_raw(row: Mapping[str, Any]) -> bool:
    return any(row.get(name) for name in WRITABLE)
