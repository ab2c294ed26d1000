"""Tags of images, in the metadata DB: by a tag job (``auto``, with the label's probability) or by hand."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, and_, delete, func, insert, select

from adapters.stores.sql.sql_schema import chunks, image_tags, images

MAX_TAGS_PER_IMAGE = 64  # the Milvus array field's capacity
MAX_TAG_CHARS = 64


@dataclass(frozen=True)
class Tag:
    tag: str
    source: str  # "auto" | "manual"
    probability: float | None = None


class TagStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def tags_of(self, ids: Sequence[int]) -> dict[int, list[Tag]]:
        """Each image's tags, manual first, then by probability."""
        found: dict[int, list[Tag]] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(list(ids)):
                rows = conn.execute(select(image_tags).where(image_tags.c.image.in_(chunk)))
                for row in rows:
                    found.setdefault(int(row.image), []).append(Tag(row.tag, row.source, row.probability))
        for tags in found.values():
            tags.sort(key=lambda t: (t.source != "manual", -(t.probability or 0), t.tag))
        return found

    def replace(self, collection: str, source: str, tags: Mapping[int, Sequence[Tag]]) -> None:
        """The images' tags of one source are replaced (a tag job leaves manual tags alone, and the reverse). A tag
        set by hand wins: it replaces the same automatic tag, and a tag job does not add a tag already set by hand."""
        ids = list(tags)
        with self.engine.begin() as conn:
            for chunk in chunks(ids):
                conn.execute(delete(image_tags).where(image_tags.c.image.in_(chunk), image_tags.c.source == source))
            rows = [
                {"image": i, "tag": t.tag, "collection": collection, "source": source, "probability": t.probability}
                for i, items in tags.items()
                for t in items
            ]
            if source == "manual":
                for row in rows:
                    conn.execute(
                        delete(image_tags).where(image_tags.c.image == row["image"], image_tags.c.tag == row["tag"])
                    )
            else:
                manual = {
                    (int(r.image), r.tag)
                    for chunk in chunks(ids)
                    for r in conn.execute(
                        select(image_tags.c.image, image_tags.c.tag).where(image_tags.c.image.in_(chunk))
                    )
                }
                rows = [row for row in rows if (row["image"], row["tag"]) not in manual]
            for chunk in chunks(rows):
                conn.execute(insert(image_tags), list(chunk))

    def counts(self, collection: str) -> list[tuple[str, int]]:
        """Each tag of the collection's searchable images with how many images have it, most used first."""
        query = (
            select(image_tags.c.tag, func.count().label("n"))
            .join(images, and_(images.c.id == image_tags.c.image, images.c.indexed.is_(True)))
            .where(image_tags.c.collection == collection)
            .group_by(image_tags.c.tag)
            .order_by(func.count().desc(), image_tags.c.tag)
        )
        with self.engine.connect() as conn:
            return [(row.tag, int(row.n)) for row in conn.execute(query)]

    def known(self, collection: str, names: Sequence[str]) -> set[str]:
        with self.engine.connect() as conn:
            query = select(image_tags.c.tag).where(image_tags.c.collection == collection, image_tags.c.tag.in_(names))
            return {row.tag for row in conn.execute(query.distinct())}
