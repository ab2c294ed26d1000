"""People: the faces found in photos, grouped into persons that a user names, hides, merges and corrects.

Reading needs the read scope, naming and correcting the write scope, running face jobs and wiping the admin
scope (app/scopes.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from adapters.stores.sql.face_store import FaceRow
from app.deps import JobsDep, ServicesDep
from app.errors import documented
from app.routes.jobs import job_accepted
from app.schemas import CollectionPath, JobAccepted
from operations.collections import collections
from operations.people import faces, people
from operations.services import Services

router = APIRouter(tags=["people"])
ERRORS = documented(401, 403, 404, 409, 422, 503)
CROP_SIZES = (64, 128, 256)


class BoxOut(BaseModel):
    x: int = Field(description="Left edge, in the original image's pixels (upright).")
    y: int
    width: int
    height: int


class FaceOut(BaseModel):
    id: int
    image_id: str | None = Field(None, description="The photo the face is in.")
    box: BoxOut
    score: float = Field(description="The detector's confidence.")
    person: int | None = Field(None, description="The person the face belongs to (None: not placed yet).")
    person_name: str | None = None
    by_user: bool = Field(False, description="A user put the face in its person: clustering leaves it there.")
    crop_url: str


class PersonOut(BaseModel):
    id: int
    name: str | None
    hidden: bool
    faces: int
    images: int
    cover_face: int | None
    cover_url: str | None
    shown: bool = Field(description="In the people strip: named, or enough faces (IMGSEARCH_FACE_MIN_FACES).")
    by_user: bool = Field(description="A user named or changed it: the machine never merges it away.")


class PersonDetailOut(BaseModel):
    person: PersonOut
    faces: list[FaceOut] = Field(description="A page of its faces, newest photos first.")
    offset: int
    limit: int


class PeopleOut(BaseModel):
    collection: str
    people: list[PersonOut]
    faces_read: int = Field(description="Images the face model has read.")
    faces_found: int


class PersonPatch(BaseModel):
    name: str | None = Field(None, max_length=64, description="Its name; an empty string removes it.")
    hidden: bool | None = None
    cover_face: int | None = Field(None, description="One of its faces, shown for it.")


class MergeIn(BaseModel):
    ids: list[int] = Field(min_length=2, max_length=100, description="The first keeps its id; the others join it.")


class MoveIn(BaseModel):
    face_ids: list[int] = Field(min_length=1, max_length=10_000)
    to: int | None = Field(None, description="The person they go to; none: a new person of their own (a split).")


class FacesJobIn(BaseModel):
    redo: bool = Field(False, description="Read every photo again (default: only those not read yet).")


class ClusterIn(BaseModel):
    all: bool = Field(False, description="Forget what the machine decided (never what a user did) and start over.")


def crop_url(request: Request, collection: str, face: int) -> str:
    return str(request.url_for("face_crop", name=collection, face_id=face))


def person_out(request: Request, collection: str, person: people.Person) -> PersonOut:
    row = person.row
    return PersonOut(
        id=row.id,
        name=row.name,
        hidden=row.hidden,
        faces=row.faces,
        images=row.images,
        cover_face=person.cover,
        cover_url=crop_url(request, collection, person.cover) if person.cover else None,
        shown=person.shown,
        by_user=row.by_user,
    )


def face_out(request: Request, collection: str, row: FaceRow, image_id: str | None, name: str | None = None) -> FaceOut:
    box = BoxOut(x=row.box.x, y=row.box.y, width=row.box.width, height=row.box.height)
    return FaceOut(
        id=row.id,
        image_id=image_id,
        box=box,
        score=round(row.box.score, 4),
        person=row.person,
        person_name=name,
        by_user=row.by_user,
        crop_url=crop_url(request, collection, row.id),
    )


def _detail(
    services: Services, collection: str, person: int, limit: int, offset: int
) -> tuple[people.Person, list[FaceRow], dict[int, str]]:
    found = people.get_person(services, collection, person)
    rows = people.faces_of(services, collection, person, limit, offset)
    records = services.metadata.fetch(collection, sorted({r.image for r in rows}), with_data=False)
    return found, rows, {i: r.image_id for i, r in records.items()}


@router.get("/collections/{name}/people", response_model=PeopleOut, responses=ERRORS)
async def list_people(
    name: CollectionPath,
    services: ServicesDep,
    request: Request,
    all: Annotated[bool, Query(description="Hidden and small persons too.")] = False,
) -> PeopleOut:
    """The persons of the collection, most faces first, each with a face to show."""
    found = await run_in_threadpool(people.list_people, services, name, all)
    read, total = await run_in_threadpool(services.face_store.scan_count, name)
    return PeopleOut(
        collection=name, people=[person_out(request, name, p) for p in found], faces_read=read, faces_found=total
    )


@router.get("/collections/{name}/people/{person_id}", response_model=PersonDetailOut, responses=ERRORS)
async def get_person(
    name: CollectionPath,
    person_id: int,
    services: ServicesDep,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> PersonDetailOut:
    """A person and a page of its faces (each with its photo)."""
    found, rows, image_ids = await run_in_threadpool(_detail, services, name, person_id, limit, offset)
    faces_out = [face_out(request, name, row, image_ids.get(row.image), found.row.name) for row in rows]
    return PersonDetailOut(person=person_out(request, name, found), faces=faces_out, offset=offset, limit=limit)


@router.patch("/collections/{name}/people/{person_id}", response_model=PersonOut, responses=ERRORS)
async def update_person(
    name: CollectionPath, person_id: int, body: PersonPatch, services: ServicesDep, request: Request
) -> PersonOut:
    """Name (an empty name removes it), hide or show, or choose the face shown; the person is the user's from
    then on: clustering adds faces to it but never merges it away."""
    clear = body.name is not None and not body.name.strip()
    found = await run_in_threadpool(
        lambda: people.update(
            services,
            name,
            person_id,
            None if clear else body.name,
            body.hidden,
            body.cover_face,
            clear_name=clear,
        )
    )
    return person_out(request, name, found)


@router.post("/collections/{name}/people/merge", response_model=PersonOut, responses=ERRORS)
async def merge_people(name: CollectionPath, body: MergeIn, services: ServicesDep, request: Request) -> PersonOut:
    """The persons become one: the first of ``ids``."""
    found = await run_in_threadpool(people.merge, services, name, body.ids)
    return person_out(request, name, found)


@router.post("/collections/{name}/people/{person_id}/faces/move", response_model=PersonOut, responses=ERRORS)
async def move_faces(
    name: CollectionPath, person_id: int, body: MoveIn, services: ServicesDep, request: Request
) -> PersonOut:
    """Faces that are not this person: to the person ``to``, or to a new person (a split). Returns the person
    they went to; the faces stay where a user put them."""
    found = await run_in_threadpool(people.move_faces, services, name, person_id, body.face_ids, body.to)
    return person_out(request, name, found)


@router.post("/collections/{name}/faces/assign", response_model=PersonOut, responses=ERRORS)
async def assign_faces(name: CollectionPath, body: MoveIn, services: ServicesDep, request: Request) -> PersonOut:
    """Faces, placed or waiting, to the person ``to`` (or a new person): "this is 妈妈" on any face of a photo."""
    found = await run_in_threadpool(people.assign_faces, services, name, body.face_ids, body.to)
    return person_out(request, name, found)


@router.get("/img/{collection}/{image_id}/faces", response_model=list[FaceOut], responses=ERRORS)
async def image_faces(
    collection: CollectionPath, image_id: str, services: ServicesDep, request: Request
) -> list[FaceOut]:
    """The faces in a photo with their boxes (the original's pixels, upright) and persons."""
    found = await run_in_threadpool(people.image_faces, services, collection, image_id)
    return [face_out(request, collection, f.face, image_id, f.person.name if f.person else None) for f in found]


@router.get(
    "/collections/{name}/faces/{face_id}/crop",
    name="face_crop",
    response_class=Response,
    responses={**ERRORS, 200: {"content": {"image/jpeg": {}}}},
)
async def face_crop(
    name: CollectionPath,
    face_id: int,
    services: ServicesDep,
    size: Annotated[int, Query(description="64, 128 or 256 pixels a side, at most.")] = 128,
) -> Response:
    """A JPEG of the face, for the people strip and the person's page."""
    side = min(CROP_SIZES, key=lambda s: abs(s - size))
    data = await run_in_threadpool(people.crop, services, name, face_id, side)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@router.post("/collections/{name}/faces", status_code=202, response_model=JobAccepted, responses=ERRORS)
async def faces_job(
    name: CollectionPath, services: ServicesDep, jobs: JobsDep, request: Request, body: FacesJobIn | None = None
) -> JobAccepted:
    """A job: faces are found in each photo, embedded and grouped into persons; photos read before are skipped
    unless ``redo``. 409 when the service was installed without the faces extra."""
    faces.require_available(services.settings)
    await run_in_threadpool(collections.require, services, name)
    params = {"collection": name, "redo": bool(body and body.redo)}
    record = await run_in_threadpool(jobs.submit, "faces", name, params)
    return job_accepted(request, record.id)


@router.post("/collections/{name}/people/cluster", status_code=202, response_model=JobAccepted, responses=ERRORS)
async def cluster_people(
    name: CollectionPath, services: ServicesDep, jobs: JobsDep, request: Request, body: ClusterIn | None = None
) -> JobAccepted:
    """A job: faces not placed yet join persons or start new ones; ``all`` starts over from what users did."""
    await run_in_threadpool(collections.require, services, name)
    params = {"collection": name, "all": bool(body and body.all)}
    record = await run_in_threadpool(jobs.submit, "people", name, params)
    return job_accepted(request, record.id)


@router.delete("/collections/{name}/faces", responses=ERRORS)
async def wipe_faces(name: CollectionPath, services: ServicesDep) -> dict[str, int]:
    """Every face and person of the collection (names too); the next face job reads every photo again."""
    removed = await run_in_threadpool(people.wipe, services, name)
    return {"faces_removed": removed}
