"""Embed texts with the service's own model, so clients and checks compare like with like."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from app.deps import ServicesDep
from app.errors import documented
from app.schemas import EmbedTextRequest, EmbedTextResponse
from operations.search import search

router = APIRouter(prefix="/embed", tags=["embed"])


@router.post("/text", response_model=EmbedTextResponse, responses=documented(422))
async def embed_text(body: EmbedTextRequest, services: ServicesDep) -> EmbedTextResponse:
    vectors = await run_in_threadpool(search.embed_texts, services, body.texts, body.model)
    info = (await run_in_threadpool(services.models.get, body.model)).info
    return EmbedTextResponse(model=info.model, dim=info.dim, weights=info.weights, vectors=vectors.tolist())
