"""Words in and about an image: its captions, description, OCR lines and names; a description set by hand."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from adapters.stores.sql.text_store import ImageTexts
from app.deps import JobsDep, ServicesDep
from app.errors import documented
from app.routes.jobs import job_accepted
from app.schemas import CollectionPath, JobAccepted
from operations.collections import collections
from operations.words import image_words, ocr

router = APIRouter(tags=["words"])
ERRORS = documented(401, 403, 404, 409, 422, 503)


class OcrLineOut(BaseModel):
    text: str
    box: list[list[float]] = Field(description="Four corners [x, y] in the original image's pixels, clockwise.")
    confidence: float


class ImageTextOut(BaseModel):
    collection: str
    image_id: str
    caption: str | None = Field(None, description="Captions that came with the image (a load's texts), one per line.")
    description: str | None = Field(None, description="Set by hand: PUT …/description.")
    ocr: str | None = Field(None, description="The text OCR read, one line per recognised line.")
    ocr_lines: list[OcrLineOut] = Field(default_factory=list)
    ocr_done: bool = Field(False, description="OCR has read this image (an empty ocr then means: no text found).")
    names: list[str] = Field(default_factory=list, description="File name and source paths.")
    tags: list[str] = Field(default_factory=list)


class DescriptionIn(BaseModel):
    description: str | None = Field(
        None,
        description=f"Up to {image_words.MAX_DESCRIPTION_CHARS} characters; empty or null clears it.",
        examples=["2024年国庆 杭州西湖 和爸妈"],
    )


def text_out(collection: str, image_id: str, texts: ImageTexts) -> ImageTextOut:
    return ImageTextOut(
        collection=collection,
        image_id=image_id,
        caption=texts.caption,
        description=texts.description,
        ocr=texts.ocr,
        ocr_lines=[OcrLineOut(**line) for line in texts.ocr_lines or []],
        ocr_done=texts.ocr_lines is not None,
        names=list(texts.names),
        tags=list(texts.tags),
    )


@router.get("/img/{collection}/{image_id}/text", response_model=ImageTextOut, responses=ERRORS)
async def get_text(collection: CollectionPath, image_id: str, services: ServicesDep) -> ImageTextOut:
    """The words in and about an image, as keyword search reads them (OCR lines with their boxes)."""
    texts = await run_in_threadpool(image_words.of_image, services, collection, image_id)
    return text_out(collection, image_id, texts)


@router.put(
    "/img/{collection}/{image_id}/description",
    response_model=ImageTextOut,
    responses=ERRORS,
)
async def set_description(
    collection: CollectionPath, image_id: str, body: DescriptionIn, services: ServicesDep
) -> ImageTextOut:
    """A description by hand; the next keyword or hybrid search finds the image by its words."""
    texts = await run_in_threadpool(image_words.set_description, services, collection, image_id, body.description)
    return text_out(collection, image_id, texts)


class OcrJobRequest(BaseModel):
    redo: bool = Field(False, description="Read every image again (default: only those OCR has not read).")


@router.post("/collections/{name}/ocr", status_code=202, response_model=JobAccepted, responses=ERRORS)
async def ocr_collection(
    name: CollectionPath, services: ServicesDep, jobs: JobsDep, request: Request, body: OcrJobRequest | None = None
) -> JobAccepted:
    """A job: Chinese and English text in each image is read (PP-OCRv4 on ONNX Runtime) and becomes searchable;
    images read before are skipped unless ``redo``. 409 when the service was installed without OCR."""
    ocr.require_available()
    await run_in_threadpool(collections.require, services, name)
    params = {"collection": name, "redo": bool(body and body.redo)}
    record = await run_in_threadpool(jobs.submit, "ocr", name, params)
    return job_accepted(request, record.id)
