"""FastAPI application: clients are built once in the lifespan and kept on ``app.state``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.staticfiles import StaticFiles

from adapters import faces, ocr
from adapters.encoders.encoder_base import EncoderBase
from app.access import Authorized
from app.audit_trail import AuditTrail
from app.errors import install_error_handlers
from app.limits import BodySizeLimit
from app.metrics import Metrics
from app.observability import RequestContext
from app.openapi import install_openapi
from app.routes import (
    audit,
    collections,
    duplicates,
    embed,
    health,
    images,
    jobs,
    keys,
    labels,
    models,
    people,
    search,
    sources,
    tags,
    texts,
    videos,
    web,
)
from app.scopes import check_every_route_declared
from app.startup import StartupState, start_when_stores_answer
from config import Settings
from operations.access.control import AccessControl
from operations.ingest.watch import SourceWatcher, sync_submitter
from operations.jobs.job_kinds import job_function
from operations.jobs.jobs import JobRunner
from operations.services import build_services

logger = logging.getLogger(__name__)

DESCRIPTION = """
以文搜图 — search your images with Chinese text, using Chinese-CLIP, Milvus and MySQL/SQLite.

1. `POST /img/load` a Flickr30k-CN-format split (`{split}_imgs.tsv` + optional `{split}_imgs.img_feat.jsonl`)
   and follow it at `GET /jobs/{job_id}`;
2. `POST /img/search` with a Chinese sentence; open each hit's `url` to see the image.
"""


def create_app(settings: Settings | None = None, encoder: EncoderBase | None = None) -> FastAPI:
    """``encoder`` lets tests share one loaded model between apps; by default settings decide."""

    resolved = settings or Settings()
    metrics = Metrics()

    async def start(app: FastAPI) -> None:
        services = await run_in_threadpool(build_services, resolved, encoder)
        try:
            info = await run_in_threadpool(services.encoder.load)
            for name in resolved.preload_models:
                await run_in_threadpool(services.models.get, name)
            runner = JobRunner(
                services.jobs,
                partial(job_function, services),
                resolved.job_workers,
                resolved.job_lease_seconds,
                max_active=resolved.max_active_jobs,
                max_attempts=resolved.job_max_attempts,
                on_finish=metrics.job_finished,
            )
            metrics.jobs_active.set_function(lambda: runner.active)
        except Exception:
            services.close()
            raise
        watcher = SourceWatcher(services, runner.owner, sync_submitter(runner))
        watcher.start()
        access.attach(services.metadata.engine)
        app.state.services, app.state.jobs, app.state.watcher = services, runner, watcher
        logger.info("service ready: model %s (%s weights, %s)", info.model, info.weights, info.device)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.services = app.state.jobs = app.state.watcher = None
        retrying = await start_when_stores_answer(app.state.startup, partial(start, app))
        try:
            yield
        finally:
            if retrying is not None:
                retrying.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await retrying
            await run_in_threadpool(access.close)
            if app.state.watcher is not None:
                await run_in_threadpool(app.state.watcher.close)
            if app.state.jobs is not None:
                await run_in_threadpool(app.state.jobs.shutdown)
            if app.state.services is not None:
                await run_in_threadpool(app.state.services.close)

    # Swagger UI's files come from the installed package, not a CDN: /docs works offline and where CDNs are slow.
    app = FastAPIOffline(title="Chinese image search", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    install_error_handlers(app)
    install_openapi(app)
    app.add_middleware(BodySizeLimit, max_bytes=resolved.max_request_bytes)
    access = AccessControl(resolved)
    app.state.access = access
    app.add_middleware(AuditTrail, access=access)  # inside RequestContext: entries carry the request id
    app.state.metrics = metrics
    app.state.startup = StartupState()
    app.add_middleware(RequestContext, metrics=metrics)  # outermost: its id and timing cover the 413s too
    if resolved.api_keys:
        logger.info("API keys: %d in IMGSEARCH_API_KEYS; reads are %s", len(resolved.api_keys), resolved.read_access)
    else:
        logger.info("no keys in IMGSEARCH_API_KEYS: the service stays open until a key is created (imgsearch keys)")
    if resolved.ocr == "on" and not ocr.available():
        logger.warning("IMGSEARCH_OCR=on but %s: images are stored without OCR", ocr.MISSING)
    elif resolved.ocr == "on":
        logger.info("OCR on: new and changed images are read at ingest and sync")
    if resolved.faces == "on" and not faces.available(resolved):
        logger.warning("IMGSEARCH_FACES=on but %s: images are stored without faces", faces.MISSING)
    elif resolved.faces == "on":
        logger.info("faces on: new and changed photos are read at upload, ingest and sync")
    # Each route's scope is declared in app/scopes.py; `authorize` enforces it on every route, the page included.
    routers = (search, labels, tags, texts, images, videos, people, collections, sources, duplicates, models, jobs)
    routers = (*routers, embed)
    routers = (*routers, keys, audit)
    for module in (*routers, health, web):
        app.include_router(module.router, dependencies=[Authorized])
    check_every_route_declared(app)
    app.mount("/static", StaticFiles(directory=web.WEB_DIR), name="static")
    return app
