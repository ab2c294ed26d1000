"""Persons from faces: after each face job, and on demand (`POST /collections/{name}/people/cluster`).

An incremental run places the faces no run has seen, and tries again the waiting faces they landed near; ``all``
forgets what the machine decided (never what a user did: a person a user named keeps its faces) and places
every other face again. Neighbours come from the
collection's face vectors in Milvus (a batched search), so a run reads the vectors of the faces it places only."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from operations.people import clustering, face_vectors
from operations.services import Services

logger = logging.getLogger(__name__)

NEIGHBOURS = 64  # nearest faces read per face: enough votes, and core needs far fewer
BATCH = 1024  # faces per Milvus search


@dataclass(frozen=True)
class ClusterReport:
    placed: int
    new_persons: int
    waiting: int
    seen: int  # faces this run looked at: the new ones, and the waiting ones a new face landed near
    retried: int  # ... of which waiting ones
    seconds: float

    def __str__(self) -> str:
        return (
            f"{self.placed} faces placed, {self.new_persons} new persons, {self.waiting} waiting; looked at "
            f"{self.seen - self.retried} new faces and {self.retried} waiting beside them in {self.seconds:.1f} s"
        )


def run(services: Services, collection: str, everything: bool = False) -> ClusterReport:
    with services.face_store.clustering(collection):
        return _run(services, collection, everything)


def _run(services: Services, collection: str, everything: bool) -> ClusterReport:
    started = time.perf_counter()
    store = services.face_store
    if everything:
        store.forget_machine_work(collection)
    rows = store.all_faces(collection)
    faces = {row.id: clustering.Face(row.id, row.image, row.person) for row in rows}
    fresh = [row.id for row in rows if row.person is None and not row.clustered]
    settings = services.settings
    nearby = neighbours(services, collection, fresh, settings.face_max_distance)
    waiting = {row.id for row in rows if row.person is None and row.clustered and not row.by_user}
    retried = sorted({other for found in nearby.values() for other, _ in found if other in waiting})
    nearby |= neighbours(services, collection, retried, settings.face_max_distance)
    todo = [*fresh, *retried]
    outcome = clustering.cluster(todo, faces, nearby, settings.face_min_faces)
    _write(services, collection, outcome, todo)
    report = ClusterReport(
        len(outcome.placed),
        outcome.new_persons,
        len(outcome.waiting),
        len(todo),
        len(retried),
        time.perf_counter() - started,
    )
    logger.info("clustered faces of %s: %s", collection, report)
    return report


def neighbours(
    services: Services, collection: str, ids: Sequence[int], max_distance: float
) -> dict[int, list[tuple[int, float]]]:
    """For each face, the other faces within ``max_distance`` (unit vectors: distance² = 2 − 2·cosine), nearest
    first."""
    found: dict[int, list[tuple[int, float]]] = {}
    name = face_vectors.collection_name(collection)
    for start in range(0, len(ids), BATCH):
        chunk = list(ids[start : start + BATCH])
        vectors = services.vectors.get(name, chunk)
        known = [i for i in chunk if i in vectors]
        if not known:
            continue
        matrix = np.stack([vectors[i] for i in known]).astype(np.float32)
        for face, hits in zip(known, services.vectors.search(name, matrix, NEIGHBOURS + 1), strict=True):
            near = [(other, math.sqrt(max(0.0, 2 - 2 * score))) for other, score in hits if other != face]
            found[face] = [(other, distance) for other, distance in near if distance <= max_distance]
    return found


def _write(services: Services, collection: str, outcome: clustering.Outcome, todo: Sequence[int]) -> None:
    store = services.face_store
    made = store.create_persons(collection, outcome.new_persons) if outcome.new_persons else []
    placed: Mapping[int, int | None] = {
        face: made[-person - 1] if person < 0 else person for face, person in outcome.placed.items()
    }
    store.assign(placed)
    store.mark_clustered([face for face in todo if face not in placed])
