"""The latest near-duplicate groups of each collection, in the metadata DB beside the images they name."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select

from adapters.stores.sql.sql_schema import duplicate_groups, images, utc_now


@dataclass(frozen=True)
class GroupMember:
    group_no: int
    id: int
    image_id: str
    width: int
    height: int
    keeper: bool
    cosine: float


@dataclass(frozen=True)
class GroupsReport:
    job_id: str
    min_cosine: float
    created_at: str
    members: list[GroupMember]  # by group, the keeper first


class DuplicateStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def replace(
        self, collection: str, job_id: str, min_cosine: float, groups: list[list[tuple[int, bool, float]]]
    ) -> None:
        """One transaction: the collection's old groups go, the new ones (id, keeper, cosine) come."""
        now = utc_now()
        rows = [
            {
                "image": image,
                "collection": collection,
                "group_no": number,
                "keeper": keeper,
                "cosine": cosine,
                "job_id": job_id,
                "min_cosine": min_cosine,
                "created_at": now,
            }
            for number, group in enumerate(groups)
            for image, keeper, cosine in group
        ]
        with self.engine.begin() as conn:
            conn.execute(delete(duplicate_groups).where(duplicate_groups.c.collection == collection))
            for start in range(0, len(rows), 1000):
                conn.execute(insert(duplicate_groups), rows[start : start + 1000])

    def report(self, collection: str) -> GroupsReport | None:
        query = (
            select(duplicate_groups, images.c.image_id, images.c.width, images.c.height)
            .join(images, images.c.id == duplicate_groups.c.image)
            .where(duplicate_groups.c.collection == collection, images.c.indexed.is_(True))
            .order_by(duplicate_groups.c.group_no, duplicate_groups.c.keeper.desc(), duplicate_groups.c.cosine.desc())
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return None
        members = [
            GroupMember(r.group_no, int(r.image), r.image_id, r.width, r.height, bool(r.keeper), float(r.cosine))
            for r in rows
        ]
        first = rows[0]
        return GroupsReport(first.job_id, float(first.min_cosine), first.created_at.isoformat(), members)
