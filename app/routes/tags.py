"""Tags: a job that tags a collection from a label set, tags set by hand, and each collection's tags counted."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from adapters.stores.sql.tag_store import MAX_TAG_CHARS
from app.deps import JobsDep, ServicesDep
from app.errors import documented
from app.routes.jobs import job_accepted
from app.schemas import CollectionPath, JobAccepted
from operations.collections import collections
from operations.labels import tags
from operations.labels.classify import resolve_templates, validate_labels

router = APIRouter(tags=["tags"])
ERRORS = documented(401, 403, 404, 409, 422, 503)


class TagJobRequest(BaseModel):
    labels: list[str] = Field(
        description="2 to 1,000 labels, Chinese or English.", examples=[["海边", "山", "城市", "人物"]]
    )
    top_n: int | None = Field(3, description="Keep each image's n most probable labels (with min_probability: both).")
    min_probability: float | None = Field(None, description="Keep labels at or above this probability.")
    prompts: str = Field("photo", description="photo, imagenet or none, as for /img/classify.")
    template: list[str] | None = Field(None, description="Your own prompt(s) with {} for the label.")


class TagOut(BaseModel):
    tag: str
    source: str = Field(description="auto (a tag job) or manual")
    probability: float | None = None


class ImageTagsOut(BaseModel):
    collection: str
    image_id: str
    tags: list[TagOut]


class SetTagsRequest(BaseModel):
    tags: list[str] = Field(description="The image's manual tags (replaces them; automatic tags stay).")


class TagCount(BaseModel):
    tag: str
    count: int


class CollectionTagsOut(BaseModel):
    collection: str
    tags: list[TagCount] = Field(description="Most used first.")


@router.post(
    "/collections/{name}/tags",
    status_code=202,
    response_model=JobAccepted,
    responses=ERRORS,
)
async def tag_collection(
    name: CollectionPath, body: TagJobRequest, services: ServicesDep, jobs: JobsDep, request: Request
) -> JobAccepted:
    """A job: each image gets the labels the rule keeps, from its stored vector (no re-encoding); earlier
    automatic tags are replaced, manual ones kept."""
    settings = services.settings
    labels = validate_labels(body.labels, MAX_TAG_CHARS)  # each label may become a tag
    tags.validate_rule(body.top_n, body.min_probability, len(labels))
    resolve_templates(body.prompts, body.template, settings.max_text_chars)
    await run_in_threadpool(collections.require, services, name)
    params = {"collection": name, **body.model_dump(), "labels": labels}
    record = await run_in_threadpool(jobs.submit, "tags", name, params)
    return job_accepted(request, record.id)


@router.get("/collections/{name}/tags", response_model=CollectionTagsOut, responses=ERRORS)
async def list_tags(name: CollectionPath, services: ServicesDep) -> CollectionTagsOut:
    found = await run_in_threadpool(tags.counts, services, name)
    return CollectionTagsOut(collection=name, tags=[TagCount(tag=t, count=n) for t, n in found])


@router.put("/img/{collection}/{image_id}/tags", response_model=ImageTagsOut, responses=ERRORS)
async def set_tags(
    collection: CollectionPath, image_id: str, body: SetTagsRequest, services: ServicesDep
) -> ImageTagsOut:
    """Tags by hand: replaces the image's manual tags; a manual tag wins over the same automatic one."""
    found = await run_in_threadpool(tags.set_manual, services, collection, image_id, body.tags)
    return ImageTagsOut(
        collection=collection,
        image_id=image_id,
        tags=[TagOut(tag=t.tag, source=t.source, probability=t.probability) for t in found],
    )


@router.get("/img/{collection}/{image_id}/tags", response_model=ImageTagsOut, responses=ERRORS)
async def get_tags(collection: CollectionPath, image_id: str, services: ServicesDep) -> ImageTagsOut:
    found = await run_in_threadpool(tags.of_image, services, collection, image_id)
    return ImageTagsOut(
        collection=collection,
        image_id=image_id,
        tags=[TagOut(tag=t.tag, source=t.source, probability=t.probability) for t in found],
    )
