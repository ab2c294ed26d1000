"""Probes (``/livez``, ``/readyz``), what the service runs on (``/healthz``: random weights are reported here,
loudly), and metrics. None of them needs a key, and none fails while the service waits for a store."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from sqlalchemy.engine import make_url
from starlette.concurrency import run_in_threadpool

from adapters import faces, ocr
from app.errors import RETRY_AFTER_S
from app.schemas import (
    HealthResponse,
    IndexOut,
    LiveResponse,
    ModelHealth,
    ReadyResponse,
    StoreHealth,
    VectorIndexHealth,
)
from app.startup import describe
from operations.collections import collections
from operations.services import Services

router = APIRouter(tags=["health"])
RANDOM_WARNING = "RANDOM WEIGHTS: results carry no meaning; configure pretrained weights for real use"


def _check(ping, backend: str) -> StoreHealth:  # type: ignore[no-untyped-def]
    try:
        ping()
        return StoreHealth(ok=True, backend=backend)
    except Exception as exc:
        return StoreHealth(ok=False, backend=backend, error=describe(exc)[:300])


def _health(services: Services) -> HealthResponse:
    settings = services.settings
    metadata_backend = make_url(str(settings.metadata_url)).render_as_string(hide_password=True)
    vector_backend = ("milvus-lite " if settings.milvus_is_local else "milvus ") + str(settings.milvus_uri)
    stores = {
        "metadata": _check(services.metadata.ping, metadata_backend),
        "vectors": _check(services.vectors.ping, vector_backend),
    }
    encoder = services.encoder
    if encoder.loaded:
        info = encoder.info
        model = ModelHealth(
            name=info.model,
            backend=info.backend,
            backend_note=info.note,
            precision=info.precision,
            micro_batching=services.queries.stats if services.queries is not None else None,
            dim=info.dim,
            weights=info.weights,
            source=info.source,
            device=info.device,
            warning=RANDOM_WARNING if info.weights == "random" else None,
        )
    else:
        model = ModelHealth(name=encoder.model_name, dim=None, weights=encoder.weights, source=None, device=None)
    status = "ok" if all(s.ok for s in stores.values()) and encoder.loaded else "degraded"
    vector_index = _vector_index(services) if stores["vectors"].ok and stores["metadata"].ok else None
    ocr_state = services.settings.ocr if ocr.available() else "unavailable"
    usable = faces.available(settings)
    return HealthResponse(
        status=status,
        model=model,
        ocr=ocr_state,
        faces=settings.faces if usable else "unavailable",
        face_model=faces.describe(settings) if usable else None,
        stores=stores,
        vector_index=vector_index,
    )


def _vector_index(services: Services) -> VectorIndexHealth:
    settings, vectors = services.settings, services.vectors
    indexes = {r.name: collections.index_summary(services, r) for r in services.metadata.list_collections()}
    return VectorIndexHealth(
        backend=vectors.backend,
        database=settings.milvus_db if not settings.milvus_is_local else "default",
        server_version=None if settings.milvus_is_local else vectors.server_version(),
        new_collections={"index_type": settings.index_type, "params": settings.index_params, "metric": "IP"},
        search={"ef": settings.search_ef, "nprobe": settings.search_nprobe, "consistency": settings.search_consistency},
        collections={name: IndexOut(**index) for name, index in indexes.items() if index},
        in_memory=vectors.mirror_stats(),
    )


def _readiness(services: Services) -> ReadyResponse:
    """Each store reachable, and the vector store serving every collection this process serves (after a Milvus
    restart the server reloads collections for a while)."""
    stores: dict[str, StoreHealth] = {}
    try:
        services.metadata.ping()
        stores["metadata"] = StoreHealth(ok=True, backend=services.metadata.dialect)
    except Exception as exc:
        stores["metadata"] = StoreHealth(ok=False, backend=services.metadata.dialect, error=describe(exc))
    try:
        waiting = services.vectors.readiness()
        stores["vectors"] = StoreHealth(ok=waiting is None, backend=services.vectors.backend, error=waiting)
    except Exception as exc:
        stores["vectors"] = StoreHealth(ok=False, backend=services.vectors.backend, error=describe(exc))
    return ReadyResponse(status="ready" if all(s.ok for s in stores.values()) else "not_ready", stores=stores)


def _starting(request: Request) -> ReadyResponse:
    startup = request.app.state.startup
    store = startup.waiting_for or "startup"
    return ReadyResponse(
        status="starting",
        stores={store: StoreHealth(ok=False, backend=store, error=startup.reason)},
        message=startup.message(),
    )


def _answer(body: BaseModel, ok: bool) -> JSONResponse:
    return JSONResponse(
        status_code=200 if ok else 503,
        content=body.model_dump(),
        headers=None if ok else {"Retry-After": str(RETRY_AFTER_S)},
    )


@router.get("/livez", response_model=LiveResponse)
async def livez() -> LiveResponse:
    """The process is alive and answering (200 even while a store is down): a liveness probe restarts nothing
    that a store outage explains."""
    return LiveResponse(status="alive")


@router.get("/readyz", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
async def readyz(request: Request) -> JSONResponse:
    """Ready to serve searches: both stores reachable and every collection served. 503 names the store that is
    not (and a collection still loading after a Milvus restart); a readiness probe takes the process out of
    rotation until it is."""
    services = request.app.state.services
    ready = _starting(request) if services is None else await run_in_threadpool(_readiness, services)
    return _answer(ready, ready.status == "ready")


@router.get("/healthz", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
async def healthz(request: Request) -> JSONResponse:
    services = request.app.state.services
    if services is None:
        return _answer(_starting(request), False)
    health = await run_in_threadpool(_health, services)
    return _answer(health, health.status == "ok")


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(request: Request) -> Response:
    """Prometheus text format: requests and latency per route, search stages, jobs."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
