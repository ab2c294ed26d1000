"""Zero-shot labels for one image (clip-as-service's rank, the source document's 1.1)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from app.deps import ServicesDep
from app.errors import documented
from app.routes.search import _read_query_images
from operations.labels import classify as zero_shot

router = APIRouter(prefix="/img", tags=["labels"])


class LabelOut(BaseModel):
    label: str
    probability: float = Field(description="softmax over the labels of logit_scale x cosine (get_similarity)")
    cosine: float = Field(description="Cosine of the image and the label's (prompt-averaged) text vector.")


class ClassifyResponse(BaseModel):
    model: str
    logit_scale: float = Field(description="The model's own temperature, exp(logit_scale).")
    templates: list[str] = Field(description="The prompts each label was put in; their vectors are averaged.")
    labels: list[LabelOut] = Field(description="Best first.")
    timings_ms: dict[str, float]


def split_labels(labels: list[str]) -> list[str]:
    """Repeated form fields, or one field with a label per line (what a text box sends)."""
    if len(labels) == 1 and "\n" in labels[0]:
        return [line for line in labels[0].splitlines() if line.strip()]
    return labels


@router.post("/classify", response_model=ClassifyResponse, responses=documented(401, 403, 404, 409, 413, 422, 503))
async def classify_image(
    services: ServicesDep,
    labels: Annotated[
        list[str],
        Form(
            description="2 to 1,000 candidate labels, Chinese or English (repeat the field, or one per line).",
            examples=[["杰尼龟", "妙蛙种子", "小火龙", "皮卡丘"]],
        ),
    ],
    file: Annotated[UploadFile | None, File(description="The image; or give collection and image_id.")] = None,
    collection: Annotated[str | None, Form(description="A stored image's collection.")] = None,
    image_id: Annotated[str | None, Form(description="A stored image's id.")] = None,
    prompts: Annotated[
        str, Form(description="photo: '{}的照片。' (default); imagenet: Chinese-CLIP's 80 prompts averaged; none.")
    ] = "photo",
    template: Annotated[
        list[str] | None, Form(description="Your own prompt(s), each with {} for the label, e.g. 一张{}的照片")
    ] = None,
    model: Annotated[str | None, Form(description="Model for an uploaded image (default: the service's).")] = None,
) -> ClassifyResponse:
    """Zero-shot labels: each label's probability for the image, best first. A stored image is scored from its
    stored vector with its collection's model; label vectors are cached, so a label set is encoded once."""
    data = None
    if file is not None and file.filename:
        data = (await run_in_threadpool(_read_query_images, [file], services.settings.max_image_bytes))[0][1]
    result = await run_in_threadpool(
        lambda: zero_shot.classify(
            services,
            split_labels(labels),
            image=data,
            collection=collection or None,
            image_id=image_id or None,
            prompts=prompts,
            template=[t for t in template or [] if t] or None,
            model=model or None,
        )
    )
    return ClassifyResponse(
        model=result.model,
        logit_scale=result.logit_scale,
        templates=list(result.templates),
        labels=[LabelOut(label=s.label, probability=s.probability, cosine=s.cosine) for s in result.labels],
        timings_ms=result.timings_ms,
    )
