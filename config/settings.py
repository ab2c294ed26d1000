"""All tunables in one place, read from ``IMGSEARCH_*`` environment variables or a ``.env`` file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from config.index_choice import index_choice

MODEL_NAMES = ("RN50", "ViT-B-16", "ViT-L-14", "ViT-L-14-336", "ViT-H-14")
ModelName = Literal["RN50", "ViT-B-16", "ViT-L-14", "ViT-L-14-336", "ViT-H-14"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMGSEARCH_", env_file=".env", extra="ignore")

    # Where things live. Unset paths and URLs are derived from data_dir.
    data_dir: Path = Field(
        Path("data"), description="Base folder of the derived defaults (Milvus Lite, SQLite, models)."
    )
    data_root: Path | None = Field(None, description="Server-side loads may only read below this folder.")
    milvus_uri: str | None = Field(None, description="Milvus Lite file (*.db) or http://host:19530.")
    milvus_token: SecretStr | None = Field(None, description="Milvus server credentials (user:password or API token).")
    milvus_db: str = Field("default", description="Database on a Milvus server (ignored by Milvus Lite).")
    metadata_url: str | None = Field(None, description="sqlite:///file.db or mysql+pymysql://user:pw@host/db")

    # Model.
    model_name: ModelName = Field("RN50", description="RN50, ViT-B-16, ViT-L-14, ViT-L-14-336 or ViT-H-14.")
    checkpoint_path: Path | None = Field(None, description="Local Chinese-CLIP .pt checkpoint.")
    model_dir: Path | None = Field(None, description="Download / cache folder for checkpoints by name.")
    weights: Literal["pretrained", "random"] = Field(
        "pretrained",
        description="pretrained (checkpoint by name or path) or random (seeded, offline, results meaningless).",
    )
    max_loaded_models: int = Field(2, ge=1, le=16, description="Models kept in memory at once.")
    preload_models: list[str] = Field(default_factory=list, description="Loaded at start-up besides model_name.")
    seed: int = Field(0, description="Seed of the random weights.")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    torch_threads: int = Field(0, ge=0, description="0 = number of cores")
    backend: Literal["auto", "torch", "onnx"] = Field(
        "auto",
        description="auto: ONNX Runtime, exported on first use (PyTorch if that fails, said loudly); "
        "onnx: an existing export only, never imports torch; torch: PyTorch",
    )
    onnx_dir: Path | None = Field(None, description="Where ONNX exports live; default <model_dir>/onnx.")
    custom_models_dir: Path | None = Field(None, description="Your ONNX image models: <dir>/<name>/model.onnx")
    onnx_threads: int = Field(0, ge=0, description="ONNX Runtime intra-op threads; 0 = number of cores")
    onnx_spin: bool = Field(
        False, description="ONNX Runtime threads busy-wait between runs: ~1 ms off a lone query, fewer searches/s"
    )
    onnx_device: Literal["cpu", "cuda"] = Field(
        "cpu", description="cuda: ONNX Runtime's CUDA provider (onnxruntime-gpu); Ray actors given GPUs use it"
    )
    onnx_quantize: Literal["none", "int8"] = Field(
        "none", description="int8: Chinese-CLIP on ONNX with dynamically quantised MatMul weights (faster text)"
    )

    # Micro-batching of concurrent search texts (max size 1 turns it off).
    microbatch_max_size: int = Field(
        16,
        ge=1,
        le=256,
        description="Most concurrent searches encoded in one forward pass (1 turns micro-batching off).",
    )
    microbatch_max_wait_ms: float = Field(
        3.0, ge=0, le=1000, description="How long a search waits for others to share its pass (only while busy)."
    )

    # Vector index, for new collections: unset = FLAT (exact) on Milvus Lite, HNSW on a Milvus server.
    index_type: str | None = Field(None, description="FLAT, IVF_FLAT, IVF_SQ8, HNSW or AUTOINDEX")
    index_params: dict[str, Any] | None = Field(None, description='e.g. {"M": 16, "efConstruction": 200}')
    # 64 gave recall@10 0.975 at 100k vectors but 0.916 at 300k; 128 gives 0.988 at 300k for +1.6 ms (bench/scale.py).
    search_ef: int = Field(128, ge=1, le=32768, description="HNSW search breadth (raised to top_k when smaller)")
    search_nprobe: int = Field(16, ge=1, le=65536, description="IVF clusters searched")
    # Searches read at this level; reads that must see every earlier write (reconcile, counts) use Strong.
    search_consistency: Literal["Strong", "Session", "Bounded", "Eventually"] = Field(
        "Session", description="Milvus consistency of searches (counts and reconcile always read Strong)."
    )
    # Milvus Lite only: FLAT collections are also held in memory and searched with numpy (exact, ~3x faster than
    # Lite's own search at 30k; adapters/exact_mirror.py). A collection that does not fit goes to Lite. 0 = off.
    lite_mirror_mb: int = Field(2048, ge=0, description="Memory for in-process exact search on Milvus Lite (MB)")

    # Limits and batch sizes.
    max_top_k: int = Field(100, ge=1, le=16384, description="Largest top_k a search may ask for.")
    max_offset: int = Field(1000, ge=0, le=16000, description="Deepest page a search may ask for (offset).")
    max_text_chars: int = Field(512, ge=1, description="Longest query text accepted.")
    max_embed_texts: int = Field(256, ge=1, description="Most texts per /embed/text call.")
    max_image_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, le=15 * 1024 * 1024, description="Largest image file accepted, in bytes."
    )
    max_image_pixels: int = Field(
        50_000_000, ge=1, description="Most pixels of an image, checked from its header before decoding."
    )
    max_request_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Whole request body, uploads included.")
    max_upload_files: int = Field(32, ge=1, le=1000, description="Most files in one upload or image search.")
    load_batch_size: int = Field(500, ge=1, le=5000, description="Rows per write batch of a load.")
    encode_batch_size: int = Field(
        16, ge=1, le=1024, description="Images per encoder forward pass in jobs and uploads."
    )
    sync_interval: float = Field(
        3600.0, gt=0, description="Seconds between full syncs of each watched source (the safety net under events)."
    )
    watch_debounce_seconds: float = Field(
        2.0, ge=0.1, le=600, description="A watched source is synced once no event came for this long."
    )
    watch_polling: bool = Field(
        False, description="Watch by polling the folders (network shares, where inotify sees no remote changes)."
    )
    preview_size: int = Field(
        1280, ge=256, le=4096, description="Longest side of the preview JPEG kept for images of source folders."
    )
    ocr: Literal["off", "on"] = Field(
        "off", description="on: OCR reads new and changed images at ingest and sync (needs the ocr extra)."
    )
    ocr_max_side: int = Field(1600, ge=320, le=8192, description="OCR reads images scaled to this longest side.")
    # People in photos (the faces extra): faces found, embedded and grouped into persons.
    faces: Literal["off", "on"] = Field(
        "off", description="on: faces are read from new and changed images at upload, ingest and sync."
    )
    face_detector: Literal["hog", "cnn"] = Field(
        "hog", description="dlib's HOG detector (fast, frontal faces) or its CNN detector (more angles, ~20x slower)."
    )
    face_model: str = Field(
        "dlib",
        pattern=r"^(dlib|onnx:[A-Za-z0-9_.-]{1,64})$",
        description="dlib (the faces extra), or onnx:<name>: a detector + embedding pair of ONNX files in "
        "<custom_models_dir>/faces/<name>/ with a manifest.json (adapters/onnx_faces.py).",
    )
    face_workers: int = Field(
        2, ge=1, le=64, description="Processes that read faces (dlib holds the GIL: a process reads one picture)."
    )
    face_max_side: int = Field(1280, ge=320, le=8192, description="Faces are found on the picture at this side.")
    face_min_size: int = Field(
        80,
        ge=20,
        le=2000,
        description="Smallest face found, in pixels of the picture faces are read from (1280 px: 80 is 6% of its "
        "side). 40 finds the small faces of group photos at a quarter of the speed: the picture is doubled.",
    )
    face_min_score: float = Field(0.0, ge=-2, le=10, description="Detections scoring below this are dropped.")
    face_max_distance: float = Field(
        0.40,
        gt=0,
        le=2,
        description="Faces this close (unit vectors) may be one person: stricter than dlib's own 0.6, which is "
        "about 0.43 on unit vectors and merges relatives.",
    )
    face_min_faces: int = Field(
        3, ge=1, le=1000, description="Faces close to each other that start a person; smaller persons stay hidden."
    )
    hybrid_rrf_k: float = Field(
        60.0, gt=0, le=10000, description="k of reciprocal-rank fusion in hybrid search: Σ 1/(k + rank) per list."
    )
    hybrid_depth: int = Field(
        100, ge=1, le=10000, description="How many of each list (semantic, keyword) a hybrid search fuses."
    )
    decode_workers: int = Field(2, ge=1, le=64, description="Threads reading and decoding image files.")

    # Videos of source folders (the video extra): sampled, one vector a sample, searched as moments.
    video_sample_seconds: float = Field(
        2.0, ge=0.25, le=60, description="A sample at least this often where keyframes are further apart."
    )
    video_max_samples: int = Field(
        600, ge=1, le=20000, description="Most samples of one video (a long recording is sampled evenly)."
    )
    video_decode_seconds: float = Field(
        300.0, gt=0, le=86400, description="Decode time limit per video: indexed up to there, with the reason."
    )
    video_piece_seconds: float = Field(
        120.0, ge=1, le=86400, description="With Ray: a longer video is sampled in pieces this long on several actors."
    )
    video_max_clip_seconds: float = Field(60.0, gt=0, le=3600, description="Longest clip a user can cut.")
    max_video_bytes: int = Field(
        4 * 1024**3, ge=1024, description="Largest video file a source folder or an upload may hold, in bytes."
    )
    live_photo_videos: bool = Field(
        False, description="Index a Live Photo's motion MOV as a video too (by default it belongs to its photo)."
    )

    # Encoding on a Ray cluster (the distributed extra): unset, every process encodes with its own cores.
    ray_address: str | None = Field(
        None, description="A Ray cluster (HOST:PORT, or 'auto') whose actors decode and encode images for jobs."
    )
    ray_pool_size: int = Field(2, ge=1, le=1024, description="Encoder actors on the Ray cluster per job.")
    ray_batch_size: int = Field(16, ge=1, le=1024, description="Images per batch an encoder actor runs.")
    ray_cpus_per_actor: float = Field(
        1.0, gt=0, le=256, description="CPUs each encoder actor asks for (its ONNX Runtime threads)."
    )
    ray_gpus_per_actor: float = Field(
        0.0, ge=0, le=16, description="GPUs each encoder actor asks for; above 0 it runs ONNX Runtime on CUDA."
    )
    ray_shared_paths: bool = Field(
        False, description="Ray workers see the data root at the same path: they read files themselves."
    )
    ray_window: int = Field(
        1024, ge=16, le=100_000, description="Images per Ray Data run (the encoder actors start once per run)."
    )
    ray_window_mb: int = Field(256, ge=8, le=65536, description="Image bytes sent to Ray per run, at most.")
    job_workers: int = Field(1, ge=1, le=16, description="Job threads per service process.")
    workers: int = Field(1, ge=1, le=64, description="Service processes of `imgsearch serve` (needs shared stores).")
    max_active_jobs: int = Field(4, ge=1, le=64, description="Bulk jobs queued or running at once; more get 429.")
    job_lease_seconds: float = Field(
        60.0, gt=0, description="A job whose process stops renewing its lease this long is resumed by another."
    )
    job_max_attempts: int = Field(3, ge=1, le=100, description="Runs of a job (first + resumes) before it fails.")

    # Access control: with keys set, every route that changes data needs one; reads too with read_access=key.
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Comma-separated API keys, each at least 16 characters."
    )
    read_access: Literal["open", "key"] = Field("open", description="key = search and image reads need a key too")
    # Quotas (requests per window) while keys are in use; keys from api_keys are the operator's and have none.
    rate_window_seconds: float = Field(60.0, ge=1, le=86400, description="Length of a quota window, in seconds.")
    rate_limit_read: int = Field(3000, ge=0, description="Reads per window per key (0: no limit).")
    rate_limit_write: int = Field(600, ge=0, description="Data-changing requests per window per key (0: no limit).")
    rate_limit_admin: int = Field(120, ge=0, description="Admin requests per window per key (0: no limit).")
    rate_limit_anonymous: int = Field(
        1200, ge=0, description="Reads per window per client address without a key (read_access=open; 0: no limit)."
    )
    rate_flush_seconds: float = Field(
        0.25, gt=0, le=10, description="How often a process shares its quota counts through the metadata DB."
    )
    audit_retention_days: int = Field(
        365, ge=0, description="Audit entries older than this many days are deleted (every 5 minutes); 0 keeps all."
    )

    font_path: Path | None = Field(None, description="CJK font for result pictures; found automatically if unset.")
    log_level: str = Field("INFO", description="Log level of the service and the imgsearch commands.")
    log_format: Literal["text", "json"] = Field("text", description="json = one JSON object per line")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("api_keys")
    @classmethod
    def _long_enough(cls, keys: list[SecretStr]) -> list[SecretStr]:
        if any(len(key.get_secret_value()) < 16 for key in keys):
            raise ValueError("every API key must be at least 16 characters (try: openssl rand -hex 24)")
        return keys

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        self._derive_paths()
        self.index_type, self.index_params = index_choice(self.index_type, self.index_params, self.milvus_is_local)
        return self

    def _derive_paths(self) -> None:
        if self.data_root is None:
            self.data_root = self.data_dir / "datasets"
        if self.milvus_uri is None:
            self.milvus_uri = str(self.data_dir / "milvus.db")
        if self.metadata_url is None:
            self.metadata_url = f"sqlite:///{self.data_dir / 'metadata.db'}"
        if self.model_dir is None:
            self.model_dir = self.data_dir / "models"
        if self.onnx_dir is None:
            self.onnx_dir = self.model_dir / "onnx"
        if self.custom_models_dir is None:
            self.custom_models_dir = self.model_dir / "custom"

    def single_process_stores(self) -> list[str]:
        """Why this configuration cannot run several service processes (empty when it can)."""
        reasons = []
        if self.milvus_is_local:
            reasons.append(
                f"Milvus Lite ({self.milvus_uri}) is opened by one process only: "
                "set IMGSEARCH_MILVUS_URI=http://HOST:19530 (a Milvus server)"
            )
        if str(self.metadata_url).startswith("sqlite"):
            reasons.append(
                "the SQLite metadata file is for one process: "
                "set IMGSEARCH_METADATA_URL=mysql+pymysql://USER:PASSWORD@HOST:3306/imgsearch?charset=utf8mb4"
            )
        return reasons

    @property
    def milvus_is_local(self) -> bool:
        return not str(self.milvus_uri).startswith(("http://", "https://", "tcp://", "grpc://"))
