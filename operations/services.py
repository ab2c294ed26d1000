"""The long-lived clients of one process, built once (by the web lifespan or the CLI) and closed once."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from adapters import faces
from adapters.encoders.clip_tokenizer import ClipTokenizer
from adapters.encoders.encoder_base import EncoderBase
from adapters.face_pool import FacePool
from adapters.ocr import OcrReader
from adapters.stores.milvus.vector_store import MilvusVectorStore, VectorStore
from adapters.stores.sql.face_store import FaceStore
from adapters.stores.sql.generation_store import GenerationStore
from adapters.stores.sql.job_store import JobStore
from adapters.stores.sql.metadata_store import MetadataStore
from adapters.stores.sql.source_store import SourceStore
from adapters.stores.sql.text_store import TextStore
from adapters.video_store import VideoStore
from config import Settings
from operations.labels.label_vectors import LabelVectors
from operations.models.models import ModelRegistry, build_encoder
from operations.search.search_batch import QueryBatcher

if TYPE_CHECKING:
    from operations.models.ray_encoding import RayEncoding

__all__ = ["Services", "build_encoder", "build_services"]

logger = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    models: ModelRegistry
    vectors: VectorStore
    metadata: MetadataStore
    jobs: JobStore
    decode_pool: ThreadPoolExecutor
    search_pool: ThreadPoolExecutor  # a hybrid search's keyword list, read beside its encode and vector search
    queries: QueryBatcher | None = None  # None when micro-batching is off (IMGSEARCH_MICROBATCH_MAX_SIZE=1)
    _owned: list = field(default_factory=list, repr=False)
    label_vectors: LabelVectors = field(default_factory=LabelVectors)  # zero-shot labels' text vectors

    @cached_property
    def tokenizer(self) -> ClipTokenizer:
        """Chinese-CLIP's vocab (shared by all its models): tells when a query is over the 52-token context."""
        return ClipTokenizer()

    @cached_property
    def sources(self) -> SourceStore:
        """Source folders and the files their images live in."""
        return SourceStore(self.metadata.engine)

    @cached_property
    def generations(self) -> GenerationStore:
        """Which Milvus collection serves each collection, and the one a re-embed builds or keeps."""
        return GenerationStore(self.metadata.engine)

    @cached_property
    def texts(self) -> TextStore:
        """Words in and about images (captions, descriptions, OCR) and the keyword index over them."""
        return TextStore(self.metadata.engine)

    @cached_property
    def video_store(self) -> VideoStore:
        """The videos the service keeps itself (uploads, ingests); a source folder's stay in their folder."""
        return VideoStore(self.settings.data_dir / "videos")

    @cached_property
    def ocr(self) -> OcrReader:
        """PP-OCR for text in images (the ocr extra); loaded on first use."""
        return OcrReader(threads=self.settings.onnx_threads)

    @cached_property
    def faces(self) -> faces.FaceModel:
        """The face detector and embedding (the faces extra); loaded on first use."""
        return faces.build(self.settings)

    @cached_property
    def face_pool(self) -> FacePool | None:
        """Worker processes that read faces (IMGSEARCH_FACE_WORKERS above 1); None: this process reads them."""
        if self.settings.face_workers <= 1:
            return None
        pool = FacePool(self.settings, self.settings.face_workers)
        self._owned.append(pool)
        return pool

    @cached_property
    def face_store(self) -> FaceStore:
        """Faces found in images and the persons they are grouped into."""
        return FaceStore(self.metadata.engine)

    @cached_property
    def ray(self) -> RayEncoding | None:
        """Encoder actors on a Ray cluster for jobs (IMGSEARCH_RAY_ADDRESS); None: this process encodes."""
        if not self.settings.ray_address:
            return None
        from operations.models.ray_encoding import RayEncoding

        return RayEncoding(self.settings)

    @property
    def encoder(self) -> EncoderBase:
        """The service's default model (IMGSEARCH_MODEL_NAME)."""
        return self.models.default()

    def close(self) -> None:
        self.decode_pool.shutdown(wait=True, cancel_futures=True)
        self.search_pool.shutdown(wait=True, cancel_futures=True)
        for resource in reversed(self._owned):
            try:
                resource.close()
            except Exception:  # closing must go on for the others
                logger.exception("error while closing %s", type(resource).__name__)


def build_services(settings: Settings, encoder: EncoderBase | None = None) -> Services:
    """Connect to both stores; an encoder passed in is shared (tests) and not closed here."""
    owned: list = []
    metadata = MetadataStore(str(settings.metadata_url))
    owned.append(metadata)
    try:
        vectors = MilvusVectorStore(
            str(settings.milvus_uri),
            token=settings.milvus_token.get_secret_value() if settings.milvus_token else None,
            index_type=str(settings.index_type),
            index_params=settings.index_params,
            search_ef=settings.search_ef,
            search_nprobe=settings.search_nprobe,
            search_consistency=settings.search_consistency,
            db_name=settings.milvus_db,
            lite_mirror_mb=settings.lite_mirror_mb,
        )
    except Exception:
        metadata.close()
        raise
    owned.append(vectors)
    models = ModelRegistry(settings, shared=encoder)
    owned.append(models)
    queries = None
    if settings.microbatch_max_size > 1:
        queries = QueryBatcher(vectors, metadata, settings.microbatch_max_size, settings.microbatch_max_wait_ms)
        owned.append(queries)  # closed first: no search outlives the stores
    pool = ThreadPoolExecutor(max_workers=settings.decode_workers, thread_name_prefix="decode")
    # As many as the web layer's threads that can be searching at once (Starlette's default pool: 40).
    search_pool = ThreadPoolExecutor(max_workers=40, thread_name_prefix="keyword")
    services = Services(
        settings, models, vectors, metadata, JobStore(metadata.engine), pool, search_pool, queries, owned
    )
    try:
        from operations.collections.upgrade import upgrade_collections  # imports Services: loaded after this module

        upgrade_collections(services)
    except Exception:
        services.close()
        raise
    return services
