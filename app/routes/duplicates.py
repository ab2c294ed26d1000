"""Near-duplicate groups of a collection: find them (a job), list them with a suggested keeper, delete extras."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from app.deps import JobsDep, ServicesDep
from app.errors import documented
from app.routes.jobs import job_accepted
from app.schemas import CollectionPath, JobAccepted
from operations.collections import collections
from operations.labels import duplicates

router = APIRouter(prefix="/collections", tags=["duplicates"])
ERRORS = documented(401, 403, 404, 422, 503)


class FindDuplicatesRequest(BaseModel):
    min_cosine: float = Field(
        duplicates.DEFAULT_MIN_COSINE, description="0.5 to 1.0: images at least this close are one group."
    )


class MemberOut(BaseModel):
    image_id: str
    id: int
    width: int
    height: int
    cosine: float = Field(description="To the group's keeper.")
    url: str


class GroupOut(BaseModel):
    keeper: MemberOut = Field(description="Suggested: the most pixels, then the earliest stored.")
    extras: list[MemberOut]


class DuplicatesResponse(BaseModel):
    collection: str
    job_id: str
    min_cosine: float
    created_at: str
    groups: list[GroupOut]
    extras: int = Field(description="Images beside their keepers, in all groups.")


class DeleteDuplicatesRequest(BaseModel):
    image_ids: list[str] | None = Field(
        None, description="The images to delete; leave out to delete every image that is not its group's keeper."
    )


class DeleteDuplicatesResponse(BaseModel):
    collection: str
    deleted: list[str]


@router.post("/{name}/duplicates", status_code=202, response_model=JobAccepted, responses=ERRORS)
async def find_duplicates(
    name: CollectionPath,
    services: ServicesDep,
    jobs: JobsDep,
    request: Request,
    body: FindDuplicatesRequest | None = None,
) -> JobAccepted:
    """A job that groups near-identical images (resized, recompressed, slightly cropped) from the stored vectors,
    with no re-encoding; `GET /jobs/{id}` shows its progress, then `GET` this path lists the groups."""
    min_cosine = duplicates.validate_min_cosine((body or FindDuplicatesRequest()).min_cosine)
    await run_in_threadpool(collections.require, services, name)
    record = await run_in_threadpool(jobs.submit, "duplicates", name, {"collection": name, "min_cosine": min_cosine})
    return job_accepted(request, record.id)


@router.get("/{name}/duplicates", response_model=DuplicatesResponse, responses=ERRORS)
async def list_duplicates(name: CollectionPath, services: ServicesDep, request: Request) -> DuplicatesResponse:
    """The groups the latest duplicates job found, less the images deleted since."""
    found = await run_in_threadpool(duplicates.report, services, name)
    url_prefix = str(request.url_for("get_image", collection=name, image_id="_"))[:-1]
    groups: dict[int, GroupOut] = {}
    for m in found.members:
        out = MemberOut(
            image_id=m.image_id, id=m.id, width=m.width, height=m.height, cosine=m.cosine, url=url_prefix + m.image_id
        )
        group = groups.setdefault(m.group_no, GroupOut(keeper=out, extras=[]))
        if not m.keeper and group.keeper is not out:
            group.extras.append(out)
    return DuplicatesResponse(
        collection=name,
        job_id=found.job_id,
        min_cosine=found.min_cosine,
        created_at=found.created_at,
        groups=list(groups.values()),
        extras=sum(len(g.extras) for g in groups.values()),
    )


@router.post(
    "/{name}/duplicates/delete",
    response_model=DeleteDuplicatesResponse,
    responses=ERRORS,
)
async def delete_duplicates(
    name: CollectionPath, services: ServicesDep, body: DeleteDuplicatesRequest | None = None
) -> DeleteDuplicatesResponse:
    """One call: deletes the chosen images of the groups, or every image beside its group's keeper."""
    chosen = (body or DeleteDuplicatesRequest()).image_ids
    deleted = await run_in_threadpool(duplicates.delete_extras, services, name, chosen)
    return DeleteDuplicatesResponse(collection=name, deleted=deleted)
