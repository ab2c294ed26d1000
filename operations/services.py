"""The long-lived clients of one process, built once (by the web lifespan or the CLI) and closed once."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from adapters.clip_encoder import ChineseClipEncoder
from adapters.clip_onnx import OnnxClipEncoder
from adapters.encoder_base import EncoderBase
from adapters.job_store import JobStore
from adapters.metadata_store import MetadataStore
from adapters.vector_store import MilvusVectorStore, VectorStore
from config import Settings

logger = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    encoder: EncoderBase
    vectors: VectorStore
    metadata: MetadataStore
    jobs: JobStore
    decode_pool: ThreadPoolExecutor
    _owned: list = field(default_factory=list, repr=False)

    def close(self) -> None:
        self.decode_pool.shutdown(wait=True, cancel_futures=True)
        for resource in reversed(self._owned):
            try:
                resource.close()
            except Exception:  # closing must go on for the others
                logger.exception("error while closing %s", type(resource).__name__)


def build_encoder(settings: Settings, backend: str | None = None) -> EncoderBase:
    if (backend or settings.backend) == "onnx":
        return OnnxClipEncoder(settings.model_name, Path(str(settings.onnx_dir)), settings.onnx_threads)
    return ChineseClipEncoder(
        model_name=settings.model_name,
        weights=settings.weights,
        checkpoint_path=settings.checkpoint_path,
        model_dir=settings.model_dir,
        device=settings.device,
        seed=settings.seed,
        threads=settings.torch_threads,
    )


def build_services(settings: Settings, encoder: EncoderBase | None = None) -> Services:
    """Connect to both stores; an encoder passed in is shared and not closed here."""
    owned: list = []
    metadata = MetadataStore(str(settings.metadata_url))
    owned.append(metadata)
    try:
        vectors = MilvusVectorStore(
            str(settings.milvus_uri),
            token=settings.milvus_token.get_secret_value() if settings.milvus_token else None,
            index_type=settings.index_type,
            index_params=settings.index_params,
            search_params=settings.search_params,
            consistency_level=settings.consistency_level,
        )
    except Exception:
        metadata.close()
        raise
    owned.append(vectors)
    if encoder is None:
        encoder = build_encoder(settings)
        encoder.enable_micro_batching(settings.microbatch_max_size, settings.microbatch_max_wait_ms)
        owned.append(encoder)
    pool = ThreadPoolExecutor(max_workers=settings.decode_workers, thread_name_prefix="decode")
    return Services(settings, encoder, vectors, metadata, JobStore(metadata.engine), pool, owned)
