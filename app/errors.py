"""One JSON error shape for every failure: ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pymilvus.exceptions import MilvusException
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from adapters.encoders.encoder_base import ModelLoadError
from adapters.images import InvalidImage
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


def error_response(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, details=details))
    return JSONResponse(status_code=status, content=body.model_dump())


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    # The offending input is left out: it may be huge or not encodable (lone surrogates).
    return [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")} for e in exc.errors()]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(_: Request, exc: AppError) -> JSONResponse:
        return error_response(exc.status_code, exc.code, exc.message, exc.details)

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

    @app.exception_handler(DBAPIError)
    async def metadata_down(_: Request, exc: DBAPIError) -> JSONResponse:
        logger.error("metadata store error: %s", exc.orig if exc.orig is not None else exc)
        return error_response(503, "metadata_store_unavailable", "the metadata database is unavailable; retry later")

    @app.exception_handler(MilvusException)
    async def vectors_down(_: Request, exc: MilvusException) -> JSONResponse:
        logger.error("vector store error: %s", exc)
        return error_response(503, "vector_store_unavailable", "the vector store is unavailable; retry later")

    @app.exception_handler(ModelLoadError)
    async def model_down(_: Request, exc: ModelLoadError) -> JSONResponse:
        return error_response(503, "model_unavailable", str(exc))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; see the service log")
