"""One JSON error shape for every failure: ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from adapters.encoders.encoder_base import ModelLoadError
from adapters.images import InvalidImage
from adapters.stores.milvus.milvus_guard import MILVUS_ERRORS, VectorStoreUnavailable
from adapters.stores.milvus.milvus_guard import one_line as milvus_one_line
from adapters.stores.sql.sql_health import one_line
from operations.errors import AppError

logger = logging.getLogger(__name__)

_HTTP_CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody


def documented(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entry: these statuses answer with the error shape."""
    return {code: {"model": ErrorResponse} for code in codes}


# A store that is down or still loading a collection usually answers again within seconds.
RETRY_AFTER_S = 2


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, details=details))
    if status == 503 and not (headers and "Retry-After" in headers):
        headers = {**(headers or {}), "Retry-After": str(RETRY_AFTER_S)}
    return JSONResponse(status_code=status, content=body.model_dump(), headers=headers)


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    # The offending input is left out: it may be huge or not encodable (lone surrogates).
    return [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")} for e in exc.errors()]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(_: Request, exc: AppError) -> JSONResponse:
        return error_response(exc.status_code, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_input", "request is not valid", _validation_details(exc))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(InvalidImage)
    async def invalid_image(_: Request, exc: InvalidImage) -> JSONResponse:
        return error_response(422, "invalid_image", str(exc))

    # An outage is expected: one line per refused request (the adapters log when a store goes down and comes
    # back), never a traceback.
    @app.exception_handler(DBAPIError)
    async def metadata_down(request: Request, exc: DBAPIError) -> JSONResponse:
        logger.warning("%s %s: metadata store unavailable: %s", request.method, request.url.path, one_line(exc))
        return error_response(503, "metadata_store_unavailable", "the metadata database is unavailable; retry later")

    async def vectors_down(request: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, VectorStoreUnavailable):  # raised outside the adapter's guard (tests' doubles)
            exc = VectorStoreUnavailable(f"the vector store is unavailable: {milvus_one_line(exc)}; retry later")
        logger.warning("%s %s: %s", request.method, request.url.path, exc.message)
        return error_response(503, "vector_store_unavailable", exc.message)

    for milvus_error in MILVUS_ERRORS:
        app.add_exception_handler(milvus_error, vectors_down)

    @app.exception_handler(ModelLoadError)
    async def model_down(_: Request, exc: ModelLoadError) -> JSONResponse:
        return error_response(503, "model_unavailable", str(exc))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; see the service log")
