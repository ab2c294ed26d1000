"""Near-duplicate groups (immich's duplicate detection) from the stored vectors, without re-encoding.

Every vector is searched for its nearest neighbours in batches (one vector search per batch, so the in-memory
copy on Milvus Lite or the server's index does the work); pairs at or above ``min_cosine`` are joined into
groups (union-find, so a chain of near-copies is one group). Each group suggests a keeper: the most pixels, then
the earliest stored (lowest id). Deleting a group's other images is one call.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace

import numpy as np

from adapters.stores.sql.duplicate_store import DuplicateStore, GroupsReport
from operations.collections import collections
from operations.errors import InvalidInput, NotFound
from operations.ingest import writes
from operations.jobs.job_progress import JobProgress
from operations.services import Services

logger = logging.getLogger(__name__)

# With RN50 (random weights, bench/duplicates.py), recompressed, resized and 5%-cropped copies of photo-like
# images scored 0.97-1.00 against their originals, and the closest pair of distinct images 0.93: 0.95 sits
# between them. Real Chinese-CLIP weights put distinct photos of one scene higher: raise it for bursts.
DEFAULT_MIN_COSINE = 0.95
NEIGHBOURS = 16  # per image; a larger group still joins up through its members' neighbours
BATCH = 256


def validate_min_cosine(value: float) -> float:
    if not math.isfinite(value) or not 0.5 <= value <= 1.0:
        raise InvalidInput(f"min_cosine must be between 0.5 and 1.0, got {value}")
    return float(value)


class _Groups:
    """Union-find over vector ids."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, item: int) -> int:
        root = self.parent.setdefault(item, item)
        while root != self.parent[root]:
            root = self.parent[root]
        while item != root:  # path compression
            self.parent[item], item = root, self.parent[item]
        return root

    def join(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)

    def groups(self) -> list[list[int]]:
        by_root: dict[int, list[int]] = {}
        for item in self.parent:
            by_root.setdefault(self.find(item), []).append(item)
        return [sorted(members) for members in by_root.values() if len(members) > 1]


def find(services: Services, collection: str, min_cosine: float, progress: JobProgress) -> str:
    """The job: every image's neighbours, then the groups, stored as the collection's latest report."""
    validate_min_cosine(min_cosine)
    served = collections.require(services, collection).vector_collection  # the model's vectors that serve now
    # Photos only: a video's samples are alike by nature, and deleting one would cut a hole in the video.
    moving = services.metadata.video_rows(collection)
    ids = [i for batch in services.vectors.iter_ids(served) for i in batch if i not in moving]
    progress.total = len(ids)
    progress.flush()
    joined = _Groups()
    for start in range(0, len(ids), BATCH):
        if progress.should_stop():
            return "stopped"
        chunk = ids[start : start + BATCH]
        vectors = services.vectors.get(served, chunk)
        present = [i for i in chunk if i in vectors]
        if present:
            matrix = np.stack([vectors[i] for i in present])
            for vector_id, hits in zip(present, services.vectors.search(served, matrix, NEIGHBOURS), strict=True):
                for other, score in hits:
                    if other != vector_id and score >= min_cosine and other not in moving:
                        joined.join(vector_id, other)
        progress.done += len(chunk)
        progress.flush()
    groups = _with_keepers(services, collection, served, joined.groups())
    DuplicateStore(services.metadata.engine).replace(collection, progress.job_id, min_cosine, groups)
    extras = sum(len(group) - 1 for group in groups)
    logger.info(
        "collection %s: %d duplicate groups (%d extra images) at cosine >= %s",
        collection,
        len(groups),
        extras,
        min_cosine,
    )
    return f"{len(groups)} groups of near-duplicates ({extras} images beside their keepers) at cosine >= {min_cosine}"


def _with_keepers(
    services: Services, collection: str, served: str, groups: list[list[int]]
) -> list[list[tuple[int, bool, float]]]:
    """(id, keeper, cosine to the keeper) per member; the keeper has the most pixels, then the lowest id."""
    rows = services.metadata.fetch(collection, [i for group in groups for i in group])
    vectors = services.vectors.get(served, list(rows))
    out = []
    for group in groups:
        members = [i for i in group if i in rows and i in vectors]
        if len(members) < 2:
            continue
        keeper = min(members, key=lambda i: (-rows[i].width * rows[i].height, i))
        out.append([(i, i == keeper, 1.0 if i == keeper else float(vectors[i] @ vectors[keeper])) for i in members])
    return out


def report(services: Services, collection: str) -> GroupsReport:
    collections.require(services, collection)
    found = DuplicateStore(services.metadata.engine).report(collection)
    if found is None:
        raise NotFound(f"no duplicate groups for {collection!r}: run POST /collections/{collection}/duplicates")
    sizes: dict[int, int] = {}
    for member in found.members:
        sizes[member.group_no] = sizes.get(member.group_no, 0) + 1
    # a group whose other images were deleted is resolved: it is no longer shown
    return replace(found, members=[m for m in found.members if sizes[m.group_no] > 1])


def delete_extras(services: Services, collection: str, image_ids: list[str] | None) -> list[str]:
    """Deletes the chosen images of the groups (default: every image that is not its group's keeper)."""
    found = report(services, collection)
    members = {m.image_id: m for m in found.members}
    if image_ids is None:
        chosen = [m.image_id for m in found.members if not m.keeper]
    else:
        unknown = [i for i in image_ids if i not in members]
        if unknown:
            raise InvalidInput(f"not in the collection's duplicate groups: {', '.join(unknown[:5])}")
        chosen = list(dict.fromkeys(image_ids))
    writes.delete_images(services, collection, [members[i].id for i in chosen])
    return chosen
