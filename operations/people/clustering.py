"""Grouping faces into persons, incrementally (immich's DBSCAN-like pass, with stricter rules against the wrong
merges its users report: siblings, children, two faces of one photo, one person swallowing strangers).

For each face to place, its neighbours are the faces within the maximum distance. It joins the person most of
its neighbours are in (ties: the nearest) when

- that person has no other face in the same photo (two faces of one photo are two people), and
- at least two of its neighbours are in that person, once the person has two faces: one look-alike face does not
  bridge two persons (the single link that chains strangers together in plain DBSCAN).

A face with at least ``min_faces`` faces around it (itself included) that joins nobody starts a person; any other
face waits, unplaced, and is tried again when a new face lands near it. The machine never moves a face a user
placed and never merges persons: a named or corrected person stays as the user left it.

This module decides only; ``operations/people/cluster_job.py`` reads the faces and their neighbours and writes
the outcome."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

PASSES = 3  # a face whose neighbours were placed later in the same run is tried again


@dataclass(frozen=True)
class Face:
    id: int
    image: int
    person: int | None  # a person's id; a new person of this run is a negative number


@dataclass
class Outcome:
    placed: dict[int, int] = field(default_factory=dict)  # face -> person (negative: the run's new persons)
    new_persons: int = 0
    waiting: list[int] = field(default_factory=list)  # faces that stay unplaced for now


def cluster(
    todo: Sequence[int],
    faces: Mapping[int, Face],
    neighbours: Mapping[int, Sequence[tuple[int, float]]],
    min_faces: int,
) -> Outcome:
    """``todo``: unplaced faces to place; ``faces``: every face of the collection (placed ones vote);
    ``neighbours``: for each face of ``todo``, the other faces within the maximum distance, nearest first."""
    person_of: dict[int, int | None] = {face.id: face.person for face in faces.values()}
    images_of: dict[int, set[int]] = defaultdict(set)
    size: Counter[int] = Counter()
    for face in faces.values():
        if face.person is not None:
            images_of[face.person].add(face.image)
            size[face.person] += 1
    core = {f for f in todo if len(neighbours.get(f, ())) + 1 >= min_faces}
    order = sorted(todo, key=lambda f: (f not in core, -len(neighbours.get(f, ())), f))
    outcome = Outcome()

    def best_person(face: int) -> int | None:
        votes: Counter[int] = Counter()
        nearest: dict[int, float] = {}
        for other, distance in neighbours.get(face, ()):
            person = person_of.get(other)
            if person is not None:
                votes[person] += 1
                nearest.setdefault(person, distance)
        image = faces[face].image
        for person in sorted(votes, key=lambda p: (-votes[p], nearest[p])):
            if image not in images_of[person] and votes[person] >= min(2, size[person]):
                return person
        return None

    pending = order
    for _ in range(PASSES):
        waiting = []
        for face in pending:
            person = best_person(face)
            if person is None and face in core:
                outcome.new_persons += 1
                person = -outcome.new_persons
            if person is None:
                waiting.append(face)
                continue
            person_of[face] = person
            outcome.placed[face] = person
            images_of[person].add(faces[face].image)
            size[person] += 1
        if len(waiting) == len(pending):
            break
        pending = waiting
    outcome.waiting = [f for f in todo if f not in outcome.placed]
    return outcome
