"""Which Chinese-CLIP models this service can serve, and which are loaded now."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from app.deps import ServicesDep
from app.schemas import ModelOut

router = APIRouter(tags=["models"])


@router.get("/models", response_model=list[ModelOut])
async def loaded_models(services: ServicesDep) -> list[ModelOut]:
    """Models in memory now (others load on first use, up to IMGSEARCH_MAX_LOADED_MODELS at once)."""
    infos = await run_in_threadpool(services.models.loaded)
    return [
        ModelOut(
            name=i.model,
            backend=i.backend,
            backend_note=i.note,
            precision=i.precision,
            dim=i.dim,
            weights=i.weights,
            input_resolution=i.input_resolution,
            default=i.model == services.models.default_name,
        )
        for i in infos
    ]
