"""Request and response bodies, as Swagger UI shows them."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, Field, StringConstraints

from operations.collections.collections import NAME_PATTERN

CollectionPath = Annotated[str, Path(pattern=NAME_PATTERN)]
CollectionName = Annotated[
    str, StringConstraints(pattern=NAME_PATTERN), Field(description="Letters, digits and _; 1-64 chars.")
]


MODEL_HELP = (
    "Chinese-CLIP model for a new collection (RN50, ViT-B-16, ViT-L-14, ViT-L-14-336, ViT-H-14); default: the "
    "service's. An existing collection keeps its own model."
)


SearchMode = Literal["semantic", "keyword", "hybrid"]
SEARCH_MODE_HELP = (
    "How /img/search ranks a request that names no mode: semantic (Chinese-CLIP alone, the default), hybrid "
    "(Chinese-CLIP fused with the words in and about images) or keyword. A request's own mode always wins."
)


class CreateCollectionRequest(BaseModel):
    name: CollectionName = Field(examples=["photos_vitb16"])
    model: str | None = Field(None, description=MODEL_HELP, examples=["ViT-B-16"])
    search_mode: SearchMode | None = Field(None, description=SEARCH_MODE_HELP + " Given again: changed.")


class UpdateCollectionRequest(BaseModel):
    search_mode: SearchMode = Field(description=SEARCH_MODE_HELP, examples=["hybrid"])


class ModelOut(BaseModel):
    name: str
    backend: str = Field(description="What serves it now: onnx (ONNX Runtime) or torch.")
    backend_note: str | None = Field(None, description="How that backend came to serve it (IMGSEARCH_BACKEND=auto).")
    precision: str = Field("fp32", description="fp32, or int8 with IMGSEARCH_ONNX_QUANTIZE=int8")
    dim: int
    weights: str
    input_resolution: int
    default: bool


class LoadRequest(BaseModel):
    collection: CollectionName = Field(examples=["flickr30k_cn"])
    path: str = Field(
        min_length=1,
        max_length=1024,
        examples=["sample"],
        description="Folder holding the split's files, relative to the data root (IMGSEARCH_DATA_ROOT).",
    )
    split: str = Field("valid", pattern=r"^[A-Za-z0-9_-]{1,64}$", examples=["valid"])
    model: str | None = Field(None, description=MODEL_HELP, examples=[None])


class JobAccepted(BaseModel):
    job_id: str
    status_url: str


class JobOut(BaseModel):
    job_id: str
    kind: str
    collection: str
    state: str = Field(description="queued, running, succeeded, failed or cancelled")
    params: dict[str, Any]
    total: int | None
    done: int
    loaded: int
    skipped: int
    failed: int
    errors: list[dict[str, Any]] = Field(description="The first 100 problems, each with its reason.")
    rate: float | None = Field(description="Items processed per second.")
    message: str | None
    result: dict[str, Any] | None = Field(None, description="What the job did, for jobs that report (reconcile).")
    created_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    owner: str | None = Field(None, description="The process running it now (host:pid:tag); none unless running.")
    attempts: int = Field(0, description="Runs so far: the first, plus resumes after a process died.")
    max_attempts: int = 1
    cancel_requested: bool = False
    runs: list[dict[str, Any]] = Field(
        default_factory=list, description="One entry per attempt: which process ran it, when, and how it ended."
    )


class EvaluateRequest(BaseModel):
    collection: CollectionName = Field(examples=["flickr30k_cn"])
    path: str = Field(min_length=1, max_length=1024, examples=["sample"], description="Folder under the data root.")
    split: str = Field("valid", pattern=r"^[A-Za-z0-9_-]{1,64}$", examples=["valid"])
    text_features: bool = Field(False, description="Use {split}_texts.txt_feat.jsonl instead of encoding the texts.")


class IngestRequest(BaseModel):
    collection: CollectionName = Field(examples=["photos"])
    path: str = Field(
        min_length=1,
        max_length=1024,
        examples=["my_photos"],
        description="A folder (read recursively) or a .zip file, relative to the data root.",
    )
    model: str | None = Field(None, description=MODEL_HELP, examples=[None])


class UploadResult(BaseModel):
    file: str
    status: str = Field(description="stored, duplicate or rejected")
    image_id: str | None = None
    id: int | None = None
    reason: str | None = None


class UploadResponse(BaseModel):
    collection: str
    stored: int
    duplicates: int
    rejected: int
    results: list[UploadResult]


class DeleteImageResponse(BaseModel):
    collection: str
    image_id: str
    id: int


class NearIn(BaseModel):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    km: float = Field(
        gt=0, le=20_000, description="Half the side of the box around the point (north-south, east-west)."
    )


class FiltersIn(BaseModel):
    """Applied inside the vector search: the top-k of the images that match, not a filtered short list."""

    tags_any: list[str] = Field(default_factory=list, description="Images with at least one of these tags.")
    tags_all: list[str] = Field(default_factory=list, description="Images with every one of these tags.")
    added_after: dt.datetime | None = Field(None, description="Stored at or after (ISO 8601; UTC if no zone).")
    added_before: dt.datetime | None = None
    source: list[str] = Field(
        default_factory=list, description='Any of: "upload", "ingest:<folder or zip>", "load:<path>/<split>".'
    )
    mime: list[str] = Field(default_factory=list, examples=[["image/jpeg"]])
    min_width: int | None = None
    min_height: int | None = None
    taken_after: dt.datetime | None = Field(
        None, description="Photographed at or after (EXIF; ISO 8601, UTC if no zone)."
    )
    taken_before: dt.datetime | None = None
    camera: list[str] = Field(default_factory=list, description="Any of these cameras (EXIF make and model).")
    near: NearIn | None = Field(None, description="Photographed within km of a point (EXIF GPS).")
    kinds: list[Literal["photo", "video"]] = Field(
        default_factory=list, description="photo, video (moments of videos) or both (empty: both)."
    )
    people: list[int] = Field(
        default_factory=list, description="Photos every one of these persons is in (ids from /people)."
    )
    people_any: list[int] = Field(default_factory=list, description="Photos at least one of these persons is in.")


class SearchRequest(BaseModel):
    collection: CollectionName = Field(examples=["flickr30k_cn"])
    text: str | None = Field(None, min_length=1, examples=["一个男孩在游泳池里玩滑梯"])
    top_k: int = Field(10, description="1 to IMGSEARCH_MAX_TOP_K")
    include_image: bool = Field(False, description="Add each image's bytes as base64.")
    image_id: str | None = Field(
        None, description="Combine with a stored image of this collection (query = weighted sum of the parts)."
    )
    negative_text: str | None = Field(None, min_length=1, description="Subtracted, e.g. 不要人物 → 人物.")
    text_weight: float = Field(1.0, description="0 to 100.")
    image_weight: float = Field(1.0, description="0 to 100.")
    negative_weight: float = Field(1.0, description="0 to 100; the negative text's vector is subtracted with it.")
    filters: FiltersIn | None = None
    offset: int = Field(0, description="Skip this many of the best: the next page (0 to IMGSEARCH_MAX_OFFSET).")
    sort: Literal["score", "taken"] = Field(
        "score", description="score: best first; taken: the best top_k, shown by capture time (oldest first)."
    )
    min_score: float | None = Field(
        None, ge=-1, le=1, description="Semantic and hybrid: hits whose cosine is below this are dropped (and counted)."
    )
    relative_cutoff: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Semantic and hybrid: hits whose cosine is below this fraction of the best hit's are dropped.",
    )
    mode: SearchMode | None = Field(
        None,
        description="semantic: Chinese-CLIP (top-k by cosine); keyword: the words in and about images (captions, "
        "descriptions, file names, OCR, tags); hybrid: both fused by reciprocal-rank fusion. Default: the "
        "collection's search_mode (semantic unless set); the response's mode says which ranking was used.",
    )


class QueryPartOut(BaseModel):
    kind: str = Field(description="text, image or negative_text")
    weight: float = Field(description="As given; a negative_text is subtracted with this weight.")
    text: str | None = None
    image_id: str | None = None
    file: str | None = None


class PersonRefOut(BaseModel):
    id: int
    name: str


class QueryOut(BaseModel):
    parts: list[QueryPartOut]
    combined: bool = Field(description="True: normalise(Σ weight × part), negative texts subtracted.")
    people: list[PersonRefOut] = Field(
        default_factory=list,
        description="Names of persons found in the text: they became the people filter and left the text.",
    )


class SnippetOut(BaseModel):
    field: str = Field(description="name, caption, description, ocr or tags")
    text: str = Field(description="A window of the field (NFKC form) around the match.")
    highlights: list[tuple[int, int]] = Field(description="[start, end) of each matched word in text.")


class MatchOut(BaseModel):
    semantic_rank: int | None = Field(None, description="Rank in the semantic list (1 = best); null: not in it.")
    semantic_score: float | None = None
    keyword_rank: int | None = Field(None, description="Rank in the keyword list; null: its words do not match.")
    keyword_score: float | None = None
    fused_score: float | None = Field(None, description="Hybrid: Σ 1/(k + rank) over the lists.")
    snippets: list[SnippetOut] = Field(default_factory=list)


class MomentOut(BaseModel):
    """Where in a video the query matched: matching samples merged (one miss tolerated), padded by half the
    sampling interval; ``best_ms`` is the best sample's time, ``frame_url`` that sample's picture."""

    start_ms: int
    end_ms: int
    best_ms: int
    duration_ms: int | None
    samples: int = Field(description="Matching samples the moment spans.")
    frame_url: str = Field(description="A small JPEG of the best sample (stored: no decoding).")
    frame_image_id: str = Field(description="That sample's image_id: more like this, or a combined query, from it.")
    clip_url: str = Field(description="An MP4 of the moment that plays from its first frame.")


class HitOut(BaseModel):
    id: int = Field(description="Vector id, equal to the metadata row id (a video's row for a moment).")
    kind: Literal["photo", "video"] = Field("photo", description="video: a moment of a video (see ``video``).")
    video: MomentOut | None = Field(None, description="A moment of a video: its time range in milliseconds.")
    image_id: str
    score: float | None = Field(
        description="Inner product of unit vectors (cosine); higher is closer. Keyword mode: the keyword score."
    )
    url: str
    tags: list[str] = Field(default_factory=list, description="The image's tags, set by hand first.")
    paths: list[str] = Field(
        default_factory=list,
        description="Where the original of an image of a source folder lives (data root-relative).",
    )
    mime: str
    width: int
    height: int
    taken_at: dt.datetime | None = Field(None, description="Capture time (EXIF): UTC when taken_offset is known.")
    taken_offset: str | None = None
    camera: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    image: str | None = Field(None, description="base64 bytes, with include_image")
    caption: str | None = Field(None, description="Captions that came with the image (a load's texts).")
    description: str | None = Field(None, description="Its description, set by hand.")
    ocr: str | None = Field(None, description="The text OCR read in it, a line per line.")
    match: MatchOut | None = Field(None, description="Keyword and hybrid searches: why the image matched.")


class SearchResponse(BaseModel):
    collection: str
    model: str
    hits: list[HitOut]
    timings_ms: dict[str, float]
    truncated: bool = Field(False, description="The text was longer than Chinese-CLIP reads (52-token context).")
    notice: str | None = Field(None, description="Why the text was truncated, when it was.")
    query: QueryOut | None = Field(None, description="How the query vector was built.")
    offset: int = 0
    filter: str | None = Field(None, description="The Milvus expression the filters became.")
    cut_by_min_score: int = Field(0, description="Hits of the top_k dropped for being under min_score.")
    cut_by_relative_cutoff: int = Field(0, description="Hits of the top_k dropped by relative_cutoff.")
    mode: str = Field("semantic", description="The mode the search ran in.")


class ImageQueryResult(BaseModel):
    file: str
    hits: list[HitOut]


class ImageSearchResponse(BaseModel):
    collection: str
    model: str
    results: list[ImageQueryResult] = Field(description="One ranked list per query image, in upload order.")
    timings_ms: dict[str, float]


class CollectionHits(BaseModel):
    collection: str
    model: str
    hits: list[HitOut]


class OverlapOut(BaseModel):
    a: str
    b: str
    common: int = Field(description="Images in both top-k lists.")
    jaccard: float = Field(description="common / images in either list.")


class CompareResponse(BaseModel):
    results: list[CollectionHits]
    overlap: list[OverlapOut]


class EmbedTextRequest(BaseModel):
    texts: list[str] = Field(min_length=1, examples=[["一只小猫", "海边的日落"]])
    model: str | None = Field(None, description="Default: the service's model.", examples=[None])


class EmbedTextResponse(BaseModel):
    model: str
    dim: int
    weights: str
    vectors: list[list[float]]


class CountResponse(BaseModel):
    collection: str
    count: int


class IndexOut(BaseModel):
    backend: str = Field(description="milvus-lite or milvus-server")
    index_type: str = Field(description="The index the collection was built with, e.g. FLAT (exact) or HNSW.")
    params: dict[str, Any] = Field(description="Its build parameters, e.g. M and efConstruction.")
    search_params: dict[str, Any] = Field(description="What a search passes, e.g. ef (raised to top_k if smaller).")


class CollectionOut(BaseModel):
    name: str
    model: str
    dim: int
    metric: str
    count: int
    created_at: dt.datetime
    search_mode: SearchMode = Field(description=SEARCH_MODE_HELP)
    index: IndexOut | None = Field(None, description="None while the vector store cannot be reached.")
    reembed: ReembedOut | None = Field(
        None, description="The other model's vectors, while a re-embed builds them or keeps the previous ones."
    )


class ReembedOut(BaseModel):
    model: str = Field(description="The model of the vectors that do not serve searches now.")
    state: str = Field(
        description="building (the re-embed job is making them), ready (made, not serving: switch to them), "
        "previous (the vectors served before the switch, kept current for a rollback until finalize)."
    )


class ReembedRequest(BaseModel):
    model: str = Field(description="The model to re-encode with (one of GET /models).", min_length=1, max_length=64)
    switch: bool = Field(True, description="Switch searches to the new model as soon as every image is encoded.")


class DropResponse(BaseModel):
    collection: str
    removed: int


class StoreHealth(BaseModel):
    ok: bool
    backend: str
    error: str | None = None


class LiveResponse(BaseModel):
    status: str = Field(description="always `alive`")


class ReadyResponse(BaseModel):
    status: str = Field(description="`ready`, `not_ready` (a store is down or a collection is loading) or `starting`")
    stores: dict[str, StoreHealth]
    message: str | None = None


class ModelHealth(BaseModel):
    name: str
    backend: str | None = None
    backend_note: str | None = None
    precision: str | None = Field(None, description="fp32, or int8 with IMGSEARCH_ONNX_QUANTIZE=int8")
    dim: int | None
    weights: str
    source: str | None
    device: str | None
    warning: str | None = None
    micro_batching: dict[str, Any] | None = None


class VectorIndexHealth(BaseModel):
    backend: str
    database: str
    server_version: str | None = None
    new_collections: dict[str, Any] = Field(description="Index type and parameters a new collection gets.")
    search: dict[str, Any] = Field(description="Search settings: ef, nprobe, consistency level.")
    collections: dict[str, IndexOut] = Field(description="The index each existing collection uses.")
    in_memory: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Milvus Lite: collections searched exactly from memory (vectors held, fill finished).",
    )


class HealthResponse(BaseModel):
    status: str
    model: ModelHealth
    ocr: str = Field(description="on (IMGSEARCH_OCR=on: at ingest and sync), off, or unavailable (no ocr extra).")
    faces: str = Field(
        "off",
        description="on (IMGSEARCH_FACES=on: at upload, ingest and sync), off (face jobs on demand), or "
        "unavailable (no faces extra: people features answer 409).",
    )
    face_model: str | None = Field(None, description="The face detector and embedding, when faces are available.")
    stores: dict[str, StoreHealth]
    vector_index: VectorIndexHealth | None = None
